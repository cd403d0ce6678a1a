//! The append-only, hash-chained audit trail (invariant 6).

use super::*;

/// Who did something, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            id: "system".into(),
            name: "Portcullis".into(),
        }
    }

    /// Someone not signed in (a refused cross-site request, a failed sign-in).
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            name: "anonymous".into(),
        }
    }

    pub fn of(p: &Principal) -> Self {
        Self {
            id: p.user_id.clone(),
            name: p.display_name.clone(),
        }
    }
}

/// One audit event, written in the same transaction as the change it records (with its
/// [`Actor`]); the same type is rebuilt from a stored row to verify the chain.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub action: &'a str,
    pub person_id: Option<&'a str>,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
    pub entitlement_id: Option<&'a str>,
    pub detail: String,
}

fn chain_hash(prev: &str, seq: i64, at: i64, actor: &Actor, e: &Event<'_>) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different events can serialise to the same bytes.
    for field in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        &actor.id,
        &actor.name,
        e.action,
        e.person_id.unwrap_or(""),
        e.subject_kind,
        e.subject_id,
        e.entitlement_id.unwrap_or(""),
        &e.detail,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

pub async fn append_audit(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: &Event<'_>,
    now: Timestamp,
) -> Result<i64> {
    // Touching the head row first serialises concurrent writers (a row lock on PostgreSQL;
    // SQLite's write transaction is exclusive anyway).
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + 1 WHERE audit_head_id = 1 RETURNING seq, hash",
    )
    .fetch_one(&mut *conn)
    .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let hash = chain_hash(&prev, seq, now.millis(), actor, e);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE audit_head_id = 1")
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO audit_event (seq, at, actor_id, actor_name, action, person_id, subject_kind, subject_id,
             entitlement_id, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(now.millis())
    .bind(&actor.id)
    .bind(&actor.name)
    .bind(e.action)
    .bind(e.person_id)
    .bind(e.subject_kind)
    .bind(e.subject_id)
    .bind(e.entitlement_id)
    .bind(&e.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(conn)
    .await?;
    Ok(seq)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: Timestamp,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub person_id: Option<String>,
    pub subject_kind: String,
    pub subject_id: String,
    pub entitlement_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Matches the actor or the person concerned, by id, email or name (substring).
    pub person: Option<String>,
    pub entitlement: Option<String>,
    /// Prefix match: `request.` finds every request event.
    pub action: Option<String>,
    pub limit: i64,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn query_audit(conn: &mut AnyConnection, q: &AuditQuery) -> Result<Vec<AuditRow>> {
    let person = q
        .person
        .as_deref()
        .map(|p| format!("%{}%", like_escape(&p.to_lowercase())));
    let action = q.action.as_deref().map(|a| format!("{}%", like_escape(a)));
    Ok(sqlx::query_as(
        "SELECT a.* FROM audit_event a
         WHERE ($1 IS NULL OR LOWER(a.actor_id) LIKE $1 ESCAPE '\\' OR LOWER(a.actor_name) LIKE $1 ESCAPE '\\'
                OR LOWER(COALESCE(a.person_id, '')) LIKE $1 ESCAPE '\\'
                OR a.person_id IN (SELECT user_id FROM app_user
                                   WHERE LOWER(email) LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\')
                OR a.actor_id IN (SELECT user_id FROM app_user WHERE LOWER(email) LIKE $1 ESCAPE '\\'))
           AND ($2 IS NULL OR a.entitlement_id = $2)
           AND ($3 IS NULL OR a.action LIKE $3 ESCAPE '\\')
         ORDER BY a.seq DESC LIMIT $4",
    )
    .bind(person)
    .bind(q.entitlement.as_deref())
    .bind(action)
    .bind(q.limit)
    .fetch_all(conn)
    .await?)
}

/// Recomputes the chain. Returns the first sequence number whose hash does not match.
pub async fn verify_audit_chain(conn: &mut AnyConnection) -> Result<Option<i64>> {
    let rows: Vec<AuditRow> = sqlx::query_as("SELECT * FROM audit_event ORDER BY seq")
        .fetch_all(&mut *conn)
        .await?;
    let mut prev = "0".repeat(64);
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE audit_head_id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let count = rows.len() as i64;
    for (expected_seq, r) in (1..).zip(rows) {
        let actor = Actor {
            id: r.actor_id.clone(),
            name: r.actor_name.clone(),
        };
        let e = Event {
            action: &r.action,
            person_id: r.person_id.as_deref(),
            subject_kind: &r.subject_kind,
            subject_id: &r.subject_id,
            entitlement_id: r.entitlement_id.as_deref(),
            detail: r.detail.clone(),
        };
        if r.seq != expected_seq
            || r.prev_hash != prev
            || chain_hash(&prev, r.seq, r.at.millis(), &actor, &e) != r.hash
        {
            return Ok(Some(r.seq));
        }
        prev = r.hash;
    }
    // Events cut off the end leave the head pointing past the last row.
    if head_seq != count || head_hash != prev {
        return Ok(Some(count + 1));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_field_sensitive() {
        let a = Actor {
            id: "a".into(),
            name: "A".into(),
        };
        let e = |detail: &str| Event {
            action: "x",
            person_id: None,
            subject_kind: "request",
            subject_id: "1",
            entitlement_id: None,
            detail: detail.into(),
        };
        assert_eq!(
            chain_hash("0", 1, 5, &a, &e("d")),
            chain_hash("0", 1, 5, &a, &e("d"))
        );
        assert_ne!(
            chain_hash("0", 1, 5, &a, &e("d")),
            chain_hash("0", 1, 5, &a, &e("e"))
        );
        assert_ne!(
            chain_hash("0", 1, 5, &a, &e("d")),
            chain_hash("1", 1, 5, &a, &e("d"))
        );
    }
}

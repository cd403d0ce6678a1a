//! The append-only, hash-chained audit trail (invariant 6).

use super::*;
use hmac::{Hmac, Mac};
use sha2::digest::Update;

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

/// Feeds the fields of one event to a hash or a MAC, each length-prefixed: no two different
/// events serialise to the same bytes.
fn feed(h: &mut impl Update, prev: &str, seq: i64, at: i64, actor: &Actor, e: &Event<'_>) {
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
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
}

/// The hash of an event: HMAC-SHA256 under the audit key over the previous hash and the
/// event's fields. Without the key nobody can write an event, or rewrite one, that verifies.
pub fn chain_hash(
    key: &AuditKey,
    prev: &str,
    seq: i64,
    at: i64,
    actor: &Actor,
    e: &Event<'_>,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    feed(&mut mac, prev, seq, at, actor, e);
    hex::encode(mac.finalize().into_bytes())
}

/// The unkeyed SHA-256 of the same fields: how events were chained before the key
/// (migration 20261201000002). Only verification uses it, for events before
/// `audit_head.keyed_from`; tests use it to write such events.
pub fn legacy_chain_hash(prev: &str, seq: i64, at: i64, actor: &Actor, e: &Event<'_>) -> String {
    let mut h = Sha256::new();
    feed(&mut h, prev, seq, at, actor, e);
    hex::encode(h.finalize())
}

/// Appends an event, keyed with `key`, to the chain: in the caller's transaction.
pub async fn append_audit(
    conn: &mut AnyConnection,
    key: &AuditKey,
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
    let hash = chain_hash(key, &prev, seq, now.millis(), actor, e);
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

impl AuditRow {
    fn actor(&self) -> Actor {
        Actor {
            id: self.actor_id.clone(),
            name: self.actor_name.clone(),
        }
    }

    fn event(&self) -> Event<'_> {
        Event {
            action: &self.action,
            person_id: self.person_id.as_deref(),
            subject_kind: &self.subject_kind,
            subject_id: &self.subject_id,
            entitlement_id: self.entitlement_id.as_deref(),
            detail: self.detail.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Matches the actor or the person concerned, by id, email or name (substring).
    pub person: Option<String>,
    pub entitlement: Option<String>,
    /// Prefix match: `request.` finds every request event.
    pub action: Option<String>,
    pub limit: i64,
    /// Only events before this `seq` (the page after one that ended there).
    pub before: Option<i64>,
}

impl AuditQuery {
    /// A filter as typed in a form or on a command line: blank means any.
    pub fn filter(
        person: Option<String>,
        entitlement: Option<String>,
        action: Option<String>,
    ) -> Self {
        let clean = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Self {
            person: clean(person),
            entitlement: clean(entitlement),
            action: clean(action),
            limit: 500,
            before: None,
        }
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The filter of [`AuditQuery`] as `$1` (person), `$2` (entitlement), `$3` (action).
const AUDIT_FILTER: &str = "
    ($1 IS NULL OR LOWER(a.actor_id) LIKE $1 ESCAPE '\\' OR LOWER(a.actor_name) LIKE $1 ESCAPE '\\'
        OR LOWER(COALESCE(a.person_id, '')) LIKE $1 ESCAPE '\\'
        OR a.person_id IN (SELECT user_id FROM app_user
                           WHERE LOWER(email) LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\')
        OR a.actor_id IN (SELECT user_id FROM app_user WHERE LOWER(email) LIKE $1 ESCAPE '\\'))
    AND ($2 IS NULL OR a.entitlement_id = $2)
    AND ($3 IS NULL OR a.action LIKE $3 ESCAPE '\\')";

fn filter_binds(q: &AuditQuery) -> (Option<String>, Option<String>, Option<String>) {
    let person = q
        .person
        .as_deref()
        .map(|p| format!("%{}%", like_escape(&p.to_lowercase())));
    let action = q.action.as_deref().map(|a| format!("{}%", like_escape(a)));
    (person, q.entitlement.clone(), action)
}

/// The newest `q.limit` events that match, newest first (the audit page).
pub async fn query_audit(conn: &mut AnyConnection, q: &AuditQuery) -> Result<Vec<AuditRow>> {
    let (person, entitlement, action) = filter_binds(q);
    Ok(sqlx::query_as(&format!(
        "SELECT a.* FROM audit_event a WHERE {AUDIT_FILTER} AND a.seq < $5
         ORDER BY a.seq DESC LIMIT $4"
    ))
    .bind(person)
    .bind(entitlement)
    .bind(action)
    .bind(q.limit)
    .bind(q.before.unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?)
}

/// Up to `q.limit` matching events after `after_seq`, oldest first: a page of an export
/// that reads every event, the cursor being the last `seq` of the page before.
pub async fn audit_page(
    conn: &mut AnyConnection,
    q: &AuditQuery,
    after_seq: i64,
) -> Result<Vec<AuditRow>> {
    let (person, entitlement, action) = filter_binds(q);
    Ok(sqlx::query_as(&format!(
        "SELECT a.* FROM audit_event a WHERE {AUDIT_FILTER} AND a.seq > $4 ORDER BY a.seq LIMIT $5"
    ))
    .bind(person)
    .bind(entitlement)
    .bind(action)
    .bind(after_seq)
    .bind(q.limit)
    .fetch_all(conn)
    .await?)
}

/// The events about these subjects (a request and its grants), oldest first: the newest
/// `limit` of them when there are more.
pub async fn audit_of_subjects(
    conn: &mut AnyConnection,
    ids: &[&str],
    limit: usize,
) -> Result<Vec<AuditRow>> {
    let rows = rows_for_ids(conn, ids, |ph| {
        format!("SELECT * FROM audit_event WHERE subject_id IN ({ph}) ORDER BY seq")
    })
    .await?;
    let mut events = rows
        .iter()
        .map(<AuditRow as sqlx::FromRow<sqlx::any::AnyRow>>::from_row)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    events.sort_by_key(|e| e.seq);
    let skip = events.len().saturating_sub(limit);
    Ok(events.split_off(skip))
}

/// What verifying the chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCheck {
    /// Events checked: the whole chain up to the head when it is intact.
    pub events: i64,
    /// The first event chained with the key; those before it use the unkeyed rule. The
    /// database's own marker, never later than the configuration allows
    /// (`audit.unkeyed_events` + 1).
    pub keyed_from: i64,
    /// How many events the database says predate the key (`audit_head.keyed_from` - 1),
    /// to tell an operator what `audit.unkeyed_events` an upgraded database needs.
    pub claimed_unkeyed: i64,
    /// The sequence number of the first event that does not fit (one past the last event
    /// when events were cut off the end).
    pub first_bad: Option<i64>,
}

impl ChainCheck {
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }

    /// When the break is among events the database says predate the key but the
    /// configuration does not: what to do about it (an upgraded database needs
    /// `audit.unkeyed_events`; any other database had its marker moved).
    pub fn unkeyed_hint(&self) -> Option<String> {
        let seq = self.first_bad?;
        (seq <= self.claimed_unkeyed && self.keyed_from <= self.claimed_unkeyed).then(|| {
            format!(
                "The database says its first {n} events predate the audit key. If it was \
                 upgraded from a version before the key, set audit.unkeyed_events = {n} \
                 (PORTCULLIS_AUDIT__UNKEYED_EVENTS) and keep it; if not, its marker was moved \
                 to hide keyed events.",
                n = self.claimed_unkeyed
            )
        })
    }
}

/// Checks events one by one in `seq` order: numbering without gaps, each event's
/// `prev_hash` the hash before it, its hash recomputed (SHA-256 before `keyed_from`,
/// HMAC with the key from there on). Pure, so the mixed rule is tested directly.
pub struct ChainVerifier<'k> {
    key: &'k AuditKey,
    keyed_from: i64,
    prev: String,
    checked: i64,
    first_bad: Option<i64>,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: &'k AuditKey, keyed_from: i64) -> Self {
        Self {
            key,
            keyed_from,
            prev: "0".repeat(64),
            checked: 0,
            first_bad: None,
        }
    }

    /// Checks the next event; false from the first one that does not fit on.
    pub fn check(&mut self, r: &AuditRow) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        let (actor, e) = (r.actor(), r.event());
        let at = r.at.millis();
        let expected = if r.seq >= self.keyed_from {
            chain_hash(self.key, &self.prev, r.seq, at, &actor, &e)
        } else {
            legacy_chain_hash(&self.prev, r.seq, at, &actor, &e)
        };
        if r.seq != self.checked + 1 || r.prev_hash != self.prev || r.hash != expected {
            self.first_bad = Some(r.seq);
            return false;
        }
        self.checked += 1;
        self.prev.clone_from(&r.hash);
        true
    }

    /// The result, given the head (`audit_head`) read before the events: events cut off
    /// the end leave the head pointing past the last one.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> ChainCheck {
        let first_bad = self.first_bad.or_else(|| {
            (self.checked != head_seq || self.prev != head_hash).then_some(self.checked + 1)
        });
        ChainCheck {
            events: self.checked,
            keyed_from: self.keyed_from,
            claimed_unkeyed: self.keyed_from - 1,
            first_bad,
        }
    }
}

/// Events read per query while verifying.
const VERIFY_PAGE: i64 = 1000;

/// Recomputes the whole chain up to the head as it is now, a page at a time (events
/// appended meanwhile are left for the next run).
pub async fn verify_audit_chain(conn: &mut AnyConnection, key: &AuditKey) -> Result<ChainCheck> {
    let head = sqlx::query("SELECT seq, hash, keyed_from FROM audit_head WHERE audit_head_id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let (head_seq, head_hash, keyed_from): (i64, String, i64) = (
        head.try_get("seq")?,
        head.try_get("hash")?,
        head.try_get("keyed_from")?,
    );
    // The database's marker counts only as far as the configuration allows: moved further
    // (and the events rehashed without the key), the keyed events it hides fail.
    let mut verifier = ChainVerifier::new(key, keyed_from.min(key.unkeyed_events() + 1));
    let mut after = 0;
    loop {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT * FROM audit_event WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(head_seq)
        .bind(VERIFY_PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        let full = rows.len() as i64 == VERIFY_PAGE;
        if !rows.iter().all(|r| verifier.check(r)) || !full {
            break;
        }
    }
    Ok(ChainCheck {
        claimed_unkeyed: keyed_from - 1,
        ..verifier.finish(head_seq, &head_hash)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AuditKey {
        AuditKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn hash_is_stable_and_field_sensitive() {
        let k = key(1);
        let chain_hash =
            |prev, seq, at, a: &Actor, e: &Event<'_>| chain_hash(&k, prev, seq, at, a, e);
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

    #[test]
    fn the_key_changes_every_hash_and_the_legacy_rule_has_none() {
        let a = Actor::system();
        let e = Event {
            action: "x",
            person_id: None,
            subject_kind: "request",
            subject_id: "1",
            entitlement_id: None,
            detail: String::new(),
        };
        assert_ne!(
            chain_hash(&key(1), "0", 1, 5, &a, &e),
            chain_hash(&key(2), "0", 1, 5, &a, &e)
        );
        assert_ne!(
            chain_hash(&key(1), "0", 1, 5, &a, &e),
            legacy_chain_hash("0", 1, 5, &a, &e)
        );
        // The unkeyed rule is exactly the SHA-256 chain written before the key (this value
        // is the length-prefixed fields hashed independently).
        assert_eq!(
            legacy_chain_hash("0", 1, 5, &a, &e),
            "d0cd025e5ba7b31ad55327698a8b21bec0e28d8143a5d7fc0805eea04a03cf8c"
        );
    }

    /// Rows chained as `append_audit` would, the first `legacy` of them with the old rule.
    fn chain(k: &AuditKey, n: i64, legacy: i64) -> Vec<AuditRow> {
        let mut prev = "0".repeat(64);
        (1..=n)
            .map(|seq| {
                let mut r = AuditRow {
                    seq,
                    at: Timestamp(1_000 * seq),
                    actor_id: "u".into(),
                    actor_name: "U".into(),
                    action: "request.created".into(),
                    person_id: Some("u".into()),
                    subject_kind: "request".into(),
                    subject_id: format!("r{seq}"),
                    entitlement_id: None,
                    detail: format!("event {seq}"),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                let (actor, e) = (r.actor(), r.event());
                r.hash = if seq <= legacy {
                    legacy_chain_hash(&prev, seq, r.at.millis(), &actor, &e)
                } else {
                    chain_hash(k, &prev, seq, r.at.millis(), &actor, &e)
                };
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn verify(k: &AuditKey, keyed_from: i64, rows: &[AuditRow]) -> ChainCheck {
        let mut v = ChainVerifier::new(k, keyed_from);
        for r in rows {
            v.check(r);
        }
        let head = rows.last().map(|r| (r.seq, r.hash.clone()));
        let (seq, hash) = head.unwrap_or((0, "0".repeat(64)));
        v.finish(seq, &hash)
    }

    #[test]
    fn mixed_chain_old_events_unkeyed_new_ones_keyed() {
        let k = key(7);
        let rows = chain(&k, 6, 3);
        let ok = verify(&k, 4, &rows);
        assert_eq!(ok.first_bad, None);
        assert_eq!(ok.events, 6);
        // The wrong key: the first keyed event fails, the unkeyed ones before it pass.
        assert_eq!(verify(&key(8), 4, &rows).first_bad, Some(4));
        // Claiming the chain keyed from the start fails at the first unkeyed event.
        assert_eq!(verify(&k, 1, &rows).first_bad, Some(1));
        // Claiming more events are unkeyed than are fails at the first keyed one.
        assert_eq!(verify(&k, 6, &rows).first_bad, Some(4));
        // An old event rewritten (and rehashed with the old rule) breaks the next link.
        let mut tampered = rows.clone();
        tampered[1].detail = "rewritten".into();
        let (actor, e) = (tampered[1].actor(), tampered[1].event());
        tampered[1].hash = legacy_chain_hash(&tampered[1].prev_hash, 2, 2_000, &actor, &e);
        assert_eq!(verify(&k, 4, &tampered).first_bad, Some(3));
        // A fresh database: keyed from the first event.
        let fresh = chain(&k, 3, 0);
        assert!(verify(&k, 1, &fresh).is_intact());
    }

    #[test]
    fn gaps_and_a_cut_tail_are_found() {
        let k = key(7);
        let rows = chain(&k, 5, 0);
        let mut gap = rows.clone();
        gap.remove(2);
        // The event after the gap is the one that does not fit.
        assert_eq!(verify(&k, 1, &gap).first_bad, Some(4));
        let mut v = ChainVerifier::new(&k, 1);
        for r in &rows[..3] {
            assert!(v.check(r));
        }
        // The head still says 5: events 4 and 5 were deleted.
        assert_eq!(v.finish(5, &rows[4].hash).first_bad, Some(4));
    }
}

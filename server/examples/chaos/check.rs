//! After the run: what moto's log, moto's state and the database say, checked against the
//! invariants, and the figures printed.

use super::*;

pub(crate) fn pct<T>(v: &[T], p: f64, f: impl Fn(&T) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

pub(crate) struct Report {
    pub(crate) violations: Vec<String>,
    /// (seconds after ends_at, the same without the time PostgreSQL was down)
    pub(crate) lateness: Vec<(f64, f64)>,
    pub(crate) revoked: usize,
    pub(crate) failed: usize,
    pub(crate) time_over: usize,
    pub(crate) calls: usize,
    pub(crate) faults: usize,
    pub(crate) throttled: usize,
    pub(crate) conflicts: usize,
    /// Grants whose assignment was never created (their time ran out first).
    pub(crate) never_created: usize,
    /// Grants whose `ends_at` fell while PostgreSQL was down.
    pub(crate) ended_in_outage: usize,
    /// Grants revoked past the bound (or never), whose evidence a failure prints.
    pub(crate) late_grants: Vec<String>,
}

/// An assignment: (Identity Store principal, account, permission set).
type Key = (String, String, String);

/// One successful assignment call in moto's log.
pub(crate) struct Call {
    pub(crate) arrived: f64,
    pub(crate) done: f64,
    pub(crate) create: bool,
}

/// Grants of one assignment whose times overlap, merged: access must hold from the
/// first request to the last end.
pub(crate) struct Episode {
    pub(crate) from: f64,
    pub(crate) until: f64,
    pub(crate) grants: Vec<String>,
    pub(crate) created: bool,
    pub(crate) gone_at: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn check(
    s: &Settings,
    http: &reqwest::Client,
    db: &PgPool,
    sso: &aws_sdk_ssoadmin::Client,
    instance_arn: &str,
    accounts: &[String],
    aws_user: &HashMap<String, String>,
    lives: &[Life],
    outage: Option<(f64, f64)>,
) -> Result<Report> {
    let mut violations = Vec::new();
    // The database, after the run.
    let grants = sqlx::query(
        "SELECT g.access_grant_id, u.email, g.account_id, g.permission_set_arn, g.created_at, \
         g.ends_at, g.status, coalesce(g.failure_reason, ''), r.status \
         FROM access_grant g JOIN app_user u ON u.user_id = g.principal_id \
         JOIN access_request r ON r.access_request_id = g.access_request_id",
    )
    .fetch_all(db)
    .await?;
    let (mut revoked, mut failed, mut time_over) = (0, 0, 0);
    // (principal, account, permission set) -> (from, until, grant id)
    let mut by_triple: BTreeMap<Key, Vec<(f64, f64, String)>> = BTreeMap::new();
    for g in &grants {
        let id: String = g.get(0);
        let email: String = g.get(1);
        let status: String = g.get(6);
        let reason: String = g.get(7);
        let request_status: String = g.get(8);
        match status.as_str() {
            "revoked" => revoked += 1,
            "failed" if reason.contains(TIME_OVER) => {
                failed += 1;
                time_over += 1;
            }
            "failed" => {
                failed += 1;
                violations.push(format!("grant {id} failed: {reason}"));
            }
            other => violations.push(format!("grant {id} stuck in {other}")),
        }
        if matches!(request_status.as_str(), "pending" | "approved" | "active") {
            violations.push(format!(
                "the request of grant {id} stuck in {request_status}"
            ));
        }
        let principal = aws_user.get(&email).cloned().unwrap_or(email);
        by_triple
            .entry((principal, g.get(2), g.get(3)))
            .or_default()
            .push((
                g.get::<i64, _>(4) as f64 / 1000.0,
                g.get::<i64, _>(5) as f64 / 1000.0,
                id,
            ));
    }
    let pending: i64 = sqlx::query(
        "SELECT count(*) FROM access_request WHERE status IN ('pending', 'approved', 'active')",
    )
    .fetch_one(db)
    .await?
    .get(0);
    if pending > 0 {
        violations.push(format!("{pending} requests not in a final state"));
    }
    for life in lives {
        if life.request_id.is_none() {
            violations.push(format!(
                "lifecycle {} could not make its request through the portal",
                life.n
            ));
        }
    }

    // moto's log: every call, and the successful assignment calls per assignment.
    let log: Vec<Value> = http
        .get(format!("{}/_fault/log", s.moto))
        .send()
        .await?
        .json()
        .await?;
    let mut calls_by_triple: BTreeMap<Key, Vec<Call>> = BTreeMap::new();
    let (mut calls, mut faults, mut throttled, mut conflicts) = (0, 0, 0, 0);
    for e in &log {
        let Some(op) = e["operation"].as_str() else {
            continue;
        };
        calls += 1;
        if e["fault"] == "error" {
            faults += 1;
            match e["error_code"].as_str() {
                Some("ThrottlingException") => throttled += 1,
                Some("ConflictException") => conflicts += 1,
                _ => {}
            }
        }
        let create = match op {
            "CreateAccountAssignment" => true,
            "DeleteAccountAssignment" => false,
            _ => continue,
        };
        if e["status"] != 200 {
            continue;
        }
        let r = &e["request"];
        let key = (
            r["PrincipalId"].as_str().unwrap_or_default().to_owned(),
            r["TargetId"].as_str().unwrap_or_default().to_owned(),
            r["PermissionSetArn"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let arrived = e["time"].as_f64().unwrap_or_default();
        calls_by_triple.entry(key).or_default().push(Call {
            arrived,
            done: arrived + e["duration_ms"].as_f64().unwrap_or_default() / 1000.0,
            create,
        });
    }

    // Replay each assignment's calls against its grants' times.
    let mut lateness = Vec::new();
    let mut late_grants = Vec::new();
    let mut never_created = 0;
    let ended_in_outage = by_triple
        .values()
        .flatten()
        .filter(|(_, until, _)| outage.is_some_and(|(a, b)| (a..b).contains(until)))
        .count();
    let empty = Vec::new();
    let keys: HashSet<_> = by_triple
        .keys()
        .chain(calls_by_triple.keys())
        .cloned()
        .collect();
    for key in keys {
        let mut spans = by_triple.get(&key).cloned().unwrap_or_default();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut episodes: Vec<Episode> = Vec::new();
        for (from, until, id) in spans {
            match episodes.last_mut() {
                Some(e) if from <= e.until => {
                    e.until = e.until.max(until);
                    e.grants.push(id);
                }
                _ => episodes.push(Episode {
                    from,
                    until,
                    grants: vec![id],
                    created: false,
                    gone_at: None,
                }),
            }
        }
        let who = format!("{} on {}", key.0, key.1);
        let mut copies = 0u32;
        for c in calls_by_triple.get(&key).unwrap_or(&empty) {
            // The episode this call falls in, or the last one it follows.
            let inside = episodes
                .iter()
                .position(|e| e.from <= c.arrived && c.arrived < e.until);
            let after = episodes.iter().rposition(|e| e.until <= c.arrived);
            if c.create {
                copies += 1;
                match (inside, after) {
                    (Some(i), _) => episodes[i].created = true,
                    (None, Some(i)) => {
                        let late = c.arrived - episodes[i].until;
                        if late > 1.0 {
                            violations.push(format!(
                                "{who}: created {late:.1} s after the end of grant(s) {:?}",
                                episodes[i].grants
                            ));
                        }
                        episodes[i].created = true;
                    }
                    (None, None) => violations.push(format!("{who}: created with no grant for it")),
                }
            } else {
                copies = copies.saturating_sub(1);
                if copies > 0 {
                    continue;
                }
                if let Some(i) = inside {
                    violations.push(format!(
                        "{who}: deleted {:.1} s before the end of grant(s) {:?}",
                        episodes[i].until - c.arrived,
                        episodes[i].grants
                    ));
                } else if let Some(i) = after {
                    if episodes[i].gone_at.is_none() {
                        episodes[i].gone_at = Some(c.done);
                    }
                }
            }
        }
        for e in &episodes {
            match (e.created, e.gone_at) {
                (true, Some(gone)) => {
                    let late = gone - e.until;
                    let down = outage
                        .map(|(a, b)| (b.min(gone) - a.max(e.until)).max(0.0))
                        .unwrap_or(0.0);
                    if late - down > s.bound_secs {
                        late_grants.extend(e.grants.iter().cloned());
                        violations.push(format!(
                            "{who}: revoked {late:.1} s after ends_at ({:.1} s without the outage), \
                             over the {} s bound: {:?}",
                            late - down,
                            s.bound_secs,
                            e.grants
                        ));
                    }
                    lateness.push((late, late - down));
                }
                (true, None) => {
                    late_grants.extend(e.grants.iter().cloned());
                    violations.push(format!(
                        "{who}: assignment of grant(s) {:?} never deleted",
                        e.grants
                    ))
                }
                (false, _) => never_created += e.grants.len(),
            }
        }
    }

    // moto's final state: nothing assigned.
    for account in accounts {
        let out = sso
            .list_account_assignments()
            .instance_arn(instance_arn)
            .account_id(account)
            .permission_set_arn(PERMISSION_SET_ARN)
            .send()
            .await?;
        for a in out.account_assignments() {
            violations.push(format!(
                "left in AWS at the end: {} on {account}",
                a.principal_id().unwrap_or_default()
            ));
        }
    }
    Ok(Report {
        violations,
        lateness,
        revoked,
        failed,
        time_over,
        calls,
        faults,
        throttled,
        conflicts,
        never_created,
        ended_in_outage,
        late_grants,
    })
}

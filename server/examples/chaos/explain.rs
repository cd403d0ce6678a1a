//! A failed run, explained from its output alone (for CI, where nothing else is kept).

use super::*;

/// What a failed run knows of its late grants, so that a failure in CI can be diagnosed
/// from its output alone: the replicas' starts and kills and the outage, then for each
/// late grant (the first five) its audit trail and every replica log line naming it or a
/// lease taken over, times relative to the grant's end.
pub(crate) async fn explain(
    s: &Settings,
    db: &PgPool,
    fleet: &Fleet,
    late: &[String],
    outage: Option<(f64, f64)>,
) {
    if late.is_empty() {
        return;
    }
    println!("chaos: what the late grants went through");
    if let Some((a, b)) = outage {
        println!("  PostgreSQL down from {a:.1} to {b:.1}");
    }
    for (at, what) in fleet.timeline.lock().unwrap().iter() {
        println!("  {at:.1} {what}");
    }
    let logs: Vec<String> = (0..s.ports.len())
        .map(|i| {
            std::fs::read_to_string(s.dir.join(format!("replica-{i}.log"))).unwrap_or_default()
        })
        .collect();
    for grant in late.iter().take(5) {
        let ends: Option<i64> =
            sqlx::query_scalar("SELECT ends_at FROM access_grant WHERE access_grant_id = $1")
                .bind(grant)
                .fetch_optional(db)
                .await
                .ok()
                .flatten();
        let ends = ends.unwrap_or_default() as f64 / 1000.0;
        println!("  grant {grant}, ends_at {ends:.1}:");
        let events = sqlx::query(
            "SELECT at, actor_name, action, detail FROM audit_event WHERE subject_id = $1 ORDER BY seq",
        )
        .bind(grant)
        .fetch_all(db)
        .await
        .unwrap_or_default();
        for e in events {
            let at: i64 = e.get("at");
            let (who, action, detail): (String, String, String) =
                (e.get("actor_name"), e.get("action"), e.get("detail"));
            println!(
                "    {:+.1} s  audit {action} by {who}: {detail}",
                at as f64 / 1000.0 - ends
            );
        }
        for (i, log) in logs.iter().enumerate() {
            for line in log
                .lines()
                .filter(|l| l.contains(grant.as_str()) || l.contains("lease lapsed"))
                .take(30)
            {
                let plain = strip_ansi(line);
                println!(
                    "    replica {i}: {}",
                    plain.chars().take(400).collect::<String>()
                );
            }
        }
    }
}

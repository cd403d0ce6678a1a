//! The admin dashboard (issue #14, item 5) over seeded history, on SQLite and PostgreSQL:
//! three days of requests (granted, rejected, waiting), decisions 30 and 10 minutes after
//! asking, grants revoked a known time after their end, and one holding access now; each
//! chart's numbers are what happened, day by day; only admins may read them.

mod common;

use app::domain::{ApproverRule, Policy};
use app::error::AppError;
use app::ssr::Portal;
use app::views::ChartView;
use common::*;
use portcullis::portal::apply_configured_entitlements as apply;
use portcullis::seed::{PS_AUDIT, PS_READONLY, SANDBOX};
use std::time::Duration;

both!(the_dashboard_charts_what_happened_day_by_day);

const MIN: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

fn chart<'a>(charts: &'a [ChartView], id: &str) -> &'a ChartView {
    charts.iter().find(|c| c.id == id).unwrap()
}

/// The value of `series` on the day `days_ago` days before the last one.
fn value(c: &ChartView, series: &str, days_ago: usize) -> f64 {
    let s = c.series.iter().find(|s| s.name == series).unwrap();
    s.values[s.values.len() - 1 - days_ago]
}

async fn the_dashboard_charts_what_happened_day_by_day(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let auto = entitlement(
        "dash-auto",
        SANDBOX,
        PS_READONLY,
        Policy {
            auto_approve: true,
            max_duration_secs: 24 * 3600,
            ..policy()
        },
    );
    // Another permission set: its grant is an assignment of its own, deleted on its own
    // (a grant whose assignment another live grant still needs ends without a deletion).
    let by_manager = entitlement(
        "dash-manager",
        SANDBOX,
        PS_AUDIT,
        Policy {
            approvers: ApproverRule {
                manager: true,
                ..Default::default()
            },
            ..policy()
        },
    );
    let seeded: Vec<String> = portcullis::seed::entitlements()
        .into_iter()
        .map(|e| e.id)
        .collect();
    apply(&env.store, &[auto, by_manager], &seeded, env.now())
        .await
        .unwrap();
    // Day 0 starts at midnight UTC; everything happens from 08:00 on.
    let day0 = env.now().millis().div_euclid(DAY_MS) * DAY_MS;
    env.set_time(day0 + 8 * 3_600_000);
    let w = env.worker();

    // Day 0: one granted at once (1h, so it ends and is revoked the same day), one granted
    // by Bob 30 minutes after asking.
    env.ask(&alice, "dash-auto", "1h").await;
    env.settle(&w).await;
    let asked = env.ask(&alice, "dash-manager", "1h").await;
    env.advance(30 * MIN);
    env.portal.decide(&bob, &asked, true, "fine").await.unwrap();
    env.settle(&w).await;
    env.run_until(&w, env.now().millis() + 3 * 3_600_000, MIN)
        .await;

    // Day 1: rejected 10 minutes after asking.
    env.set_time(day0 + DAY_MS + 9 * 3_600_000);
    let asked = env.ask(&alice, "dash-manager", "1h").await;
    env.advance(10 * MIN);
    env.portal.decide(&bob, &asked, false, "no").await.unwrap();

    // Day 2 (today): one holding access now, one waiting.
    env.set_time(day0 + 2 * DAY_MS + 8 * 3_600_000);
    env.ask(&alice, "dash-auto", "20h").await;
    env.settle(&w).await;
    env.ask(&alice, "dash-manager", "1h").await;

    for nobody in [&alice, &bob] {
        let refused = env.portal.dashboard(nobody).await.unwrap_err();
        assert!(matches!(refused, AppError::Forbidden(_)), "{refused:?}");
    }
    let charts = env.portal.dashboard(&dana).await.unwrap().charts;
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "requests",
            "decision-time",
            "active-grants",
            "lateness",
            "aws"
        ]
    );
    for c in &charts[..4] {
        assert_eq!(c.labels.len(), 30, "{}", c.id);
        let today = app::domain::Timestamp::from_millis(day0 + 2 * DAY_MS).format_utc();
        assert_eq!(c.labels.last().unwrap(), &today[..10]);
    }

    let requests = chart(&charts, "requests");
    assert_eq!(value(requests, "Granted", 2), 2.0);
    assert_eq!(value(requests, "Rejected", 1), 1.0);
    assert_eq!(value(requests, "Granted", 0), 1.0);
    assert_eq!(value(requests, "Waiting", 0), 1.0);
    assert_eq!(value(requests, "Granted", 3), 0.0);
    assert!(
        requests
            .summary
            .starts_with("5 requests in the last 30 days; 3 granted"),
        "{}",
        requests.summary
    );

    let decision = chart(&charts, "decision-time");
    assert_eq!(value(decision, "p50", 2), 30.0);
    assert_eq!(value(decision, "p50", 1), 10.0);
    assert_eq!(value(decision, "p90", 0), 0.0);
    assert!(
        decision.summary.contains("2 requests decided by a person"),
        "{}",
        decision.summary
    );
    assert!(
        decision.summary.contains("p50 10, p90 30 minutes"),
        "{}",
        decision.summary
    );

    let active = chart(&charts, "active-grants");
    assert_eq!(
        value(active, "Holding access", 2),
        0.0,
        "both ended on day 0"
    );
    assert_eq!(
        value(active, "Holding access", 0),
        1.0,
        "one holds access now"
    );
    assert!(active.summary.starts_with("1 now"), "{}", active.summary);

    // Both day-0 grants were revoked within a minute or so of their end (the worker runs
    // each minute here), never before it.
    let lateness = chart(&charts, "lateness");
    let p90 = value(lateness, "p90", 2);
    assert!((0.0..=120.0).contains(&p90), "{p90}");
    assert!(
        lateness.summary.starts_with("2 revocations begun"),
        "{}",
        lateness.summary
    );
    assert_eq!(value(lateness, "p50", 1), 0.0);
}

//! What the person deciding sees of the requester's history (issue #13, "context for the
//! person deciding"): each card on Approvals says how often the requester asked for this
//! entitlement in the last 90 days, how those requests ended, how many grants were ended
//! early, and the last justification; and exactly what approving grants (each account with
//! its OU path, the permission set and its session length). Both backends.

mod common;

use app::ssr::Portal;
use common::*;
use std::time::Duration;

both!(the_approver_sees_the_requesters_recent_history_with_the_entitlement,);

async fn history_on_bobs_card(env: &TestEnv, rid: &str) -> String {
    let queue = env.portal.approvals(&person("bob")).await.unwrap().pending;
    let card = queue.iter().find(|r| r.id == rid).expect("on bob's queue");
    card.history.clone().expect("a history line")
}

async fn the_approver_sees_the_requesters_recent_history_with_the_entitlement(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let (alice, bob) = (person("alice"), person("bob"));
    let first = env.ask(&alice, "prod-readonly", "1h").await;
    assert_eq!(
        history_on_bobs_card(&env, &first).await,
        "First request for this in the last 90 days"
    );
    // The card says exactly what approving grants.
    let queue = env.portal.approvals(&bob).await.unwrap().pending;
    let targets: Vec<(String, String, String)> = queue[0]
        .targets
        .iter()
        .map(|t| {
            (
                t.permission_set.clone(),
                t.scope.clone(),
                t.session_duration.clone(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [(
            "ReadOnlyAccess".to_string(),
            "production (333333333333, OU path /r-demo/ou-demo-workloads/)".to_string(),
            "4h".to_string()
        )]
    );
    // The window, and how long a session opened at its end can stay open after it.
    assert_eq!(queue[0].window.as_deref(), Some("1h from approval"));
    assert_eq!(
        queue[0].targets[0].tail.as_deref(),
        Some(
            "a session opened just before the end can stay open 4h after it: 5h from approval \
             in all"
        )
    );
    // Granted, then ended early by Alice.
    env.portal.decide(&bob, &first, true, "ok").await.unwrap();
    env.settle(&w).await;
    let grant = env.only_grant(&first).await;
    env.portal
        .end_grant(&alice, &grant.access_grant_id)
        .await
        .unwrap();
    env.settle(&w).await;
    // Rejected once, with its own justification.
    let mut why = draft("1h");
    why.justification = "look at the billing tables".into();
    let second = env
        .portal
        .create_request(&alice, "prod-readonly", why)
        .await
        .unwrap();
    env.portal.decide(&bob, &second, false, "no").await.unwrap();
    // Other entitlements do not count.
    env.ask(&alice, "sandbox-admin", "1h").await;

    let third = env.ask(&alice, "prod-readonly", "1h").await;
    let history = history_on_bobs_card(&env, &third).await;
    assert!(
        history.starts_with(
            "Asked for this 2 times in the last 90 days: 1 granted, 1 rejected; 1 ended early. \
             Last: \u{201c}look at the billing tables\u{201d} ("
        ),
        "{history}"
    );
    env.portal.cancel_request(&alice, &third).await.unwrap();

    // Ninety-one days on, those are out of the window.
    env.advance(Duration::from_secs(91 * 24 * 3600));
    let fourth = env.ask(&alice, "prod-readonly", "1h").await;
    assert_eq!(
        history_on_bobs_card(&env, &fourth).await,
        "First request for this in the last 90 days"
    );
    // A later start: the window and the tail are times.
    let mut later = draft("2h");
    later.starts = "in 3h".into();
    let scheduled = env
        .portal
        .create_request(&alice, "prod-readonly", later)
        .await
        .unwrap();
    let queue = env.portal.approvals(&bob).await.unwrap().pending;
    let card = queue.iter().find(|r| r.id == scheduled).unwrap();
    let at = |h: u64| env.now().plus(Duration::from_secs(h * 3600)).format_utc();
    assert_eq!(card.window, Some(format!("{} to {}", at(3), at(5))));
    assert_eq!(
        card.targets[0].tail,
        Some(format!(
            "a session opened just before the end can stay open 4h after it, until {}",
            at(9)
        ))
    );
}

//! The audit trail as people and checks meet it: the chain detects a changed or deleted
//! event (invariant 6), and the audit log's filters find what they should. Every test
//! runs on SQLite and on PostgreSQL.

mod common;

use app::ssr::Portal;
use app::views::AuditFilter;
use common::*;
use portcullis::store;
use std::time::Duration;

both!(
    audit_chain_detects_tampering,
    audit_chain_detects_deleted_latest_events,
    audit_log_filters,
);

async fn some_history(env: &TestEnv) {
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    let _ = env.portal.admin_overview(&alice, Default::default()).await;
    let w = env.worker();
    env.settle(&w).await;
    env.advance(Duration::from_secs(3600));
    env.settle(&w).await;
}

/// Invariant 6: changing any stored event breaks the chain at that event.
async fn audit_chain_detects_tampering(b: Backend) {
    let env = TestEnv::new(b).await;
    some_history(&env).await;
    let n = env.count("audit_event").await;
    assert!(n >= 8, "{n} events");
    assert_eq!(env.verify_chain().await, None);

    sqlx::query("UPDATE audit_event SET detail = 'nothing to see here' WHERE seq = 3")
        .execute(env.store.pool())
        .await
        .unwrap();
    assert_eq!(env.verify_chain().await, Some(3));
}

/// Invariant 6: removing the newest events must be detectable too. `audit_head` keeps
/// the chain's last sequence number and hash precisely so that it can be.
async fn audit_chain_detects_deleted_latest_events(b: Backend) {
    let env = TestEnv::new(b).await;
    some_history(&env).await;
    let n = env.count("audit_event").await;
    assert_eq!(env.verify_chain().await, None);
    // Delete a middle event: detected.
    let mid = env.audit().await[2].seq;
    sqlx::query("DELETE FROM audit_event WHERE seq = $1")
        .bind(mid)
        .execute(env.store.pool())
        .await
        .unwrap();
    assert_eq!(
        env.verify_chain().await,
        Some(mid + 1),
        "a gap in the chain"
    );

    // Fresh history; then quietly drop the two newest events (e.g. the revocation).
    let env = TestEnv::new(b).await;
    some_history(&env).await;
    assert_eq!(env.count("audit_event").await, n);
    assert_eq!(env.verify_chain().await, None);
    sqlx::query("DELETE FROM audit_event WHERE seq > $1")
        .bind(n - 2)
        .execute(env.store.pool())
        .await
        .unwrap();
    assert!(
        env.verify_chain().await.is_some(),
        "the two newest audit events (of {n}) were deleted, yet verify_audit_chain reports \
         the chain intact: it never compares the last event with audit_head"
    );
}

async fn audit_log_filters(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol, dana) = (
        person("alice"),
        person("bob"),
        person("carol"),
        person("dana"),
    );
    let w = env.worker();
    let r1 = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &r1, true, "ok").await.unwrap();
    let r2 = env.ask(&carol, "security-audit", "1h").await;
    env.portal
        .decide(&dana, &r2, false, "not today")
        .await
        .unwrap();
    let _ = env.portal.audit_log(&alice, AuditFilter::default()).await;
    env.settle(&w).await;
    let all = env.audit().await;

    let seqs = |f: AuditFilter| {
        let env = &env;
        let dana = dana.clone();
        async move {
            let rows = env.portal.audit_log(&dana, f).await.unwrap().events;
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            assert_eq!(seqs, sorted, "newest first");
            seqs
        }
    };
    let expect = |pred: &dyn Fn(&store::AuditRow) -> bool| {
        let mut v: Vec<i64> = all.iter().filter(|a| pred(a)).map(|a| a.seq).collect();
        v.reverse();
        v
    };

    let by_alice = seqs(AuditFilter {
        person: Some("alice".into()),
        ..Default::default()
    })
    .await;
    let expected = expect(&|a| {
        a.actor_id == alice.user_id || a.person_id.as_deref() == Some(alice.user_id.as_str())
    });
    assert!(!expected.is_empty());
    assert_eq!(by_alice, expected);
    // By email and by display name, any case.
    for q in ["alice@example.com", "ALICE EMPLOYEE", "  alice  "] {
        let got = seqs(AuditFilter {
            person: Some(q.into()),
            ..Default::default()
        })
        .await;
        assert_eq!(got, expected, "{q}");
    }

    let by_ent = seqs(AuditFilter {
        entitlement: Some("prod-readonly".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_ent,
        expect(&|a| a.entitlement_id.as_deref() == Some("prod-readonly"))
    );
    assert!(by_ent.len() >= 3);

    let by_action = seqs(AuditFilter {
        action: Some("request.".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_action, expect(&|a| a.action.starts_with("request.")));
    let denied = seqs(AuditFilter {
        action: Some("denied.".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(denied, expect(&|a| a.action.starts_with("denied.")));
    assert_eq!(denied.len(), 1);
    // LIKE wildcards in the filter are taken literally.
    for wild in ["request_", "%", "_"] {
        let got = seqs(AuditFilter {
            action: Some(wild.into()),
            ..Default::default()
        })
        .await;
        assert!(got.is_empty(), "{wild:?} matched {got:?}");
    }

    let combined = seqs(AuditFilter {
        person: Some("carol".into()),
        entitlement: Some("security-audit".into()),
        action: Some("request.rejected".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(combined.len(), 1);
    assert_eq!(combined, expect(&|a| a.action == "request.rejected"));
    let none = seqs(AuditFilter {
        person: Some("nobody-by-that-name".into()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
}

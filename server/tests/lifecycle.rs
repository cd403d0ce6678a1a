//! The request and grant lifecycle end to end: store, worker, simulated AWS, audit, outbox.
//! Every test runs on SQLite and on PostgreSQL.

mod common;

use app::ssr::Portal;
use common::*;
use portcullis::seed::{PRODUCTION, PS_READONLY, SANDBOX};
use std::sync::Arc;
use std::time::Duration;

both!(
    full_lifecycle_with_manager_approval,
    auto_approve_grants_without_decision,
    overlapping_grants_share_one_assignment,
    ending_the_longer_grant_early_keeps_the_shorter,
    end_early_and_admin_revoke,
    eligibility_lost_before_decision,
    eligibility_lost_before_provisioning,
    decision_timeout,
    ou_entitlement_grants_every_account,
    mail_failure_never_blocks_a_grant,
);

/// Invariants 1, 2, 6, 7 on the main path.
async fn full_lifecycle_with_manager_approval(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    assert_eq!(env.request_status(&rid).await, "pending");
    assert!(env.grants(&rid).await.is_empty());
    assert!(env.job(&rid, "decision_timeout").await.is_some());

    env.portal
        .decide(&bob, &rid, true, "go ahead")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    assert!(
        env.job(&rid, "decision_timeout").await.is_none(),
        "a decided request has no timeout"
    );
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "scheduled");
    assert_eq!(g.account_id, PRODUCTION);
    assert_eq!(g.permission_set_arn, PS_READONLY);
    assert_eq!(g.principal_id, alice.user_id);
    assert_eq!(g.starts_at.millis(), T0.millis());
    assert_eq!(g.ends_at.millis() - g.starts_at.millis(), HOUR_MS);
    // Invariant 2: the revocation job was committed together with the grant.
    let deprovision = env
        .job(&g.access_grant_id, "deprovision")
        .await
        .expect("deprovision job");
    assert_eq!(deprovision.run_at.millis(), g.ends_at.millis());
    let provision = env
        .job(&g.access_grant_id, "provision")
        .await
        .expect("provision job");
    assert_eq!(provision.run_at.millis(), g.starts_at.millis());

    // Invariant 1: provisioning, never active before AWS reports SUCCEEDED.
    let w = env.worker();
    w.drain().await.unwrap();
    let g1 = env.grant(&g.access_grant_id).await;
    assert_eq!(g1.status.as_str(), "provisioning");
    let op = g1.operation_id.clone().expect("operation id recorded");
    assert_eq!(
        env.sim_operations("create", &g).await,
        vec![(op.clone(), "IN_PROGRESS".to_string())]
    );
    assert!(!env.assignment_exists(&g).await);
    let ready = T0.millis() + SIM_DELAY.as_millis() as i64;
    while env.now().millis() + 100 < ready {
        env.advance(Duration::from_millis(100));
        w.drain().await.unwrap();
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "provisioning",
            "active before AWS finished, at {}",
            env.now().millis() - T0.millis()
        );
        assert!(!env.assignment_exists(&g).await);
    }
    env.settle(&w).await;
    let g2 = env.grant(&g.access_grant_id).await;
    assert_eq!(g2.status.as_str(), "active");
    assert_eq!(
        env.sim_operations("create", &g).await,
        vec![(op, "SUCCEEDED".to_string())]
    );
    assert!(env.assignment_exists(&g).await);
    assert_eq!(env.request_status(&rid).await, "active");
    env.check_invariants().await;

    // Still active just before the end.
    env.run_until(&w, g.ends_at.millis() - 1, Duration::from_secs(600))
        .await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );

    // At the end: deprovisioning while AWS deletes, revoked only once it SUCCEEDED.
    env.set_time(g.ends_at.millis());
    w.drain().await.unwrap();
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "deprovisioning"
    );
    assert!(
        env.assignment_exists(&g).await,
        "deletion takes time in AWS"
    );
    env.check_invariants().await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    assert_eq!(env.sim_operations("delete", &g).await.len(), 1);
    assert_eq!(env.request_status(&rid).await, "ended");
    assert!(
        env.jobs(&g.access_grant_id).await.is_empty(),
        "no job left for a revoked grant"
    );

    // Invariant 6: every step audited, chain intact.
    env.check_invariants().await;
    let req_actions = env.audit_about(&rid).await;
    assert_eq!(
        req_actions,
        [
            "request.created",
            "request.approved",
            "request.active",
            "request.ended"
        ]
    );
    let grant_actions = env.audit_about(&g.access_grant_id).await;
    assert_eq!(
        grant_actions,
        [
            "grant.provisioning",
            "grant.activated",
            "grant.deprovisioning",
            "grant.revoked"
        ]
    );
    let approved = env.audit_with("request.approved").await;
    assert_eq!(approved[0].actor_id, bob.user_id);

    // Invariant 7: mail through the outbox, all delivered by the worker.
    let to_bob = env.mail_subjects("bob@example.com").await;
    assert_eq!(
        to_bob,
        ["Approval needed: Production read-only for Alice Employee"]
    );
    let to_alice = env.mail_subjects("alice@example.com").await;
    // The "ending soon" warning is optional (configurable); the rest is not.
    let core: Vec<&String> = to_alice
        .iter()
        .filter(|s| !s.starts_with("Access ending soon"))
        .collect();
    assert_eq!(core.len(), 3, "{to_alice:?}");
    assert!(core[0].starts_with("Request approved: Production read-only"));
    assert!(core[1].starts_with("Access granted: ReadOnlyAccess on production"));
    assert!(core[2].starts_with("Access ended: ReadOnlyAccess on production"));
    for m in env.mail_to("alice@example.com").await {
        assert_eq!(m.status.as_str(), "sent");
    }
}

async fn auto_approve_grants_without_decision(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let rid = env.ask(&alice, "sandbox-admin", "30m").await;
    assert_eq!(env.request_status(&rid).await, "approved");
    assert_eq!(env.count("decision").await, 0);
    assert!(env.job(&rid, "decision_timeout").await.is_none());
    let actions = env.audit_about(&rid).await;
    assert_eq!(actions, ["request.created", "request.auto_approved"]);
    let g = env.only_grant(&rid).await;
    assert_eq!(g.account_id, SANDBOX);
    assert_eq!(g.ends_at.millis() - g.starts_at.millis(), 30 * 60_000);
    assert!(env.job(&g.access_grant_id, "deprovision").await.is_some());
    // Nobody is asked to approve.
    for who in ["bob@example.com", "carol@example.com", "dana@example.com"] {
        assert!(env.mail_to(who).await.is_empty(), "{who} got mail");
    }
    let w = env.worker();
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(env.request_status(&rid).await, "active");
    assert!(env.assignment_exists(&g).await);
    env.check_invariants().await;
}

/// Invariant 3: the assignment goes only when no other live grant covers it.
async fn overlapping_grants_share_one_assignment(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let short = env.ask(&alice, "sandbox-admin", "1h").await;
    let long = env.ask(&alice, "sandbox-admin", "2h").await;
    let (gs, gl) = (env.only_grant(&short).await, env.only_grant(&long).await);
    let w = env.worker();
    env.settle(&w).await;
    assert_eq!(
        env.grant(&gs.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(
        env.grant(&gl.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(
        env.sim_operations("create", &gs).await.len(),
        1,
        "one creation for both grants"
    );
    assert_eq!(env.assignments().await.len(), 1);
    env.check_invariants().await;

    env.set_time(gs.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&gs.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(
        env.grant(&gl.access_grant_id).await.status.as_str(),
        "active"
    );
    assert!(
        env.assignment_exists(&gl).await,
        "the longer grant still needs it"
    );
    assert!(env.sim_operations("delete", &gs).await.is_empty());
    assert_eq!(env.request_status(&short).await, "ended");
    assert_eq!(env.request_status(&long).await, "active");
    env.check_invariants().await;

    env.set_time(gl.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&gl.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&gl).await);
    assert_eq!(env.request_status(&long).await, "ended");
    env.check_invariants().await;
}

async fn ending_the_longer_grant_early_keeps_the_shorter(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let short = env.ask(&alice, "sandbox-admin", "1h").await;
    let long = env.ask(&alice, "sandbox-admin", "2h").await;
    let (gs, gl) = (env.only_grant(&short).await, env.only_grant(&long).await);
    let w = env.worker();
    env.settle(&w).await;
    env.advance(Duration::from_secs(600));
    env.portal
        .end_grant(&alice, &gl.access_grant_id)
        .await
        .unwrap();
    env.settle(&w).await;
    assert_eq!(
        env.grant(&gl.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(
        env.grant(&gs.access_grant_id).await.status.as_str(),
        "active"
    );
    assert!(
        env.assignment_exists(&gs).await,
        "the shorter grant still needs it"
    );
    assert!(env.sim_operations("delete", &gs).await.is_empty());
    env.check_invariants().await;

    env.set_time(gs.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&gs.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&gs).await);
    assert!(env.assignments().await.is_empty());
    env.check_invariants().await;
}

async fn end_early_and_admin_revoke(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let w = env.worker();
    let rid = env.ask(&alice, "sandbox-admin", "2h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");

    // Not the holder, not an admin.
    let err = env
        .portal
        .end_grant(&bob, &g.access_grant_id)
        .await
        .unwrap_err();
    assert!(matches!(err, app::error::AppError::Forbidden(_)), "{err:?}");
    let denied = env.audit_with("denied.end_grant").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor_id, bob.user_id);
    assert_eq!(denied[0].subject_id, g.access_grant_id);
    // The holder is not an admin: revoke is refused.
    let err = env
        .portal
        .revoke_grant(&alice, &g.access_grant_id)
        .await
        .unwrap_err();
    assert!(matches!(err, app::error::AppError::Forbidden(_)), "{err:?}");
    assert_eq!(env.audit_with("denied.revoke").await.len(), 1);
    let unchanged = env.grant(&g.access_grant_id).await;
    assert_eq!(unchanged.ends_at.millis(), g.ends_at.millis());
    assert_eq!(unchanged.ended_by, None);

    // The holder ends it.
    env.advance(Duration::from_secs(300));
    let ended_at = env.now().millis();
    env.portal
        .end_grant(&alice, &g.access_grant_id)
        .await
        .unwrap();
    let g1 = env.grant(&g.access_grant_id).await;
    assert_eq!(g1.ends_at.millis(), ended_at);
    assert_eq!(g1.ended_by.as_deref(), Some("Alice Employee"));
    assert_eq!(
        env.job(&g.access_grant_id, "deprovision")
            .await
            .unwrap()
            .run_at
            .millis(),
        ended_at
    );
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    assert_eq!(env.request_status(&rid).await, "ended");
    assert_eq!(env.audit_with("grant.end_requested").await.len(), 1);
    let again = env
        .portal
        .end_grant(&alice, &g.access_grant_id)
        .await
        .unwrap_err();
    assert!(
        matches!(again, app::error::AppError::Conflict(_)),
        "{again:?}"
    );

    // An admin revokes someone else's grant.
    let rid2 = env.ask(&alice, "sandbox-admin", "2h").await;
    env.settle(&w).await;
    let g2 = env.only_grant(&rid2).await;
    assert_eq!(g2.status.as_str(), "active");
    env.portal
        .revoke_grant(&dana, &g2.access_grant_id)
        .await
        .unwrap();
    env.settle(&w).await;
    let g2 = env.grant(&g2.access_grant_id).await;
    assert_eq!(g2.status.as_str(), "revoked");
    assert_eq!(g2.ended_by.as_deref(), Some("Dana Admin"));
    assert!(!env.assignment_exists(&g2).await);
    let revoked = env.audit_with("grant.revoke_requested").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].actor_id, dana.user_id);
    let ended_mail = env.mail_subjects("alice@example.com").await;
    assert_eq!(
        ended_mail
            .iter()
            .filter(|s| s.starts_with("Access ended"))
            .count(),
        2
    );
    env.check_invariants().await;
}

/// Invariant 5 at decision time.
async fn eligibility_lost_before_decision(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    // Alice left engineering (her latest sign-in says so).
    let moved = app::domain::Principal {
        groups: vec!["sales".into()],
        ..alice.clone()
    };
    env.upsert_user(&moved).await;
    let err = env
        .portal
        .decide(&bob, &rid, true, "sure")
        .await
        .unwrap_err();
    match &err {
        app::error::AppError::Conflict(m) => assert!(m.contains("no longer eligible"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(env.request_status(&rid).await, "rejected");
    assert!(env.grants(&rid).await.is_empty());
    assert!(env.jobs(&rid).await.is_empty());
    let refused = env.audit_with("request.refused_ineligible").await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].detail.contains("no longer eligible"));
    assert!(env.audit_with("request.approved").await.is_empty());
    let mail = env.mail_subjects("alice@example.com").await;
    assert_eq!(mail, ["Request rejected: Production read-only"]);
    env.check_invariants().await;
}

/// Invariant 5 at grant time.
async fn eligibility_lost_before_provisioning(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &rid, true, "").await.unwrap();
    let moved = app::domain::Principal {
        groups: vec![],
        ..alice.clone()
    };
    env.upsert_user(&moved).await;
    let w = env.worker();
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "failed");
    assert!(
        g.failure_reason
            .as_deref()
            .unwrap_or("")
            .contains("no longer eligible"),
        "{:?}",
        g.failure_reason
    );
    assert_eq!(env.request_status(&rid).await, "failed");
    assert_eq!(env.audit_with("grant.refused_ineligible").await.len(), 1);
    assert!(
        env.sim_operations("create", &g).await.is_empty(),
        "nothing asked of AWS"
    );
    assert!(!env.assignment_exists(&g).await);
    assert!(env.jobs(&g.access_grant_id).await.is_empty());
    let to_alice = env.mail_subjects("alice@example.com").await;
    assert!(
        to_alice
            .iter()
            .any(|s| s.starts_with("Access could not be granted")),
        "{to_alice:?}"
    );
    let to_dana = env.mail_subjects("dana@example.com").await;
    assert!(
        to_dana.iter().any(|s| s.starts_with("Provisioning failed")),
        "{to_dana:?}"
    );
    env.check_invariants().await;
}

async fn decision_timeout(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    let due = env.request(&rid).await.decision_due_at.millis();
    assert_eq!(due, T0.millis() + 24 * HOUR_MS);
    let w = env.worker();
    env.settle(&w).await;
    env.set_time(due - 1);
    w.drain().await.unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");
    env.set_time(due);
    w.drain().await.unwrap();
    assert_eq!(env.request_status(&rid).await, "timed_out");
    assert_eq!(env.audit_with("request.timed_out").await.len(), 1);
    assert!(env.jobs(&rid).await.is_empty());
    let err = env
        .portal
        .decide(&bob, &rid, true, "late")
        .await
        .unwrap_err();
    assert!(matches!(err, app::error::AppError::Conflict(_)), "{err:?}");
    assert_eq!(env.count("decision").await, 0);
    assert!(env.grants(&rid).await.is_empty());
    env.settle(&w).await;
    let to_alice = env.mail_subjects("alice@example.com").await;
    assert_eq!(to_alice, ["Request timed out: Production read-only"]);
    env.check_invariants().await;
}

/// An OU target expands to every account below it: one grant and one assignment each.
async fn ou_entitlement_grants_every_account(b: Backend) {
    let env = TestEnv::new(b).await;
    let (carol, dana) = (person("carol"), person("dana"));
    let rid = env.ask(&carol, "security-audit", "1h").await;
    env.portal.decide(&dana, &rid, true, "").await.unwrap();
    let grants = env.grants(&rid).await;
    let accounts: Vec<&str> = grants.iter().map(|g| g.account_id.as_str()).collect();
    assert_eq!(accounts, ["222222222222", "333333333333"]);
    let w = env.worker();
    env.settle(&w).await;
    for g in &grants {
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "active"
        );
        assert!(env.assignment_exists(g).await);
    }
    env.set_time(grants[0].ends_at.millis());
    env.settle(&w).await;
    for g in &grants {
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "revoked"
        );
    }
    assert!(env.assignments().await.is_empty());
    assert_eq!(env.request_status(&rid).await, "ended");
    env.check_invariants().await;
}

/// Invariant 7: mail that cannot be delivered never blocks or undoes a grant.
async fn mail_failure_never_blocks_a_grant(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker_full(env.sim.clone(), Arc::new(BrokenMailer), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");
    assert!(env.assignment_exists(&g).await);
    let mails = env.mail_to("alice@example.com").await;
    assert_eq!(mails.len(), 2, "approved and granted");
    for m in &mails {
        assert_eq!(m.status.as_str(), "parked", "{m:?}");
        assert_eq!(m.attempts, 8);
    }
    assert_eq!(env.alerts("mail_parked").await.len(), 2);
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    env.check_invariants().await;
}

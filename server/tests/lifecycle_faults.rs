//! The lifecycle when things go wrong: AWS failing to create or delete an assignment
//! (retries with backoff, revocation that never gives up, admins alerted once, an
//! operation stuck in progress) and a worker that dies mid-job (a new one resumes without
//! a duplicate, only after the lease lapsed). Every test runs on SQLite and on PostgreSQL.
//! The happy paths are in `lifecycle.rs`.

mod common;

use app::ssr::Portal;
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

both!(
    creation_retried_with_backoff,
    revocation_never_gives_up_and_alerts_once,
    revocation_failing_at_aws_alerts_admins,
    operation_stuck_alert_when_worker_polls_late,
    restart_resumes_without_duplicate_creation,
    crashed_workers_job_waits_for_its_lease,
);

/// Transient failures to start a creation are retried with capped exponential backoff and
/// jitter (somewhere in the upper half of each backoff).
async fn creation_retried_with_backoff(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    flaky.fail_creates.store(3, Ordering::SeqCst);
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;

    for attempt in 1..=3i64 {
        w.drain().await.unwrap();
        let job = env
            .job(&g.access_grant_id, "provision")
            .await
            .expect("provision job kept");
        assert_eq!(job.attempts, attempt);
        let backoff = (BACKOFF_BASE_MS as i64) << (attempt - 1);
        let delay = job.run_at.millis() - env.now().millis();
        assert!(
            (backoff / 2..=backoff).contains(&delay),
            "backoff after attempt {attempt}: {delay} ms, not within [{}, {backoff}]",
            backoff / 2
        );
        assert!(job
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("ThrottlingException"));
        let grant = env.grant(&g.access_grant_id).await;
        assert_eq!(
            grant.status.as_str(),
            "provisioning",
            "never active after a failed start"
        );
        assert!(grant.operation_id.is_none());
        assert!(!env.assignment_exists(&g).await);
        env.set_time(job.run_at.millis());
    }
    w.drain().await.unwrap();
    assert_eq!(flaky.create_calls.load(Ordering::SeqCst), 4);
    let job = env
        .job(&g.access_grant_id, "provision")
        .await
        .expect("polling");
    assert_eq!(
        job.run_at.millis(),
        env.now().millis() + POLL_MS as i64,
        "polling, no more backoff"
    );
    assert_eq!(job.last_error, None);
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(env.sim_operations("create", &g).await.len(), 1);
    assert!(env.alerts("provision_failing").await.is_empty());
    env.check_invariants().await;
}

/// Invariant 4: a failing revocation is retried forever; admins hear once.
async fn revocation_never_gives_up_and_alerts_once(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");

    flaky.fail_deletes.store(7, Ordering::SeqCst);
    env.set_time(g.ends_at.millis());
    for attempt in 1..=7i64 {
        w.drain().await.unwrap();
        let job = env
            .job(&g.access_grant_id, "deprovision")
            .await
            .expect("never dropped");
        assert_eq!(job.attempts, attempt);
        assert!(job.run_at.millis() > env.now().millis());
        let status = env.grant(&g.access_grant_id).await.status.as_str();
        assert!(
            status == "deprovisioning" || status == "active",
            "{status} after {attempt} failures"
        );
        assert!(env.assignment_exists(&g).await);
        let alerts = env.alerts("deprovision_failing").await;
        let expected = usize::from(attempt >= 5);
        assert_eq!(alerts.len(), expected, "alerts after {attempt} failures");
        // The admin page flags the grant itself from then on.
        let overview = env
            .portal
            .admin_overview(&person("dana"), Default::default())
            .await
            .unwrap();
        let view = overview
            .grants
            .iter()
            .find(|v| v.id == g.access_grant_id)
            .expect("listed while live");
        assert_eq!(view.trouble.is_some(), attempt >= 5, "{view:?}");
        if let Some(t) = &view.trouble {
            assert!(t.starts_with("Revocation failing after"), "{t}");
            assert!(t.contains("ConflictException"), "{t}");
        }
        env.set_time(job.run_at.millis());
    }
    let alerts = env.alerts("deprovision_failing").await;
    assert_eq!(alerts[0].subject_id, g.access_grant_id);
    env.settle(&w).await;
    assert_eq!(flaky.delete_calls.load(Ordering::SeqCst), 8);
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    let raised: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alert WHERE kind = 'deprovision_failing'")
            .fetch_one(&mut *env.conn().await)
            .await
            .unwrap();
    assert_eq!(raised, 1, "alerted exactly once");
    assert!(
        env.alerts("deprovision_failing").await.is_empty(),
        "resolved once the revocation went through"
    );
    env.check_invariants().await;
}

/// Invariant 4 when AWS accepts each DeleteAccountAssignment but reports it FAILED:
/// the revocation keeps failing, so admins must be alerted after the threshold.
async fn revocation_failing_at_aws_alerts_admins(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;

    // Ten deletions in a row end FAILED (alert threshold: 5).
    flaky.fail_delete_status.store(10, Ordering::SeqCst);
    env.set_time(g.ends_at.millis());
    let mut alerted_while_failing = 0;
    for _ in 0..10_000 {
        w.drain().await.unwrap();
        if flaky.fail_delete_status.load(Ordering::SeqCst) == 0 {
            break;
        }
        let status = env.grant(&g.access_grant_id).await.status;
        assert_eq!(status.as_str(), "deprovisioning");
        alerted_while_failing = env.alerts("deprovision_failing").await.len();
        let next = env.jobs(&g.access_grant_id).await[0].run_at.millis();
        env.set_time(next.max(env.now().millis() + 1));
    }
    assert_eq!(flaky.fail_delete_status.load(Ordering::SeqCst), 0);
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    assert_eq!(
        alerted_while_failing,
        1,
        "after 10 deletions reported FAILED in a row, admins must have been alerted once \
         (deprovision_failing); open alerts: {:?}",
        env.all_alerts().await
    );
}

/// An AWS operation still IN_PROGRESS after `stuck_after_secs` raises an alert, even when
/// the worker polls a little later than the poll interval (a busy queue).
async fn operation_stuck_alert_when_worker_polls_late(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    flaky.hang_creates.store(true, Ordering::SeqCst);
    let s = portcullis::config::WorkerSettings {
        stuck_after_secs: 10,
        ..settings()
    };
    let w = env.worker_with(flaky.clone(), s);
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    // Polls come 100 ms later than the 200 ms poll interval asks.
    env.run_until(
        &w,
        T0.millis() + 30_000,
        Duration::from_millis(POLL_MS + 100),
    )
    .await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "provisioning"
    );
    let stuck = env.alerts("operation_stuck").await;
    assert_eq!(
        stuck.len(),
        1,
        "the creation has been IN_PROGRESS for 30s (threshold 10s): expected one operation_stuck alert"
    );
}

/// A worker that stops after starting the creation: a new worker resumes, no duplicate.
async fn restart_resumes_without_duplicate_creation(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &rid, true, "").await.unwrap();
    let g = env.only_grant(&rid).await;
    {
        let first = env.worker();
        first.drain().await.unwrap();
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "provisioning"
        );
        assert_eq!(env.sim_operations("create", &g).await.len(), 1);
    } // the first worker is gone
    let second = env.worker();
    env.settle(&second).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(
        env.sim_operations("create", &g).await.len(),
        1,
        "the new worker resumed polling instead of creating again"
    );
    assert_eq!(env.assignments().await.len(), 1);
    env.check_invariants().await;
}

/// A job claimed by a worker that died is taken over only once its lease lapsed.
async fn crashed_workers_job_waits_for_its_lease(b: Backend) {
    let env = TestEnv::new(b).await;
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    let lease = Duration::from_secs(LEASE_SECS);
    let mut claimed = Vec::new();
    while let Some(job) = portcullis::store::claim_job(&env.store, "crashed", env.now(), lease)
        .await
        .unwrap()
    {
        assert!(claimed.len() < 1000, "claim_job hands out leased jobs");
        claimed.push(job);
    }
    assert!(claimed
        .iter()
        .any(|j| j.kind.as_str() == "provision" && j.subject_id == g.access_grant_id));
    let claimed_at = env.now().millis();

    let w = env.worker();
    assert_eq!(
        w.drain().await.unwrap(),
        0,
        "nothing claimable under a live lease"
    );
    env.set_time(claimed_at + LEASE_SECS as i64 * 1000 - 1);
    assert_eq!(w.drain().await.unwrap(), 0, "lease not yet lapsed");
    env.set_time(claimed_at + LEASE_SECS as i64 * 1000);
    assert_eq!(
        w.drain().await.unwrap(),
        0,
        "lease lapses strictly after lease_until"
    );
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "scheduled"
    );
    env.advance(Duration::from_millis(1));
    assert!(w.drain().await.unwrap() >= claimed.len());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(env.sim_operations("create", &g).await.len(), 1);
    for m in env.mail_to("alice@example.com").await {
        assert_eq!(m.status.as_str(), "sent");
    }
    env.check_invariants().await;
}

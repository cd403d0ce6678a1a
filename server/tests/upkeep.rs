//! Upkeep jobs on the simulated AWS: reconciliation and catalog sync through the worker,
//! grants that wait on a reconciliation, and runs asked for while one runs.
//! Every test runs on SQLite and on PostgreSQL.

mod common;

use app::ssr::Portal;
use common::*;
use portcullis::seed::SANDBOX;
use std::sync::atomic::Ordering;
use std::time::Duration;

both!(
    reconciliation_in_demo_mode,
    a_grant_waits_while_reconciliation_deletes_its_assignment,
    asking_for_a_run_while_one_runs_is_not_lost,
);

/// Demo mode's simulated AWS drifts too: reconciliation through the worker's job finds a
/// hand-removed assignment (made again) and one made by hand (reported on the AWS page),
/// and the catalog sync job reports that demo mode's catalog is seeded.
async fn reconciliation_in_demo_mode(b: Backend) {
    const DRIFT_EXTERNAL: &str = "drift_external";
    const DRIFT_MISSING: &str = "drift_missing";
    use portcullis::store::{self, JobKind};
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let g = env
        .only_grant(&env.ask(&person("alice"), "sandbox-admin", "1h").await)
        .await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    env.advance(Duration::from_secs(120));
    let carol = person("carol");
    env.sim
        .unassign_by_hand(&g.account_id, &g.permission_set_arn, &g.principal_id)
        .await
        .unwrap();
    env.sim
        .assign_by_hand(&g.account_id, &g.permission_set_arn, &carol.user_id)
        .await
        .unwrap();
    {
        let mut conn = env.conn().await;
        let now = env.now();
        store::schedule_singleton(&mut conn, JobKind::Reconcile, now, now)
            .await
            .unwrap();
        store::schedule_singleton(&mut conn, JobKind::SyncCatalog, now, now)
            .await
            .unwrap();
    }
    w.drain().await.unwrap();
    assert_eq!(env.alerts(DRIFT_MISSING).await.len(), 1);
    let external = env.alerts(DRIFT_EXTERNAL).await;
    assert_eq!(external.len(), 1);
    assert!(external[0].message.contains(&carol.user_id), "{external:?}");
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert!(env.assignment_exists(&g).await, "made again");

    let overview = env.portal.aws_overview(&person("dana")).await.unwrap();
    assert_eq!(overview.provisioner, "simulated");
    assert_eq!(overview.drift.len(), 2, "{:?}", overview.drift);
    assert_eq!(overview.reconcile_runs[0].status.as_str(), "succeeded");
    assert!(
        overview.reconcile_runs[0]
            .summary
            .contains("1 made outside the portal"),
        "{:?}",
        overview.reconcile_runs[0]
    );
    assert_eq!(overview.catalog_runs[0].status.as_str(), "succeeded");
    assert!(overview.catalog_runs[0].summary.contains("seeded"));
    assert!(overview.accounts.iter().any(|a| a.account_id == SANDBOX));
    // Both jobs stay, due again later.
    assert!(env.job("reconcile", "reconcile").await.unwrap().run_at > env.now());
    // Carol's is the only thing that breaks the invariants (it is drift by design).
    env.sim
        .unassign_by_hand(&g.account_id, &g.permission_set_arn, &carol.user_id)
        .await
        .unwrap();
    env.check_invariants().await;
}

/// Reconciliation flagged the assignment as being deleted: a new grant on it waits instead
/// of counting on it, and goes ahead once the flag is gone.
async fn a_grant_waits_while_reconciliation_deletes_its_assignment(b: Backend) {
    use portcullis::store::{self, Origin};
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    let w = env.worker_with(flaky.clone(), settings());
    let alice = person("alice");
    let rid = env.ask(&alice, "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    {
        let mut conn = env.conn().await;
        store::mark_deleting(&mut conn, g.key(), Origin::Portal, env.now())
            .await
            .unwrap();
    }
    env.run_until(&w, env.now().millis() + 30_000, Duration::from_secs(1))
        .await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "provisioning"
    );
    assert_eq!(
        flaky.create_calls.load(Ordering::SeqCst),
        0,
        "waits: no creation"
    );
    {
        let mut conn = env.conn().await;
        store::clear_deleting(&mut conn, g.key()).await.unwrap();
    }
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(flaky.create_calls.load(Ordering::SeqCst), 1);
}

/// An admin asks for a reconciliation while one runs: it runs again right after, instead of
/// the running one rescheduling itself ten minutes out over the request.
async fn asking_for_a_run_while_one_runs_is_not_lost(b: Backend) {
    use portcullis::store::{self, JobKind};
    let env = TestEnv::new(b).await;
    let now = env.now();
    {
        let mut conn = env.conn().await;
        store::schedule_singleton(&mut conn, JobKind::Reconcile, now, now)
            .await
            .unwrap();
    }
    let job = store::claim_job(&env.store, "w", now, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("due");
    assert_eq!(job.kind.as_str(), "reconcile");
    env.advance(Duration::from_secs(5));
    let asked = env.now();
    {
        let mut conn = env.conn().await;
        store::schedule_singleton(&mut conn, JobKind::Reconcile, asked, asked)
            .await
            .unwrap();
        assert!(
            store::job_again(&mut conn, &job, asked.plus(Duration::from_secs(600)))
                .await
                .unwrap(),
            "still this worker's job"
        );
    }
    let after = env.job("reconcile", "reconcile").await.unwrap();
    assert_eq!(after.run_at.millis(), asked.millis(), "runs again now");
    // Without a request meanwhile, the next run is a period away.
    let job = store::claim_job(&env.store, "w", asked, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("due again");
    let next = asked.plus(Duration::from_secs(600));
    {
        let mut conn = env.conn().await;
        assert!(store::job_again(&mut conn, &job, next).await.unwrap());
    }
    assert_eq!(
        env.job("reconcile", "reconcile").await.unwrap().run_at,
        next
    );
    assert_eq!(env.jobs("reconcile").await.len(), 1, "one job");
}

//! Fencing and failure rules of the worker, on SQLite and PostgreSQL: a worker whose
//! lease lapsed can no longer complete, move or renew the job another worker took over;
//! a grant moves on only from the status the mover read; a reply lost after AWS acted
//! (a crash between the call and the commit) makes no second assignment and loses no
//! revocation; AWS refusing for good fails the grant with the reason instead of retrying
//! forever; and nothing is created after a grant's end.

mod common;

use common::{person, settings, Backend, TestEnv, LEASE_SECS};
use portcullis::store::{self, GrantUpdate, JobKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

both!(
    a_lapsed_lease_can_neither_finish_nor_move_the_job,
    a_grant_moves_on_only_from_the_status_its_mover_read,
    a_step_that_outlives_its_lease_leaves_the_job_to_its_new_owner,
    a_lost_create_reply_makes_no_second_assignment,
    a_lost_delete_reply_still_revokes,
    a_permanent_refusal_fails_the_grant_with_the_reason,
    nothing_is_created_after_the_grant_ends,
    the_sweep_restores_a_lost_revocation_job,
    mail_has_a_lane_of_its_own,
    a_restarted_replica_releases_its_own_leases,
    replicas_with_drifting_clocks_agree_on_the_database_time,
    revocations_go_first,
);

/// Worker A claims a job and stalls past its lease; worker B takes it over. Everything A
/// then does with its claim is refused, and B finishes the job.
async fn a_lapsed_lease_can_neither_finish_nor_move_the_job(b: Backend) {
    let env = TestEnv::new(b).await;
    let lease = Duration::from_secs(LEASE_SECS);
    {
        let mut conn = env.conn().await;
        store::insert_job(&mut conn, JobKind::Provision, "g-1", env.now(), env.now())
            .await
            .unwrap();
    }
    let a = store::claim_job(&env.store, "a", env.now(), lease)
        .await
        .unwrap()
        .expect("due");
    assert!(
        store::claim_job(&env.store, "b", env.now(), lease)
            .await
            .unwrap()
            .is_none(),
        "leased to A"
    );
    env.advance(lease + Duration::from_secs(1));
    let b_claim = store::claim_job(&env.store, "b", env.now(), lease)
        .await
        .unwrap()
        .expect("A's lease lapsed: B takes the job over");
    assert_eq!(b_claim.job_id, a.job_id);
    assert!(b_claim.lease_token > a.lease_token, "a new token per claim");
    let mut conn = env.conn().await;
    let later = env.now().plus(Duration::from_secs(300));
    assert!(!store::renew_lease(&mut conn, &a, later).await.unwrap());
    assert!(!store::job_again(&mut conn, &a, later).await.unwrap());
    assert!(!store::job_failed(&mut conn, &a, later, "boom")
        .await
        .unwrap());
    assert!(!store::job_done(&mut conn, &a).await.unwrap());
    let jobs = env.jobs("g-1").await;
    assert_eq!(jobs.len(), 1, "A deleted nothing");
    assert_eq!(jobs[0].attempts, 0, "A counted no failure");
    assert_eq!(jobs[0].run_at, a.run_at, "A moved nothing");
    assert!(store::renew_lease(&mut conn, &b_claim, later)
        .await
        .unwrap());
    assert!(store::job_done(&mut conn, &b_claim).await.unwrap());
    drop(conn);
    assert!(env.jobs("g-1").await.is_empty(), "B finished it");
}

/// Two movers that read the same grant: the second one's update is refused, and the
/// grant keeps the first one's move.
async fn a_grant_moves_on_only_from_the_status_its_mover_read(b: Backend) {
    let env = TestEnv::new(b).await;
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "scheduled");
    let mut conn = env.conn().await;
    let provisioning = app::domain::GrantStatus::Provisioning;
    store::update_grant(
        &mut conn,
        &g.access_grant_id,
        g.status,
        GrantUpdate::in_flight(provisioning, Some("op-1"), env.now()),
        env.now(),
    )
    .await
    .expect("the first mover wins");
    let err = store::update_grant(
        &mut conn,
        &g.access_grant_id,
        g.status,
        GrantUpdate::in_flight(provisioning, Some("op-2"), env.now()),
        env.now(),
    )
    .await
    .expect_err("the second read a status that is gone");
    assert!(err.to_string().contains("no longer scheduled"), "{err}");
    drop(conn);
    let now = env.grant(&g.access_grant_id).await;
    assert_eq!(now.operation_id.as_deref(), Some("op-1"), "not overwritten");
}

/// Worker A's revocation stalls in the AWS call past its lease; worker B takes the job
/// over and revokes. When A wakes up, it changes nothing: one revocation, one audit
/// event, no job brought back.
async fn a_step_that_outlives_its_lease_leaves_the_job_to_its_new_owner(b: Backend) {
    let env = Arc::new(TestEnv::new(b).await);
    let flaky = env.flaky();
    let wb = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&wb).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");

    // Everything due before the end (the ending-soon mail) is done first, so that A's
    // one step is the revocation.
    env.set_time(g.ends_at.millis() - 1);
    wb.drain().await.unwrap();
    let hold = Arc::new(tokio::sync::Notify::new());
    *flaky.hold_next_delete.lock().unwrap() = Some(hold.clone());
    env.set_time(g.ends_at.millis());
    let wa = env.worker_with(flaky.clone(), settings());
    let a = tokio::spawn(async move { wa.step().await });
    // A has claimed the revocation and is inside DeleteAccountAssignment.
    for _ in 0..500 {
        if flaky.delete_calls.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        flaky.delete_calls.load(Ordering::SeqCst),
        1,
        "A is stuck in the call"
    );
    env.advance(Duration::from_secs(LEASE_SECS + 1));
    env.settle(&wb).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked",
        "B revoked it"
    );
    assert!(
        env.jobs(&g.access_grant_id).await.is_empty(),
        "B finished the job"
    );

    hold.notify_one();
    let stepped = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .expect("A finishes its step")
        .expect("A did not panic");
    assert!(stepped.is_ok(), "{stepped:?}");
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(
        env.jobs(&g.access_grant_id).await.is_empty(),
        "A brought no job back"
    );
    assert_eq!(env.audit_with("grant.revoked").await.len(), 1);
    assert!(!env.assignment_exists(&g).await);
    env.check_invariants().await;
}

/// AWS made the assignment, but the worker never heard (the reply was lost, as when
/// the process dies between the call and its commit). The retry may ask again (AWS
/// lists an assignment only once its creation settled), but there is one assignment,
/// recorded as the portal's, and an active grant that is revoked at its end.
async fn a_lost_create_reply_makes_no_second_assignment(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    flaky.lose_create_replies.store(1, Ordering::SeqCst);
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");
    assert_eq!(env.assignments().await.len(), 1, "one assignment");
    let origin = store::assignment_origin(&mut *env.conn().await, &g)
        .await
        .unwrap();
    assert_eq!(
        origin,
        Some(store::Origin::Portal),
        "the portal's, so it is revoked"
    );
    env.check_invariants().await;
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(env.assignments().await.is_empty(), "nothing left behind");
    env.check_invariants().await;
}

/// AWS deleted the assignment but the reply was lost: the retry deletes again, hears
/// that it is gone, and the grant is revoked.
async fn a_lost_delete_reply_still_revokes(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    flaky.lose_delete_replies.store(1, Ordering::SeqCst);
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
    assert!(
        flaky.delete_calls.load(Ordering::SeqCst) >= 2,
        "asked again"
    );
    env.check_invariants().await;
}

/// AWS refuses the creation for good: the grant fails with AWS's reason at once (no
/// retries), the requester and the admins hear why, and an alert stays.
async fn a_permanent_refusal_fails_the_grant_with_the_reason(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    flaky.refuse_creates.store(1, Ordering::SeqCst);
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "failed");
    assert!(
        g.failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("AccessDeniedException")),
        "{g:?}"
    );
    assert_eq!(flaky.create_calls.load(Ordering::SeqCst), 1, "not retried");
    assert!(
        env.jobs(&g.access_grant_id).await.is_empty(),
        "nothing left to do"
    );
    assert_eq!(env.alerts("provisioning_failed").await.len(), 1);
    let alice = person("alice");
    assert!(env
        .mail_subjects(&alice.email)
        .await
        .iter()
        .any(|s| s.starts_with("Access could not be granted")));
    assert!(env
        .mail_subjects(&person("dana").email)
        .await
        .iter()
        .any(|s| s.starts_with("Provisioning failed")));
    assert!(env.assignments().await.is_empty());
    env.check_invariants().await;
}

/// AWS throttles every creation until after the grant's end: when it recovers, the
/// worker does not create the assignment any more; the grant fails, saying why.
async fn nothing_is_created_after_the_grant_ends(b: Backend) {
    let env = TestEnv::new(b).await;
    let flaky = env.flaky();
    flaky.fail_creates.store(1, Ordering::SeqCst);
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    w.drain().await.unwrap();
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "provisioning");
    assert_eq!(flaky.create_calls.load(Ordering::SeqCst), 1);
    env.set_time(g.ends_at.millis() + 1);
    env.settle(&w).await;
    let g = env.grant(&g.access_grant_id).await;
    assert_eq!(g.status.as_str(), "failed");
    assert!(
        g.failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("time was over")),
        "{g:?}"
    );
    assert_eq!(
        flaky.create_calls.load(Ordering::SeqCst),
        1,
        "no creation after the end"
    );
    assert!(env.assignments().await.is_empty());
    env.check_invariants().await;
}

/// A live grant whose revocation job is gone (it should never happen: this is the
/// backstop for a bug) gets it back from the worker's sweep, with an alert, and its
/// access still ends on time.
async fn the_sweep_restores_a_lost_revocation_job(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker();
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");
    store::delete_jobs_for(
        &mut *env.conn().await,
        &g.access_grant_id,
        JobKind::Deprovision,
    )
    .await
    .unwrap();
    assert_eq!(w.sweep().await.unwrap(), 1, "one job restored");
    assert_eq!(w.sweep().await.unwrap(), 0, "nothing more");
    assert_eq!(env.alerts("job_restored").await.len(), 1);
    assert_eq!(env.audit_with("job.restored").await.len(), 1, "audited");
    let job = env
        .job(&g.access_grant_id, "deprovision")
        .await
        .expect("back");
    assert_eq!(job.run_at, g.ends_at, "due at the grant's end");
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    env.check_invariants().await;
}

/// Mail delivery runs in a lane of its own: the grants lane never takes a delivery (a
/// slow SMTP server cannot hold up a revocation), the mail lane takes nothing else.
async fn mail_has_a_lane_of_its_own(b: Backend) {
    use portcullis::store::Lane;
    let env = TestEnv::new(b).await;
    let lease = Duration::from_secs(LEASE_SECS);
    let now = env.now();
    {
        let mut conn = env.conn().await;
        // The delivery is the more overdue of the two.
        let earlier = now.minus(Duration::from_secs(60));
        store::insert_job(&mut conn, JobKind::DeliverMail, "mail-1", earlier, earlier)
            .await
            .unwrap();
        store::insert_job(&mut conn, JobKind::Deprovision, "g-1", now, now)
            .await
            .unwrap();
    }
    let claim = |lane| store::claim_job_in(&env.store, "w", now, lease, lane);
    let grants = claim(Lane::Grants).await.unwrap().expect("the revocation");
    assert_eq!(grants.kind, JobKind::Deprovision);
    assert!(
        claim(Lane::Grants).await.unwrap().is_none(),
        "never the mail"
    );
    let mail = claim(Lane::Mail).await.unwrap().expect("the delivery");
    assert_eq!(mail.kind, JobKind::DeliverMail);
    assert!(claim(Lane::Mail).await.unwrap().is_none());
    assert!(claim(Lane::Maintenance).await.unwrap().is_none());
}

/// A restarted replica releases the leases its previous run left (same stable name):
/// the jobs are taken at once instead of after their leases lapse, and the old run,
/// were it still alive, is fenced out.
async fn a_restarted_replica_releases_its_own_leases(b: Backend) {
    let env = TestEnv::new(b).await;
    let lease = Duration::from_secs(LEASE_SECS);
    {
        let mut conn = env.conn().await;
        for id in ["g-1", "g-2"] {
            store::insert_job(&mut conn, JobKind::Deprovision, id, env.now(), env.now())
                .await
                .unwrap();
        }
    }
    let lane = store::Lane::Grants;
    let old_run = store::claim_job_in(&env.store, "r1/grants", env.now(), lease, lane)
        .await
        .unwrap()
        .expect("due");
    let others = store::claim_job_in(&env.store, "r2/grants", env.now(), lease, lane)
        .await
        .unwrap()
        .expect("due");
    let mut conn = env.conn().await;
    let released = store::release_leases_of(&mut conn, &["r1/grants", "r1/mail"])
        .await
        .unwrap();
    assert_eq!(released, 1, "only r1's own lease");
    drop(conn);
    let again = store::claim_job_in(&env.store, "r1/grants", env.now(), lease, lane)
        .await
        .unwrap()
        .expect("taken back at once, no lease to wait for");
    assert_eq!(again.job_id, old_run.job_id);
    let mut conn = env.conn().await;
    assert!(
        !store::job_done(&mut conn, &old_run).await.unwrap(),
        "the old run is fenced out"
    );
    assert!(store::job_done(&mut conn, &again).await.unwrap());
    assert!(
        store::job_done(&mut conn, &others).await.unwrap(),
        "r2's lease untouched"
    );
}

/// On PostgreSQL a job written by one replica wakes another's workers at once (LISTEN /
/// NOTIFY), when the writer commits and not before; a rolled-back job wakes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_written_by_one_replica_wakes_the_other() {
    if !common::postgres_or_skip() {
        return;
    }
    let env = TestEnv::new(Backend::Postgres).await;
    let url = env.url.clone();
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = store::listen_for_jobs(&url, wake.clone()).await.unwrap();
    let quiet = |wake: Arc<tokio::sync::Notify>| async move {
        tokio::time::timeout(Duration::from_millis(500), wake.notified())
            .await
            .is_err()
    };
    // Written and rolled back: no wake.
    {
        let mut tx = env.store.begin().await.unwrap();
        store::insert_job(&mut tx, JobKind::Provision, "g-x", env.now(), env.now())
            .await
            .unwrap();
        drop(tx);
    }
    assert!(quiet(wake.clone()).await, "a rolled-back job wakes nobody");
    // Written, not yet committed: no wake; committed: a wake.
    let mut tx = env.store.begin().await.unwrap();
    store::insert_job(&mut tx, JobKind::Provision, "g-1", env.now(), env.now())
        .await
        .unwrap();
    assert!(quiet(wake.clone()).await, "not before the commit");
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("woken once the job was committed");
    listener.abort();
}

/// The database goes away while a step runs (an outage, a failover): the worker records
/// the step's outcome as soon as the database is back, instead of leaving the job leased
/// to itself, alive, until the lease lapses. (In the chaos harness a revocation waited
/// out the rest of its 60 s lease after a 20 s outage.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_outcome_is_recorded_once_the_database_is_back() {
    use sqlx::{Connection, Executor};
    if !common::postgres_or_skip() {
        return;
    }
    let env = TestEnv::new(Backend::Postgres).await;
    let flaky = env.flaky();
    let w = env.worker_with(flaky.clone(), settings());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    env.set_time(g.ends_at.millis() - 1);
    w.drain().await.unwrap();
    // The revocation is inside DeleteAccountAssignment...
    let hold = Arc::new(tokio::sync::Notify::new());
    *flaky.hold_next_delete.lock().unwrap() = Some(hold.clone());
    env.set_time(g.ends_at.millis());
    let wa = env.worker_with(flaky.clone(), settings());
    let a = tokio::spawn(async move { wa.step().await });
    for _ in 0..500 {
        if flaky.delete_calls.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(flaky.delete_calls.load(Ordering::SeqCst), 1);
    // ...when the database goes away: every connection cut, new ones refused.
    let db = env.url.expose().rsplit('/').next().unwrap();
    let db = db.split('?').next().unwrap().to_owned();
    let mut admin = sqlx::AnyConnection::connect(&common::postgres_admin_url())
        .await
        .unwrap();
    admin
        .execute(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false").as_str())
        .await
        .unwrap();
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            )
            .as_str(),
        )
        .await
        .unwrap();
    hold.notify_one();
    // Back 2 s later, long before the lease (60 s) would lapse.
    tokio::time::sleep(Duration::from_secs(2)).await;
    admin
        .execute(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true").as_str())
        .await
        .unwrap();
    let stepped = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .expect("the step ends")
        .expect("no panic");
    assert!(stepped.is_ok(), "{stepped:?}");
    let job = env
        .job(&g.access_grant_id, "deprovision")
        .await
        .expect("the revocation job is still there");
    let (owner,): (Option<String>,) =
        sqlx::query_as("SELECT lease_owner FROM job WHERE job_id = $1")
            .bind(&job.job_id)
            .fetch_one(&mut *env.conn().await)
            .await
            .unwrap();
    assert_eq!(
        owner, None,
        "the outcome was recorded and the job released, not held until its lease lapses"
    );
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(!env.assignment_exists(&g).await);
}

/// Two replicas whose own clocks are a day apart read the same time through the
/// database's clock (invariant 8): the one leases lapse and grants end by.
async fn replicas_with_drifting_clocks_agree_on_the_database_time(b: Backend) {
    use portcullis::clock::{Clock, DatabaseClock, ManualClock, SystemClock};
    let env = TestEnv::new(b).await;
    let real = SystemClock.now();
    let behind = Arc::new(ManualClock::new(real.minus(Duration::from_secs(86_400))));
    let ahead = Arc::new(ManualClock::new(real.plus(Duration::from_secs(3_600))));
    let a = DatabaseClock::start(env.store.clone(), behind.clone())
        .await
        .unwrap();
    let b_clock = DatabaseClock::start(env.store.clone(), ahead.clone())
        .await
        .unwrap();
    let gap =
        |x: app::domain::Timestamp, y: app::domain::Timestamp| (x.millis() - y.millis()).abs();
    assert!(
        gap(a.now(), b_clock.now()) < 5_000,
        "{:?} vs {:?}",
        a.now(),
        b_clock.now()
    );
    assert!(
        gap(a.now(), SystemClock.now()) < 5_000,
        "the database's time, not the local one"
    );
    assert!(a.offset_ms() > 86_000_000 && b_clock.offset_ms() < -3_500_000);
    // Between measurements the local clock carries the time forward.
    behind.advance(Duration::from_secs(10));
    let moved = a.now().millis() - b_clock.now().millis();
    assert!((5_000..15_000).contains(&moved), "{moved}");
    a.sync(&env.store).await.unwrap();
    assert!(
        gap(a.now(), b_clock.now()) < 5_000,
        "agreed again after the next measurement"
    );
}

/// When a burst of work is due, revocations are claimed before anything else, however
/// long the rest has waited: access ends on time first.
async fn revocations_go_first(b: Backend) {
    let env = TestEnv::new(b).await;
    let now = env.now();
    let lease = Duration::from_secs(LEASE_SECS);
    {
        let mut conn = env.conn().await;
        let long_ago = now.minus(Duration::from_secs(3_600));
        for (kind, id, at) in [
            (JobKind::Provision, "g-new", long_ago),
            (JobKind::DecisionTimeout, "r-1", long_ago),
            (JobKind::Deprovision, "g-old", now),
        ] {
            store::insert_job(&mut conn, kind, id, at, at)
                .await
                .unwrap();
        }
    }
    let first = store::claim_job_in(&env.store, "w", now, lease, store::Lane::Grants)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(first.kind, JobKind::Deprovision, "{first:?}");
    let second = store::claim_job_in(&env.store, "w", now, lease, store::Lane::Grants)
        .await
        .unwrap()
        .expect("due");
    assert_ne!(second.kind, JobKind::Deprovision);
}

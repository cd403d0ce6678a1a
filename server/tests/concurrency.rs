//! Invariant 9: two approvers at once, approve racing cancel, two workers on one job,
//! and the worker racing the people. Every test runs on SQLite and on PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy};
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::seed::{PS_AUDIT, SANDBOX};
use portcullis::store::{self, JobKind};
use std::time::Duration;

both!(
    two_approvers_at_once,
    approve_racing_cancel,
    cancel_after_provisioning_started_is_refused,
    concurrent_claims_have_one_winner,
    two_workers_one_job,
    two_workers_drain_together,
    cancel_racing_worker_never_leaks_access,
);

fn two_keys() -> Policy {
    Policy {
        approvers: ApproverRule {
            groups: vec!["racers".into()],
            ..Default::default()
        },
        ..policy()
    }
}

async fn two_approvers_at_once(b: Backend) {
    let env = TestEnv::new(b).await;
    env.add_entitlement(&entitlement("two-keys", SANDBOX, PS_AUDIT, two_keys()))
        .await;
    let (erin, frank) = (
        extra_person("erin", &["racers"]),
        extra_person("frank", &["racers"]),
    );
    env.upsert_user(&erin).await;
    env.upsert_user(&frank).await;
    let alice = person("alice");
    let mut winners = [0, 0];
    for round in 0..10 {
        let rid = env.ask(&alice, "two-keys", "1h").await;
        let approve = round % 3 != 2; // mostly approvals, sometimes a reject races an approve
        let (a, b) = tokio::join!(
            env.portal.decide(&erin, &rid, true, "erin says yes"),
            env.portal.decide(&frank, &rid, approve, "frank decides"),
        );
        let ok = [a.is_ok(), b.is_ok()];
        assert_eq!(
            ok.iter().filter(|x| **x).count(),
            1,
            "round {round}: exactly one decision wins: {a:?} / {b:?}"
        );
        for r in [&a, &b] {
            if let Err(e) = r {
                assert!(matches!(e, AppError::Conflict(_)), "round {round}: {e:?}");
            }
        }
        winners[usize::from(b.is_ok())] += 1;
        let decisions = store::decisions_for_request(&mut *env.conn().await, &rid)
            .await
            .unwrap();
        assert_eq!(decisions.len(), 1, "round {round}: one decision recorded");
        let approved = a.is_ok() || approve;
        let grants = env.grants(&rid).await;
        let approvals = env
            .audit_with("request.approved")
            .await
            .into_iter()
            .filter(|e| e.subject_id == rid)
            .count();
        let rejections = env
            .audit_with("request.rejected")
            .await
            .into_iter()
            .filter(|e| e.subject_id == rid)
            .count();
        if approved {
            assert_eq!(env.request_status(&rid).await, "approved");
            assert_eq!(grants.len(), 1, "round {round}: one set of grants");
            assert_eq!(grants[0].status.as_str(), "scheduled");
            assert_eq!((approvals, rejections), (1, 0), "round {round}");
            let jobs = env.jobs(&grants[0].access_grant_id).await;
            assert_eq!(
                jobs.len(),
                2,
                "one provision and one deprovision job: {jobs:?}"
            );
        } else {
            assert_eq!(env.request_status(&rid).await, "rejected");
            assert!(grants.is_empty());
            assert_eq!((approvals, rejections), (0, 1), "round {round}");
        }
    }
    eprintln!(
        "two_approvers_at_once: erin won {}, frank won {}",
        winners[0], winners[1]
    );
    let w = env.worker();
    env.settle(&w).await;
    env.check_invariants().await;
}

/// Either order is fine; both effects at once are not. Cancelling an approved request
/// before its access is set up is allowed (`approved --cancel--> cancelled`), so
/// "approve, then cancel" may both succeed: then no grant may survive.
async fn approve_racing_cancel(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let mut outcomes = std::collections::BTreeMap::new();
    for round in 0..10 {
        let rid = env.ask(&alice, "prod-readonly", "1h").await;
        let (approve, cancel) = tokio::join!(
            env.portal.decide(&bob, &rid, true, ""),
            env.portal.cancel_request(&alice, &rid),
        );
        let status = env.request_status(&rid).await;
        let grants = env.grants(&rid).await;
        let decisions = store::decisions_for_request(&mut *env.conn().await, &rid)
            .await
            .unwrap();
        let key = match (&approve, &cancel) {
            (Ok(()), Err(AppError::Conflict(_))) => {
                assert_eq!(status, "approved", "round {round}");
                assert_eq!(grants.len(), 1);
                assert!(env
                    .job(&grants[0].access_grant_id, "deprovision")
                    .await
                    .is_some());
                "approve won"
            }
            (Err(AppError::Conflict(_)), Ok(())) => {
                assert_eq!(status, "cancelled", "round {round}");
                assert!(
                    grants.is_empty(),
                    "round {round}: cancelled before approval: {grants:?}"
                );
                assert!(decisions.is_empty());
                "cancel won"
            }
            (Ok(()), Ok(())) => {
                // Serially: approved, then withdrawn before anything was provisioned.
                assert_eq!(status, "cancelled", "round {round}");
                assert_eq!(decisions.len(), 1);
                assert_eq!(grants.len(), 1);
                for g in &grants {
                    assert_eq!(g.status.as_str(), "revoked", "round {round}: {g:?}");
                    assert!(env.jobs(&g.access_grant_id).await.is_empty());
                }
                let actions = env.audit_about(&rid).await;
                assert_eq!(
                    actions,
                    ["request.created", "request.approved", "request.cancelled"]
                );
                "approve then cancel"
            }
            other => panic!("round {round}: impossible outcome {other:?}"),
        };
        *outcomes.entry(key).or_insert(0) += 1;
        assert!(
            env.job(&rid, "decision_timeout").await.is_none(),
            "a decided or cancelled request keeps no timeout"
        );
    }
    eprintln!("approve_racing_cancel outcomes: {outcomes:?}");
    let w = env.worker();
    env.settle(&w).await;
    assert!(
        env.assignments().await.is_empty(),
        "nothing was left to provision"
    );
    env.check_invariants().await;
}

async fn cancel_after_provisioning_started_is_refused(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &rid, true, "").await.unwrap();
    let w = env.worker();
    w.drain().await.unwrap();
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "provisioning");
    let err = env.portal.cancel_request(&alice, &rid).await.unwrap_err();
    assert!(matches!(err, AppError::Conflict(_)), "{err:?}");
    assert_eq!(env.request_status(&rid).await, "approved");
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    env.check_invariants().await;
}

async fn concurrent_claims_have_one_winner(b: Backend) {
    let env = TestEnv::new(b).await;
    let lease = Duration::from_secs(LEASE_SECS);
    for round in 0..20 {
        let now = env.now();
        let job_id = store::insert_job(
            &mut *env.conn().await,
            JobKind::DeliverMail,
            &format!("subject-{round}"),
            now,
            now,
        )
        .await
        .unwrap();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let s = env.store.clone();
            set.spawn(async move { store::claim_job(&s, &format!("w{i}"), now, lease).await });
        }
        let mut won = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Some(job) = r.unwrap().unwrap() {
                won.push(job);
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        assert_eq!(won[0].job_id, job_id);
        let owner: Option<String> =
            sqlx::query_scalar("SELECT lease_owner FROM job WHERE job_id = $1")
                .bind(&job_id)
                .fetch_one(env.store.pool())
                .await
                .unwrap();
        assert!(owner.is_some_and(|o| o.starts_with('w')));
        assert!(store::claim_job(&env.store, "late", now, lease)
            .await
            .unwrap()
            .is_none());
        store::delete_job(&mut *env.conn().await, &job_id)
            .await
            .unwrap();
        env.advance(Duration::from_millis(10));
    }
}

async fn two_workers_one_job(b: Backend) {
    let env = TestEnv::new(b).await;
    let (w1, w2) = (env.worker(), env.worker());
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    // Leave only the provision job claimable.
    let hogged = env.lease_away_all_but("provision").await;
    assert!(hogged.iter().all(|j| j.kind.as_str() == "deliver_mail"));
    let (a, b) = tokio::join!(w1.step(), w2.step());
    let ran = [a.unwrap(), b.unwrap()];
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "{ran:?}");
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "provisioning"
    );
    assert_eq!(env.sim_operations("create", &g).await.len(), 1);
    assert_eq!(env.audit_with("grant.provisioning").await.len(), 1);
}

async fn two_workers_drain_together(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let mut requests = Vec::new();
    for d in ["1h", "2h", "3h"] {
        requests.push(env.ask(&alice, "sandbox-admin", d).await);
    }
    requests.push(env.ask(&bob, "sandbox-admin", "1h").await);
    let pr = env.ask(&alice, "prod-readonly", "1h").await;
    env.portal.decide(&bob, &pr, true, "").await.unwrap();
    requests.push(pr);
    let (w1, w2) = (env.worker(), env.worker());
    let drain_both = || async {
        for _ in 0..2_000 {
            let (a, b) = tokio::join!(w1.drain(), w2.drain());
            a.unwrap();
            b.unwrap();
            let next = store::next_job_due(&mut *env.conn().await).await.unwrap();
            let now = env.now().millis();
            match next {
                Some(at) if at.millis() <= now + 60_000 => env.set_time(at.millis().max(now + 1)),
                _ => return,
            }
        }
        panic!("never quiet");
    };
    drain_both().await;
    let mut all = Vec::new();
    for r in &requests {
        for g in env.grants(r).await {
            assert_eq!(g.status.as_str(), "active", "{g:?}");
            all.push(g);
        }
    }
    // One creation per distinct assignment: alice/sandbox, bob/sandbox, alice/production.
    let mut creates = 0;
    for g in &all {
        let ops = env.sim_operations("create", g).await;
        assert_eq!(ops.len(), 1, "one creation per assignment: {g:?} {ops:?}");
        creates += 1;
    }
    assert_eq!(creates, all.len());
    assert_eq!(env.assignments().await.len(), 3);
    assert_eq!(env.audit_with("grant.activated").await.len(), all.len());
    env.check_invariants().await;

    env.set_time(T0.millis() + 3 * HOUR_MS);
    drain_both().await;
    for g in &all {
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "revoked"
        );
    }
    assert!(env.assignments().await.is_empty());
    assert_eq!(env.audit_with("grant.revoked").await.len(), all.len());
    env.check_invariants().await;
}

/// Invariant 9 between a person and the worker: the requester cancels an approved request
/// while the worker starts provisioning its grant. Either the cancel is refused (access is
/// being set up) or nothing is ever asked of AWS. Here the grant row is briefly held by
/// another transaction, so both wait for it; the worker asked first.
async fn cancel_racing_worker_never_leaks_access(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob) = (person("alice"), person("bob"));
    let w = env.worker();
    let rid = env.ask(&alice, "prod-readonly", "1h").await;
    w.drain().await.unwrap();
    env.portal.decide(&bob, &rid, true, "").await.unwrap();
    let g = env.only_grant(&rid).await;
    env.lease_away_all_but("provision").await;

    let held = env.hold_grant(&g.access_grant_id).await;
    let (step, cancel, ()) = tokio::join!(
        w.step(),
        async {
            env.wait_for_waiters(1).await;
            env.portal.cancel_request(&alice, &rid).await
        },
        async {
            env.wait_for_waiters(2).await;
            held.rollback().await.unwrap();
        },
    );
    step.unwrap();
    let after = env.grant(&g.access_grant_id).await;
    let status = env.request_status(&rid).await;
    eprintln!(
        "cancel: {cancel:?}; request {status}; grant {}",
        after.status
    );
    match &cancel {
        Ok(()) => assert_eq!(status, "cancelled"),
        Err(AppError::Conflict(_)) => assert_eq!(status, "approved"),
        Err(e) => panic!("unexpected {e:?}"),
    }

    // Time passes; AWS finishes whatever it was asked to do.
    env.settle(&w).await;
    env.aws_completes_everything().await;
    env.set_time(g.ends_at.millis() + 60_000);
    env.settle(&w).await;
    env.aws_completes_everything().await;
    let last = env.grant(&g.access_grant_id).await;
    let creates = env.sim_operations("create", &g).await;
    if cancel.is_ok() {
        assert!(
            creates.is_empty()
                || last.status.as_str() == "revoked" && !env.assignment_exists(&g).await,
            "request cancelled (cancel_request returned Ok) but the worker had already started \
             CreateAccountAssignment ({creates:?}); the grant is now {:?} with jobs {:?}, and \
             AWS still holds the assignment: {}",
            last.status,
            env.jobs(&g.access_grant_id).await,
            env.assignment_exists(&g).await
        );
    }
    assert!(
        !env.assignment_exists(&g).await,
        "access outlived its grant: assignment still in AWS an hour after the end (grant {})",
        last.status
    );
    assert!(
        matches!(last.status.as_str(), "revoked" | "failed"),
        "grant left {} with jobs {:?}",
        last.status,
        env.jobs(&g.access_grant_id).await
    );
    env.check_invariants().await;
}

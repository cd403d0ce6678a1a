//! Approval in steps with quorums (issue #12, item 1), on SQLite and PostgreSQL: a step
//! starts when the one before it is complete, its people are told then and only then, a
//! rejection at any step ends the request, one person counts once, reminders go to the
//! waiting step, and an approval whose approver lost the right sends the request back to
//! its step. The domain's own tests are in `app/src/domain/steps.rs`.

mod common;

use app::domain::{ApprovalStep, ApproverRule, Policy, Principal, RequestStatus};
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::config::MailSettings;
use portcullis::seed::{PS_ADMIN, STAGING};
use std::time::Duration;

both!(
    steps_complete_in_order_and_one_person_counts_once,
    a_rejection_at_a_later_step_ends_the_request,
    an_approval_lost_sends_the_request_back_to_its_step,
    reminders_go_to_the_step_that_waits,
);

const MIN: i64 = 60_000;

/// Manager first, then two of cloud-approvers (where Bob is named too, so that he could
/// count twice if the portal let him).
fn stepped() -> Policy {
    Policy {
        steps: vec![
            ApprovalStep {
                name: Some("Manager".into()),
                approvers: ApproverRule {
                    manager: true,
                    ..Default::default()
                },
                count: 1,
            },
            ApprovalStep {
                name: Some("Cloud approvers".into()),
                approvers: ApproverRule {
                    groups: vec!["cloud-approvers".into()],
                    users: vec!["bob@example.com".into()],
                    ..Default::default()
                },
                count: 2,
            },
        ],
        ..policy()
    }
}

/// The store with "steps" and Erin, a second cloud approver.
async fn with_steps(b: Backend) -> (TestEnv, Principal) {
    let env = TestEnv::new(b).await;
    env.add_entitlement(&entitlement("steps", STAGING, PS_ADMIN, stepped()))
        .await;
    let erin = extra_person("erin", &["cloud-approvers"]);
    env.upsert_user(&erin).await;
    (env, erin)
}

const NEEDED: &str = "Approval needed: Test steps for Alice Employee";
const STEP_TWO: &str =
    "Approval needed (Step 2 of 2: Cloud approvers): Test steps for Alice Employee";

async fn steps_complete_in_order_and_one_person_counts_once(b: Backend) {
    let (env, erin) = with_steps(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let rid = env.ask(&alice, "steps", "1h").await;

    // Step 1: only the manager is told and sees it; the cloud approvers wait.
    assert_eq!(env.mail_subjects("bob@example.com").await, [NEEDED]);
    assert!(env.mail_subjects("carol@example.com").await.is_empty());
    assert_eq!(env.queue_ids(&bob).await, std::slice::from_ref(&rid));
    assert!(env.queue_ids(&carol).await.is_empty());
    let mine = env.portal.my_access(&alice).await.unwrap();
    let view = mine.requests.iter().find(|r| r.id == rid).unwrap();
    assert_eq!(view.step.as_deref(), Some("Step 1 of 2: Manager"));
    assert_eq!(
        view.deciders.as_deref(),
        Some("Step 1 of 2: Manager. Decided by your manager (bob@example.com)")
    );
    // A cloud approver cannot decide before the manager: nothing is recorded.
    match env.portal.decide(&carol, &rid, true, "early").await {
        Err(AppError::Conflict(m)) => assert!(m.contains("waits at Step 1 of 2: Manager"), "{m}"),
        other => panic!("carol decided step 1: {other:?}"),
    }
    let detail = env.portal.request_detail(&carol, &rid).await.unwrap();
    assert!(detail.request.decisions.is_empty());
    assert!(!detail.may_decide, "carol may look, not decide yet");

    // The manager approves: step 2 starts, and its people are told.
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");
    assert_eq!(env.audit_with("request.step_started").await.len(), 1);
    assert_eq!(env.mail_subjects("carol@example.com").await, [STEP_TWO]);
    assert_eq!(env.mail_subjects("erin@example.com").await, [STEP_TWO]);
    assert_eq!(
        env.mail_subjects("bob@example.com").await,
        [NEEDED],
        "bob decided already: he is not asked again"
    );
    assert!(env.queue_ids(&bob).await.is_empty());
    let queue = env.portal.approvals(&carol).await.unwrap().pending;
    assert_eq!(queue.len(), 1);
    assert_eq!(
        queue[0].step.as_deref(),
        Some("Step 2 of 2: Cloud approvers")
    );
    assert_eq!((queue[0].approvals, queue[0].approvals_required), (0, 2));
    assert!(
        env.portal
            .request_detail(&carol, &rid)
            .await
            .unwrap()
            .may_decide
    );

    // Bob is named at step 2 too, but one person decides a request once.
    match env.portal.decide(&bob, &rid, true, "again").await {
        Err(AppError::Conflict(m)) => assert!(m.contains("already decided"), "{m}"),
        other => panic!("bob counted twice: {other:?}"),
    }

    // Two of step 2 complete it, and the request.
    env.portal.decide(&carol, &rid, true, "one").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");
    let queue = env.portal.approvals(&erin).await.unwrap().pending;
    assert_eq!((queue[0].approvals, queue[0].approvals_required), (1, 2));
    assert!(env.grants(&rid).await.is_empty());
    env.portal.decide(&erin, &rid, true, "two").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    assert_eq!(env.grants(&rid).await.len(), 1);

    let detail = env.portal.request_detail(&alice, &rid).await.unwrap();
    let steps: Vec<Option<u32>> = detail.request.decisions.iter().map(|d| d.step).collect();
    assert_eq!(steps, [Some(1), Some(2), Some(2)]);
    assert_eq!(
        (detail.request.approvals, detail.request.approvals_required),
        (3, 3)
    );
    assert_eq!(
        detail.approval,
        "1 approval from your manager, then 2 approvals from a member of cloud-approvers or bob@example.com"
    );
    let recorded = env.audit_with("request.approval_recorded").await;
    assert_eq!(recorded.len(), 2, "bob's and carol's");
    assert!(
        recorded[0]
            .detail
            .starts_with("approved at step 1 of 2: manager"),
        "{}",
        recorded[0].detail
    );
    assert_eq!(env.verify_chain().await, None);
}

async fn a_rejection_at_a_later_step_ends_the_request(b: Backend) {
    let (env, _) = with_steps(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let rid = env.ask(&alice, "steps", "1h").await;
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    env.portal
        .decide(&carol, &rid, false, "not on staging")
        .await
        .unwrap();
    assert_eq!(env.request(&rid).await.status, RequestStatus::Rejected);
    assert!(env.grants(&rid).await.is_empty());
    let alices = env.mail_subjects("alice@example.com").await;
    assert!(
        alices.iter().any(|s| s.starts_with("Request rejected")),
        "{alices:?}"
    );
    // Erin, of the same step, hears it was decided; Bob, who decided it himself (at step 1,
    // though step 2 names him too), does not.
    let erins = env.mail_subjects("erin@example.com").await;
    assert!(
        erins.iter().any(|s| s.starts_with("Already decided")),
        "{erins:?}"
    );
    let bobs = env.mail_subjects("bob@example.com").await;
    assert!(
        !bobs.iter().any(|s| s.starts_with("Already decided")),
        "{bobs:?}"
    );
    assert!(env.job(&rid, "decision_timeout").await.is_none());
}

/// Bob approves step 1, then Alice's next sign-in names another manager: Bob's approval no
/// longer counts, the request waits at step 1 again, and a cloud approver cannot decide
/// it until the new manager has.
async fn an_approval_lost_sends_the_request_back_to_its_step(b: Backend) {
    let (env, erin) = with_steps(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let rid = env.ask(&alice, "steps", "1h").await;
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    let zed = extra_person("zed", &["engineering-leads"]);
    env.upsert_user(&zed).await;
    let moved = Principal {
        manager: Some("zed@example.com".into()),
        ..alice.clone()
    };
    env.upsert_user(&moved).await;
    match env.portal.decide(&carol, &rid, true, "step 2").await {
        Err(AppError::Conflict(m)) => assert!(m.contains("Step 1 of 2"), "{m}"),
        other => panic!("carol decided while step 1 waits again: {other:?}"),
    }
    // Every page agrees with deciding: the new manager has it in his queue and may decide
    // it on its page; Carol has neither; Alice's page says step 1 again.
    assert_eq!(env.queue_ids(&zed).await, std::slice::from_ref(&rid));
    assert!(env.queue_ids(&carol).await.is_empty());
    assert!(
        env.portal
            .request_detail(&zed, &rid)
            .await
            .unwrap()
            .may_decide
    );
    assert!(
        !env.portal
            .request_detail(&carol, &rid)
            .await
            .unwrap()
            .may_decide
    );
    let mine = env.portal.my_access(&moved).await.unwrap();
    let view = mine.requests.iter().find(|r| r.id == rid).unwrap();
    assert_eq!(view.step.as_deref(), Some("Step 1 of 2: Manager"));
    assert_eq!((view.approvals, view.approvals_required), (0, 1));
    env.portal.decide(&zed, &rid, true, "ok").await.unwrap();
    env.portal.decide(&carol, &rid, true, "one").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");
    env.portal.decide(&erin, &rid, true, "two").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
}

/// Reminders go to the people of the step the request waits at, never to those of a step
/// to come or one already complete.
async fn reminders_go_to_the_step_that_waits(b: Backend) {
    let (env, _) = with_steps(b).await;
    let w = env.worker().with_mail(MailSettings {
        reminder_after_secs: 1800,
        max_reminders: 2,
        ..MailSettings::default()
    });
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = env.ask(&alice, "steps", "1h").await;
    let start = env.now().millis();
    env.run_until(&w, start + 31 * MIN, Duration::from_secs(60))
        .await;
    let reminder = "Reminder: approval needed: Test steps";
    let reminded = |got: Vec<String>| got.iter().filter(|s| s.starts_with(reminder)).count();
    assert_eq!(reminded(env.mail_subjects("bob@example.com").await), 1);
    assert_eq!(reminded(env.mail_subjects("carol@example.com").await), 0);
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    env.run_until(&w, start + 61 * MIN, Duration::from_secs(60))
        .await;
    assert_eq!(reminded(env.mail_subjects("carol@example.com").await), 1);
    assert_eq!(reminded(env.mail_subjects("erin@example.com").await), 1);
    assert_eq!(
        reminded(env.mail_subjects("bob@example.com").await),
        1,
        "bob's step is complete"
    );
}

//! Reminders and an escalation that decides (issue #12, item 3): approvers are reminded
//! at each interval up to `mail.max_reminders`; a request still pending after the
//! entitlement's `escalate_after_secs` is escalated to its `escalation` rule (or the
//! portal-wide `mail.fallback_approver_group`), whose members are told and may decide it
//! from then on, and not before. Both run on SQLite and PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy};
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::config::MailSettings;
use portcullis::seed::{PRODUCTION, PS_AUDIT};
use std::time::Duration;

both!(
    reminders_repeat_then_the_escalation_rule_decides,
    the_portal_wide_fallback_group_decides_once_escalated,
);

const MIN: i64 = 60_000;

fn nudges(every_secs: u64, max: u32) -> MailSettings {
    MailSettings {
        reminder_after_secs: every_secs,
        max_reminders: max,
        escalate_after_secs: 0,
        fallback_approver_group: None,
        ..MailSettings::default()
    }
}

fn count(subjects: &[String], prefix: &str) -> usize {
    subjects.iter().filter(|s| s.starts_with(prefix)).count()
}

async fn reminders_repeat_then_the_escalation_rule_decides(b: Backend) {
    let env = TestEnv::new(b).await;
    let w = env.worker().with_mail(nudges(1800, 2));
    let frank = extra_person("frank", &["on-call-leads"]);
    env.upsert_user(&frank).await;
    let esc = Policy {
        approvers: ApproverRule {
            groups: vec!["cloud-approvers".into()],
            ..Default::default()
        },
        escalation: ApproverRule {
            groups: vec!["on-call-leads".into()],
            ..Default::default()
        },
        escalate_after_secs: 2 * 3600,
        ..policy()
    };
    env.add_entitlement(&entitlement("esc", PRODUCTION, PS_AUDIT, esc))
        .await;
    let alice = person("alice");
    let rid = env
        .portal
        .create_request(&alice, "esc", draft("1h"))
        .await
        .unwrap();
    w.drain().await.unwrap();

    // Before the escalation Frank may not decide it, nor see it.
    assert!(matches!(
        env.portal.decide(&frank, &rid, true, "early").await,
        Err(AppError::Forbidden(_))
    ));
    assert!(env
        .portal
        .approvals(&frank)
        .await
        .unwrap()
        .pending
        .is_empty());
    assert!(env.portal.request_detail(&frank, &rid).await.is_err());

    // Reminded at 30 and 60 minutes, and no more (max 2), nothing escalated yet.
    env.run_until(&w, T0.millis() + 120 * MIN - 1, Duration::from_secs(300))
        .await;
    let carols = env.mail_subjects("carol@example.com").await;
    assert_eq!(
        count(&carols, "Reminder: approval needed: Test esc"),
        2,
        "{carols:?}"
    );
    assert_eq!(
        count(&env.mail_subjects("frank@example.com").await, "Escalated"),
        0
    );

    env.set_time(T0.millis() + 120 * MIN);
    w.drain().await.unwrap();
    let franks = env.mail_subjects("frank@example.com").await;
    assert_eq!(
        franks,
        ["Escalated: Test esc for Alice Employee still awaits a decision"]
    );
    let escalated = env.audit_with("request.escalated").await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(
        escalated[0].detail,
        "no decision after 2h: members of on-call-leads may decide it now"
    );
    let mail = &env.mail_to("frank@example.com").await[0];
    assert!(
        mail.body_text.contains("you may decide it now"),
        "{}",
        mail.body_text
    );
    assert!(
        mail.body_text
            .contains(&format!("{PUBLIC_URL}/requests/{rid}")),
        "{}",
        mail.body_text
    );

    // Now Frank may decide it: his queue, the request's page, the decision.
    assert!(env
        .portal
        .approvals(&frank)
        .await
        .unwrap()
        .pending
        .iter()
        .any(|r| r.id == rid));
    assert!(
        env.portal
            .request_detail(&frank, &rid)
            .await
            .unwrap()
            .may_decide
    );
    env.portal
        .decide(&frank, &rid, true, "covering")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    assert_eq!(
        count(
            &env.mail_subjects("carol@example.com").await,
            "Already decided"
        ),
        1
    );
    // Decided: no more nudges of any kind.
    env.run_until(&w, T0.millis() + 300 * MIN, Duration::from_secs(900))
        .await;
    assert_eq!(
        count(&env.mail_subjects("carol@example.com").await, "Reminder"),
        2
    );
}

/// An entitlement with no escalation of its own escalates to
/// `mail.fallback_approver_group` after `mail.escalate_after_secs`; the rule is recorded
/// on the request, so its members may decide it even though the group is not among the
/// entitlement's approvers.
async fn the_portal_wide_fallback_group_decides_once_escalated(b: Backend) {
    let env = TestEnv::new(b).await;
    let settings = MailSettings {
        escalate_after_secs: 3600,
        fallback_approver_group: Some("cloud-fallback".into()),
        ..nudges(0, 0)
    };
    let w = env.worker().with_mail(settings);
    let frank = extra_person("frank", &["cloud-fallback"]);
    env.upsert_user(&frank).await;
    let alice = person("alice");
    let rid = env
        .portal
        .create_request(&alice, "prod-readonly", draft("1h"))
        .await
        .unwrap();
    w.drain().await.unwrap();
    assert!(env
        .portal
        .decide(&frank, &rid, true, "early")
        .await
        .is_err());
    env.set_time(T0.millis() + 60 * MIN);
    w.drain().await.unwrap();
    assert_eq!(
        env.request(&rid).await.escalated_to.as_deref(),
        Some(r#"{"manager":false,"groups":["cloud-fallback"],"users":[]}"#)
    );
    env.portal
        .decide(&frank, &rid, false, "not now")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "rejected");
}

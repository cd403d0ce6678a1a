//! Approvers are told even if they never signed in (issue #12, item 0): the members of
//! the approver groups are read from the directory with each catalog sync (Identity Store
//! in AWS, against moto in `aws_catalog.rs`; the simulated directory here), and the
//! manager claim and `approvers.users` are written to by email. New-request mail,
//! reminders and escalations reach them; deciding still takes a signed-in person whose
//! own claims allow it. Both on SQLite and PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy, Principal};
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::config::MailSettings;
use portcullis::provisioner::simulated::SimulatedProvisioner;
use portcullis::provisioner::DirectoryPerson;
use portcullis::seed::{PRODUCTION, PS_AUDIT};
use portcullis::store;
use std::collections::BTreeMap;
use std::time::Duration;

both!(
    people_who_never_signed_in_are_told_reminded_and_escalated_to,
    the_directory_is_replaced_by_each_sync_and_never_decides,
);

const MIN: i64 = 60_000;

fn directory(groups: &[(&str, &[&str])]) -> BTreeMap<String, Vec<DirectoryPerson>> {
    groups
        .iter()
        .map(|(g, emails)| {
            let people = emails
                .iter()
                .map(|e| DirectoryPerson {
                    email: e.to_string(),
                    display_name: format!("{e} (directory)"),
                })
                .collect();
            (g.to_string(), people)
        })
        .collect()
}

/// Runs a catalog sync on the simulated provisioner with this directory.
async fn sync(env: &TestEnv, groups: &[(&str, &[&str])], also: &[String]) {
    let sim = SimulatedProvisioner::new(env.store.clone(), env.clock.clone(), SIM_DELAY)
        .with_directory(directory(groups));
    portcullis::upkeep::catalog::sync(&env.store, &sim, &*env.clock, also)
        .await
        .unwrap();
}

/// Hank in engineering, whose manager Ivy has never signed in.
fn hank() -> Principal {
    Principal {
        manager: Some("Ivy@Example.com".into()),
        ..extra_person("hank", &["engineering"])
    }
}

/// A store with the entitlement "dir" (manager and cloud-approvers decide, on-call-leads
/// once escalated) and Hank signed in.
async fn with_hank(b: Backend) -> (TestEnv, Principal) {
    let env = TestEnv::new(b).await;
    env.add_entitlement(&entitlement(
        "dir",
        PRODUCTION,
        PS_AUDIT,
        manager_and_group("on-call-leads"),
    ))
    .await;
    let hank = hank();
    env.upsert_user(&hank).await;
    (env, hank)
}

fn manager_and_group(escalation: &str) -> Policy {
    Policy {
        approvers: ApproverRule {
            manager: true,
            groups: vec!["cloud-approvers".into()],
            ..Default::default()
        },
        escalation: ApproverRule {
            groups: vec![escalation.into()],
            ..Default::default()
        },
        escalate_after_secs: 2 * 3600,
        ..policy()
    }
}

async fn people_who_never_signed_in_are_told_reminded_and_escalated_to(b: Backend) {
    let (env, hank) = with_hank(b).await;
    let w = env.worker().with_mail(MailSettings {
        reminder_after_secs: 1800,
        max_reminders: 1,
        escalate_after_secs: 0,
        fallback_approver_group: None,
        ..MailSettings::default()
    });
    // Carol signed in (and is in the directory too: told once); Erin and Gina never did;
    // Hank is listed in cloud-approvers as well, with his address in capitals: never told
    // of his own request.
    sync(
        &env,
        &[
            (
                "cloud-approvers",
                &["carol@example.com", "erin@example.com", "HANK@example.com"],
            ),
            ("on-call-leads", &["gina@example.com"]),
            ("not-named-by-any-policy", &["zed@example.com"]),
        ],
        &[],
    )
    .await;
    {
        let mut conn = env.conn().await;
        let groups = portcullis::upkeep::directory::approver_groups(&mut conn, &[])
            .await
            .unwrap();
        assert!(groups.contains(&"on-call-leads".to_owned()), "{groups:?}");
        let none = store::directory_members(&mut conn, &["not-named-by-any-policy".into()])
            .await
            .unwrap();
        assert!(
            none.is_empty(),
            "only the groups policies name are read: {none:?}"
        );
    }

    let rid = env
        .portal
        .create_request(&hank, "dir", draft("1h"))
        .await
        .unwrap();
    w.drain().await.unwrap();
    let new = "Approval needed: Test dir for hank Extra";
    for to in ["carol@example.com", "erin@example.com", "Ivy@Example.com"] {
        assert_eq!(env.mail_subjects(to).await, [new], "{to}");
    }
    assert!(env.mail_subjects("hank@example.com").await.is_empty());
    assert!(env.mail_subjects("HANK@example.com").await.is_empty());
    assert!(env.mail_subjects("gina@example.com").await.is_empty());
    let erins = &env.mail_to("erin@example.com").await[0];
    assert!(
        erins
            .body_text
            .contains(&format!("{PUBLIC_URL}/requests/{rid}")),
        "{}",
        erins.body_text
    );

    // The reminder at 30 minutes reaches them too; then the escalation at 2 hours goes to
    // Gina, whom only the directory knows.
    env.run_until(&w, T0.millis() + 120 * MIN, Duration::from_secs(300))
        .await;
    let reminder = "Reminder: approval needed: Test dir";
    for to in ["carol@example.com", "erin@example.com", "Ivy@Example.com"] {
        let got = env.mail_subjects(to).await;
        assert_eq!(
            got.iter().filter(|s| s.starts_with(reminder)).count(),
            1,
            "{to}: {got:?}"
        );
    }
    assert_eq!(
        env.mail_subjects("gina@example.com").await,
        ["Escalated: Test dir for hank Extra still awaits a decision"]
    );

    // Erin signs in for the first time, her email verified and cloud-approvers in her
    // claims: she decides by those claims, and the other approvers hear of it.
    let erin = extra_person("erin", &["cloud-approvers"]);
    env.upsert_user(&erin).await;
    env.portal.decide(&erin, &rid, true, "fine").await.unwrap();
    assert_eq!(
        env.request(&rid).await.status,
        app::domain::RequestStatus::Approved
    );
    let ivys = env.mail_subjects("Ivy@Example.com").await;
    assert!(
        ivys.iter()
            .any(|s| s == "Already decided: Test dir for hank Extra"),
        "{ivys:?}"
    );
}

async fn the_directory_is_replaced_by_each_sync_and_never_decides(b: Backend) {
    let (env, hank) = with_hank(b).await;
    let w = env.worker();
    let fallback = vec!["night-desk".to_owned()];
    sync(
        &env,
        &[
            ("cloud-approvers", &["erin@example.com"]),
            ("night-desk", &["nina@example.com"]),
        ],
        &fallback,
    )
    .await;
    {
        let mut conn = env.conn().await;
        let night = store::directory_members(&mut conn, &fallback)
            .await
            .unwrap();
        assert_eq!(night.len(), 1, "the fallback group is read too: {night:?}");
    }

    // Someone signs in claiming Ivy's address without the identity provider vouching for
    // it, and with no approver group: the manager claim does not name them, so they may
    // not decide; Ivy's address is still written to, as a stranger's.
    let impostor = Principal {
        email: "ivy@example.com".into(),
        email_verified: false,
        ..extra_person("mallory", &["engineering"])
    };
    env.upsert_user(&impostor).await;
    let rid = env
        .portal
        .create_request(&hank, "dir", draft("1h"))
        .await
        .unwrap();
    w.drain().await.unwrap();
    assert!(matches!(
        env.portal.decide(&impostor, &rid, true, "me").await,
        Err(AppError::Forbidden(_))
    ));
    assert_eq!(env.mail_subjects("Ivy@Example.com").await.len(), 1);
    // Nor does a directory listing make anyone an approver: Erin, listed in
    // cloud-approvers, signs in with claims that do not put her there.
    let erin = extra_person("erin", &["engineering"]);
    env.upsert_user(&erin).await;
    assert!(matches!(
        env.portal.decide(&erin, &rid, true, "me").await,
        Err(AppError::Forbidden(_))
    ));
    env.portal.cancel_request(&hank, &rid).await.unwrap();

    // The next sync no longer lists Erin, and knows a new member: the next request goes
    // to the new list (Erin now signed in, she is judged by her claims: not told).
    sync(&env, &[("cloud-approvers", &["olga@example.com"])], &[]).await;
    let again = env
        .portal
        .create_request(&hank, "dir", draft("1h"))
        .await
        .unwrap();
    w.drain().await.unwrap();
    assert_eq!(env.mail_subjects("olga@example.com").await.len(), 1);
    assert_eq!(
        env.mail_subjects("erin@example.com").await.len(),
        1,
        "only the first request's mail"
    );
    {
        let mut conn = env.conn().await;
        let night = store::directory_members(&mut conn, &fallback)
            .await
            .unwrap();
        assert!(night.is_empty(), "a group no longer named is forgotten");
    }
    let _ = again;
}

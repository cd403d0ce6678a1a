//! Mail content and timing over real SMTP: each test starts its own maildev server on
//! loopback, has the worker deliver through it with lettre, and reads every message back
//! through maildev's REST API: who hears about what, escaped and with links; ending-soon,
//! reminders and escalations at the right times. Every test runs on SQLite and on
//! PostgreSQL. Delivery under faults is in `mail_delivery.rs`, TLS in `mail_tls.rs`.

mod common;
mod mail_peer;

use app::domain::{ApproverRule, Policy};
use app::ssr::Portal;
use common::*;
use mail_peer::*;
use portcullis::seed::{PRODUCTION, PS_ADMIN};
use portcullis::store::{self, JobKind};
use std::time::Duration;

both!(
    approval_needed_reaches_every_approver_escaped_with_links,
    every_lifecycle_message_reaches_the_right_people,
    decisions_failures_break_glass_and_timeouts_reach_the_right_people,
    ending_soon_at_the_right_time_and_not_after_ending_early,
    reminder_and_escalation_at_the_right_times,
    no_reminder_or_escalation_once_decided,
);

/// New request: every approver known to the portal plus the configured addresses; who,
/// what, why, how long; hostile text escaped in HTML and intact in text; links to the portal.
async fn approval_needed_reaches_every_approver_escaped_with_links(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    env.upsert_user(&extra_person("erin", &["cloud-approvers"]))
        .await;
    let w = smtp_worker(&env, md.smtp_port, nudging(), settings());
    let alice = person("alice");
    let rid = ask_with(&env, &alice, "prod-admin", HOSTILE, "90m").await;
    env.settle(&w).await;
    // The request's own page (deciding there needs a signed-in approver).
    let link = format!("http://portal.test/requests/{rid}");

    let mails = all_delivered_once(&env, &md).await;
    let subject = "Approval needed: Production administrator for Alice Employee";
    assert_eq!(
        summary(&mails),
        expected(&[
            ("carol@example.com", subject),
            ("cloud-team@example.com", subject),
            ("erin@example.com", subject),
        ])
    );
    for m in &mails {
        assert_eq!(m.subject, format!("{PREFIX}{subject}"));
        assert_eq!(m.from, "portcullis@example.com");
        for part in [&m.text, &m.html] {
            for fact in [
                "Alice Employee",
                "Production administrator",
                "1h 30m",
                "CHG-1234",
            ] {
                assert!(part.contains(fact), "{fact:?} missing from {part}");
            }
        }
        assert!(
            m.text.contains(HOSTILE),
            "the text part carries the justification as typed: {}",
            m.text
        );
        assert!(
            m.html.contains(HOSTILE_HTML),
            "the HTML part escapes it: {}",
            m.html
        );
        assert!(!m.html.contains("<script"), "{}", m.html);
        assert!(m.text.contains(&link), "{}", m.text);
        assert!(m.html.contains(&format!("href=\"{link}\"")), "{}", m.html);
        let source = md.source(&m.id).await;
        assert!(source.contains("multipart/alternative"), "{source}");
        assert!(
            source.contains("text/plain") && source.contains("text/html"),
            "{source}"
        );
    }
}

/// The happy path, message by message: decision, "already decided", granted (with the
/// session tail), ending soon (with a link to ask for more time), ended.
async fn every_lifecycle_message_reaches_the_right_people(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    env.upsert_user(&extra_person("erin", &["cloud-approvers"]))
        .await;
    let w = smtp_worker(&env, md.smtp_port, quiet(), settings());
    let (alice, carol) = (person("alice"), person("carol"));
    let rid = ask_with(&env, &alice, "prod-admin", "Deploying CHG-1234", "1h").await;
    env.settle(&w).await;
    env.portal
        .decide(&carol, &rid, true, "go ahead")
        .await
        .unwrap();
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    env.set_time(g.ends_at.millis() - LEAD.as_millis() as i64);
    w.drain().await.unwrap();
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );

    let target = "AdministratorAccess on production (333333333333)";
    let mails = all_delivered_once(&env, &md).await;
    assert_eq!(
        summary(&mails),
        expected(&[
            (
                "carol@example.com",
                "Approval needed: Production administrator for Alice Employee"
            ),
            (
                "erin@example.com",
                "Approval needed: Production administrator for Alice Employee"
            ),
            (
                "alice@example.com",
                "Request approved: Production administrator"
            ),
            (
                "erin@example.com",
                "Already decided: Production administrator for Alice Employee"
            ),
            ("alice@example.com", &format!("Access granted: {target}")),
            (
                "alice@example.com",
                &format!("Access ending soon: {target}")
            ),
            ("alice@example.com", &format!("Access ended: {target}")),
        ])
    );
    let granted = &md
        .find("alice@example.com", &format!("Access granted: {target}"))
        .await[0];
    assert!(
        granted.text.contains("stay valid for up to 1h after that"),
        "session tail: {}",
        granted.text
    );
    assert!(
        granted
            .html
            .contains("href=\"http://portal.test/requests\""),
        "{}",
        granted.html
    );
    let soon = &md
        .find(
            "alice@example.com",
            &format!("Access ending soon: {target}"),
        )
        .await[0];
    assert!(soon.text.contains("in 10m"), "{}", soon.text);
    // Straight to the grant's "Extend" form.
    let extend = format!(
        "http://portal.test/requests?extend={g}#grant-{g}",
        g = env.only_grant(&rid).await.access_grant_id
    );
    assert!(
        soon.text.contains(&format!("Ask for more time: {extend}")),
        "{}",
        soon.text
    );
    assert!(
        soon.html.contains(&format!("href=\"{extend}\"")),
        "{}",
        soon.html
    );
    let decided = &md
        .find(
            "erin@example.com",
            "Already decided: Production administrator for Alice Employee",
        )
        .await[0];
    assert!(
        decided.text.contains("Carol Approver approved"),
        "{}",
        decided.text
    );
}

/// Rejection (with the comment escaped), break-glass (admins), provisioning failure
/// (requester and admins), decision timeout (requester).
async fn decisions_failures_break_glass_and_timeouts_reach_the_right_people(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    let w = smtp_worker(&env, md.smtp_port, quiet(), settings());
    let (alice, bob) = (person("alice"), person("bob"));

    // Nobody decides Gina's request until it times out: she has no manager on record, so
    // Carol (cloud-approvers, the fallback) is asked, and does not act.
    let gina = extra_person("gina", &["engineering"]);
    env.upsert_user(&gina).await;
    ask_with(&env, &gina, "prod-readonly", "Looking at logs", "1h").await;
    env.set_time(T0.millis() + 24 * HOUR_MS);
    env.settle(&w).await;

    let rid = ask_with(&env, &alice, "prod-readonly", "Looking at logs", "1h").await;
    env.portal
        .decide(&bob, &rid, false, "<b>not now</b> & later")
        .await
        .unwrap();

    let bg = Policy {
        break_glass: true,
        approvers: ApproverRule::default(),
        ..policy()
    };
    env.add_entitlement(&entitlement("bg", PRODUCTION, PS_ADMIN, bg))
        .await;
    ask_with(&env, &bob, "bg", "Production is down", "1h").await;
    env.settle(&w).await;

    // Alice leaves engineering between approval and provisioning.
    let rid2 = ask_with(&env, &alice, "prod-readonly", "Looking at logs", "1h").await;
    env.portal.decide(&bob, &rid2, true, "ok").await.unwrap();
    env.upsert_user(&app::domain::Principal {
        groups: vec![],
        ..alice.clone()
    })
    .await;
    env.settle(&w).await;
    assert_eq!(env.only_grant(&rid2).await.status.as_str(), "failed");

    let ro = "ReadOnlyAccess on production (333333333333)";
    let admin = "AdministratorAccess on production (333333333333)";
    let mails = all_delivered_once(&env, &md).await;
    assert_eq!(
        summary(&mails),
        expected(&[
            (
                "carol@example.com",
                "Approval needed: Production read-only for gina Extra"
            ),
            (
                "gina@example.com",
                "Request timed out: Production read-only"
            ),
            (
                "bob@example.com",
                "Approval needed: Production read-only for Alice Employee"
            ),
            (
                "alice@example.com",
                "Request rejected: Production read-only"
            ),
            ("bob@example.com", "Request approved: Test bg"),
            (
                "dana@example.com",
                "Break-glass used: Test bg by Bob Manager"
            ),
            ("bob@example.com", &format!("Access granted: {admin}")),
            (
                "bob@example.com",
                "Approval needed: Production read-only for Alice Employee"
            ),
            (
                "alice@example.com",
                "Request approved: Production read-only"
            ),
            (
                "alice@example.com",
                &format!("Access could not be granted: {ro}")
            ),
            (
                "dana@example.com",
                &format!("Provisioning failed: {ro} for Alice Employee")
            ),
        ])
    );
    let rejected = &md
        .find(
            "alice@example.com",
            "Request rejected: Production read-only",
        )
        .await[0];
    assert!(
        rejected.text.contains("<b>not now</b> & later"),
        "{}",
        rejected.text
    );
    assert!(
        rejected
            .html
            .contains("&lt;b&gt;not now&lt;/b&gt; &amp; later"),
        "{}",
        rejected.html
    );
    let failed = &md
        .find(
            "dana@example.com",
            &format!("Provisioning failed: {ro} for Alice Employee"),
        )
        .await[0];
    assert!(
        failed.text.contains("no longer eligible"),
        "{}",
        failed.text
    );
    assert!(
        failed.html.contains("href=\"http://portal.test/admin\""),
        "{}",
        failed.html
    );
}

/// "Ending soon" goes out at ends_at minus the lead, once; not when the grant was ended early.
async fn ending_soon_at_the_right_time_and_not_after_ending_early(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    let w = smtp_worker(&env, md.smtp_port, quiet(), settings());
    let alice = person("alice");
    let soon = "Access ending soon: AdministratorAccess on sandbox (111111111111)";

    let rid = ask_with(&env, &alice, "sandbox-admin", "Trying things", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(g.status.as_str(), "active");
    let due = g.ends_at.millis() - LEAD.as_millis() as i64;
    let job = env
        .job(&g.access_grant_id, "ending_soon")
        .await
        .expect("scheduled when access began");
    assert_eq!(job.run_at.millis(), due);

    env.run_until(&w, due - 1, Duration::from_secs(60)).await;
    assert!(!env
        .mail_subjects("alice@example.com")
        .await
        .iter()
        .any(|s| s == soon));
    env.set_time(due);
    w.drain().await.unwrap();
    assert_eq!(md.find("alice@example.com", soon).await.len(), 1);
    assert!(env.job(&g.access_grant_id, "ending_soon").await.is_none());
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );

    // Ended early: the warning is dropped with the grant.
    let rid2 = ask_with(&env, &alice, "sandbox-admin", "Trying again", "1h").await;
    env.settle(&w).await;
    let g2 = env.only_grant(&rid2).await;
    assert!(env.job(&g2.access_grant_id, "ending_soon").await.is_some());
    env.advance(Duration::from_secs(600));
    env.portal
        .end_grant(&alice, &g2.access_grant_id)
        .await
        .unwrap();
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g2.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(env.jobs(&g2.access_grant_id).await.is_empty());
    env.run_until(&w, g2.ends_at.millis() + 60_000, Duration::from_secs(60))
        .await;
    let mails = all_delivered_once(&env, &md).await;
    let soons = mails.iter().filter(|m| m.subject.ends_with(soon)).count();
    assert_eq!(
        soons,
        1,
        "only the first grant was warned: {:#?}",
        summary(&mails)
    );

    // A warning job left behind for a grant that ended early does nothing either.
    store::insert_job(
        &mut *env.conn().await,
        JobKind::EndingSoon,
        &g2.access_grant_id,
        env.now(),
        env.now(),
    )
    .await
    .unwrap();
    w.drain().await.unwrap();
    assert!(env.jobs(&g2.access_grant_id).await.is_empty());
    assert_eq!(md.emails().await.len(), mails.len());
}

/// Reminder after `reminder_after` to the approvers who have not decided (and the
/// configured addresses); escalation after `escalate_after` to the fallback group.
async fn reminder_and_escalation_at_the_right_times(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    env.upsert_user(&extra_person("erin", &["cloud-approvers"]))
        .await;
    env.upsert_user(&extra_person("frank", &["cloud-fallback"]))
        .await;
    let two = Policy {
        approvers: ApproverRule {
            groups: vec!["cloud-approvers".into()],
            ..Default::default()
        },
        approvals_required: 2,
        ..policy()
    };
    env.add_entitlement(&entitlement("two", PRODUCTION, PS_ADMIN, two))
        .await;
    let w = smtp_worker(&env, md.smtp_port, nudging(), settings());
    let (alice, carol) = (person("alice"), person("carol"));

    let rid = ask_with(&env, &alice, "two", "Four eyes", "1h").await;
    env.settle(&w).await;
    let reminder = env
        .job(&rid, "approval_reminder")
        .await
        .expect("reminder scheduled");
    assert_eq!(reminder.run_at.millis(), T0.millis() + HOUR_MS);
    let escalation = env
        .job(&rid, "approval_escalation")
        .await
        .expect("escalation scheduled");
    assert_eq!(escalation.run_at.millis(), T0.millis() + 2 * HOUR_MS);

    env.set_time(T0.millis() + HOUR_MS / 2);
    env.portal
        .decide(&carol, &rid, true, "one of two")
        .await
        .unwrap();
    assert_eq!(env.request_status(&rid).await, "pending");

    let nudges = |subjects: Vec<String>| {
        subjects
            .iter()
            .filter(|s| s.starts_with("Reminder") || s.starts_with("Escalated"))
            .count()
    };
    env.run_until(&w, T0.millis() + HOUR_MS - 1, Duration::from_secs(300))
        .await;
    for who in [
        "carol@example.com",
        "erin@example.com",
        "cloud-team@example.com",
        "frank@example.com",
    ] {
        assert_eq!(
            nudges(env.mail_subjects(who).await),
            0,
            "{who} nudged too early"
        );
    }
    env.set_time(T0.millis() + HOUR_MS);
    w.drain().await.unwrap();
    env.run_until(&w, T0.millis() + 2 * HOUR_MS - 1, Duration::from_secs(300))
        .await;
    assert_eq!(
        nudges(env.mail_subjects("frank@example.com").await),
        0,
        "escalated too early"
    );
    env.set_time(T0.millis() + 2 * HOUR_MS);
    env.settle(&w).await;
    assert!(env.job(&rid, "approval_reminder").await.is_none());
    assert!(env.job(&rid, "approval_escalation").await.is_none());

    let asked = "Approval needed: Test two for Alice Employee";
    let reminded = "Reminder: approval needed: Test two for Alice Employee";
    let escalated = "Escalated: Test two for Alice Employee still awaits a decision";
    let mails = all_delivered_once(&env, &md).await;
    assert_eq!(
        summary(&mails),
        expected(&[
            ("carol@example.com", asked),
            ("erin@example.com", asked),
            ("cloud-team@example.com", asked),
            // Carol approved already: only Erin and the team list are reminded.
            ("erin@example.com", reminded),
            ("cloud-team@example.com", reminded),
            ("frank@example.com", escalated),
        ])
    );
    let r = &md.find("erin@example.com", reminded).await[0];
    assert!(
        r.text.contains("has waited 1h for a decision"),
        "{}",
        r.text
    );
    assert!(
        r.html
            .contains(&format!("href=\"http://portal.test/requests/{rid}\"")),
        "{}",
        r.html
    );
    let e = &md.find("frank@example.com", escalated).await[0];
    assert!(
        e.text.contains("has waited 2h") && e.text.contains("cloud-fallback"),
        "{}",
        e.text
    );
    assert!(e.text.contains("Four eyes"), "{}", e.text);
}

/// Decided, cancelled or timed out: no reminder and no escalation, even from a job left over.
async fn no_reminder_or_escalation_once_decided(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    env.upsert_user(&extra_person("frank", &["cloud-fallback"]))
        .await;
    let w = smtp_worker(&env, md.smtp_port, nudging(), settings());
    let (alice, carol) = (person("alice"), person("carol"));

    let approved = ask_with(&env, &alice, "prod-admin", "Deploying", "1h").await;
    let cancelled = ask_with(&env, &alice, "prod-admin", "Deploying later", "1h").await;
    let timed_out = ask_with(&env, &alice, "prod-readonly", "Reading", "1h").await;
    env.settle(&w).await;
    env.set_time(T0.millis() + HOUR_MS / 2);
    env.portal
        .decide(&carol, &approved, true, "ok")
        .await
        .unwrap();
    env.portal.cancel_request(&alice, &cancelled).await.unwrap();
    for rid in [&approved, &cancelled] {
        let kinds: Vec<JobKind> = env.jobs(rid).await.into_iter().map(|j| j.kind).collect();
        assert!(kinds.is_empty(), "{rid}: {kinds:?}");
    }
    // The read-only request is for Bob, who never answers: reminded and escalated, then
    // timed out; nothing after.
    env.run_until(&w, T0.millis() + 25 * HOUR_MS, Duration::from_secs(1800))
        .await;
    env.settle(&w).await;
    assert_eq!(env.request_status(&timed_out).await, "timed_out");
    assert!(env.jobs(&timed_out).await.is_empty());

    // Jobs left over from before the decision do nothing.
    for rid in [&approved, &cancelled, &timed_out] {
        for kind in [
            JobKind::ApprovalReminder,
            JobKind::ApprovalEscalation,
            JobKind::AnnounceRequest,
        ] {
            store::insert_job(&mut *env.conn().await, kind, rid, env.now(), env.now())
                .await
                .unwrap();
        }
    }
    env.settle(&w).await;
    for rid in [&approved, &cancelled, &timed_out] {
        assert!(env.jobs(rid).await.is_empty());
    }

    let mails = all_delivered_once(&env, &md).await;
    let nudged: Vec<(String, String)> = summary(&mails)
        .into_iter()
        .filter(|(_, s)| s.starts_with("Reminder") || s.starts_with("Escalated"))
        .collect();
    assert_eq!(
        nudged,
        expected(&[
            (
                "bob@example.com",
                "Reminder: approval needed: Production read-only for Alice Employee"
            ),
            (
                "cloud-team@example.com",
                "Reminder: approval needed: Production read-only for Alice Employee"
            ),
            (
                "frank@example.com",
                "Escalated: Production read-only for Alice Employee still awaits a decision"
            ),
        ])
    );
}

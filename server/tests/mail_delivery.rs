//! Mail delivery under faults, through a real maildev: the SMTP server down while
//! approving and back, parked mail resent by an admin, a worker killed between claim and
//! send. Every test runs on SQLite and on PostgreSQL.

mod common;
mod mail_peer;

use app::error::AppError;
use app::ssr::Portal;
use common::*;
use mail_peer::*;
use portcullis::config::WorkerSettings;
use portcullis::store::{self, JobKind};
use std::time::Duration;

both!(
    smtp_down_while_approving_then_back,
    parked_mail_resent_by_an_admin,
    worker_killed_between_claim_and_send_loses_nothing,
);

/// Invariant 7 over real SMTP: the server is down while a request is approved, the grant
/// still becomes active, and the mail arrives, once, after the server comes back.
async fn smtp_down_while_approving_then_back(b: Backend) {
    let env = TestEnv::new(b).await;
    let port = common::peers::free_port_for_restarts();
    let patient = WorkerSettings {
        mail_max_attempts: 1000,
        ..settings()
    };
    let w = smtp_worker(&env, port, quiet(), patient);
    let (alice, bob) = (person("alice"), person("bob"));
    let rid = ask_with(&env, &alice, "prod-readonly", "Looking at logs", "1h").await;
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    let start = env.now().millis();
    env.run_until(&w, start + 30_000, Duration::from_millis(250))
        .await;

    let g = env.only_grant(&rid).await;
    assert_eq!(
        g.status.as_str(),
        "active",
        "a mail failure never blocks a grant"
    );
    assert_eq!(env.request_status(&rid).await, "active");
    assert!(env.assignment_exists(&g).await);
    let rows = store::recent_mail(&mut *env.conn().await, 100)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        3,
        "approval needed, approved, granted: {rows:?}"
    );
    for r in &rows {
        assert_eq!(r.status.as_str(), "pending", "{r:?}");
        assert!(r.attempts >= 2, "retried while the server was down: {r:?}");
        assert!(
            r.last_error
                .as_deref()
                .unwrap_or("")
                .contains(&port.to_string()),
            "{r:?}"
        );
    }

    let md = MailDev::start_on(port).await;
    env.run_until(&w, start + 60_000, Duration::from_millis(250))
        .await;
    let mails = all_delivered_once(&env, &md).await;
    assert_eq!(mails.len(), 3);
    assert!(env.alerts("mail_parked").await.is_empty());
    env.check_invariants().await;
}

/// After every attempt failed the message is parked with an alert; an admin (and only an
/// admin) resends it from the admin page, audited, and it arrives.
async fn parked_mail_resent_by_an_admin(b: Backend) {
    let env = TestEnv::new(b).await;
    let port = common::peers::free_port_for_restarts();
    let w = smtp_worker(&env, port, quiet(), settings());
    let (alice, dana) = (person("alice"), person("dana"));
    let rid = ask_with(&env, &alice, "sandbox-admin", "Trying things", "1h").await;
    env.settle(&w).await;
    assert_eq!(env.only_grant(&rid).await.status.as_str(), "active");

    let overview = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    let mut parked: Vec<_> = overview
        .parked_mail
        .iter()
        .map(|m| (m.to.clone(), m.subject.clone(), m.attempts))
        .collect();
    parked.sort();
    assert_eq!(
        parked,
        [
            (
                "alice@example.com".to_string(),
                "Access granted: AdministratorAccess on sandbox (111111111111)".to_string(),
                8
            ),
            (
                "alice@example.com".to_string(),
                "Request approved: Sandbox administrator".to_string(),
                8
            ),
        ]
    );
    assert!(overview
        .parked_mail
        .iter()
        .all(|m| !m.last_error.is_empty()));
    assert_eq!(env.alerts("mail_parked").await.len(), 2);

    let first = overview.parked_mail[0].id.clone();
    let err = env.portal.resend_mail(&alice, &first).await.unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    assert_eq!(env.audit_with("denied.resend_mail").await.len(), 1);

    let md = MailDev::start_on(port).await;
    for m in &overview.parked_mail {
        env.portal.resend_mail(&dana, &m.id).await.unwrap();
    }
    let resent = env.audit_with("mail.resend").await;
    assert_eq!(resent.len(), 2);
    assert!(resent
        .iter()
        .all(|a| a.actor_id == dana.user_id && a.subject_kind == "mail"));
    assert!(
        env.alerts("mail_parked").await.is_empty(),
        "resending resolves the alert"
    );
    env.settle(&w).await;
    all_delivered_once(&env, &md).await;
    assert!(env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap()
        .parked_mail
        .is_empty());
    let again = env.portal.resend_mail(&dana, &first).await.unwrap_err();
    assert!(matches!(again, AppError::Conflict(_)), "{again:?}");
    assert!(matches!(
        env.portal.resend_mail(&dana, "nope").await,
        Err(AppError::NotFound(_))
    ));
    assert_eq!(env.verify_chain().await, None);
}

/// A worker claims a delivery, marks it `sending` and dies before SMTP: nothing is sent
/// while its lease holds; after the lease lapses another worker delivers it, once.
async fn worker_killed_between_claim_and_send_loses_nothing(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    let w = smtp_worker(&env, md.smtp_port, quiet(), settings());
    ask_with(
        &env,
        &person("alice"),
        "sandbox-admin",
        "Trying things",
        "1h",
    )
    .await;

    let lease = Duration::from_secs(LEASE_SECS);
    let mut all = Vec::new();
    while let Some(job) = store::claim_job(&env.store, "doomed-worker", env.now(), lease)
        .await
        .unwrap()
    {
        all.push(job);
    }
    let (claimed, others): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|j| j.kind == JobKind::DeliverMail);
    for job in others {
        store::reschedule_job(
            &mut *env.conn().await,
            &job.job_id,
            app::domain::Timestamp(job.run_at.millis()),
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(claimed.len(), 1, "the approval mail");
    // What the doomed worker did last: record the attempt, just before SMTP.
    sqlx::query("UPDATE outbox SET status = 'sending' WHERE outbox_id = $1")
        .bind(&claimed[0].subject_id)
        .execute(env.store.pool())
        .await
        .unwrap();
    drop(claimed); // the worker is gone

    w.drain().await.unwrap();
    assert!(
        md.emails().await.is_empty(),
        "nothing is sent while the dead worker's lease holds"
    );
    assert_eq!(
        env.mail_to("alice@example.com").await[0].status.as_str(),
        "sending"
    );

    env.advance(lease + Duration::from_secs(1));
    env.settle(&w).await;
    let mails = all_delivered_once(&env, &md).await;
    assert_eq!(
        summary(&mails),
        expected(&[
            (
                "alice@example.com",
                "Request approved: Sandbox administrator"
            ),
            (
                "alice@example.com",
                "Access granted: AdministratorAccess on sandbox (111111111111)"
            ),
        ])
    );
}

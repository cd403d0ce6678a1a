//! Mail over real SMTP: each test starts its own maildev server on loopback (pinned in
//! e2e/package.json; `npm ci --prefix e2e` installs it), has the worker deliver through it
//! with lettre, and reads every message back through maildev's REST API.
//! Every test runs on SQLite and on PostgreSQL.

mod common;

use app::domain::{ApproverRule, Policy, RequestDraft};
use app::error::AppError;
use app::ssr::Portal;
use common::peers::{self, free_port, Peer};
use common::*;
use portcullis::config::MailSettings;
use portcullis::config::WorkerSettings;
use portcullis::config::{SmtpConfig, SmtpTls};
use portcullis::mailer::{Mailer as _, SmtpMailer};
use portcullis::seed::{PRODUCTION, PS_ADMIN};
use portcullis::store::{self, JobKind};
use portcullis::worker::Worker;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

both!(
    approval_needed_reaches_every_approver_escaped_with_links,
    every_lifecycle_message_reaches_the_right_people,
    decisions_failures_break_glass_and_timeouts_reach_the_right_people,
    smtp_down_while_approving_then_back,
    parked_mail_resent_by_an_admin,
    worker_killed_between_claim_and_send_loses_nothing,
    ending_soon_at_the_right_time_and_not_after_ending_early,
    reminder_and_escalation_at_the_right_times,
    no_reminder_or_escalation_once_decided,
);

const PREFIX: &str = "[Portcullis Test] ";
const HOSTILE: &str = "<script>alert(\"x\")</script> & \"quotes\"";
const HOSTILE_HTML: &str =
    "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;";
const LEAD: Duration = Duration::from_secs(600);

// ------------------------------------------------------------ maildev

/// A maildev server on loopback, killed (by its PID) when dropped.
struct MailDev {
    child: Peer,
    smtp_port: u16,
    api: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Debug)]
struct Email {
    id: String,
    to: Vec<String>,
    from: String,
    subject: String,
    text: String,
    html: String,
}

fn maildev_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/node_modules/.bin/maildev");
    assert!(
        bin.exists(),
        "the mail tests need a real SMTP server and are never skipped, but maildev is missing \
         at {}: run `npm ci --prefix e2e` (it is pinned in e2e/package.json)",
        bin.display()
    );
    bin
}

impl MailDev {
    async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    async fn start_on(smtp_port: u16) -> Self {
        Self::start_with(smtp_port, &[]).await
    }

    /// With TLS: the certificate of `tests/fixtures/smtp-tls` (a private test CA), as
    /// implicit TLS (`--incoming-secure`) or offered through STARTTLS.
    async fn start_tls(implicit: bool, extra: &[&str]) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp-tls");
        let mut args = vec![
            "--incoming-cert".to_owned(),
            dir.join("server.pem").display().to_string(),
            "--incoming-key".to_owned(),
            dir.join("server.key").display().to_string(),
        ];
        if implicit {
            args.push("--incoming-secure".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_with(free_port(), &args).await
    }

    async fn start_with(smtp_port: u16, extra: &[&str]) -> Self {
        let api_port = free_port();
        let dir = tempfile::TempDir::new().expect("temp dir");
        // Its defaults listen on every interface: always bind both servers to loopback.
        let child = Command::new(maildev_bin())
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1"])
            .args(["-s", &smtp_port.to_string(), "-w", &api_port.to_string()])
            .arg("--mail-directory")
            .arg(dir.path())
            .arg("--silent")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start maildev: {e}"));
        let mut md = Self {
            child: Peer::new(child),
            smtp_port,
            api: format!("http://127.0.0.1:{api_port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        md.wait_ready().await;
        md
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .http
                .get(format!("{}/api/healthz", self.api))
                .send()
                .await;
            if ok.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(status) = self.child.exited() {
                panic!(
                    "maildev exited at start ({status}); is port {} taken?",
                    self.smtp_port
                );
            }
            assert!(
                Instant::now() < deadline,
                "maildev did not answer /api/healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn emails(&self) -> Vec<Email> {
        let list: Vec<Value> = self
            .http
            .get(format!("{}/api/email", self.api))
            .send()
            .await
            .expect("maildev API")
            .json()
            .await
            .expect("maildev JSON");
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        list.iter()
            .map(|m| Email {
                id: s(&m["id"]),
                to: m["to"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| s(&a["address"]))
                    .collect(),
                from: s(&m["from"][0]["address"]),
                subject: s(&m["subject"]),
                text: s(&m["text"]),
                html: s(&m["html"]),
            })
            .collect()
    }

    /// The message as it came over SMTP.
    async fn source(&self, id: &str) -> String {
        self.http
            .get(format!("{}/api/email/{id}/source", self.api))
            .send()
            .await
            .expect("maildev API")
            .text()
            .await
            .expect("message source")
    }

    /// Waits until maildev holds `n` messages (it stores them just after answering SMTP).
    async fn wait_for(&self, n: usize) -> Vec<Email> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.emails().await;
            if mails.len() >= n || Instant::now() > deadline {
                assert_eq!(
                    mails.len(),
                    n,
                    "maildev holds {} messages: {:#?}",
                    mails.len(),
                    summary(&mails)
                );
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The messages to one address with one subject (without the portal-name prefix),
    /// waiting a little for at least one.
    async fn find(&self, to: &str, subject: &str) -> Vec<Email> {
        let subject = format!("{PREFIX}{subject}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Email> = self
                .emails()
                .await
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to) && m.subject == subject)
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                assert!(
                    !found.is_empty(),
                    "no {subject:?} to {to}: {:#?}",
                    summary(&self.emails().await)
                );
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// (recipient, subject) pairs, sorted: what reached whom.
fn summary(mails: &[Email]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            (
                m.to.join(","),
                m.subject.trim_start_matches(PREFIX).to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.sort();
    out
}

// ------------------------------------------------------------ portal and worker

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Portcullis Test <portcullis@example.com>".into(),
        ca_file: None,
    }
}

/// Reminders, escalation and configured addresses switched off: one message per event.
fn quiet() -> MailSettings {
    MailSettings {
        portal_name: "Portcullis Test".into(),
        ending_soon_lead_secs: LEAD.as_secs(),
        reminder_after_secs: 0,
        escalate_after_secs: 0,
        fallback_approver_group: None,
        approver_addresses: vec![],
    }
}

fn nudging() -> MailSettings {
    MailSettings {
        reminder_after_secs: 3600,
        escalate_after_secs: 2 * 3600,
        fallback_approver_group: Some("cloud-fallback".into()),
        approver_addresses: vec!["cloud-team@example.com".into()],
        ..quiet()
    }
}

fn smtp_worker(env: &TestEnv, port: u16, mail: MailSettings, settings: WorkerSettings) -> Worker {
    let mailer = SmtpMailer::new(&smtp(port)).expect("SMTP mailer");
    env.worker_full(env.sim.clone(), Arc::new(mailer), settings)
        .with_mail(mail)
}

async fn ask_with(
    env: &TestEnv,
    who: &app::domain::Principal,
    entitlement: &str,
    justification: &str,
    duration: &str,
) -> String {
    let draft = RequestDraft {
        justification: justification.into(),
        duration: duration.into(),
        ticket: if entitlement == "prod-admin" {
            "CHG-1234".into()
        } else {
            String::new()
        },
    };
    env.portal
        .create_request(who, entitlement, draft)
        .await
        .unwrap_or_else(|e| panic!("{} asking for {entitlement}: {e:?}", who.user_id))
}

/// Every outbox row was delivered, and maildev holds each exactly once.
async fn all_delivered_once(env: &TestEnv, md: &MailDev) -> Vec<Email> {
    let rows = store::recent_mail(&mut *env.conn().await, 10_000)
        .await
        .unwrap();
    for r in &rows {
        assert_eq!(
            r.status.as_str(),
            "sent",
            "{} to {}: {:?}",
            r.subject,
            r.recipient,
            r.last_error
        );
    }
    let mails = md.wait_for(rows.len()).await;
    let mut outbox: Vec<(String, String)> =
        rows.into_iter().map(|r| (r.recipient, r.subject)).collect();
    outbox.sort();
    assert_eq!(
        summary(&mails),
        outbox,
        "maildev holds exactly the outbox, each message once"
    );
    mails
}

// ------------------------------------------------------------ the tests

/// New request: every approver known to the portal plus the configured addresses; who,
/// what, why, how long; hostile text escaped in HTML and intact in text; links to the portal.
async fn approval_needed_reaches_every_approver_escaped_with_links(b: Backend) {
    let env = TestEnv::new(b).await;
    let md = MailDev::start().await;
    env.upsert_user(&extra_person("erin", &["cloud-approvers"]))
        .await;
    let w = smtp_worker(&env, md.smtp_port, nudging(), settings());
    let alice = person("alice");
    ask_with(&env, &alice, "prod-admin", HOSTILE, "90m").await;
    env.settle(&w).await;

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
        assert!(
            m.text.contains("http://portal.test/approvals"),
            "{}",
            m.text
        );
        assert!(
            m.html.contains("href=\"http://portal.test/approvals\""),
            "{}",
            m.html
        );
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
    assert!(
        soon.text
            .contains("Ask for an extension: http://portal.test/"),
        "{}",
        soon.text
    );
    assert!(
        soon.html.contains("href=\"http://portal.test/\""),
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

    // Nobody decides Gina's request (she has no manager) until it times out.
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

    let overview = env.portal.admin_overview(&dana).await.unwrap();
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
        .admin_overview(&dana)
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
        r.html.contains("href=\"http://portal.test/approvals\""),
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

// ------------------------------------------------------------ TLS

fn test_ca() -> Option<String> {
    Some(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/smtp-tls/ca.pem")
            .display()
            .to_string(),
    )
}

/// aiosmtpd (Python), for STARTTLS: maildev turns STARTTLS off. It requires STARTTLS
/// before MAIL, with the test CA's certificate, and prints each message to its stdout.
struct StartTlsServer {
    _child: Peer,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl StartTlsServer {
    async fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = peers::python();
        let certs = root.join("tests/fixtures/smtp-tls");
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("messages.txt");
        let port = free_port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(certs.join("server.pem"))
            .arg("--tlskey")
            .arg(certs.join("server.key"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd");
        let server = Self {
            _child: Peer::new(child),
            port,
            out,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// The relay's certificate comes from a private CA: without it, sending fails on the
/// certificate; with `smtp.ca_file`, a message with `subject` goes out.
async fn untrusted_then_trusted(config: &mut SmtpConfig, subject: &str) {
    let err = SmtpMailer::new(config)
        .unwrap()
        .send("alice@example.com", "untrusted", "text", "<p>html</p>")
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    config.ca_file = test_ca();
    SmtpMailer::new(config)
        .unwrap()
        .send("alice@example.com", subject, "text", "<p>html</p>")
        .await
        .unwrap();
}

#[tokio::test]
async fn implicit_tls_verifies_the_server_certificate() {
    let md = MailDev::start_tls(true, &[]).await;
    let mut config = smtp(md.smtp_port);
    config.tls = SmtpTls::Tls;

    untrusted_then_trusted(&mut config, "over TLS").await;
    let mails = md.wait_for(1).await;
    assert_eq!(mails.len(), 1, "only the trusted attempt arrived");
    assert_eq!(mails[0].subject, "over TLS");
    assert_eq!(mails[0].to, ["alice@example.com"]);
}

#[tokio::test]
async fn starttls_verifies_the_server_certificate() {
    let server = StartTlsServer::start().await;
    let mut config = smtp(server.port);
    config.tls = SmtpTls::Starttls;

    untrusted_then_trusted(&mut config, "over STARTTLS").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.received().contains("Subject: over STARTTLS") {
        assert!(
            Instant::now() < deadline,
            "not received: {}",
            server.received()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = server.received();
    assert!(!received.contains("Subject: untrusted"), "{received}");
    assert!(received.contains("alice@example.com"), "{received}");
}

#[tokio::test]
async fn starttls_is_required_never_skipped() {
    // A server that does not offer STARTTLS (or a man in the middle that strips it).
    let md = MailDev::start_tls(false, &["--hide-extensions", "STARTTLS"]).await;
    let mut config = smtp(md.smtp_port);
    config.tls = SmtpTls::Starttls;
    config.ca_file = test_ca();
    let err = SmtpMailer::new(&config)
        .unwrap()
        .send("alice@example.com", "in clear?", "text", "<p>html</p>")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(md.emails().await.is_empty(), "nothing went out in clear");
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_refused_at_start() {
    let mut config = smtp(25);
    config.tls = SmtpTls::Tls;
    config.ca_file = Some("/nonexistent/ca.pem".into());
    let err = SmtpMailer::new(&config).err().unwrap();
    assert!(
        format!("{err:#}").contains("cannot read smtp.ca_file"),
        "{err:#}"
    );
    config.ca_file = Some(format!("{}/tests/mail.rs", env!("CARGO_MANIFEST_DIR")));
    let err = SmtpMailer::new(&config).err().unwrap();
    assert!(
        format!("{err:#}").contains("not a PEM certificate"),
        "{err:#}"
    );
}

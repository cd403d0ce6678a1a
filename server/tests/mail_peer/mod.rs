//! maildev, the test SMTP server with a REST API (pinned in e2e/package.json), started per
//! test on loopback, and the portal's mail settings and worker around it, for the mail
//! suites (`mail.rs`, `mail_delivery.rs`).

#![allow(dead_code)]

use crate::common::{
    peers::{free_port, Peer},
    *,
};
use app::domain::RequestDraft;
use app::ssr::Portal;
use portcullis::config::MailSettings;
use portcullis::config::WorkerSettings;
use portcullis::config::{SmtpConfig, SmtpTls};
use portcullis::mailer::SmtpMailer;
use portcullis::store;
use portcullis::worker::Worker;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub const PREFIX: &str = "[Portcullis Test] ";
pub const HOSTILE: &str = "<script>alert(\"x\")</script> & \"quotes\"";
pub const HOSTILE_HTML: &str =
    "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;";
pub const LEAD: Duration = Duration::from_secs(600);

// ------------------------------------------------------------ maildev

/// A maildev server on loopback, killed (by its PID) when dropped.
pub struct MailDev {
    pub child: Peer,
    pub smtp_port: u16,
    pub api: String,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Email {
    pub id: String,
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn maildev_bin() -> PathBuf {
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
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(smtp_port: u16) -> Self {
        Self::start_with(smtp_port, &[]).await
    }

    /// With TLS: the certificate of `tests/fixtures/smtp-tls` (a private test CA), as
    /// implicit TLS (`--incoming-secure`) or offered through STARTTLS.
    pub async fn start_tls(implicit: bool, extra: &[&str]) -> Self {
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

    pub async fn start_with(smtp_port: u16, extra: &[&str]) -> Self {
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

    pub async fn wait_ready(&mut self) {
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

    pub async fn emails(&self) -> Vec<Email> {
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
    pub async fn source(&self, id: &str) -> String {
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
    pub async fn wait_for(&self, n: usize) -> Vec<Email> {
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
    pub async fn find(&self, to: &str, subject: &str) -> Vec<Email> {
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
pub fn summary(mails: &[Email]) -> Vec<(String, String)> {
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

pub fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    out.sort();
    out
}

// ------------------------------------------------------------ portal and worker

pub fn smtp(port: u16) -> SmtpConfig {
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
pub fn quiet() -> MailSettings {
    MailSettings {
        portal_name: "Portcullis Test".into(),
        ending_soon_lead_secs: LEAD.as_secs(),
        reminder_after_secs: 0,
        max_reminders: 1,
        escalate_after_secs: 0,
        fallback_approver_group: None,
        approver_addresses: vec![],
    }
}

pub fn nudging() -> MailSettings {
    MailSettings {
        reminder_after_secs: 3600,
        escalate_after_secs: 2 * 3600,
        fallback_approver_group: Some("cloud-fallback".into()),
        approver_addresses: vec!["cloud-team@example.com".into()],
        ..quiet()
    }
}

pub fn smtp_worker(
    env: &TestEnv,
    port: u16,
    mail: MailSettings,
    settings: WorkerSettings,
) -> Worker {
    let mailer = SmtpMailer::new(&smtp(port)).expect("SMTP mailer");
    env.worker_full(env.sim.clone(), Arc::new(mailer), settings)
        .with_mail(mail)
}

pub async fn ask_with(
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
        ..Default::default()
    };
    env.portal
        .create_request(who, entitlement, draft)
        .await
        .unwrap_or_else(|e| panic!("{} asking for {entitlement}: {e:?}", who.user_id))
}

/// Every outbox row was delivered, and maildev holds each exactly once.
pub async fn all_delivered_once(env: &TestEnv, md: &MailDev) -> Vec<Email> {
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

//! Mail over TLS: implicit TLS and STARTTLS verify the server's certificate against the
//! configured CA, STARTTLS is never skipped, and a CA file that is not a certificate is
//! refused at start.

mod common;
mod mail_peer;

use common::peers::{self, free_port, Peer};
use mail_peer::*;
use portcullis::config::{SmtpConfig, SmtpTls};
use portcullis::mailer::{Mailer as _, SmtpMailer};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

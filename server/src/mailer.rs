//! The edge to mail delivery: SMTP in production, nothing at all in demo mode without SMTP
//! settings (the outbox page is the mailbox then).

use crate::config::{SmtpConfig, SmtpTls};
use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, to: &str, subject: &str, text: &str, html: &str) -> Result<(), MailError>;
}

/// Delivers nothing: the outbox page is the mailbox (demo mode).
pub struct OutboxOnly;

#[async_trait]
impl Mailer for OutboxOnly {
    async fn send(
        &self,
        _to: &str,
        _subject: &str,
        _text: &str,
        _html: &str,
    ) -> Result<(), MailError> {
        Ok(())
    }
}

/// Sends each message as multipart/alternative (plain text, then HTML) over SMTP, on a
/// fresh connection each time.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// For logs: where mail goes, never how it authenticates.
    server: String,
}

/// How long one SMTP conversation may take before it counts as a failed attempt.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

impl SmtpMailer {
    pub fn new(c: &SmtpConfig) -> anyhow::Result<Self> {
        let from: Mailbox = c
            .from
            .parse()
            .with_context(|| format!("smtp.from {:?} is not a mail address", c.from))?;
        let builder = match (&c.ca_file, c.tls) {
            (_, SmtpTls::None) => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &c.host,
            )),
            (None, SmtpTls::Tls) => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host),
            (None, SmtpTls::Starttls) => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
            }
            (Some(ca_file), tls) => {
                let pem = std::fs::read(ca_file)
                    .with_context(|| format!("cannot read smtp.ca_file {ca_file:?}"))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    anyhow::bail!("smtp.ca_file {ca_file:?} is not a PEM certificate");
                }
                let ca = Certificate::from_pem(&pem).with_context(|| {
                    format!("smtp.ca_file {ca_file:?} is not a PEM certificate")
                })?;
                let params = TlsParameters::builder(c.host.clone())
                    .add_root_certificate(ca)
                    .build_rustls()
                    .with_context(|| format!("cannot set up TLS for SMTP host {:?}", c.host))?;
                let tls = if tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                };
                Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host).tls(tls))
            }
        }
        .with_context(|| format!("cannot set up TLS for SMTP host {:?}", c.host))?;
        let mut builder = builder.port(c.port()).timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        if c.tls == SmtpTls::None && !c.host_is_loopback() {
            tracing::warn!(host = %c.host, "SMTP without TLS to a host that is not loopback: mail crosses the network in clear");
        }
        Ok(Self {
            transport: builder.build(),
            from,
            server: format!("{}:{} ({:?})", c.host, c.port(), c.tls),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Opens a connection as a delivery would (TLS and login included) and says goodbye,
    /// sending nothing: `portcullis check-config`.
    pub async fn reach(&self) -> anyhow::Result<()> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => anyhow::bail!("the server at {} did not answer NOOP", self.server),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot talk to {}", self.server))),
        }
    }

    fn message(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<Message, MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError(format!("recipient {to:?} is not a mail address: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text.to_owned()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html.to_owned()),
                    ),
            )
            .map_err(|e| MailError(format!("cannot build the message: {e}")))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    #[tracing::instrument(skip_all, fields(server = %self.server))]
    async fn send(&self, to: &str, subject: &str, text: &str, html: &str) -> Result<(), MailError> {
        let message = self.message(to, subject, text, html)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError(format!("SMTP server {}: {e}", self.server)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            host: "smtp.example.com".into(),
            port: None,
            tls,
            username: Some("portcullis".into()),
            password: Some(serde_json::from_str("\"hunter2\"").unwrap()),
            from: "Portcullis <portcullis@example.com>".into(),
            ca_file: None,
        }
    }

    #[test]
    fn every_tls_mode_builds_and_names_no_secret() {
        for (tls, port) in [
            (SmtpTls::Tls, 465),
            (SmtpTls::Starttls, 587),
            (SmtpTls::None, 25),
        ] {
            let m = SmtpMailer::new(&config(tls)).unwrap();
            assert_eq!(m.server(), format!("smtp.example.com:{port} ({tls:?})"));
            assert!(!m.server().contains("hunter2"));
        }
    }

    #[test]
    fn messages_have_both_parts_and_refuse_bad_recipients() {
        let m = SmtpMailer::new(&config(SmtpTls::Starttls)).unwrap();
        let msg = m
            .message(
                "alice@example.com",
                "[Portcullis] Hi",
                "plain body",
                "<p>html body</p>",
            )
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(
            raw.contains("From: Portcullis <portcullis@example.com>"),
            "{raw}"
        );
        assert!(m.message("not an address", "s", "t", "h").is_err());
    }
}

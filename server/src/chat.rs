//! Chat notifications (issue #12, item 9): Slack-compatible incoming webhooks hear of the
//! same events as mail (a new request with its link, a decision, access granted, ended or
//! failed, a break-glass use). A message for a webhook is an outbox row addressed
//! `chat:<name>`, queued in the transaction of the change that caused it like every mail
//! (invariant 7), and delivered by the mail lane with the same retries, parking and
//! alerts; it never holds up a grant or a revocation. [`ChatMailer`] is the edge: it posts
//! `{"text": …}` for those rows and hands every other one to the SMTP mailer.

use crate::config::{ChatConfig, Secret};
use crate::mailer::{MailError, Mailer};
use anyhow::Result;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The outbox recipient of a message for the webhook `name`.
pub const CHAT_PREFIX: &str = "chat:";

/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Text for Slack's `mrkdwn`: `&`, `<` and `>` escaped, so that what people typed (a
/// justification, a name) can never become a link or an `@channel` mention.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Posts outbox rows addressed `chat:<name>` to that webhook, and hands every other row to
/// `mail` (SMTP, or the outbox alone).
pub struct ChatMailer {
    mail: Arc<dyn Mailer>,
    webhooks: BTreeMap<String, Secret>,
    http: reqwest::Client,
}

impl ChatMailer {
    pub fn new(mail: Arc<dyn Mailer>, config: &ChatConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            mail,
            webhooks: config.webhooks.clone(),
            http,
        })
    }

    async fn post(&self, name: &str, text: &str) -> Result<(), MailError> {
        let Some(url) = self.webhooks.get(name) else {
            return Err(MailError(format!(
                "no webhook named {name:?} is configured ([chat.webhooks])"
            )));
        };
        let body = serde_json::json!({ "text": text }).to_string();
        // The URL is the webhook's credential: errors name the webhook, never the URL.
        let sent = self
            .http
            .post(url.expose())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                MailError(format!("webhook {name}: the post {what}"))
            })?;
        let status = sent.status();
        if status.is_success() {
            Ok(())
        } else {
            let reason: String = sent
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            Err(MailError(format!(
                "webhook {name} answered {status}: {reason}"
            )))
        }
    }
}

#[async_trait]
impl Mailer for ChatMailer {
    async fn send(&self, to: &str, subject: &str, text: &str, html: &str) -> Result<(), MailError> {
        match to.strip_prefix(CHAT_PREFIX) {
            Some(name) => self.post(name, text).await,
            None => self.mail.send(to, subject, text, html).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entitlement(chat: &[&str]) -> app::domain::Entitlement {
        let mut e = crate::seed::entitlements().remove(0);
        e.policy.chat = chat.iter().map(|s| s.to_string()).collect();
        e
    }

    fn config(url: &str, everything: &[&str]) -> ChatConfig {
        ChatConfig {
            webhooks: [("security".to_owned(), Secret::new(url))].into(),
            everything: everything.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_and_urls_are_checked() {
        let ok = config("https://hooks.example.com/services/x", &["security"]);
        ok.validate(&[entitlement(&["security"])]).unwrap();
        config("http://127.0.0.1:9/hook", &[])
            .validate(&[])
            .unwrap();

        let err = config("http://hooks.example.com/x", &[])
            .validate(&[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be https://"), "{err}");
        assert!(
            !err.contains("hooks.example.com"),
            "the URL is a secret: {err}"
        );
        let err = ok
            .validate(&[entitlement(&["nope"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("policy.chat names \"nope\""), "{err}");
        let err = config("https://x.example.com/", &["other"])
            .validate(&[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("chat.everything names \"other\""), "{err}");
        let bad = ChatConfig {
            webhooks: [(
                "has space".to_owned(),
                Secret::new("https://x.example.com/"),
            )]
            .into(),
            everything: vec![],
        };
        assert!(bad.validate(&[]).is_err());
    }

    #[test]
    fn everything_is_added_to_each_entitlement_once() {
        let c = config("https://x.example.com/", &["security"]);
        let out = c.apply_to(&[entitlement(&[]), entitlement(&["security"])]);
        assert_eq!(out[0].policy.chat, ["security"]);
        assert_eq!(out[1].policy.chat, ["security"]);
    }

    #[test]
    fn typed_text_cannot_mention_or_link() {
        assert_eq!(
            escape("<!channel> <http://x|y> & co"),
            "&lt;!channel&gt; &lt;http://x|y&gt; &amp; co"
        );
    }

    #[test]
    fn the_url_is_never_in_debug_output() {
        let c = config("https://hooks.example.com/services/SECRET", &[]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

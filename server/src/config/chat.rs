//! The `[chat]` section: named chat webhooks and who hears of what (the edge that posts
//! is `crate::chat`).

use super::{is_loopback_url, Secret};
use anyhow::{bail, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `[chat]` configuration section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Incoming webhooks by name (`security = "https://hooks.slack.com/services/…"`; or
    /// `PORTCULLIS_CHAT__WEBHOOKS__SECURITY`). A webhook's URL is its credential: it is
    /// never logged, shown or stored; entitlements and the outbox name the webhook.
    pub webhooks: BTreeMap<String, Secret>,
    /// Webhooks that hear of every configured entitlement's events, on top of each
    /// entitlement's own `policy.chat`.
    pub everything: Vec<String>,
}

impl ChatConfig {
    /// Names are short words; URLs are https (plain http only to a loopback address, for
    /// tests); every name an entitlement or `everything` uses exists.
    pub fn validate(&self, entitlements: &[app::domain::Entitlement]) -> Result<()> {
        for (name, url) in &self.webhooks {
            if !valid_name(name) {
                bail!(
                    "[chat.webhooks]: {name:?} is not a webhook name (letters, digits, - and _, \
                     at most 40)"
                );
            }
            let url = url.expose();
            if !url.starts_with("https://") && !is_loopback_url(url) {
                bail!(
                    "[chat.webhooks] {name}: the URL must be https:// (plain http only to \
                     127.0.0.1, for tests)"
                );
            }
        }
        let known = |n: &String| self.webhooks.contains_key(n);
        if let Some(n) = self.everything.iter().find(|n| !known(n)) {
            bail!("chat.everything names {n:?}, which is not in [chat.webhooks]");
        }
        for e in entitlements {
            if let Some(n) = e.policy.chat.iter().find(|n| !known(n)) {
                bail!(
                    "entitlement {}: policy.chat names {n:?}, which is not in [chat.webhooks]",
                    e.id
                );
            }
        }
        Ok(())
    }

    /// The configured entitlements with `everything` added to each one's `policy.chat`.
    pub fn apply_to(
        &self,
        entitlements: &[app::domain::Entitlement],
    ) -> Vec<app::domain::Entitlement> {
        entitlements
            .iter()
            .cloned()
            .map(|mut e| {
                for n in &self.everything {
                    if !e.policy.chat.contains(n) {
                        e.policy.chat.push(n.clone());
                    }
                }
                e
            })
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

//! `[log]` and `[metrics]`: what an operator watches the portal with.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served, apart from the portal's own address (so that it can
    /// stay on a private interface); empty turns metrics off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9477".into(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve metrics on; `None` when turned off.
    pub fn address(&self) -> Result<Option<SocketAddr>> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).with_context(|| {
            format!("metrics.listen {listen:?} is not an address like 127.0.0.1:9477 (empty turns metrics off)")
        })
    }
}

/// How log lines are written.
#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, with the request's id and route in `span`.
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `debug,sqlx=warn`, ...); `RUST_LOG`, when set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,sqlx=warn,tower_http=warn".into(),
        }
    }
}

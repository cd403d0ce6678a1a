//! The audit chain's settings (`[audit]`) and its key (invariant 6).

use super::{Mode, Secret};
use anyhow::{bail, Result};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The key of the audit chain's HMAC-SHA256: at least 32 random bytes written as hex
    /// (64 hex digits or more, e.g. `openssl rand -hex 32`). Never stored in the database.
    /// `serve` refuses to start without it; `demo` uses [`AuditKey::demo`].
    pub key: Option<Secret>,
    /// How often the maintenance worker verifies the whole chain (and once at start).
    pub verify_interval_secs: u64,
    /// How many of the chain's first events were written before the key existed (a
    /// database upgraded from before it): only those are checked with the unkeyed rule.
    /// 0 (the default) for every database created since. Kept here, outside the
    /// database, so that someone who can write to the database cannot pass keyed events
    /// off as unkeyed ones by moving `audit_head.keyed_from` and rehashing them.
    pub unkeyed_events: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key: None,
            verify_interval_secs: 3600,
            unkeyed_events: 0,
        }
    }
}

impl AuditConfig {
    pub fn verify_every(&self) -> Duration {
        Duration::from_secs(self.verify_interval_secs.max(60))
    }

    /// The configured key, parsed; in demo mode the demo key when none is configured.
    pub fn key(&self, mode: Mode) -> Result<AuditKey> {
        let unkeyed = i64::try_from(self.unkeyed_events).unwrap_or(i64::MAX);
        match (&self.key, mode) {
            (Some(k), _) => AuditKey::from_hex(k.expose()).map(|k| k.with_unkeyed_events(unkeyed)),
            (None, Mode::Demo) => Ok(AuditKey::demo().with_unkeyed_events(unkeyed)),
            (None, Mode::Serve) => bail!(
                "PORTCULLIS_AUDIT__KEY (audit.key) is not set: the audit chain needs a key of at \
                 least 32 random bytes as hex, e.g. `openssl rand -hex 32`"
            ),
        }
    }
}

/// The audit chain's HMAC key. `Debug` never shows it; it lives in memory only.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey {
    bytes: Arc<[u8]>,
    /// `audit.unkeyed_events`: the chain's first events that predate the key.
    unkeyed_events: i64,
}

/// The demo key: public, written here, so a demo database proves nothing to anyone.
const DEMO_KEY: &[u8] = b"portcullis DEMO audit key - public, NOT A SECRET - never for serve";

impl AuditKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// From hex digits (upper or lower case, surrounding spaces ignored): at least
    /// [`AuditKey::MIN_LEN`] bytes.
    pub fn from_hex(s: &str) -> Result<Self> {
        let Ok(bytes) = hex::decode(s.trim()) else {
            bail!("audit.key must be hex digits (e.g. `openssl rand -hex 32`)");
        };
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < Self::MIN_LEN {
            bail!(
                "audit.key is {} bytes: it must be at least {} random bytes ({} hex digits)",
                bytes.len(),
                Self::MIN_LEN,
                Self::MIN_LEN * 2
            );
        }
        Ok(Self {
            bytes: bytes.into(),
            unkeyed_events: 0,
        })
    }

    /// The same key, with the chain's first `n` events known to predate it.
    pub fn with_unkeyed_events(mut self, n: i64) -> Self {
        self.unkeyed_events = n.max(0);
        self
    }

    /// How many of the chain's first events predate the key (`audit.unkeyed_events`).
    pub fn unkeyed_events(&self) -> i64 {
        self.unkeyed_events
    }

    /// The fixed key `portcullis demo` uses when none is configured. It is public: a
    /// chain keyed with it proves nothing.
    pub fn demo() -> Self {
        Self {
            bytes: DEMO_KEY.into(),
            unkeyed_events: 0,
        }
    }

    pub fn is_demo(&self) -> bool {
        &*self.bytes == DEMO_KEY
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_demo() {
            f.write_str("AuditKey(demo)")
        } else {
            f.write_str("AuditKey(***)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_of_at_least_32_bytes_and_do_not_print() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let k = AuditKey::from_hex(hex64).unwrap();
        assert_eq!(k.expose().len(), 32);
        assert_eq!(format!("{k:?}"), "AuditKey(***)");
        let short = AuditKey::from_hex(&hex64[..62]).unwrap_err().to_string();
        assert!(short.contains("at least 32"), "{short}");
        assert!(AuditKey::from_hex("zz").is_err());
        // Raw text is not a key: it would be too easy to paste a password.
        assert!(AuditKey::from_hex(&"k".repeat(64)).is_err());
        assert!(AuditKey::demo().expose().len() >= AuditKey::MIN_LEN);
        assert_eq!(format!("{:?}", AuditKey::demo()), "AuditKey(demo)");
    }

    #[test]
    fn serve_needs_a_key_and_demo_has_one() {
        let c = AuditConfig::default();
        let err = c.key(Mode::Serve).unwrap_err().to_string();
        assert!(err.contains("PORTCULLIS_AUDIT__KEY"), "{err}");
        assert!(c.key(Mode::Demo).unwrap().is_demo());
        let c = AuditConfig {
            key: Some(Secret::new("ab".repeat(32))),
            ..Default::default()
        };
        assert!(!c.key(Mode::Serve).unwrap().is_demo());
        assert!(format!("{c:?}").contains("Secret(***)"));
    }
}

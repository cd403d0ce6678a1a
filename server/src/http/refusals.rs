//! Refusals of anonymous traffic, counted rather than audited: a cross-site post without
//! a session, a sign-in callback nobody started, a rate limit, a crafted error link. Anyone
//! on the network can make as many of these as they like; one audit row each would let
//! them flood the audit log (and the chain's verification). Each kind is counted, and
//! logged at most once per [`LOG_EVERY_SECS`] with the count so far and the latest
//! example (its length capped). Refusals of a signed-in person are audited where they
//! happen, as before.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A state-changing request from another site, with no session.
    CrossSite,
    /// A sign-in that failed before anyone was identified (bad or replayed callback).
    SignIn,
    /// Over a rate limit.
    RateLimited,
    /// An error message in a URL the portal did not write for that session.
    UrlError,
    /// Demo mode reached under a name that is not loopback.
    ForeignHost,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::CrossSite,
        Refusal::SignIn,
        Refusal::RateLimited,
        Refusal::UrlError,
        Refusal::ForeignHost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::CrossSite => "cross_site",
            Refusal::SignIn => "sign_in",
            Refusal::RateLimited => "rate_limited",
            Refusal::UrlError => "url_error",
            Refusal::ForeignHost => "foreign_host",
        }
    }
}

pub const LOG_EVERY_SECS: i64 = 10;

/// The longest part of anything an attacker sends that is logged or stored.
pub const MAX_DETAIL_CHARS: usize = 200;

pub fn capped(s: &str) -> String {
    if s.chars().count() <= MAX_DETAIL_CHARS {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX_DETAIL_CHARS).collect();
        t.push('…');
        t
    }
}

const N: usize = Refusal::ALL.len();

struct Counters {
    counts: [AtomicU64; N],
    last_logged: [AtomicI64; N],
}

static COUNTERS: Counters = Counters {
    counts: [const { AtomicU64::new(0) }; N],
    last_logged: [const { AtomicI64::new(0) }; N],
};

/// Counts one refusal, and logs it unless this kind was logged in the last
/// [`LOG_EVERY_SECS`].
pub fn count(kind: Refusal, detail: &str) {
    let i = kind as usize;
    let total = COUNTERS.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let last = COUNTERS.last_logged[i].load(Ordering::Relaxed);
    if now - last >= LOG_EVERY_SECS
        && COUNTERS.last_logged[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            kind = kind.name(),
            total,
            latest = %capped(detail),
            "anonymous request refused (counted; logged at most every {LOG_EVERY_SECS}s)"
        );
    }
}

/// How many of each kind this process refused since it started.
pub fn totals() -> Vec<(&'static str, u64)> {
    Refusal::ALL
        .iter()
        .map(|k| {
            (
                k.name(),
                COUNTERS.counts[*k as usize].load(Ordering::Relaxed),
            )
        })
        .collect()
}

pub fn total(kind: Refusal) -> u64 {
    COUNTERS.counts[kind as usize].load(Ordering::Relaxed)
}

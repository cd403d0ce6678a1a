//! Settings of the worker (`[worker]`), of the maintenance runs (catalog sync and
//! reconciliation from `[aws]`, audit verification from `[audit]`), and of who hears about
//! what and when (`[mail]`).

use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct WorkerSettings {
    /// How long a claimed job is reserved before another worker may take it over.
    pub lease_secs: u64,
    /// Longest sleep when nothing is due (a safety net; adds wake the worker at once).
    pub max_idle_secs: u64,
    /// Pause between status polls of an AWS operation in flight.
    pub poll_interval_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_cap_secs: u64,
    /// Failures of one job before admins are alerted (revocations keep retrying after).
    pub alert_after_failures: u32,
    /// An AWS operation still in progress after this long raises an alert.
    pub stuck_after_secs: u64,
    /// Mail delivery attempts before a message is parked for admins.
    pub mail_max_attempts: u32,
    /// `/readyz` answers 503 while a revocation is overdue by more than this.
    pub overdue_after_secs: u64,
    /// Grant and request jobs run at once by one replica: AWS's budget, not the worker,
    /// should be what limits a burst of revocations.
    pub concurrency: u32,
    /// This replica's stable name (`PORTCULLIS_WORKER__REPLICA_ID`); the host name when
    /// unset. Its workers lease jobs under it, and a restarted replica releases the
    /// leases its previous run left, instead of waiting for them to lapse.
    pub replica_id: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 60,
            max_idle_secs: 30,
            poll_interval_ms: 1000,
            backoff_base_ms: 1000,
            backoff_cap_secs: 300,
            alert_after_failures: 5,
            stuck_after_secs: 600,
            mail_max_attempts: 8,
            overdue_after_secs: 300,
            replica_id: None,
            concurrency: 4,
        }
    }
}

impl WorkerSettings {
    /// This replica's name: `replica_id`, else the host name, else `replica`.
    pub fn replica(&self) -> String {
        let from_host = || {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        };
        self.replica_id
            .clone()
            .or_else(from_host)
            .map(|s| {
                s.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .take(64)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "replica".into())
    }

    /// A worker that has not come round its loop for this long is stuck or dead: long
    /// enough for its longest sleep and one step within its lease.
    pub fn heartbeat_stale_after(&self) -> Duration {
        Duration::from_secs((3 * self.max_idle_secs).max(2 * self.lease_secs))
    }

    /// Capped exponential backoff: base * 2^(attempt-1), at most the cap.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ms = self.backoff_base_ms.saturating_mul(1u64 << exp);
        Duration::from_millis(ms).min(Duration::from_secs(self.backoff_cap_secs))
    }

    /// [`WorkerSettings::backoff`] with jitter: somewhere in its upper half, so that jobs
    /// that failed together (a burst of throttling) do not all retry in the same instant.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Catalog sync and reconciliation: how often, and what the portal may delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Upkeep {
    pub catalog_every: Duration,
    pub reconcile_every: Duration,
    /// Verification of the whole audit chain (`audit.verify_interval_secs`).
    pub verify_audit_every: Duration,
    /// Permission sets the portal owns outright: assignments of these that no live grant
    /// covers are deleted, whoever made them. Any other assignment the portal did not
    /// create is only reported.
    pub owned_permission_sets: Vec<String>,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self {
            catalog_every: Duration::from_secs(3600),
            reconcile_every: Duration::from_secs(600),
            verify_audit_every: Duration::from_secs(3600),
            owned_permission_sets: Vec::new(),
        }
    }
}

impl Upkeep {
    pub fn owns(&self, permission_set_arn: &str) -> bool {
        self.owned_permission_sets
            .iter()
            .any(|p| p == permission_set_arn)
    }
}

/// Who hears about what, and when: the `[mail]` configuration section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// Starts every subject, in brackets: `[Portcullis] Access granted: ...`.
    pub portal_name: String,
    /// How long before a grant ends its holder is warned; 0 sends no warning.
    pub ending_soon_lead_secs: u64,
    /// Approvers are reminded of a request still pending this long after it was made, and
    /// again at each such interval; 0 never.
    pub reminder_after_secs: u64,
    /// The most reminders one request sends (one every `reminder_after_secs`).
    pub max_reminders: u32,
    /// A request still pending this long is escalated (unless its entitlement sets its own
    /// `policy.escalate_after_secs`); 0 never.
    pub escalate_after_secs: u64,
    /// IdP group to which requests of entitlements without their own `policy.escalation`
    /// are escalated: its members are told and may decide them from then on.
    pub fallback_approver_group: Option<String>,
    /// Extra addresses told about every new request (and reminded), e.g. a team list.
    pub approver_addresses: Vec<String>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            portal_name: "Portcullis".into(),
            ending_soon_lead_secs: 15 * 60,
            reminder_after_secs: 4 * 3600,
            max_reminders: 3,
            escalate_after_secs: 12 * 3600,
            fallback_approver_group: None,
            approver_addresses: Vec::new(),
        }
    }
}

fn enabled(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl MailSettings {
    pub fn ending_soon_lead(&self) -> Option<Duration> {
        enabled(self.ending_soon_lead_secs)
    }

    pub fn reminder_after(&self) -> Option<Duration> {
        enabled(self.reminder_after_secs)
    }

    /// The subject as sent: `[portal name] subject`.
    pub fn subject(&self, subject: &str) -> String {
        match self.portal_name.trim() {
            "" => subject.to_owned(),
            name => format!("[{name}] {subject}"),
        }
    }
}

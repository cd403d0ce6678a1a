//! Configuration: defaults, then a TOML file (`--config`), then `PORTCULLIS_` environment
//! variables with `__` between nested keys (`PORTCULLIS_WORKER__LEASE_SECS=30`).

use anyhow::{bail, Context, Result};
use app::domain::AccessDuration;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod audit;
mod chat;
mod definition;
mod http;
mod jobs;
mod oidc;
mod operations;
#[cfg(test)]
mod tests;

pub use audit::{AuditConfig, AuditKey};
pub use chat::ChatConfig;
pub use definition::{entitlement_toml, entitlements_toml};
pub use http::HttpSettings;
pub use jobs::{MailSettings, Upkeep, WorkerSettings};
pub use oidc::{is_loopback_host, is_loopback_url, ClaimNames, OidcConfig, KNOWN_SIGNING_ALGS};
pub use operations::{LogConfig, LogFormat, MetricsConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://FILE?mode=rwc` or `postgres://USER:PASSWORD@HOST/DB`.
    pub database_url: Option<DatabaseUrl>,
    /// The URL people use to reach the portal (links in mail, cookie security, redirects).
    pub public_url: Option<String>,
    /// Where the compiled site (WebAssembly, CSS) lives; `LEPTOS_SITE_ROOT` also works.
    pub site_root: Option<String>,
    pub policy: PolicyConfig,
    pub demo: DemoConfig,
    pub worker: WorkerSettings,
    pub session: SessionConfig,
    /// The HTTP edge: timeouts, body limit, rate limits (`[http]`).
    pub http: HttpSettings,
    pub oidc: Option<OidcConfig>,
    /// Which AWS the portal grants access in.
    pub aws: AwsConfig,
    /// Mail delivery over SMTP. Without it, mail stays in the outbox (the outbox page).
    pub smtp: Option<SmtpConfig>,
    pub mail: MailSettings,
    /// Chat webhooks (`[chat]`): Slack-compatible incoming webhooks that hear of events.
    pub chat: ChatConfig,
    /// The audit chain: its key and how often it is verified.
    pub audit: AuditConfig,
    /// Entitlements declared in the configuration file (`[[entitlements]]`), created or
    /// updated at start.
    pub entitlements: Vec<app::domain::Entitlement>,
    /// What the process logs and how (`[log]`).
    pub log: LogConfig,
    /// Prometheus metrics (`[metrics]`).
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_url: None,
            public_url: None,
            site_root: None,
            policy: PolicyConfig::default(),
            demo: DemoConfig::default(),
            worker: WorkerSettings::default(),
            session: SessionConfig::default(),
            http: HttpSettings::default(),
            oidc: None,
            aws: AwsConfig::default(),
            smtp: None,
            mail: MailSettings::default(),
            chat: ChatConfig::default(),
            audit: AuditConfig::default(),
            entitlements: Vec::new(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The shortest duration anyone may request, e.g. `15m`.
    pub min_duration: String,
    /// How far ahead a request may ask its access to start, e.g. `14d`.
    pub start_horizon: String,
}

/// `[policy] start_horizon` when not set: two weeks.
pub const DEFAULT_START_HORIZON: Duration = Duration::from_secs(14 * 86_400);

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_duration: "15m".into(),
            start_horizon: "14d".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// How long the simulated IAM Identity Center takes to settle an operation.
    pub provision_delay_ms: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            provision_delay_ms: 1500,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub idle_timeout_secs: u64,
    pub absolute_lifetime_secs: u64,
    /// Admins' sessions end sooner: their rights come from the last sign-in.
    pub admin_absolute_lifetime_secs: u64,
    /// Deciding a request or revoking a grant needs a sign-in at most this old; an older
    /// one is asked to sign in again (OpenID Connect `max_age`).
    pub reauth_after_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 8 * 3600,
            absolute_lifetime_secs: 24 * 3600,
            admin_absolute_lifetime_secs: 8 * 3600,
            reauth_after_secs: 3600,
        }
    }
}

impl SessionConfig {
    /// How long a new session lasts at most, for an admin or anyone else.
    pub fn lifetime(&self, admin: bool) -> Duration {
        let all = self.absolute_lifetime_secs;
        Duration::from_secs(if admin {
            all.min(self.admin_absolute_lifetime_secs)
        } else {
            all
        })
    }

    pub fn reauth_after(&self) -> Duration {
        Duration::from_secs(self.reauth_after_secs)
    }
}

/// A secret string: `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    pub provisioner: ProvisionerKind,
    /// The region of IAM Identity Center; the standard chain (`AWS_REGION`, profile) when unset.
    pub region: Option<String>,
    /// Discovered with ListInstances when unset.
    pub instance_arn: Option<String>,
    /// Discovered with ListInstances when unset.
    pub identity_store_id: Option<String>,
    /// Another endpoint for every AWS call (tests: the moto server).
    pub endpoint_url: Option<String>,
    /// The Identity Store attribute that holds a person's email claim.
    pub user_attribute: String,
    /// Client-side budget for calls to Identity Center (AWS allows 20/s for the account).
    pub requests_per_second: u32,
    /// One AWS call gives up after this long (the worker retries).
    pub call_timeout_secs: u64,
    /// Assignment creations in flight at once (AWS allows 10 per instance); more wait.
    pub max_outstanding_creations: u32,
    /// Catalog sync (accounts, OUs, permission sets): on start, then this often.
    pub catalog_sync_interval_secs: u64,
    /// Reconciliation of AWS's assignments with the live grants: this often.
    pub reconcile_interval_secs: u64,
    /// Permission sets the portal owns outright: an assignment of one of these that no
    /// live grant covers is deleted even when it was made outside the portal.
    pub owned_permission_sets: Vec<String>,
    /// The AWS-side backstop: `off` (the default) or `scheduler` (a one-time EventBridge
    /// Scheduler schedule per assignment deletes it should the portal not).
    pub backstop: BackstopKind,
    /// The schedule group the backstop's schedules go in.
    pub backstop_schedule_group: String,
    /// The schedule fires this long after the latest end of the assignment's live grants.
    pub backstop_grace_secs: u64,
    /// The IAM role EventBridge Scheduler assumes to delete the assignment (required with
    /// `backstop = "scheduler"`).
    pub backstop_role_arn: Option<String>,
}

#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackstopKind {
    #[default]
    Off,
    Scheduler,
}

impl AwsConfig {
    /// The backstop's settings when it is on; an error when it is on without a role.
    pub fn backstop(&self) -> Result<Option<BackstopSettings>> {
        match self.backstop {
            BackstopKind::Off => Ok(None),
            BackstopKind::Scheduler => {
                let role = self.backstop_role_arn.clone().filter(|r| r.starts_with("arn:")).context(
                    "aws.backstop = \"scheduler\" needs aws.backstop_role_arn (PORTCULLIS_AWS__BACKSTOP_ROLE_ARN): \
                     the ARN of the IAM role EventBridge Scheduler assumes to delete assignments",
                )?;
                if self.backstop_schedule_group.trim().is_empty() {
                    bail!("aws.backstop_schedule_group is empty");
                }
                Ok(Some(BackstopSettings {
                    group: self.backstop_schedule_group.trim().to_owned(),
                    grace: std::time::Duration::from_secs(self.backstop_grace_secs),
                    role_arn: role,
                }))
            }
        }
    }

    pub fn upkeep(&self) -> Upkeep {
        Upkeep {
            verify_audit_every: Upkeep::default().verify_audit_every,
            catalog_every: std::time::Duration::from_secs(self.catalog_sync_interval_secs.max(60)),
            reconcile_every: std::time::Duration::from_secs(self.reconcile_interval_secs.max(10)),
            owned_permission_sets: self.owned_permission_sets.clone(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            provisioner: ProvisionerKind::default(),
            region: None,
            instance_arn: None,
            identity_store_id: None,
            endpoint_url: None,
            user_attribute: "userName".into(),
            requests_per_second: 10,
            call_timeout_secs: 30,
            max_outstanding_creations: 10,
            catalog_sync_interval_secs: 3600,
            reconcile_interval_secs: 600,
            owned_permission_sets: Vec::new(),
            backstop: BackstopKind::Off,
            backstop_schedule_group: "portcullis".into(),
            backstop_grace_secs: 900,
            backstop_role_arn: None,
        }
    }
}

/// The backstop as configured ([`AwsConfig::backstop`]).
#[derive(Clone, Debug)]
pub struct BackstopSettings {
    pub group: String,
    pub grace: std::time::Duration,
    pub role_arn: String,
}

#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionerKind {
    /// IAM Identity Center through the SSO Admin API.
    #[default]
    SsoAdmin,
    /// The demo organization, simulated in the database: for trials and tests of
    /// sign-in with a real identity provider. Nothing happens in AWS.
    Simulated,
}

/// How the SMTP connection is protected.
#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (SMTPS), port 465 unless told otherwise.
    Tls,
    /// Plain connection upgraded with STARTTLS, which must succeed; port 587 by default.
    #[default]
    Starttls,
    /// No encryption at all, port 25 by default: for a relay on loopback (and tests).
    None,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by TLS mode: 465 (`tls`), 587 (`starttls`), 25 (`none`).
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, `portcullis@example.com` or `Portcullis <portcullis@example.com>`.
    pub from: String,
    /// A CA certificate (PEM file) to trust besides the system's, for a relay whose
    /// certificate comes from a private CA. The server's name is still verified.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Tls => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::None => 25,
        })
    }

    pub fn host_is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    fn check(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            bail!("smtp.host is empty");
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| anyhow::anyhow!("smtp.from {:?} is not a mail address: {e}", self.from))?;
        match (&self.username, &self.password) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("smtp.username and smtp.password go together: set both or neither")
            }
            (Some(_), Some(_)) if self.tls == SmtpTls::None && !self.host_is_loopback() => bail!(
                "smtp.tls = \"none\" would send the SMTP password in clear to {}: use \"tls\" or \"starttls\"",
                self.host
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Demo,
    Serve,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut fig = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("PORTCULLIS_").split("__"));
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.min_duration()?;
        cfg.start_horizon()?;
        cfg.check_mail()?;
        Ok(cfg)
    }

    pub fn min_duration(&self) -> Result<Duration> {
        AccessDuration::parse(&self.policy.min_duration)
            .map(AccessDuration::as_duration)
            .map_err(|e| anyhow::anyhow!("policy.min_duration {:?}: {e}", self.policy.min_duration))
    }

    pub fn start_horizon(&self) -> Result<Duration> {
        AccessDuration::parse(&self.policy.start_horizon)
            .map(AccessDuration::as_duration)
            .map_err(|e| {
                anyhow::anyhow!("policy.start_horizon {:?}: {e}", self.policy.start_horizon)
            })
    }

    /// SMTP settings and mail addresses that can never work are refused at start.
    pub fn check_mail(&self) -> Result<()> {
        if let Some(smtp) = &self.smtp {
            smtp.check()?;
        }
        for a in &self.mail.approver_addresses {
            a.parse::<lettre::Address>().map_err(|e| {
                anyhow::anyhow!("mail.approver_addresses: {a:?} is not a mail address: {e}")
            })?;
        }
        if self
            .mail
            .fallback_approver_group
            .as_deref()
            .is_some_and(|g| g.trim().is_empty())
        {
            bail!("mail.fallback_approver_group is empty: name a group or leave it out");
        }
        Ok(())
    }

    /// The maintenance periods: catalog sync and reconciliation (`[aws]`), audit
    /// verification (`[audit]`).
    pub fn upkeep(&self) -> Upkeep {
        Upkeep {
            verify_audit_every: self.audit.verify_every(),
            ..self.aws.upkeep()
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// `public_url`'s origin as a browser sends it in `Origin`: `scheme://host[:port]`,
    /// lower case, without a default port or a path. `None` if it is not a URL.
    pub fn public_origin(&self) -> Option<String> {
        let url = url::Url::parse(&self.public_url()).ok()?;
        match url.origin() {
            origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
            url::Origin::Opaque(_) => None,
        }
    }

    /// Secure cookies unless the portal is plain http on loopback (tests, demo).
    pub fn secure_cookies(&self) -> bool {
        self.public_url().starts_with("https://")
    }

    /// Checks what the mode needs, with a message that says what to set.
    pub fn validate(&self, mode: Mode) -> Result<()> {
        let mut ids = std::collections::HashSet::new();
        for e in &self.entitlements {
            e.check().context("[[entitlements]] in the configuration")?;
            if !ids.insert(e.id.as_str()) {
                bail!("[[entitlements]]: the id {:?} is used twice", e.id);
            }
        }
        self.chat.validate(&self.entitlements)?;
        if self.public_origin().is_none() {
            // The CSRF check compares `Origin` with it exactly.
            bail!(
                "PORTCULLIS_PUBLIC_URL is not an http(s) URL (it is {})",
                self.public_url()
            );
        }
        match mode {
            Mode::Demo => {
                if !self.listen.ip().is_loopback() {
                    bail!(
                        "demo mode refuses to listen on {}: demo sign-in lets anyone act as anyone, \
                         so it only listens on a loopback address (127.0.0.1 or ::1)",
                        self.listen
                    );
                }
                if self.oidc.is_some() {
                    bail!(
                        "demo mode refuses an [oidc] section (or PORTCULLIS_OIDC__* variables): \
                         demo sign-in lets anyone act as anyone, so it never runs next to real \
                         sign-in. Use `portcullis serve` with [oidc], or remove it for the demo"
                    );
                }
            }
            Mode::Serve => {
                let mut missing = Vec::new();
                if self.database_url.is_none() {
                    missing.push("PORTCULLIS_DATABASE_URL (database_url)");
                }
                if self.public_url.is_none() {
                    missing.push("PORTCULLIS_PUBLIC_URL (public_url)");
                }
                if self.oidc.is_none() {
                    missing.push(
                        "PORTCULLIS_OIDC__ISSUER_URL, PORTCULLIS_OIDC__CLIENT_ID, PORTCULLIS_OIDC__CLIENT_SECRET ([oidc])",
                    );
                }
                if self.audit.key.is_none() {
                    missing.push(
                        "PORTCULLIS_AUDIT__KEY (audit.key: 32 random bytes or more as hex, e.g. `openssl rand -hex 32`)",
                    );
                }
                if !missing.is_empty() {
                    bail!(
                        "`portcullis serve` needs more configuration. Set:\n  - {}\n(or run `portcullis demo` to try Portcullis locally)",
                        missing.join("\n  - ")
                    );
                }
                let public = self.public_url();
                if !public.starts_with("https://") && !is_loopback_url(&public) {
                    bail!(
                        "PORTCULLIS_PUBLIC_URL must be https:// (it is {public}): session cookies \
                         are Secure, and plain http is only for 127.0.0.1 in tests"
                    );
                }

                if let Some(oidc) = &self.oidc {
                    oidc.validate()?;
                }
            }
        }
        // A configured key must be usable in either mode.
        self.audit.key(mode)?;
        self.metrics.address()?;
        self.aws.backstop()?;
        Ok(())
    }
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    fn redacted(&self) -> String {
        // scheme://user:password@host -> scheme://user:***@host
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let creds = &self.0[s + 3..at];
                match creds.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &self.0[..s + 3], &self.0[at..]),
                    None => self.0.clone(),
                }
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

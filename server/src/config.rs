//! Configuration: defaults, then a TOML file (`--config`), then `PORTCULLIS_` environment
//! variables with `__` between nested keys (`PORTCULLIS_WORKER__LEASE_SECS=30`).

use crate::notify::MailSettings;
use crate::store::DatabaseUrl;
use crate::worker::WorkerSettings;
use anyhow::{bail, Context, Result};
use app::domain::AccessDuration;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

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
    pub oidc: Option<OidcConfig>,
    /// Which AWS the portal grants access in.
    pub aws: AwsConfig,
    /// Mail delivery over SMTP. Without it, mail stays in the outbox (the outbox page).
    pub smtp: Option<SmtpConfig>,
    pub mail: MailSettings,
    /// Entitlements declared in the configuration file (`[[entitlements]]`), created or
    /// updated at start.
    pub entitlements: Vec<crate::lifecycle::Entitlement>,
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
            oidc: None,
            aws: AwsConfig::default(),
            smtp: None,
            mail: MailSettings::default(),
            entitlements: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The shortest duration anyone may request, e.g. `15m`.
    pub min_duration: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_duration: "15m".into(),
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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 8 * 3600,
            absolute_lifetime_secs: 24 * 3600,
        }
    }
}

/// A secret string: `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Sign-in through the company's OpenID Connect provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as in its discovery document
    /// (`{issuer_url}/.well-known/openid-configuration`).
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes to ask for: a list, or one string separated by spaces or commas.
    #[serde(default = "default_scopes", deserialize_with = "string_list")]
    pub scopes: Vec<String>,
    /// Which claims hold what.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Members of any of these IdP groups are Portcullis admins.
    #[serde(default, deserialize_with = "string_list")]
    pub admin_groups: Vec<String>,
    /// ID token signature algorithms accepted (never `none`; HMAC only if listed).
    #[serde(default = "default_signing_algs", deserialize_with = "string_list")]
    pub signing_algs: Vec<String>,
    /// How long a started sign-in may take before its `state` expires.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"]
        .map(String::from)
        .to_vec()
}

fn default_signing_algs() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
    .map(String::from)
    .to_vec()
}

fn default_login_timeout() -> u64 {
    600
}

/// The signature algorithms Portcullis knows how to check.
pub const KNOWN_SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

impl OidcConfig {
    fn validate(&self) -> Result<()> {
        let issuer = self.issuer_url.trim_end_matches('/');
        if !issuer.starts_with("https://") && !is_loopback_url(issuer) {
            bail!("PORTCULLIS_OIDC__ISSUER_URL must be an https:// URL (it is {issuer})");
        }
        if self.client_id.trim().is_empty() {
            bail!("PORTCULLIS_OIDC__CLIENT_ID is empty");
        }
        if self.client_secret.expose().is_empty() {
            bail!("PORTCULLIS_OIDC__CLIENT_SECRET is empty");
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            bail!(
                "PORTCULLIS_OIDC__SCOPES must include `openid` (it is {:?})",
                self.scopes
            );
        }
        if self.signing_algs.is_empty() {
            bail!("PORTCULLIS_OIDC__SIGNING_ALGS is empty: list at least one, e.g. RS256");
        }
        for alg in &self.signing_algs {
            if !KNOWN_SIGNING_ALGS.contains(&alg.as_str()) {
                bail!(
                    "PORTCULLIS_OIDC__SIGNING_ALGS: unknown algorithm {alg:?} (known: {})",
                    KNOWN_SIGNING_ALGS.join(", ")
                );
            }
        }
        if self.login_timeout_secs == 0 {
            bail!("PORTCULLIS_OIDC__LOGIN_TIMEOUT_SECS must be more than 0");
        }
        Ok(())
    }
}

/// `http://127.0.0.1…`, `http://localhost…` or `http://[::1]…`: plain http is fine there.
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => host,
    };
    is_loopback_host(host)
}

/// `localhost`, or a loopback address (`127.0.0.0/8`, `::1`, bracketed or not).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Claim names, for providers that do not use the usual ones (Entra ID's `oid`, say).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    /// The stable user id, unique within the issuer.
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// A list of group names (a single string is read as one group).
    pub groups: String,
    /// The manager's email or subject.
    pub manager: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
            manager: "manager".into(),
        }
    }
}

/// A list from TOML (`["a", "b"]`) or from one environment variable (`"a b"`, `"a,b"`).
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(v) => v,
    })
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
}

impl AwsConfig {
    pub fn upkeep(&self) -> crate::worker::Upkeep {
        crate::worker::Upkeep {
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
            max_outstanding_creations: 5,
            catalog_sync_interval_secs: 3600,
            reconcile_interval_secs: 600,
            owned_permission_sets: Vec::new(),
        }
    }
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
        cfg.check_mail()?;
        Ok(cfg)
    }

    pub fn min_duration(&self) -> Result<Duration> {
        AccessDuration::parse(&self.policy.min_duration)
            .map(AccessDuration::as_duration)
            .map_err(|e| anyhow::anyhow!("policy.min_duration {:?}: {e}", self.policy.min_duration))
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

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
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
        match mode {
            Mode::Demo => {
                if !self.listen.ip().is_loopback() {
                    bail!(
                        "demo mode refuses to listen on {}: demo sign-in lets anyone act as anyone, \
                         so it only listens on a loopback address (127.0.0.1 or ::1)",
                        self.listen
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
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's large error
mod tests {
    use super::*;

    #[test]
    fn demo_refuses_non_loopback() {
        let mut c = Config::default();
        assert!(c.validate(Mode::Demo).is_ok());
        c.listen = "0.0.0.0:3000".parse().unwrap();
        let err = c.validate(Mode::Demo).unwrap_err().to_string();
        assert!(err.contains("refuses to listen"), "{err}");
        c.listen = "[::1]:3000".parse().unwrap();
        assert!(c.validate(Mode::Demo).is_ok());
    }

    #[test]
    fn serve_names_what_is_missing() {
        let err = Config::default()
            .validate(Mode::Serve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORTCULLIS_DATABASE_URL"), "{err}");
        assert!(err.contains("PORTCULLIS_OIDC__ISSUER_URL"), "{err}");
    }

    fn serve_config() -> Config {
        Config {
            database_url: Some(DatabaseUrl::new("sqlite://x.db")),
            public_url: Some("https://access.example.com".into()),
            oidc: Some(OidcConfig {
                issuer_url: "https://idp.example.com".into(),
                client_id: "portcullis".into(),
                client_secret: serde_json::from_str("\"s3cret\"").unwrap(),
                scopes: default_scopes(),
                claims: ClaimNames::default(),
                admin_groups: vec![],
                signing_algs: default_signing_algs(),
                login_timeout_secs: 600,
            }),
            ..Config::default()
        }
    }

    #[test]
    fn serve_refuses_what_cannot_be_safe() {
        assert!(serve_config().validate(Mode::Serve).is_ok());
        let mut c = serve_config();
        c.public_url = Some("http://access.example.com".into());
        let err = c.validate(Mode::Serve).unwrap_err().to_string();
        assert!(err.contains("must be https"), "{err}");
        c.public_url = Some("http://127.0.0.1:3100".into());
        assert!(c.validate(Mode::Serve).is_ok());
        let mut c = serve_config();
        c.oidc.as_mut().unwrap().issuer_url = "http://idp.example.com".into();
        assert!(c
            .validate(Mode::Serve)
            .unwrap_err()
            .to_string()
            .contains("https"));
        let mut c = serve_config();
        c.oidc.as_mut().unwrap().scopes = vec!["email".into()];
        assert!(c
            .validate(Mode::Serve)
            .unwrap_err()
            .to_string()
            .contains("openid"));
        let mut c = serve_config();
        c.oidc.as_mut().unwrap().signing_algs = vec!["none".into()];
        let err = c.validate(Mode::Serve).unwrap_err().to_string();
        assert!(err.contains("unknown algorithm \"none\""), "{err}");
    }

    #[test]
    fn loopback_urls() {
        for yes in [
            "http://127.0.0.1:3000",
            "http://localhost",
            "http://[::1]:80/x",
            "http://127.0.0.2",
        ] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in [
            "https://127.0.0.1",
            "http://127.0.0.1.evil.com",
            "http://10.0.0.1",
            "http://localhost.evil",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }

    #[test]
    fn oidc_from_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PORTCULLIS_OIDC__ISSUER_URL", "https://login.example.com");
            jail.set_env("PORTCULLIS_OIDC__CLIENT_ID", "portcullis");
            jail.set_env("PORTCULLIS_OIDC__CLIENT_SECRET", "s3cret");
            jail.set_env("PORTCULLIS_OIDC__SCOPES", "openid email groups");
            jail.set_env("PORTCULLIS_OIDC__ADMIN_GROUPS", "aws-admins,security");
            jail.set_env("PORTCULLIS_OIDC__CLAIMS__USER_ID", "oid");
            jail.set_env("PORTCULLIS_AWS__PROVISIONER", "simulated");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let o = c.oidc.unwrap();
            assert_eq!(o.scopes, ["openid", "email", "groups"]);
            assert_eq!(o.admin_groups, ["aws-admins", "security"]);
            assert_eq!(o.claims.user_id, "oid");
            assert_eq!(o.claims.groups, "groups");
            assert_eq!(c.aws.provisioner, ProvisionerKind::Simulated);
            assert!(!format!("{o:?}").contains("s3cret"));
            Ok(())
        });
    }

    const ENTITLEMENTS: &str = r#"
[aws]
catalog_sync_interval_secs = 1800
reconcile_interval_secs = 300
owned_permission_sets = ["arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"]

[[entitlements]]
id = "workloads-readonly"
name = "Workloads read-only"
targets = [{ kind = "ou", ou_id = "ou-ab12-cd34ef56", permission_set_arn = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef" }]
[entitlements.policy]
eligible_groups = ["engineering"]
approvers = { manager = true, groups = ["cloud-approvers"] }
max_duration_secs = 14400
default_duration_secs = 3600
"#;

    #[test]
    fn entitlements_and_upkeep_from_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("e.toml", ENTITLEMENTS)?;
            let c = Config::load(Some(Path::new("e.toml"))).map_err(|e| e.to_string())?;
            assert!(c.validate(Mode::Demo).is_ok());
            let e = &c.entitlements[0];
            assert_eq!(e.id, "workloads-readonly");
            assert!(e.policy.approvers.manager);
            assert!(matches!(
                e.targets[0].scope,
                app::domain::TargetScope::Ou { .. }
            ));
            let upkeep = c.aws.upkeep();
            assert_eq!(upkeep.catalog_every, Duration::from_secs(1800));
            assert_eq!(upkeep.reconcile_every, Duration::from_secs(300));
            assert!(upkeep
                .owns("arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"));
            Ok(())
        });
    }

    #[test]
    fn bad_entitlements_are_refused_with_the_reason() {
        let cases = [
            // A misspelt policy key is an error, not silently ignored.
            (
                "max_duration_secs = 14400",
                "max_duration_secs = 14400\nauto_aprove = true",
                "unknown field: found `auto_aprove`",
            ),
            (
                "eligible_groups = [\"engineering\"]",
                "eligible_groups = []",
                "nobody is eligible",
            ),
            (
                "approvers = { manager = true, groups = [\"cloud-approvers\"] }",
                "",
                "nobody can approve",
            ),
            (
                "default_duration_secs = 3600",
                "default_duration_secs = 99999",
                "must be at most",
            ),
            ("ou-ab12-cd34ef56", "ou-nope", "ou"),
            (
                "id = \"workloads-readonly\"",
                "id = \"Bad Id!\"",
                "entitlement id",
            ),
        ];
        for (from, to, want) in cases {
            figment::Jail::expect_with(|jail| {
                jail.create_file("e.toml", &ENTITLEMENTS.replace(from, to))?;
                let err = match Config::load(Some(Path::new("e.toml"))) {
                    Err(e) => format!("{e:#}"),
                    Ok(c) => format!("{:#}", c.validate(Mode::Demo).unwrap_err()),
                };
                assert!(err.contains(want), "{to}: {err}");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            let twice = format!(
                "{ENTITLEMENTS}{}",
                &ENTITLEMENTS[ENTITLEMENTS.find("[[entitlements]]").unwrap()..]
            );
            jail.create_file("e.toml", &twice)?;
            let c = Config::load(Some(Path::new("e.toml"))).map_err(|e| e.to_string())?;
            let err = c.validate(Mode::Demo).unwrap_err().to_string();
            assert!(err.contains("used twice"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "listen = \"127.0.0.1:4000\"\n[policy]\nmin_duration = \"5m\"\n[worker]\nlease_secs = 9\n",
            )?;
            jail.set_env("PORTCULLIS_WORKER__LEASE_SECS", "7");
            jail.set_env("PORTCULLIS_DATABASE_URL", "sqlite://x.db");
            let c = Config::load(Some(Path::new("p.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 4000);
            assert_eq!(c.worker.lease_secs, 7);
            assert_eq!(c.min_duration().unwrap(), Duration::from_secs(300));
            assert_eq!(c.database_url.unwrap().expose(), "sqlite://x.db");
            Ok(())
        });
    }

    #[test]
    fn smtp_from_environment_with_a_hidden_password() {
        // clear_env: the CI scripts export PORTCULLIS_* variables of their own.
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("p.toml", "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"Portcullis <portcullis@example.com>\"\n[mail]\nportal_name = \"Access\"\n")?;
            jail.set_env("PORTCULLIS_SMTP__TLS", "tls");
            jail.set_env("PORTCULLIS_SMTP__USERNAME", "portcullis");
            jail.set_env("PORTCULLIS_SMTP__PASSWORD", "hunter2");
            jail.set_env(
                "PORTCULLIS_MAIL__APPROVER_ADDRESSES",
                "[\"cloud-team@example.com\"]",
            );
            jail.set_env("PORTCULLIS_MAIL__REMINDER_AFTER_SECS", "60");
            let c = Config::load(Some(Path::new("p.toml"))).map_err(|e| e.to_string())?;
            let smtp = c.smtp.clone().expect("smtp section");
            assert_eq!(smtp.tls, SmtpTls::Tls);
            assert_eq!(smtp.port(), 465);
            assert_eq!(smtp.password.as_ref().map(Secret::expose), Some("hunter2"));
            assert!(
                !format!("{c:?}").contains("hunter2"),
                "the password must never print"
            );
            assert_eq!(c.mail.portal_name, "Access");
            assert_eq!(c.mail.reminder_after_secs, 60);
            assert_eq!(c.mail.ending_soon_lead_secs, 900);
            assert_eq!(c.mail.approver_addresses, ["cloud-team@example.com"]);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("PORTCULLIS_SMTP__HOST", "127.0.0.1");
            jail.set_env("PORTCULLIS_SMTP__PORT", "2525");
            jail.set_env("PORTCULLIS_SMTP__TLS", "none");
            jail.set_env("PORTCULLIS_SMTP__FROM", "portcullis@example.com");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let smtp = c.smtp.expect("smtp from the environment alone");
            assert_eq!(
                (smtp.port(), smtp.tls, smtp.username),
                (2525, SmtpTls::None, None)
            );
            Ok(())
        });
    }

    #[test]
    fn smtp_settings_that_cannot_work_are_refused() {
        let refused = |vars: &[(&str, &str)]| {
            let mut err = String::new();
            figment::Jail::expect_with(|jail| {
                jail.clear_env();
                jail.set_env("PORTCULLIS_SMTP__HOST", "smtp.example.com");
                jail.set_env("PORTCULLIS_SMTP__FROM", "portcullis@example.com");
                for (k, v) in vars {
                    jail.set_env(k, v);
                }
                err = format!("{:#}", Config::load(None).expect_err("refused"));
                Ok(())
            });
            err
        };
        assert!(refused(&[("PORTCULLIS_SMTP__FROM", "not an address")]).contains("smtp.from"));
        assert!(refused(&[("PORTCULLIS_SMTP__TLS", "sometimes")]).contains("invalid configuration"));
        assert!(refused(&[("PORTCULLIS_SMTP__USERNAME", "u")]).contains("go together"));
        let clear = refused(&[
            ("PORTCULLIS_SMTP__TLS", "none"),
            ("PORTCULLIS_SMTP__USERNAME", "u"),
            ("PORTCULLIS_SMTP__PASSWORD", "p"),
        ]);
        assert!(
            clear.contains("in clear") && !clear.contains("\"p\""),
            "{clear}"
        );
        assert!(
            refused(&[("PORTCULLIS_MAIL__APPROVER_ADDRESSES", "[\"nobody\"]")])
                .contains("approver_addresses")
        );
        assert!(refused(&[("PORTCULLIS_MAIL__SURPRISE", "1")]).contains("invalid configuration"));
    }

    #[test]
    fn bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PORTCULLIS_POLICY__MIN_DURATION", "soon");
            assert!(Config::load(None).is_err());
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("PORTCULLIS_LISTEN", "not-an-address");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }
}

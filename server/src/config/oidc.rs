//! `[oidc]`: sign-in through the company's OpenID Connect provider, and what counts
//! as a loopback address (where plain http is allowed).

use super::Secret;
use anyhow::{bail, Result};
use serde::Deserialize;

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
    /// Refuse a sign-in unless the provider says the email is verified (the
    /// `claims.email_verified` claim is `true`). On by default: an unverified email could
    /// be anyone's, and emails name managers and approvers.
    #[serde(default = "yes")]
    pub require_verified_email: bool,
    /// When not empty, only emails in these domains may sign in (exact domain, any case:
    /// `example.com` admits `a@example.com`, not `a@eu.example.com`).
    #[serde(default, deserialize_with = "string_list")]
    pub allowed_email_domains: Vec<String>,
}

fn yes() -> bool {
    true
}

pub(super) fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"]
        .map(String::from)
        .to_vec()
}

pub(super) fn default_signing_algs() -> Vec<String> {
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
    pub(super) fn validate(&self) -> Result<()> {
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
        for d in &self.allowed_email_domains {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                bail!(
                    "PORTCULLIS_OIDC__ALLOWED_EMAIL_DOMAINS: {d:?} is not a domain (write example.com, without @)"
                );
            }
        }
        if self.claims.email_verified.trim().is_empty() {
            bail!("PORTCULLIS_OIDC__CLAIMS__EMAIL_VERIFIED is empty: name the claim (usually email_verified)");
        }
        Ok(())
    }

    /// Whether `email`'s domain may sign in: any when `allowed_email_domains` is empty.
    pub fn email_domain_allowed(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return false;
        };
        !local.is_empty()
            && self
                .allowed_email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
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
    /// Whether the provider verified the email (`true`, or the string `"true"`).
    pub email_verified: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
            manager: "manager".into(),
            email_verified: "email_verified".into(),
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

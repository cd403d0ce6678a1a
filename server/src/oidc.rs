//! Sign-in with the company's OpenID Connect provider: authorization code flow with PKCE
//! (S256), `state` and `nonce` bound to the browser and single-use, a confidential client,
//! ID token validation per OpenID Connect Core 3.1.3.7 with an allow-list of algorithms,
//! and claims missing from the ID token read from userinfo.
//!
//! The provider's discovery document (and its signing keys) is fetched on first use and
//! refreshed every [`METADATA_TTL`], so a provider that is down at start-up does not stop
//! the portal, and rotated keys are picked up.

use crate::config::{ClaimNames, OidcConfig};
use app::domain::{Principal, Timestamp};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fetched discovery document (and its keys) is trusted before it is fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(15 * 60);

/// Every claim of a token, whatever its name: the claim names are configurable.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AnyClaims {
    #[serde(flatten)]
    pub all: Map<String, Value>,
}
impl AdditionalClaims for AnyClaims {}

/// The one discovery field beyond OpenID Connect Core that Portcullis uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

pub type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type IdFields = IdTokenFields<
    AnyClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = Client<
    AnyClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in failed. `Display` is the reason for the audit log and the server log:
/// it never holds a token, a code or a cookie.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider cannot be reached: {0}")]
    ProviderDown(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("no state in the callback")]
    MissingState,
    #[error("unknown, expired or already used state")]
    UnknownState,
    #[error("the sign-in was started in another browser (login cookie missing or different)")]
    OtherBrowser,
    #[error("the sign-in took too long")]
    Expired,
    #[error("no authorization code in the callback")]
    MissingCode,
    #[error("the code could not be exchanged for tokens: {0}")]
    TokenExchange(String),
    #[error("the ID token was rejected: {0}")]
    BadIdToken(String),
    #[error("the identity provider sent unusable claims: {0}")]
    Claims(String),
    #[error("the email {0} is not verified by the identity provider")]
    UnverifiedEmail(String),
    #[error("the email {0} is not in a domain allowed to sign in (oidc.allowed_email_domains)")]
    DomainNotAllowed(String),
    #[error("{user} signed in with the email {email}, which belongs to another account ({owner})")]
    EmailConflict {
        user: String,
        email: String,
        owner: String,
    },
}

impl SignInError {
    /// What the person sees: plain words, no internals.
    pub fn user_message(&self) -> &'static str {
        match self {
            SignInError::ProviderDown(_) => {
                "Portcullis cannot reach your identity provider right now."
            }
            SignInError::Refused(_) => "Your identity provider did not sign you in.",
            SignInError::MissingState
            | SignInError::UnknownState
            | SignInError::OtherBrowser
            | SignInError::Expired
            | SignInError::MissingCode => {
                "This sign-in link is no longer valid (it was used already, expired, or was \
                 started in another browser)."
            }
            SignInError::TokenExchange(_) | SignInError::BadIdToken(_) => {
                "Your identity provider's answer could not be verified."
            }
            SignInError::Claims(_) => {
                "Your identity provider did not send what Portcullis needs about you. \
                 Ask your administrator to check the claims released to Portcullis."
            }
            SignInError::UnverifiedEmail(_) => {
                "Your identity provider has not verified your email address, so Portcullis \
                 cannot sign you in. Verify it with your identity provider, or ask your \
                 administrator."
            }
            SignInError::DomainNotAllowed(_) => {
                "Your email address is not in a domain that may use Portcullis. Ask your \
                 administrator."
            }
            SignInError::EmailConflict { .. } => {
                "This email belongs to another account in Portcullis; ask your administrator."
            }
        }
    }

    /// Whether the refusal came after the provider vouched for someone (a verified ID
    /// token): those are audited. The others (a made-up or replayed callback, an error in
    /// the callback's URL, a code the provider will not exchange, the provider down) can
    /// be caused by anyone at will, so they are counted, not audited one row each.
    pub fn is_attributable(&self) -> bool {
        matches!(
            self,
            SignInError::BadIdToken(_)
                | SignInError::Claims(_)
                | SignInError::UnverifiedEmail(_)
                | SignInError::DomainNotAllowed(_)
                | SignInError::EmailConflict { .. }
        )
    }

    /// The audit action of the refusal.
    pub fn audit_action(&self) -> &'static str {
        match self {
            SignInError::EmailConflict { .. } => "signin.email_conflict",
            _ => "signin.failure",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            SignInError::ProviderDown(_) => 502,
            SignInError::Refused(_)
            | SignInError::UnverifiedEmail(_)
            | SignInError::DomainNotAllowed(_) => 403,
            SignInError::EmailConflict { .. } => 409,
            SignInError::TokenExchange(_) | SignInError::BadIdToken(_) => 502,
            _ => 400,
        }
    }
}

/// A started sign-in: where to send the browser, and what to remember until it returns.
pub struct Started {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub struct Oidc {
    config: OidcConfig,
    /// `config.signing_algs`, parsed once.
    algs: Vec<CoreJwsSigningAlgorithm>,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
    cache: tokio::sync::Mutex<Option<(Instant, Arc<Metadata>)>>,
}

impl Oidc {
    /// `public_url` without a trailing slash; the redirect URI is `{public_url}/auth/callback`.
    pub fn new(config: OidcConfig, public_url: &str) -> anyhow::Result<Self> {
        let redirect = RedirectUrl::new(format!("{public_url}/auth/callback"))?;
        let algs = config
            .signing_algs
            .iter()
            .map(|a| {
                serde_json::from_value(Value::String(a.clone()))
                    .map_err(|_| anyhow::anyhow!("unknown signing algorithm {a:?}"))
            })
            .collect::<anyhow::Result<Vec<CoreJwsSigningAlgorithm>>>()?;
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would open the client to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            config,
            algs,
            redirect,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    pub fn issuer(&self) -> &str {
        self.config.issuer_url.trim_end_matches('/')
    }

    /// The provider's discovery document, fetched when missing or older than the TTL.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, SignInError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, m)) = cache.as_ref() {
            if at.elapsed() < METADATA_TTL {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer_url.clone())
            .map_err(|e| SignInError::ProviderDown(format!("bad issuer URL: {e}")))?;
        let m = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SignInError::ProviderDown(format!("discovery failed: {}", chain(&e))))?;
        let m = Arc::new(m);
        *cache = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    fn client(&self, m: &Metadata) -> OidcClient {
        Client::from_provider_metadata(
            m.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a sign-in: a fresh `state`, `nonce` and PKCE verifier, and the provider URL.
    /// With `max_age`, the provider must have authenticated the person at most that long
    /// ago (`Duration::ZERO`: now), asking them again if not.
    pub async fn start(&self, max_age: Option<Duration>) -> Result<Started, SignInError> {
        let m = self.metadata().await?;
        let client = self.client(&m);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if let Some(age) = max_age {
            req = req.set_max_age(age);
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(Started {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code, validates the ID token against `nonce`, reads missing claims
    /// from userinfo, and maps the claims to a [`Principal`]; with the ID token's
    /// `auth_time` (when the provider last authenticated the person), if it has one.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<(Principal, Option<Timestamp>), SignInError> {
        let m = self.metadata().await?;
        let client = self.client(&m);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::TokenExchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::TokenExchange(token_error(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SignInError::BadIdToken("the token response has no ID token".into()))?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(self.algs.clone());
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| SignInError::BadIdToken(chain(&e)))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| SignInError::BadIdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| SignInError::BadIdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| SignInError::BadIdToken(e.to_string()))?;
            if actual != *expected {
                return Err(SignInError::BadIdToken(
                    "the access token does not match the ID token's at_hash".into(),
                ));
            }
        }
        let auth_time = claims
            .auth_time()
            .map(|t| Timestamp::from_millis(t.timestamp_millis()));
        let mut all = match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(SignInError::Claims(
                    "the ID token claims are not an object".into(),
                ))
            }
        };
        let names = &self.config.claims;
        let wanted = [
            &names.email,
            &names.email_verified,
            &names.name,
            &names.groups,
            &names.manager,
        ];
        let missing = wanted.iter().any(|n| !all.contains_key(n.as_str()));
        if missing {
            // The email and whether it is verified go together: an email from userinfo is
            // verified only if userinfo says so.
            if !all.contains_key(&names.email) {
                all.remove(&names.email_verified);
            }
            if let Some(url) = m.userinfo_endpoint() {
                let extra = self
                    .userinfo(url.as_str(), tokens.access_token().secret())
                    .await?;
                if extra.get("sub") != all.get("sub") {
                    return Err(SignInError::Claims(
                        "userinfo is about another subject than the ID token".into(),
                    ));
                }
                for (k, v) in extra {
                    all.entry(k).or_insert(v);
                }
            }
        }
        let p = principal_from_claims(self.issuer(), names, &self.config.admin_groups, &all)?;
        admit(&self.config, &p)?;
        Ok((p, auth_time))
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<Map<String, Value>, SignInError> {
        let res = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| SignInError::ProviderDown(format!("userinfo: {}", chain(&e))))?;
        let status = res.status();
        if !status.is_success() {
            return Err(SignInError::Claims(format!("userinfo answered {status}")));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| SignInError::ProviderDown(format!("userinfo: {}", chain(&e))))?;
        match serde_json::from_slice(&body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(SignInError::Claims(
                "userinfo is not a JSON object (signed userinfo is not supported)".into(),
            )),
        }
    }

    /// Where to send the browser to sign out at the provider too, if it offers that.
    pub async fn end_session_url(&self, post_logout: &str) -> Option<String> {
        let m = self.metadata().await.ok()?;
        let end = m.additional_metadata().end_session_endpoint.as_deref()?;
        let mut url = openidconnect::url::Url::parse(end).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", post_logout);
        Some(url.to_string())
    }
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A token endpoint failure, without the response body (it could hold tokens).
fn token_error<RE: std::error::Error + 'static>(
    e: &RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut s = format!("the provider answered {}", r.error().as_ref());
            if let Some(d) = r.error_description() {
                s.push_str(": ");
                s.push_str(&truncate(d, 200));
            }
            s
        }
        RequestTokenError::Request(r) => format!("request failed: {}", chain(r)),
        RequestTokenError::Parse(_, _) => "the token response could not be parsed".into(),
        RequestTokenError::Other(o) => truncate(o, 200),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).chain(['…']).collect()
    }
}

/// Whether this person may sign in at all: a verified email (unless
/// `oidc.require_verified_email = false`) in an allowed domain (`oidc.allowed_email_domains`).
pub fn admit(config: &OidcConfig, p: &Principal) -> Result<(), SignInError> {
    if config.require_verified_email && !p.email_verified {
        return Err(SignInError::UnverifiedEmail(p.email.clone()));
    }
    if !config.email_domain_allowed(&p.email) {
        return Err(SignInError::DomainNotAllowed(p.email.clone()));
    }
    Ok(())
}

/// Maps verified claims to a person. Users are issuer + subject, never the email alone;
/// a manager given as a subject (no `@`) is qualified with the issuer the same way.
pub fn principal_from_claims(
    issuer: &str,
    names: &ClaimNames,
    admin_groups: &[String],
    claims: &Map<String, Value>,
) -> Result<Principal, SignInError> {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let subject = text(&names.user_id).ok_or_else(|| {
        SignInError::Claims(format!("no `{}` claim (the user id)", names.user_id))
    })?;
    let email = text(&names.email).ok_or_else(|| {
        SignInError::Claims(format!(
            "no `{}` claim: release the email to Portcullis",
            names.email
        ))
    })?;
    // `true`, or `"true"` from providers that send every claim as a string.
    let email_verified = match claims.get(&names.email_verified) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    let display_name = text(&names.name)
        .or_else(|| text("preferred_username"))
        .unwrap_or_else(|| email.clone());
    let groups: Vec<String> = match claims.get(&names.groups) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect(),
        Some(Value::String(g)) if !g.trim().is_empty() => vec![g.trim().to_owned()],
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(SignInError::Claims(format!(
                "the `{}` claim is not a list of group names",
                names.groups
            )))
        }
    };
    let manager = text(&names.manager).map(|m| {
        if m.contains('@') {
            m
        } else {
            format!("{issuer}|{m}")
        }
    });
    let is_admin = groups.iter().any(|g| admin_groups.contains(g));
    Ok(Principal {
        user_id: format!("{issuer}|{subject}"),
        email,
        email_verified,
        display_name,
        groups,
        manager,
        is_admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claims_map_to_a_principal() {
        let names = ClaimNames::default();
        let admins = vec!["aws-admins".to_owned()];
        let p = principal_from_claims(
            "https://idp",
            &names,
            &admins,
            &map(json!({"sub": "u1", "email": "a@x.com", "name": "A", "groups": ["eng", "aws-admins"], "manager": "b@x.com"})),
        )
        .unwrap();
        assert_eq!(p.user_id, "https://idp|u1");
        assert_eq!(p.groups, ["eng", "aws-admins"]);
        assert!(p.is_admin);
        assert_eq!(p.manager.as_deref(), Some("b@x.com"));

        // A manager given as a subject; one group as a string; no name.
        let p = principal_from_claims(
            "https://idp",
            &names,
            &admins,
            &map(json!({"sub": "u1", "email": "a@x.com", "preferred_username": "al", "groups": "eng", "manager": "u2"})),
        )
        .unwrap();
        assert_eq!(p.manager.as_deref(), Some("https://idp|u2"));
        assert_eq!(p.groups, ["eng"]);
        assert_eq!(p.display_name, "al");
        assert!(!p.is_admin);
    }

    fn oidc_config() -> OidcConfig {
        serde_json::from_value(json!({
            "issuer_url": "https://idp", "client_id": "c", "client_secret": "s"
        }))
        .unwrap()
    }

    #[test]
    fn only_verified_emails_in_allowed_domains_sign_in() {
        let names = ClaimNames::default();
        let claims = |verified: Value| {
            map(json!({"sub": "u1", "email": "a@Example.com", "email_verified": verified}))
        };
        let person =
            |v: Value| principal_from_claims("https://idp", &names, &[], &claims(v)).unwrap();
        assert!(person(json!(true)).email_verified);
        assert!(
            person(json!("true")).email_verified,
            "a string, as some providers send"
        );
        assert!(!person(json!(false)).email_verified);
        assert!(!person(json!("false")).email_verified);
        assert!(!person(json!(1)).email_verified);
        let absent = principal_from_claims(
            "https://idp",
            &names,
            &[],
            &map(json!({"sub": "u1", "email": "a@example.com"})),
        )
        .unwrap();
        assert!(!absent.email_verified, "absent is not verified");

        let mut config = oidc_config();
        assert!(config.require_verified_email, "on by default");
        assert!(admit(&config, &person(json!(true))).is_ok());
        let err = admit(&config, &person(json!(false))).unwrap_err();
        assert!(matches!(err, SignInError::UnverifiedEmail(_)), "{err}");
        assert_eq!(err.status(), 403);
        assert!(err.user_message().contains("not verified"));
        assert!(admit(&config, &absent).is_err());
        config.require_verified_email = false;
        assert!(admit(&config, &absent).is_ok());

        config.allowed_email_domains = vec!["corp.example".into()];
        let err = admit(&config, &person(json!(true))).unwrap_err();
        assert!(matches!(err, SignInError::DomainNotAllowed(_)), "{err}");
        assert_eq!(err.audit_action(), "signin.failure");
        config.allowed_email_domains.push("EXAMPLE.COM".into());
        assert!(admit(&config, &person(json!(true))).is_ok());

        // A configurable claim name.
        let renamed = ClaimNames {
            email_verified: "verified".into(),
            ..ClaimNames::default()
        };
        let p = principal_from_claims(
            "https://idp",
            &renamed,
            &[],
            &map(json!({"sub": "u1", "email": "a@example.com", "email_verified": true, "verified": false})),
        )
        .unwrap();
        assert!(!p.email_verified);
    }

    #[test]
    fn configurable_names_and_clear_refusals() {
        let names = ClaimNames {
            user_id: "oid".into(),
            groups: "roles".into(),
            ..ClaimNames::default()
        };
        let p = principal_from_claims(
            "https://idp",
            &names,
            &[],
            &map(json!({"sub": "pairwise", "oid": "object-1", "email": "a@x.com", "roles": ["r"]})),
        )
        .unwrap();
        assert_eq!(p.user_id, "https://idp|object-1");
        assert_eq!(p.groups, ["r"]);

        let err = principal_from_claims("i", &names, &[], &map(json!({"oid": "1"}))).unwrap_err();
        assert!(err.to_string().contains("`email`"), "{err}");
        let err = principal_from_claims(
            "i",
            &ClaimNames::default(),
            &[],
            &map(json!({"sub": "1", "email": "a@x.com", "groups": {"a": 1}})),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a list"), "{err}");
    }
}

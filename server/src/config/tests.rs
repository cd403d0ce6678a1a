#![allow(clippy::result_large_err)] // figment::Jail's closures return figment's large error

//! Configuration: loading, validation, and what each setting turns into.

use super::oidc::{default_scopes, default_signing_algs};
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
fn demo_refuses_an_oidc_section() {
    let mut c = serve_config();
    c.public_url = None;
    c.database_url = None;
    let err = c.validate(Mode::Demo).unwrap_err().to_string();
    assert!(err.contains("refuses an [oidc] section"), "{err}");
    c.oidc = None;
    assert!(c.validate(Mode::Demo).is_ok());
}

#[test]
fn oidc_identity_settings() {
    // On by default, whether from the file or not.
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "p.toml",
            r#"
[oidc]
issuer_url = "https://idp.example.com"
client_id = "c"
client_secret = "s"
"#,
        )?;
        let c = Config::load(Some(Path::new("p.toml"))).unwrap();
        let o = c.oidc.unwrap();
        assert!(o.require_verified_email);
        assert!(o.allowed_email_domains.is_empty());
        assert_eq!(o.claims.email_verified, "email_verified");
        jail.set_env("PORTCULLIS_OIDC__REQUIRE_VERIFIED_EMAIL", "false");
        jail.set_env(
            "PORTCULLIS_OIDC__ALLOWED_EMAIL_DOMAINS",
            "example.com, Corp.example",
        );
        jail.set_env("PORTCULLIS_OIDC__CLAIMS__EMAIL_VERIFIED", "verified");
        let o = Config::load(Some(Path::new("p.toml")))
            .unwrap()
            .oidc
            .unwrap();
        assert!(!o.require_verified_email);
        assert_eq!(o.allowed_email_domains, ["example.com", "Corp.example"]);
        assert_eq!(o.claims.email_verified, "verified");
        assert!(o.email_domain_allowed("a@EXAMPLE.com"));
        assert!(o.email_domain_allowed("b@corp.example"));
        assert!(!o.email_domain_allowed("a@eu.example.com"), "no subdomains");
        assert!(!o.email_domain_allowed("a@example.com.evil"));
        assert!(!o.email_domain_allowed("example.com"));
        assert!(!o.email_domain_allowed("@example.com"));
        Ok(())
    });
    let mut c = serve_config();
    c.oidc.as_mut().unwrap().allowed_email_domains = vec!["@example.com".into()];
    let err = c.validate(Mode::Serve).unwrap_err().to_string();
    assert!(err.contains("ALLOWED_EMAIL_DOMAINS"), "{err}");
}

#[test]
fn public_origin_is_what_browsers_send() {
    let mut c = Config::default();
    assert_eq!(c.public_origin().as_deref(), Some("http://127.0.0.1:3000"));
    c.public_url = Some("https://Access.Example.com:443/portal/".into());
    assert_eq!(
        c.public_origin().as_deref(),
        Some("https://access.example.com")
    );
    c.public_url = Some("https://access.example.com:8443".into());
    assert_eq!(
        c.public_origin().as_deref(),
        Some("https://access.example.com:8443")
    );
    c.public_url = Some("not a url".into());
    assert_eq!(c.public_origin(), None);
}

#[test]
fn serve_names_what_is_missing() {
    let err = Config::default()
        .validate(Mode::Serve)
        .unwrap_err()
        .to_string();
    assert!(err.contains("PORTCULLIS_DATABASE_URL"), "{err}");
    assert!(err.contains("PORTCULLIS_OIDC__ISSUER_URL"), "{err}");
    assert!(err.contains("PORTCULLIS_AUDIT__KEY"), "{err}");
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
            require_verified_email: true,
            allowed_email_domains: vec![],
        }),
        audit: AuditConfig {
            key: Some(Secret::new("0f".repeat(32))),
            ..AuditConfig::default()
        },
        ..Config::default()
    }
}

#[test]
fn serve_refuses_a_short_or_missing_audit_key() {
    let mut c = serve_config();
    c.audit.key = None;
    let err = c.validate(Mode::Serve).unwrap_err().to_string();
    assert!(err.contains("PORTCULLIS_AUDIT__KEY"), "{err}");
    c.audit.key = Some(Secret::new("0f".repeat(31)));
    let err = c.validate(Mode::Serve).unwrap_err().to_string();
    assert!(err.contains("at least 32"), "{err}");
    // Demo mode has its own key, but a configured one must still be good.
    let mut d = Config::default();
    assert!(d.validate(Mode::Demo).is_ok());
    d.audit.key = Some(Secret::new("not hex"));
    assert!(d.validate(Mode::Demo).is_err());
}

#[test]
fn audit_settings_from_environment() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PORTCULLIS_AUDIT__KEY", "ab".repeat(32));
        jail.set_env("PORTCULLIS_AUDIT__VERIFY_INTERVAL_SECS", "600");
        let c = Config::load(None).unwrap();
        assert_eq!(c.audit.key(Mode::Serve).unwrap().expose(), &[0xab; 32]);
        assert_eq!(c.upkeep().verify_audit_every, Duration::from_secs(600));
        assert!(!format!("{c:?}").contains(&"ab".repeat(32)));
        Ok(())
    });
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
        assert!(
            upkeep.owns("arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef")
        );
        Ok(())
    });
}

/// The README's example of approval in steps, read as written there.
const STEPS: &str = r#"
[[entitlements.policy.steps]]
name = "Manager"
approvers = { manager = true }
[[entitlements.policy.steps]]
name = "Cloud approvers"
approvers = { groups = ["cloud-approvers"], users = ["dana@example.com"] }
count = 2
"#;

#[test]
fn approval_steps_from_the_file() {
    let with_steps = ENTITLEMENTS.replace(
        "approvers = { manager = true, groups = [\"cloud-approvers\"] }\n",
        "",
    ) + STEPS;
    figment::Jail::expect_with(|jail| {
        jail.create_file("e.toml", &with_steps)?;
        let c = Config::load(Some(Path::new("e.toml"))).map_err(|e| e.to_string())?;
        assert!(c.validate(Mode::Demo).is_ok());
        let steps = c.entitlements[0].policy.approval_steps();
        assert_eq!(steps.len(), 2);
        assert!(steps[0].approvers.manager);
        assert_eq!(steps[1].count, 2);
        assert_eq!(steps[1].approvers.users, ["dana@example.com"]);
        Ok(())
    });
    // Steps and the one-step keys together are refused, as is a misspelt step key.
    for (toml, want) in [
        (format!("{ENTITLEMENTS}{STEPS}"), "not both"),
        (
            with_steps.replace("count = 2", "quorum = 2"),
            "unknown field: found `quorum`",
        ),
    ] {
        figment::Jail::expect_with(|jail| {
            jail.create_file("e.toml", &toml)?;
            let err = match Config::load(Some(Path::new("e.toml"))) {
                Err(e) => format!("{e:#}"),
                Ok(c) => format!("{:#}", c.validate(Mode::Demo).unwrap_err()),
            };
            assert!(err.contains(want), "{err}");
            Ok(())
        });
    }
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

#[test]
fn backoff_is_capped_exponential() {
    let s = WorkerSettings {
        backoff_base_ms: 1000,
        backoff_cap_secs: 60,
        ..Default::default()
    };
    assert_eq!(s.backoff(1), Duration::from_secs(1));
    assert_eq!(s.backoff(2), Duration::from_secs(2));
    assert_eq!(s.backoff(5), Duration::from_secs(16));
    assert_eq!(s.backoff(7), Duration::from_secs(60));
    assert_eq!(s.backoff(500), Duration::from_secs(60));
}

#[test]
fn retries_are_jittered_within_the_upper_half() {
    let s = WorkerSettings {
        backoff_base_ms: 1000,
        backoff_cap_secs: 60,
        ..Default::default()
    };
    let delays: Vec<Duration> = (0..200).map(|_| s.retry_delay(5)).collect();
    assert!(delays
        .iter()
        .all(|d| (Duration::from_secs(8)..=Duration::from_secs(16)).contains(d)));
    let distinct: std::collections::HashSet<_> = delays.iter().collect();
    assert!(
        distinct.len() > 100,
        "spread out: {} distinct",
        distinct.len()
    );
    assert!(
        s.retry_delay(500) <= Duration::from_secs(60),
        "still capped"
    );
}

#[test]
fn database_url_hides_password() {
    let url = DatabaseUrl::new("postgres://portcullis:s3cret@db.internal:5432/portcullis");
    assert_eq!(
        format!("{url:?}"),
        "DatabaseUrl(postgres://portcullis:***@db.internal:5432/portcullis)"
    );
    assert!(!format!("{url}").contains("s3cret"));
    let plain = DatabaseUrl::new("sqlite://portcullis.db?mode=rwc");
    assert_eq!(plain.to_string(), "sqlite://portcullis.db?mode=rwc");
}

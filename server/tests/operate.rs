//! The operator commands, run as the built binary: `portcullis check-config` against the
//! real peers (PostgreSQL or SQLite, oidc-provider, moto, maildev) and against peers that
//! are not there, `portcullis migrate`, `portcullis version`.

mod common;
mod mail_peer;
mod oidc_peer;

use common::cli::*;
use common::moto::Moto;
use common::peers::free_port;
use mail_peer::MailDev;
use oidc_peer::Provider;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Runs the binary with only these variables (and moto's static credentials).
fn portcullis(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let aws = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    run_portcullis(
        args,
        aws.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain(env.iter().map(|(k, v)| (*k, v.clone()))),
    )
}

/// A production configuration, each peer at the given address.
fn serve_env(db: &str, issuer: &str, aws: &str, smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_DATABASE_URL", db.to_owned()),
        ("PORTCULLIS_PUBLIC_URL", oidc_peer::PUBLIC.to_owned()),
        ("PORTCULLIS_AUDIT__KEY", KEY.to_owned()),
        ("PORTCULLIS_OIDC__ISSUER_URL", issuer.to_owned()),
        (
            "PORTCULLIS_OIDC__CLIENT_ID",
            oidc_peer::CLIENT_ID.to_owned(),
        ),
        (
            "PORTCULLIS_OIDC__CLIENT_SECRET",
            oidc_peer::CLIENT_SECRET.to_owned(),
        ),
        ("PORTCULLIS_AWS__ENDPOINT_URL", aws.to_owned()),
        ("PORTCULLIS_AWS__REGION", "us-east-1".to_owned()),
        ("PORTCULLIS_AWS__CALL_TIMEOUT_SECS", "3".to_owned()),
        ("PORTCULLIS_SMTP__HOST", "127.0.0.1".to_owned()),
        ("PORTCULLIS_SMTP__PORT", smtp_port.to_string()),
        ("PORTCULLIS_SMTP__TLS", "none".to_owned()),
        ("PORTCULLIS_SMTP__FROM", "portcullis@example.com".to_owned()),
    ]
}

fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(what)))
        .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
}

#[test]
fn version_names_the_build_and_its_schema() {
    let (code, out, _) = portcullis(&["version"], &[]);
    assert_eq!(code, 0);
    let latest = portcullis::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("portcullis {} (schema {latest})", env!("CARGO_PKG_VERSION"))
    );
    // The tests' build carries no site (`.ci/release` builds the one that does; the test
    // command checks that binary's line).
    assert_eq!(
        lines.next().unwrap(),
        "site: not built in (read from site_root at start)"
    );
}

/// Every peer there: each check says what it found, and the command passes. Then
/// `migrate` creates the schema the check said was missing, and says so once.
#[tokio::test]
async fn check_config_reaches_every_peer_and_migrate_creates_the_schema() {
    let (moto, provider, mail) = tokio::join!(Moto::start(), Provider::start(), MailDev::start());
    let dir = tempfile::TempDir::new().unwrap();
    let db = format!("sqlite://{}/p.db?mode=rwc", dir.path().display());
    let env = serve_env(&db, &provider.issuer, &moto.url, mail.smtp_port);

    let (code, out, err) = portcullis(&["check-config"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(line(&out, "configuration").starts_with("ok"), "{out}");
    assert!(line(&out, "audit key").starts_with("ok"), "{out}");
    let database = line(&out, "database");
    assert!(database.contains("empty"), "{out}");
    let openid = line(&out, "OpenID");
    assert!(
        openid.contains(&provider.issuer) && openid.contains("sign-in at http://127.0.0.1"),
        "{out}"
    );
    let aws = line(&out, "AWS");
    assert!(
        aws.starts_with("ok") && aws.contains("instance arn:aws:sso:::instance/"),
        "{out}"
    );
    assert!(
        line(&out, "SMTP").contains(&format!("127.0.0.1:{}", mail.smtp_port)),
        "{out}"
    );
    assert!(out.contains("all 7 checks passed"), "{out}");
    // Nothing was sent.
    assert!(mail.emails().await.is_empty());
    // The secrets are nowhere in what it printed.
    assert!(!out.contains(KEY) && !err.contains(KEY));
    assert!(!out.contains(oidc_peer::CLIENT_SECRET) && !err.contains(oidc_peer::CLIENT_SECRET));

    assert!(line(&out, "backstop").contains("off"), "{out}");
    // The backstop on: its schedule group must exist.
    let mut with_backstop = env.clone();
    with_backstop.push(("PORTCULLIS_AWS__BACKSTOP", "scheduler".into()));
    with_backstop.push((
        "PORTCULLIS_AWS__BACKSTOP_ROLE_ARN",
        "arn:aws:iam::123456789012:role/backstop".into(),
    ));
    let (code, out, _) = portcullis(&["check-config"], &with_backstop);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "backstop").starts_with("FAIL")
            && line(&out, "backstop").contains("\"portcullis\" cannot be read"),
        "{out}"
    );
    common::moto::set_test_credentials();
    aws_sdk_scheduler::Client::new(&common::moto::sdk_for(&moto).await)
        .create_schedule_group()
        .name("portcullis")
        .send()
        .await
        .unwrap();
    // The group is there, the role is not.
    let (code, out, _) = portcullis(&["check-config"], &with_backstop);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "backstop").starts_with("FAIL")
            && line(&out, "backstop")
                .contains("the role arn:aws:iam::123456789012:role/backstop does not exist"),
        "{out}"
    );
    aws_sdk_iam::Client::new(&common::moto::sdk_for(&moto).await)
        .create_role()
        .role_name("backstop")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"scheduler.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let (code, out, _) = portcullis(&["check-config"], &with_backstop);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "backstop").contains("schedule group portcullis found")
            && line(&out, "backstop").contains("role/backstop, which exists"),
        "{out}"
    );

    let (code, out, err) = portcullis(&["migrate"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("schema created"), "{out}");
    let (code, out, _) = portcullis(&["migrate"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
    let (code, out, _) = portcullis(&["check-config"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "database").contains("at this build's schema"),
        "{out}"
    );
}

/// No peer there: every check that needs one fails with its cause, in bounded time, and
/// the command exits 1.
#[tokio::test]
async fn check_config_fails_each_peer_that_is_not_there() {
    let nothing = |_| format!("http://127.0.0.1:{}", free_port());
    let db = format!(
        "postgres://portcullis:secret-pw@127.0.0.1:{}/p",
        free_port()
    );
    let env = serve_env(&db, &nothing(()), &nothing(()), free_port());
    let started = std::time::Instant::now();
    let (code, out, err) = portcullis(&["check-config"], &env);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(line(&out, "configuration").starts_with("ok"), "{out}");
    for what in ["database", "OpenID", "AWS", "SMTP"] {
        assert!(line(&out, what).starts_with("FAIL"), "{what}: {out}");
    }
    // Each says why, not only that it timed out.
    assert!(
        line(&out, "AWS").contains("cannot reach IAM Identity Center (ListInstances)"),
        "{out}"
    );
    assert!(line(&out, "OpenID").contains("Connection refused"), "{out}");
    // The database password is never printed.
    assert!(
        !out.contains("secret-pw") && !err.contains("secret-pw"),
        "{out}\n{err}"
    );
    assert!(line(&out, "database").contains("portcullis:***@"), "{out}");
    assert!(out.contains("4 of 7 checks failed"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));

    // An invalid configuration: said first, and nothing else is tried.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "PORTCULLIS_AUDIT__KEY");
    let (code, out, _) = portcullis(&["check-config"], &bad);
    assert_eq!(code, 1);
    assert!(line(&out, "configuration").starts_with("FAIL"), "{out}");
    assert!(out.contains("PORTCULLIS_AUDIT__KEY (audit.key"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with("ok"))
            .count(),
        1
    );
}

/// A database a newer build migrated: `check-config` says so and `migrate` refuses,
/// changing nothing.
#[tokio::test]
async fn a_database_newer_than_the_build_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = format!("sqlite://{}/p.db?mode=rwc", dir.path().display());
    let env = vec![
        ("PORTCULLIS_DATABASE_URL", db.clone()),
        ("PORTCULLIS_AUDIT__KEY", KEY.to_owned()),
    ];
    let (code, out, err) = portcullis(&["migrate"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let store = portcullis::store::Store::connect(
        &portcullis::store::DatabaseUrl::new(db),
        portcullis::config::AuditKey::demo(),
    )
    .await
    .unwrap();
    let newer = portcullis::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap()
        + 1;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES ($1, 'from a newer build', CURRENT_TIMESTAMP, TRUE, x'00', 1)",
    )
    .bind(newer)
    .execute(store.pool())
    .await
    .unwrap();
    let (code, out, err) = portcullis(&["migrate"], &env);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&format!("schema {newer}, newer than this build's")),
        "{err}"
    );
    assert_eq!(
        store.schema().await.unwrap().applied,
        Some(newer),
        "unchanged"
    );
}

/// `log.format = "json"`: every line the server writes is one JSON object, and the lines
/// of a request carry its id (here a load balancer's), as does the reference of an
/// internal error met while answering it. (And `/metrics` is served on its own address.)
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    use std::io::BufRead;
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("demo.db");
    let metrics_port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("demo")
        .env_clear()
        .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
        .env(
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("PORTCULLIS_LOG__FORMAT", "json")
        .env("PORTCULLIS_LOG__LEVEL", "info")
        .env(
            "PORTCULLIS_METRICS__LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _peer = common::peers::Peer::new(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a log line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        v
    };
    // Up: the line that says where. The demo's simulated backstop is on before.
    let mut backstop_on = false;
    let url = loop {
        let v = next();
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        backstop_on |= message.contains("AWS-side backstop on: a simulated schedule");
        if let Some(at) = message.find("listening on ") {
            break message[at + "listening on ".len()..].trim().to_owned();
        }
    };
    assert!(backstop_on, "demo mode always runs the simulated backstop");
    // Metrics on their own address, not on the portal's.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("\nportcullis_database_up 1\n"), "{text}");
    let on_portal = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert!(!on_portal
        .text()
        .await
        .unwrap()
        .contains("portcullis_database_up"));
    // The sessions table gone: the sign-in fails inside, and says so in the log.
    let store = portcullis::store::Store::connect(
        &portcullis::store::DatabaseUrl::new(format!("sqlite://{}", db.display())),
        portcullis::config::AuditKey::demo(),
    )
    .await
    .unwrap();
    sqlx::query("DROP TABLE web_session")
        .execute(store.pool())
        .await
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{url}/demo/login"))
        .header("origin", &url)
        .header("sec-fetch-site", "same-origin")
        .header("x-request-id", "lb-trace-42")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("persona=alice&return_to=%2F")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "lb-trace-42");
    assert!(res.text().await.unwrap().contains("lb-trace-42"));
    let error = loop {
        let v = next();
        if v["level"] == "ERROR" {
            break v;
        }
    };
    assert_eq!(error["span"]["id"], "lb-trace-42", "{error}");
    assert_eq!(error["span"]["path"], "/demo/login", "{error}");
    assert_eq!(error["fields"]["reference"], "lb-trace-42", "{error}");
    assert!(
        error["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("web_session")),
        "the cause is in the log: {error}"
    );
}

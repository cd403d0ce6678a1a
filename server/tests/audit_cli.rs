//! Invariant 6 from the command line: `portcullis audit verify` (exit codes, what it
//! prints) and `portcullis audit export` (every matching event, in both formats), run as
//! the built binary against a migrated SQLite database.

mod common;

use common::cli::*;
use common::*;
use portcullis::store::{AuditKey, DatabaseUrl, Store};

struct Cli {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    store: Store,
}

const KEY_HEX: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// A migrated SQLite database with some events, and a configuration file naming it.
async fn cli_setup() -> Cli {
    sqlx::any::install_default_drivers();
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("cli.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let key = AuditKey::from_hex(KEY_HEX).unwrap();
    let store = Store::connect(&DatabaseUrl::new(url.clone()), key)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    portcullis::seed::seed_demo(&store, T0).await.unwrap();
    write_events(&store, 1100, "cli.case", "-1+1", T0).await;
    write_events(&store, 20, "cli.other", "y", T0).await;
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!("database_url = \"{url}\"\n\n[audit]\nkey = \"{KEY_HEX}\"\n"),
    )
    .unwrap();
    Cli { dir, config, store }
}

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_portcullis(args, env.iter().copied())
}

#[tokio::test]
async fn cli_verify_exit_codes_and_output() {
    let cli = cli_setup().await;
    let config = cli.config.to_str().unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_event")
        .fetch_one(cli.store.pool())
        .await
        .unwrap();

    let (code, out, err) = portcullis(&["audit", "verify", "--config", config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("chain verified: {n} events"));

    // Another key (the environment wins over the file): the first event fails.
    let other = "ab".repeat(32);
    let (code, out, _) = portcullis(
        &["audit", "verify", "--config", config],
        &[("PORTCULLIS_AUDIT__KEY", &other)],
    );
    assert_eq!(code, 1);
    assert_eq!(out.trim(), "chain broken at event 1");

    // One event edited: its number, exit 1.
    sqlx::query("UPDATE audit_event SET detail = 'edited' WHERE seq = 7")
        .execute(cli.store.pool())
        .await
        .unwrap();
    let (code, out, err) = portcullis(&["audit", "verify", "--config", config], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.trim(), "chain broken at event 7");
    assert!(err.contains("event 7 does not verify"), "{err}");

    // Usage and connection problems: 2.
    for (args, env, says) in [
        (vec!["audit"], vec![], "verify or export"),
        (
            vec!["audit", "verify", "--bogus"],
            vec![],
            "unknown argument",
        ),
        (
            vec!["audit", "verify", "--config", "/nonexistent.toml"],
            vec![],
            "does not exist",
        ),
        (
            vec!["audit", "verify", "--config", config],
            vec![("PORTCULLIS_AUDIT__KEY", "abcd")],
            "at least 32",
        ),
        (
            vec!["audit", "verify", "--config", config],
            vec![("PORTCULLIS_DATABASE_URL", "sqlite:///nonexistent/dir/x.db")],
            "database",
        ),
    ] {
        let (code, _, err) = portcullis(&args, &env);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    drop(cli.dir);
}

#[tokio::test]
async fn cli_export_writes_every_matching_audit_event() {
    let cli = cli_setup().await;
    let config = cli.config.to_str().unwrap();
    let (code, out, err) = portcullis(
        &[
            "audit", "export", "--config", config, "--action", "cli.case",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 1100, "header and every event");
    assert!(lines[0].starts_with("seq,at,"));
    assert!(lines[1].contains(",\"'-1+1\","), "{}", lines[1]);

    let (code, out, err) = portcullis(
        &[
            "audit", "export", "--config", config, "--format", "jsonl", "--person", "alice",
            "--action", "cli.",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1120);
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(events[0]["detail"], "-1+1");
    assert_eq!(events[1119]["action"], "cli.other");

    let (code, _, err) = portcullis(&["audit", "export", "--format", "xml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("csv or jsonl"), "{err}");
}

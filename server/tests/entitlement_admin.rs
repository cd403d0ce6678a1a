//! The admin page for entitlements (issue #13) and entitlement versions (issue #14, item
//! 7), on SQLite and PostgreSQL: every change of a configured entitlement keeps a version
//! (created, updated, retired, restored; nothing when it did not change) with the
//! configuration's TOML and what changed; the page shows each entitlement's targets, who
//! may ask, who decides, its limits, live grants and newest requests, to admins only; and
//! `entitlements export` reads back as the same configuration.

mod common;

use app::domain::Policy;
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::portal::apply_configured_entitlements as apply;
use portcullis::seed::{PS_READONLY, SANDBOX};
use portcullis::store;
use std::time::Duration;

both!(
    every_change_of_an_entitlement_keeps_a_version,
    the_entitlements_page_shows_use_and_history_to_admins_only,
);

fn seeded() -> Vec<String> {
    portcullis::seed::entitlements()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn configured(max_hours: u64) -> app::domain::Entitlement {
    entitlement(
        "versioned",
        SANDBOX,
        PS_READONLY,
        Policy {
            auto_approve: true,
            max_duration_secs: max_hours * 3600,
            ..policy()
        },
    )
}

async fn versions(env: &TestEnv) -> Vec<store::EntitlementVersionRow> {
    let mut conn = env.store.conn().await.unwrap();
    store::entitlement_versions(&mut conn, "versioned")
        .await
        .unwrap()
}

async fn every_change_of_an_entitlement_keeps_a_version(b: Backend) {
    let env = TestEnv::new(b).await;
    apply(&env.store, &[configured(4)], &seeded(), env.now())
        .await
        .unwrap();
    let v = versions(&env).await;
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].version, v[0].change.as_str()), (1, "created"));
    assert_eq!(v[0].changed_by, "the configuration file");
    assert!(
        v[0].definition.contains("max_duration_secs = 14400"),
        "{}",
        v[0].definition
    );

    // The same configuration again: no new version.
    env.advance(Duration::from_secs(60));
    apply(&env.store, &[configured(4)], &seeded(), env.now())
        .await
        .unwrap();
    assert_eq!(versions(&env).await.len(), 1);

    // Changed, dropped, declared again.
    apply(&env.store, &[configured(8)], &seeded(), env.now())
        .await
        .unwrap();
    apply(&env.store, &[], &seeded(), env.now()).await.unwrap();
    apply(&env.store, &[], &seeded(), env.now()).await.unwrap();
    apply(&env.store, &[configured(8)], &seeded(), env.now())
        .await
        .unwrap();
    let v = versions(&env).await;
    let changes: Vec<(i64, &str)> = v.iter().map(|v| (v.version, v.change.as_str())).collect();
    assert_eq!(
        changes,
        [
            (4, "restored"),
            (3, "retired"),
            (2, "updated"),
            (1, "created")
        ]
    );
    assert!(v[2].definition.contains("max_duration_secs = 28800"));
    assert_eq!(v[1].definition, v[2].definition, "retiring changes no line");

    // The page shows the update as the one line that changed, with its neighbours.
    let page = env
        .portal
        .admin_entitlements(&person("dana"))
        .await
        .unwrap();
    let e = page.iter().find(|e| e.id == "versioned").unwrap();
    assert_eq!(e.versions.len(), 4);
    let update = &e.versions[2];
    assert_eq!((update.version, update.change.as_str()), (2, "updated"));
    let changed: Vec<(&str, &str)> = update
        .diff
        .iter()
        .filter(|l| l.kind != "same")
        .map(|l| (l.kind.as_str(), l.text.as_str()))
        .collect();
    assert_eq!(
        changed,
        [
            ("removed", "max_duration_secs = 14400"),
            ("added", "max_duration_secs = 28800"),
        ]
    );
    assert!(e.versions[1].diff.is_empty(), "retired: nothing changed");
    // The first version shows every line as new, and reads back as the entitlement.
    assert!(e.versions[3].diff.iter().all(|l| l.kind == "added"));
}

async fn the_entitlements_page_shows_use_and_history_to_admins_only(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    apply(&env.store, &[configured(4)], &seeded(), env.now())
        .await
        .unwrap();
    let w = env.worker();
    let first = env.ask(&alice, "versioned", "1h").await;
    env.settle(&w).await;
    env.advance(Duration::from_secs(5));
    let second = env.ask(&alice, "versioned", "2h").await;
    env.settle(&w).await;

    for nobody in [&alice, &bob] {
        let refused = env.portal.admin_entitlements(nobody).await.unwrap_err();
        assert!(matches!(refused, AppError::Forbidden(_)), "{refused:?}");
    }
    let page = env.portal.admin_entitlements(&dana).await.unwrap();
    let e = page.iter().find(|e| e.id == "versioned").unwrap();
    assert_eq!(e.live_grants, 2);
    let recent: Vec<&str> = e.recent.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(recent, [second.as_str(), first.as_str()], "newest first");
    assert!(e.recent.iter().all(|r| r.requester == alice.display_name));
    assert_eq!(e.eligible, "groups engineering");
    assert!(
        e.approval.to_lowercase().contains("automatic"),
        "{}",
        e.approval
    );
    assert!(
        e.limits.iter().any(|l| l.starts_with("Up to 4h at a time")),
        "{:?}",
        e.limits
    );
    assert_eq!(e.targets.len(), 1);
    assert!(e.targets[0].scope.contains(SANDBOX), "{:?}", e.targets);
    assert!(e.retired_at.is_none());
    // Live ones first: the demo's retired entitlement comes last.
    assert!(page.last().unwrap().retired_at.is_some());
    assert!(page.iter().any(|e| e.id == "prod-admin"
        && e.limits
            .iter()
            .any(|l| l.contains("ticket is required, like CHG-10234"))));
}

/// `portcullis entitlements export`, run as an operator would against a database with the
/// demo catalog and one configured entitlement: the output read back as a configuration
/// file declares exactly the live entitlements (not the retired one); a database that is
/// not there is a clear error with exit code 2.
#[tokio::test]
async fn entitlements_export_reads_back_as_the_same_configuration() {
    use common::cli::run_portcullis;
    use portcullis::store::{AuditKey, DatabaseUrl, Store};
    sqlx::any::install_default_drivers();
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("export.db").display()
    );
    let store = Store::connect(&DatabaseUrl::new(url.clone()), AuditKey::demo())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    portcullis::seed::seed_demo(&store, T0).await.unwrap();
    apply(&store, &[configured(6)], &seeded(), T0)
        .await
        .unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, format!("database_url = \"{url}\"\n")).unwrap();

    let env = [("PORTCULLIS_AUDIT__KEY", "ab".repeat(32))];
    let (code, out, err) = run_portcullis(
        &[
            "entitlements",
            "export",
            "--config",
            config.to_str().unwrap(),
        ],
        env.clone(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("# 7 live entitlement(s), exported by portcullis"),
        "{out}"
    );
    let exported = dir.path().join("exported.toml");
    std::fs::write(&exported, &out).unwrap();
    let read_back = portcullis::config::Config::load(Some(&exported))
        .unwrap()
        .entitlements;
    let mut conn = store.conn().await.unwrap();
    let retired = portcullis::store::retired_entitlements(&mut conn)
        .await
        .unwrap();
    let live: Vec<_> = portcullis::store::all_entitlements(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !retired.contains_key(&e.id))
        .collect();
    assert_eq!(read_back, live);
    assert!(read_back.iter().any(|e| e.id == "versioned"));
    assert!(!read_back.iter().any(|e| e.id == "legacy-warehouse"));

    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}/missing.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, _, err) = run_portcullis(
        &[
            "entitlements",
            "export",
            "--config",
            config.to_str().unwrap(),
        ],
        env,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

//! What the configuration file puts into the store: entitlements.
//! Every test runs on SQLite and on PostgreSQL.

mod common;

use app::ssr::Portal;
use common::*;
use portcullis::seed::{PS_READONLY, SANDBOX};

both!(entitlements_from_the_configuration);

/// `[[entitlements]]` from the configuration: created once, left alone when unchanged,
/// updated when changed, each change audited; Alice can ask for it right away.
async fn entitlements_from_the_configuration(b: Backend) {
    use portcullis::portal::apply_configured_entitlements as apply;
    let env = TestEnv::new(b).await;
    let mut e = entitlement(
        "config-readonly",
        SANDBOX,
        PS_READONLY,
        portcullis_policy_auto(),
    );
    assert_eq!(
        apply(&env.store, std::slice::from_ref(&e), &seeded(), env.now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        apply(&env.store, std::slice::from_ref(&e), &seeded(), env.now())
            .await
            .unwrap(),
        0
    );
    e.name = "Sandbox read-only (renamed)".into();
    assert_eq!(
        apply(&env.store, std::slice::from_ref(&e), &seeded(), env.now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(env.audit_with("entitlement.created").await.len(), 1);
    assert_eq!(env.audit_with("entitlement.updated").await.len(), 1);
    let cards = env
        .portal
        .eligible_entitlements(&person("alice"))
        .await
        .unwrap();
    assert!(
        cards
            .iter()
            .any(|c| c.name == "Sandbox read-only (renamed)"),
        "{cards:?}"
    );
    let rid = env.ask(&person("alice"), "config-readonly", "1h").await;
    assert_eq!(env.request_status(&rid).await, "approved");
}

/// The demo catalog's entitlements, seeded in every test database: kept, not retired.
fn seeded() -> Vec<String> {
    portcullis::seed::entitlements()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn portcullis_policy_auto() -> app::domain::Policy {
    app::domain::Policy {
        auto_approve: true,
        ..policy()
    }
}

/// Entitlements written as TOML (`entitlements export`, and each kept version) read back
/// as the same configuration. The demo catalog has every policy shape: automatic, manager
/// with a fallback, groups with a ticket format and an escalation, steps, break-glass, an
/// OU target, and the retired one.
#[test]
fn exported_entitlements_read_back_the_same() {
    use portcullis::config::{entitlement_toml, entitlements_toml, Config};
    let mut all = portcullis::seed::entitlements();
    all.push(portcullis::seed::retired_entitlement());
    let text = entitlements_toml(&all).unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("exported.toml");
    std::fs::write(&file, &text).unwrap();
    assert_eq!(
        Config::load(Some(&file)).unwrap().entitlements,
        all,
        "{text}"
    );
    // One entitlement alone is a file of one table.
    let one = entitlement_toml(&all[0]).unwrap();
    assert_eq!(one.matches("[[entitlements]]").count(), 1);
    assert!(one.contains(&format!("id = \"{}\"", all[0].id)), "{one}");
}

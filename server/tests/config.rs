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

//! Entitlements declared in the configuration file (`[[entitlements]]`), applied at start.

use super::*;

/// Creates or updates the entitlements the configuration declares, auditing each change.
/// Entitlements no longer declared stay (their requests and grants refer to them).
pub async fn apply_configured_entitlements(
    store: &Store,
    entitlements: &[Entitlement],
    now: Timestamp,
) -> anyhow::Result<usize> {
    let mut tx = store.begin().await?;
    let mut changed = 0;
    for e in entitlements {
        let existing = store::get_entitlement(&mut tx, &e.id).await?;
        if existing.as_ref() == Some(e) {
            continue;
        }
        store::upsert_entitlement(&mut tx, e, now).await?;
        audit::audit(
            &mut tx,
            &audit::Actor::system(),
            audit::Event {
                action: if existing.is_some() {
                    "entitlement.updated"
                } else {
                    "entitlement.created"
                },
                person_id: None,
                subject_kind: "entitlement",
                subject_id: &e.id,
                entitlement_id: Some(&e.id),
                detail: format!(
                    "from the configuration file: {} ({} targets)",
                    e.name,
                    e.targets.len()
                ),
            },
            now,
        )
        .await?;
        changed += 1;
    }
    tx.commit().await?;
    if changed > 0 {
        tracing::info!(changed, "entitlements from the configuration applied");
    }
    Ok(changed)
}

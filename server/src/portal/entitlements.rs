//! Entitlements declared in the configuration file (`[[entitlements]]`), applied at start.

use super::*;

/// Who changes an entitlement declared in the configuration, as its versions say.
pub const FROM_FILE: &str = "the configuration file";

/// Creates or updates the entitlements the configuration declares, auditing each change,
/// and retires every other one except `also_keep` (the demo catalog where it is seeded):
/// a retired entitlement stays in the store (its requests and grants refer to it, and its
/// live grants run to their end) but can no longer be asked for or approved. Declared
/// again, it is live again. Returns how many entitlements changed.
pub async fn apply_configured_entitlements(
    store: &Store,
    entitlements: &[Entitlement],
    also_keep: &[String],
    now: Timestamp,
) -> anyhow::Result<usize> {
    let mut tx = store.begin().await?;
    let mut changed = 0;
    let retired_before = store::retired_entitlements(&mut tx).await?;
    for e in entitlements {
        let existing = store::get_entitlement(&mut tx, &e.id).await?;
        let retired = retired_before.get(&e.id);
        if existing.as_ref() == Some(e) && retired.is_none() {
            continue;
        }
        store::upsert_entitlement(&mut tx, e, now).await?;
        let definition = crate::config::entitlement_toml(e)?;
        store::record_entitlement_version(&mut tx, &e.id, &definition, false, FROM_FILE, now)
            .await?;
        audit::audit(
            &mut tx,
            &audit::Actor::system(),
            audit::Event {
                action: match (&existing, retired) {
                    (None, _) => "entitlement.created",
                    (Some(_), Some(_)) => "entitlement.restored",
                    (Some(_), None) => "entitlement.updated",
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
    let keep: std::collections::BTreeSet<String> = entitlements
        .iter()
        .map(|e| e.id.clone())
        .chain(also_keep.iter().cloned())
        .collect();
    for id in store::retire_entitlements_except(&mut tx, &keep, now).await? {
        let live = store::live_grants_of_entitlement(&mut tx, &id).await?;
        if let Some(e) = store::get_entitlement(&mut tx, &id).await? {
            let definition = crate::config::entitlement_toml(&e)?;
            store::record_entitlement_version(&mut tx, &id, &definition, true, FROM_FILE, now)
                .await?;
        }
        audit::audit(
            &mut tx,
            &audit::Actor::system(),
            audit::Event {
                action: "entitlement.retired",
                person_id: None,
                subject_kind: "entitlement",
                subject_id: &id,
                entitlement_id: Some(&id),
                detail: format!(
                    "no longer in the configuration: it cannot be asked for or approved any \
                     more; its {live} live grant(s) run to their end"
                ),
            },
            now,
        )
        .await?;
        tracing::info!(entitlement = %id, live_grants = live, "entitlement retired: no longer in the configuration");
        changed += 1;
    }
    tx.commit().await?;
    if changed > 0 {
        tracing::info!(changed, "entitlements from the configuration applied");
    }
    Ok(changed)
}

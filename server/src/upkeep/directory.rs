//! The approver directory: the members of every group a policy names (approvers, manager
//! fallback, escalation, and `mail.fallback_approver_group`), read from the provisioner's
//! directory (IAM Identity Center's Identity Store; the simulated one in demo mode) with
//! each catalog sync, so that people who never signed in are told of the requests they may
//! decide (issue #12, item 0). Only ever used to address mail.

use crate::provisioner::CatalogSource;
use crate::store::{self, Store};
use anyhow::Result;
use app::domain::Timestamp;
use std::collections::BTreeSet;

/// Reads every approver group and replaces `directory_member` with it, in one
/// transaction. Returns a line for the run's summary; `None` when the provisioner has no
/// directory. A failed read changes nothing (the last good copy stays).
pub async fn refresh(
    store: &Store,
    provisioner: &dyn CatalogSource,
    also: &[String],
    now: Timestamp,
) -> Result<Option<String>> {
    let groups = {
        let mut conn = store.conn().await?;
        approver_groups(&mut conn, also).await?
    };
    let Some(read) = provisioner.read_groups(&groups).await? else {
        return Ok(None);
    };
    let mut tx = store.begin().await?;
    let people = store::replace_directory(&mut tx, &read, now).await?;
    tx.commit().await?;
    let found = read.values().filter(|members| !members.is_empty()).count();
    Ok(Some(format!(
        "approver directory: {people} members of {found} of {} group(s)",
        groups.len()
    )))
}

/// Every group any entitlement's policy names for deciding, and `also`, each once.
pub async fn approver_groups(
    conn: &mut sqlx::AnyConnection,
    also: &[String],
) -> Result<Vec<String>> {
    let mut groups: BTreeSet<String> = also.iter().cloned().collect();
    for e in store::all_entitlements(conn).await? {
        // Every step's rule, the manager fallback and the escalation rule.
        for rule in e.policy.all_rules() {
            groups.extend(rule.groups.iter().cloned());
        }
    }
    groups.retain(|g| !g.trim().is_empty());
    Ok(groups.into_iter().collect())
}

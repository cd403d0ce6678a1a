//! The audit trail as use cases and the worker write it: every state change, sign-in and
//! refusal is an [`Event`] by an [`Actor`], appended to the hash chain in the caller's
//! transaction (invariant 6), keyed with the key the transaction carries (the store's,
//! from `audit.key`). The chain itself (hashing, verification) is in `store/audit.rs`.

use crate::store::{self, Store, Tx};
use anyhow::Result;
use app::domain::Timestamp;

pub use crate::store::{Actor, Event};

/// Appends `e` in the caller's transaction, so it commits with the change it records.
pub async fn audit(tx: &mut Tx, actor: &Actor, e: Event<'_>, now: Timestamp) -> Result<()> {
    let key = tx.audit_key().clone();
    store::append_audit(tx, &key, actor, &e, now).await?;
    Ok(())
}

/// An audit event on its own, for things that change nothing else (refusals, sign-outs).
pub async fn audit_alone(store: &Store, actor: &Actor, e: Event<'_>, now: Timestamp) -> Result<()> {
    let mut tx = store.begin().await?;
    audit(&mut tx, actor, e, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Records the end of a maintenance run (catalog sync, reconciliation, audit verification), and audits it as `action`,
/// in one transaction.
pub async fn finish_run(
    store: &Store,
    run_id: &str,
    action: &str,
    ok: bool,
    summary: &str,
    now: Timestamp,
) -> Result<()> {
    let mut tx = store.begin().await?;
    store::finish_run(&mut tx, run_id, ok, summary, now).await?;
    let subject_kind = action.split('.').next().unwrap_or("maintenance");
    let e = Event {
        action,
        person_id: None,
        subject_kind,
        subject_id: run_id,
        entitlement_id: None,
        detail: summary.to_owned(),
    };
    audit(&mut tx, &Actor::system(), e, now).await?;
    tx.commit().await?;
    Ok(())
}

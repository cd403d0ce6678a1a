//! The audit trail as use cases and the worker write it: every state change, sign-in and
//! refusal is an [`Event`] by an [`Actor`], appended to the hash chain in the caller's
//! transaction (invariant 6). The chain itself (hashing, verification) is in
//! `store/audit.rs`.

use crate::store::{self, Store};
use anyhow::Result;
use app::domain::Timestamp;
use sqlx::AnyConnection;

pub use crate::store::{Actor, Event};

/// Appends `e` in the caller's transaction, so it commits with the change it records.
pub async fn audit(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: Event<'_>,
    now: Timestamp,
) -> Result<()> {
    store::append_audit(conn, actor, &e, now).await?;
    Ok(())
}

/// An audit event on its own, for things that change nothing else (refusals, sign-outs).
pub async fn audit_alone(store: &Store, actor: &Actor, e: Event<'_>, now: Timestamp) -> Result<()> {
    let mut tx = store.begin().await?;
    audit(&mut tx, actor, e, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Records the end of a catalog sync or reconciliation run, and audits it as `action`,
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

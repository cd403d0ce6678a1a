//! Audit verification (invariant 6): the whole chain recomputed with the key, on a period
//! and at start, as a maintenance job. A break raises one `audit_chain_broken` alert, which
//! stays open until the chain verifies again; every run is recorded in `maintenance_run`
//! (the admin overview shows the latest) and audited.

use crate::audit;
use crate::clock::Clock;
use crate::store::{self, AlertKind, ChainCheck, JobKind, Store};
use anyhow::Result;

/// The subject of the chain's alert (there is one chain).
pub const SUBJECT: &str = "audit_chain";

/// Verifies the chain and records the outcome. A break is an outcome, not an error: only
/// failing to read the chain is one.
pub async fn verify(store: &Store, clock: &dyn Clock) -> Result<ChainCheck> {
    let run_id = {
        let mut conn = store.conn().await?;
        store::start_run(&mut conn, JobKind::VerifyAudit, clock.now()).await?
    };
    let checked = {
        let mut conn = store.conn().await?;
        store::verify_audit_chain(&mut conn, store.audit_key()).await
    };
    let now = clock.now();
    let check = match checked {
        Ok(check) => check,
        Err(e) => {
            let summary = format!("could not read the chain: {e:#}");
            audit::finish_run(store, &run_id, "audit.verify_failed", false, &summary, now).await?;
            return Err(e);
        }
    };
    let mut conn = store.conn().await?;
    match check.first_bad {
        None => {
            store::resolve_alerts(&mut conn, AlertKind::AuditChainBroken, SUBJECT, now).await?;
            drop(conn);
            let summary = format!("{} events", check.events);
            audit::finish_run(store, &run_id, "audit.verified", true, &summary, now).await?;
        }
        Some(seq) => {
            tracing::error!(
                first_bad = seq,
                "the audit chain does not verify: an event was changed, removed or written without the key"
            );
            let open = store::open_alerts_of(&mut conn, &[AlertKind::AuditChainBroken]).await?;
            if open.is_empty() {
                let mut message = format!(
                    "The audit chain is broken at event {seq}: it was changed, removed or written \
                     without the audit key. Check with `portcullis audit verify` and compare with \
                     an earlier export or a backup."
                );
                if let Some(hint) = check.unkeyed_hint() {
                    message = format!("{message} {hint}");
                }
                store::raise_alert(
                    &mut conn,
                    AlertKind::AuditChainBroken,
                    SUBJECT,
                    &message,
                    now,
                )
                .await?;
            }
            drop(conn);
            let summary = format!("broken at event {seq}");
            audit::finish_run(store, &run_id, "audit.chain_broken", false, &summary, now).await?;
        }
    }
    Ok(check)
}

//! Catalog sync: the accounts (with their OU paths), OUs and permission sets the portal
//! offers, read from AWS Organizations and IAM Identity Center.
//!
//! A run reads everything first, then replaces the catalog in one transaction, so the
//! pages never see half a sync. Its progress is written to `maintenance_run` while it
//! reads, for the admin page.

use crate::audit;
use crate::clock::Clock;
use crate::provisioner::{Catalog, CatalogSource, Progress};
use crate::store::{self, AccountRow, JobKind, OrgUnitRow, PermissionSetRow, Store};
use anyhow::Result;
use app::domain::Timestamp;
use std::time::Duration;

/// How often the progress of a run in flight is written down.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Runs one catalog sync, then reads the approver directory (`directory::refresh`, with
/// `also`: groups named outside the policies, such as `mail.fallback_approver_group`). A
/// failure is recorded on the run, audited, and returned (the worker retries with backoff);
/// a catalog read that failed leaves the directory as it was, and a directory read that
/// failed leaves the catalog it read in place.
pub async fn sync(
    store: &Store,
    provisioner: &dyn CatalogSource,
    clock: &dyn Clock,
    also: &[String],
) -> Result<()> {
    let run = {
        let mut conn = store.conn().await?;
        store::start_run(&mut conn, JobKind::SyncCatalog, clock.now()).await?
    };
    let progress = Progress::default();
    let read = provisioner.read_catalog(&progress);
    tokio::pin!(read);
    let read = loop {
        tokio::select! {
            r = &mut read => break r,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {
                let text = progress.lock().expect("progress lock").to_string();
                let mut conn = store.conn().await?;
                store::run_progress(&mut conn, &run, &text).await?;
            }
        }
    };
    let now = clock.now();
    let outcome = match read {
        Ok(None) => Ok("nothing to read: this provisioner's catalog is seeded (demo mode)".into()),
        Ok(Some(catalog)) => apply(store, &run, &catalog, now).await,
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let outcome = match outcome {
        Ok(summary) => match super::directory::refresh(store, provisioner, also, now).await {
            Ok(Some(directory)) => Ok(format!("{summary}; {directory}")),
            Ok(None) => Ok(summary),
            Err(e) => Err(e.context(format!(
                "{summary}; but the approver directory could not be read (the last copy is kept)"
            ))),
        },
        Err(e) => Err(e),
    };
    let (action, summary) = match &outcome {
        Ok(summary) => ("catalog.synced", summary.clone()),
        Err(e) => ("catalog.sync_failed", format!("{e:#}")),
    };
    audit::finish_run(store, &run, action, outcome.is_ok(), &summary, now).await?;
    outcome.map(|_| ())
}

/// Replaces the catalog with what was read, in one transaction. Rows not seen again are
/// removed, unless the organization came back empty while the catalog had accounts (a
/// permissions problem, most likely): then nothing changes.
async fn apply(store: &Store, run: &str, c: &Catalog, now: Timestamp) -> Result<String> {
    let mut tx = store.begin().await?;
    let had = store::all_accounts(&mut tx).await?.len();
    anyhow::ensure!(
        !(c.accounts.is_empty() && had > 0),
        "AWS Organizations listed no accounts, while the catalog has {had}: the catalog is \
         kept as it was (check the portal's organizations:List* permissions)"
    );
    let had_sets = store::all_permission_sets(&mut tx).await?.len();
    anyhow::ensure!(
        !(c.permission_sets.is_empty() && had_sets > 0),
        "IAM Identity Center listed no permission sets, while the catalog has {had_sets}: the \
         catalog is kept as it was (check aws.instance_arn and sso:ListPermissionSets)"
    );
    // Mark every row, then bring back what AWS still has: what stays marked is gone.
    store::mark_catalog_unseen(&mut tx).await?;
    for ou in &c.org_units {
        let row = OrgUnitRow {
            ou_id: ou.ou_id.clone(),
            name: ou.name.clone(),
            parent_id: ou.parent_id.clone(),
            path: ou.path.clone(),
        };
        store::upsert_org_unit(&mut tx, &row, now).await?;
    }
    for a in &c.accounts {
        let row = AccountRow {
            account_id: a.account_id.clone(),
            name: a.name.clone(),
            ou_id: a.ou_id.clone(),
            ou_path: a.ou_path.clone(),
        };
        store::upsert_account(&mut tx, &row, now).await?;
    }
    for p in &c.permission_sets {
        let row = PermissionSetRow {
            permission_set_arn: p.arn.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            session_duration_secs: p.session_duration_secs,
        };
        store::upsert_permission_set(&mut tx, &row, now).await?;
    }
    let (accounts, sets, ous) = store::drop_unseen_catalog(&mut tx, Timestamp(0)).await?;
    let summary = format!(
        "{} OUs, {} accounts, {} permission sets; removed {ous} OUs, {accounts} accounts, \
         {sets} permission sets no longer in AWS",
        c.org_units.len(),
        c.accounts.len(),
        c.permission_sets.len()
    );
    store::run_progress(&mut tx, run, "done").await?;
    tx.commit().await?;
    Ok(summary)
}

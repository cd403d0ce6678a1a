//! The simulated organization's AWS-side backstop (issue #15): what EventBridge Scheduler
//! does for `aws.backstop = "scheduler"`, kept in the database (`sim_schedule`). Demo
//! mode always has it, so that every live grant there shows its schedule. A schedule
//! whose time has come ([`SimulatedBackstop::fire_due`], run every few seconds by the
//! demo) deletes its assignment and then itself, as Scheduler's universal target and
//! `ActionAfterCompletion = DELETE` would.

use super::transient;
use crate::clock::Clock;
use crate::provisioner::{Assignment, Backstop, ProvisionError};
use crate::store::Store;
use async_trait::async_trait;
use sqlx::Row;
use std::sync::Arc;

pub struct SimulatedBackstop {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// One simulated schedule, as the demo's AWS page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSchedule {
    pub name: String,
    pub account_id: String,
    pub permission_set_arn: String,
    pub principal_id: String,
    /// Epoch milliseconds.
    pub fire_at: i64,
}

impl SimulatedBackstop {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Every schedule, soonest first.
    pub async fn schedules(&self) -> Result<Vec<SimSchedule>, ProvisionError> {
        let rows = sqlx::query(
            "SELECT name, account_id, permission_set_arn, principal_id, fire_at FROM sim_schedule
             ORDER BY fire_at, name",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        rows.iter()
            .map(|r| {
                Ok(SimSchedule {
                    name: r.try_get("name").map_err(transient)?,
                    account_id: r.try_get("account_id").map_err(transient)?,
                    permission_set_arn: r.try_get("permission_set_arn").map_err(transient)?,
                    principal_id: r.try_get("principal_id").map_err(transient)?,
                    fire_at: r.try_get("fire_at").map_err(transient)?,
                })
            })
            .collect()
    }

    /// Runs the schedules whose time has come: each deletes its assignment (if still
    /// there) and itself, in one transaction. Returns how many assignments it deleted.
    pub async fn fire_due(&self) -> Result<usize, ProvisionError> {
        let now = self.clock.now().millis();
        let mut removed = 0;
        let due: Vec<SimSchedule> = self
            .schedules()
            .await?
            .into_iter()
            .filter(|s| s.fire_at <= now)
            .collect();
        for s in due {
            let mut tx = self.store.begin().await.map_err(transient)?;
            // Moved or deleted since it was read: not due any more.
            let gone = sqlx::query("DELETE FROM sim_schedule WHERE name = $1 AND fire_at <= $2")
                .bind(&s.name)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(transient)?
                .rows_affected()
                == 0;
            if gone {
                continue;
            }
            let deleted = sqlx::query(
                "DELETE FROM sim_assignment WHERE account_id = $1 AND permission_set_arn = $2
                 AND principal_id = $3",
            )
            .bind(&s.account_id)
            .bind(&s.permission_set_arn)
            .bind(&s.principal_id)
            .execute(&mut *tx)
            .await
            .map_err(transient)?
            .rows_affected();
            tx.commit().await.map_err(transient)?;
            if deleted > 0 {
                removed += 1;
                tracing::warn!(
                    schedule = %s.name,
                    account = %s.account_id,
                    permission_set = %s.permission_set_arn,
                    "the simulated backstop deleted an assignment the portal had not revoked"
                );
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl Backstop for SimulatedBackstop {
    async fn arm(&self, a: &Assignment, at: i64) -> Result<(), ProvisionError> {
        let principal = a.principal_id.as_deref().ok_or_else(|| {
            ProvisionError::Permanent("the assignment's principal is not known yet".into())
        })?;
        sqlx::query(
            "INSERT INTO sim_schedule (name, account_id, permission_set_arn, principal_id, fire_at,
                 updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET fire_at = excluded.fire_at,
                 principal_id = excluded.principal_id, updated_at = excluded.updated_at",
        )
        .bind(self.schedule_name(a))
        .bind(&a.account_id)
        .bind(&a.permission_set_arn)
        .bind(principal)
        .bind(at)
        .bind(self.clock.now().millis())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), ProvisionError> {
        sqlx::query("DELETE FROM sim_schedule WHERE name = $1")
            .bind(name)
            .execute(self.store.pool())
            .await
            .map_err(transient)?;
        Ok(())
    }

    async fn schedule_names(&self) -> Result<Vec<String>, ProvisionError> {
        Ok(self
            .schedules()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect())
    }
}

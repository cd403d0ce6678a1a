//! Demo mode's IAM Identity Center: assignments and operations kept in the database,
//! with the same asynchronous shape as SSO Admin (operations settle after a delay).

use super::{
    Assignment, AssignmentRecord, Assignments, CatalogSource, DeleteStart, DirectoryPerson,
    Inventory, LiveAssignment, OperationStatus, Principals, ProvisionError,
};
use crate::clock::Clock;
use crate::store::{new_id, Store};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

mod backstop;
pub use backstop::{SimSchedule, SimulatedBackstop};

pub struct SimulatedProvisioner {
    store: Store,
    clock: Arc<dyn Clock>,
    delay: Duration,
    /// The simulated directory: groups by name, as Identity Store would list them.
    directory: BTreeMap<String, Vec<DirectoryPerson>>,
}

impl SimulatedProvisioner {
    pub fn new(store: Store, clock: Arc<dyn Clock>, delay: Duration) -> Self {
        Self {
            store,
            clock,
            delay,
            directory: BTreeMap::new(),
        }
    }

    /// Answers [`CatalogSource::read_groups`] from these groups (the demo's directory is
    /// [`crate::seed::directory`]); without it, every group is empty.
    pub fn with_directory(mut self, directory: BTreeMap<String, Vec<DirectoryPerson>>) -> Self {
        self.directory = directory;
        self
    }

    async fn start(&self, kind: &str, a: &Assignment) -> Result<String, ProvisionError> {
        self.start_on(kind, &a.account_id, &a.permission_set_arn, &a.user_id)
            .await
    }

    async fn start_on(
        &self,
        kind: &str,
        account_id: &str,
        permission_set_arn: &str,
        principal_id: &str,
    ) -> Result<String, ProvisionError> {
        let now = self.clock.now();
        let id = new_id();
        sqlx::query(
            "INSERT INTO sim_operation (request_id, kind, account_id, permission_set_arn, principal_id, status,
                 ready_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'IN_PROGRESS', $6, $7)",
        )
        .bind(&id)
        .bind(kind)
        .bind(account_id)
        .bind(permission_set_arn)
        .bind(principal_id)
        .bind(now.plus(self.delay).millis())
        .bind(now.millis())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(id)
    }

    /// Settles the operation once its delay has passed, applying its effect exactly once.
    async fn status(
        &self,
        kind: &str,
        request_id: &str,
    ) -> Result<OperationStatus, ProvisionError> {
        let now = self.clock.now();
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(|e| transient(e.to_string()))?;
        let row = sqlx::query(
            "SELECT kind, account_id, permission_set_arn, principal_id, status, ready_at, failure_reason
             FROM sim_operation WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(transient)?
        .ok_or_else(|| ProvisionError::Permanent(format!("unknown request id {request_id}")))?;
        let get = |c: &str| row.try_get::<String, _>(c).map_err(transient);
        if get("kind")? != kind {
            return Err(ProvisionError::Permanent(format!(
                "request {request_id} is not a {kind} operation"
            )));
        }
        let status = get("status")?;
        let ready_at: i64 = row.try_get("ready_at").map_err(transient)?;
        let result = match status.as_str() {
            "SUCCEEDED" => OperationStatus::Succeeded,
            "FAILED" => OperationStatus::Failed(
                row.try_get::<Option<String>, _>("failure_reason")
                    .map_err(transient)?
                    .unwrap_or_default(),
            ),
            _ if now.millis() < ready_at => OperationStatus::InProgress,
            _ => {
                let (account, ps, principal) = (
                    get("account_id")?,
                    get("permission_set_arn")?,
                    get("principal_id")?,
                );
                let effect = if kind == "create" {
                    "INSERT INTO sim_assignment (account_id, permission_set_arn, principal_id, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM sim_assignment WHERE account_id = $1 AND permission_set_arn = $2
                     AND principal_id = $3 AND $4 >= 0"
                };
                sqlx::query(effect)
                    .bind(&account)
                    .bind(&ps)
                    .bind(&principal)
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(transient)?;
                sqlx::query("UPDATE sim_operation SET status = 'SUCCEEDED' WHERE request_id = $1")
                    .bind(request_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(transient)?;
                OperationStatus::Succeeded
            }
        };
        tx.commit().await.map_err(transient)?;
        Ok(result)
    }
}

fn transient(e: impl ToString) -> ProvisionError {
    ProvisionError::Transient(e.to_string())
}

#[async_trait]
impl Assignments for SimulatedProvisioner {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn assignment_exists(&self, a: &Assignment) -> Result<bool, ProvisionError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sim_assignment WHERE account_id = $1 AND permission_set_arn = $2
             AND principal_id = $3",
        )
        .bind(&a.account_id)
        .bind(&a.permission_set_arn)
        .bind(&a.user_id)
        .fetch_one(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(n > 0)
    }

    async fn start_create(
        &self,
        a: &Assignment,
        not_after: tokio::time::Instant,
    ) -> Result<String, ProvisionError> {
        if tokio::time::Instant::now() >= not_after {
            return Err(ProvisionError::TooLate);
        }
        self.start("create", a).await
    }

    async fn creation_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        self.status("create", request_id).await
    }

    async fn start_delete(&self, a: &Assignment) -> Result<DeleteStart, ProvisionError> {
        if !self.assignment_exists(a).await? {
            return Ok(DeleteStart::AlreadyGone);
        }
        self.start("delete", a).await.map(DeleteStart::Started)
    }

    async fn deletion_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        self.status("delete", request_id).await
    }
}

#[async_trait]
impl Inventory for SimulatedProvisioner {
    async fn list_assignments(
        &self,
        pairs: &BTreeSet<(String, String)>,
    ) -> Result<Vec<AssignmentRecord>, ProvisionError> {
        let rows = sqlx::query(
            "SELECT account_id, permission_set_arn, principal_id, created_at FROM sim_assignment
             ORDER BY account_id, permission_set_arn, principal_id",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        rows.iter()
            .filter(|r| {
                let account: String = r.try_get("account_id").unwrap_or_default();
                let set: String = r.try_get("permission_set_arn").unwrap_or_default();
                pairs.contains(&(account, set))
            })
            .map(|r| {
                Ok(AssignmentRecord {
                    account_id: r.try_get("account_id").map_err(transient)?,
                    permission_set_arn: r.try_get("permission_set_arn").map_err(transient)?,
                    principal: r.try_get("principal_id").map_err(transient)?,
                    created_at: Some(app::domain::Timestamp(
                        r.try_get("created_at").map_err(transient)?,
                    )),
                })
            })
            .collect()
    }

    async fn principal_of(&self, a: &Assignment) -> Result<String, ProvisionError> {
        Ok(a.user_id.clone())
    }

    async fn assignments_at(
        &self,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Result<Vec<LiveAssignment>, ProvisionError> {
        let principals: Vec<String> = sqlx::query_scalar(
            "SELECT principal_id FROM sim_assignment WHERE account_id = $1 AND permission_set_arn = $2
             ORDER BY principal_id",
        )
        .bind(account_id)
        .bind(permission_set_arn)
        .fetch_all(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(principals
            .into_iter()
            .map(|principal_id| LiveAssignment {
                account_id: account_id.to_owned(),
                permission_set_arn: permission_set_arn.to_owned(),
                principal_type: "USER".into(),
                principal_id,
            })
            .collect())
    }

    async fn start_delete_live(&self, a: &LiveAssignment) -> Result<String, ProvisionError> {
        self.start_on(
            "delete",
            &a.account_id,
            &a.permission_set_arn,
            &a.principal_id,
        )
        .await
    }
}

#[async_trait]
impl CatalogSource for SimulatedProvisioner {
    async fn read_groups(
        &self,
        groups: &[String],
    ) -> Result<Option<BTreeMap<String, Vec<DirectoryPerson>>>, ProvisionError> {
        Ok(Some(
            groups
                .iter()
                .map(|g| {
                    (
                        g.clone(),
                        self.directory.get(g).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
        ))
    }
}

#[async_trait]
impl Principals for SimulatedProvisioner {}

impl SimulatedProvisioner {
    /// Puts an assignment in place at once, as someone working in the AWS console would
    /// (tests and demos of drift).
    pub async fn assign_by_hand(
        &self,
        account_id: &str,
        permission_set_arn: &str,
        principal_id: &str,
    ) -> Result<(), ProvisionError> {
        sqlx::query(
            "INSERT INTO sim_assignment (account_id, permission_set_arn, principal_id, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(account_id)
        .bind(permission_set_arn)
        .bind(principal_id)
        .bind(self.clock.now().millis())
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(())
    }

    /// Removes an assignment at once, as someone working in the AWS console would.
    pub async fn unassign_by_hand(
        &self,
        account_id: &str,
        permission_set_arn: &str,
        principal_id: &str,
    ) -> Result<(), ProvisionError> {
        sqlx::query(
            "DELETE FROM sim_assignment WHERE account_id = $1 AND permission_set_arn = $2
             AND principal_id = $3",
        )
        .bind(account_id)
        .bind(permission_set_arn)
        .bind(principal_id)
        .execute(self.store.pool())
        .await
        .map_err(transient)?;
        Ok(())
    }
}

//! The edge to IAM Identity Center, shaped after SSO Admin: an assignment is created or
//! deleted by starting an operation and then polling its status until it settles.

pub mod simulated;
pub mod sso_admin;

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One AWS account assignment: a user, a permission set, an account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub account_id: String,
    pub permission_set_arn: String,
    /// The portal's user id (issuer|subject).
    pub user_id: String,
    /// The attribute Identity Store knows the user by (the email by default).
    pub user_name: String,
    /// The provisioner's own id for the user (the Identity Store user id), once known: kept
    /// on the grant when provisioning starts, so the assignment is revoked for exactly
    /// that principal, whatever the person's email has become since.
    pub principal_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationStatus {
    InProgress,
    Succeeded,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteStart {
    Started(String),
    /// The assignment was not there: nothing to delete.
    AlreadyGone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub account_id: String,
    pub permission_set_arn: String,
    pub principal: String,
    pub created_at: Option<app::domain::Timestamp>,
}

/// An assignment as AWS lists it, whoever made it (reconciliation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiveAssignment {
    pub account_id: String,
    pub permission_set_arn: String,
    /// `USER` or `GROUP`.
    pub principal_type: String,
    /// The provisioner's id for the principal (an Identity Store user or group id).
    pub principal_id: String,
}

/// The organization and the permission sets as the provisioner reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub org_units: Vec<OrgUnit>,
    pub accounts: Vec<CatalogAccount>,
    pub permission_sets: Vec<CatalogPermissionSet>,
}

/// An organizational unit, or the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgUnit {
    pub ou_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    /// `/r-xxxx/ou-aaaa-1/`: ids from the root down, this one included.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogAccount {
    pub account_id: String,
    pub name: String,
    /// The OU (or root) the account sits in directly.
    pub ou_id: String,
    /// That OU's path.
    pub ou_path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogPermissionSet {
    pub arn: String,
    pub name: String,
    pub description: String,
    pub session_duration_secs: i64,
}

/// How far a catalog read got, for the admin page while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogProgress {
    pub phase: String,
    pub org_units: usize,
    pub accounts: usize,
    pub permission_sets: usize,
}

impl std::fmt::Display for CatalogProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} OUs, {} accounts, {} permission sets",
            self.phase, self.org_units, self.accounts, self.permission_sets
        )
    }
}

pub type Progress = Arc<Mutex<CatalogProgress>>;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Throttling, conflicts, 5xx, timeouts: try again later.
    #[error("transient provisioner error: {0}")]
    Transient(String),
    /// Will not succeed by retrying (bad configuration, unknown user, access denied).
    #[error("provisioner error: {0}")]
    Permanent(String),
    /// AWS asked to slow down: the provisioner has slowed its pace; try again soon.
    /// Not a failure of the job.
    #[error("throttled by AWS: {0}")]
    Throttled(String),
    /// The deadline given with the call passed before it could be sent (the call budget's
    /// next slot came after it): nothing was asked of AWS.
    #[error("the deadline passed before AWS could be asked")]
    TooLate,
}

/// Granting and revoking one assignment, the way SSO Admin does it: start an operation,
/// then poll its status until it settles. The worker's edge.
#[async_trait]
pub trait Assignments: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn assignment_exists(&self, a: &Assignment) -> Result<bool, ProvisionError>;
    /// Asks for the creation, unless it cannot be sent before `not_after` (the grant's
    /// end, on this process's monotonic clock): then [`ProvisionError::TooLate`] and
    /// nothing was asked. Waits for the call budget count against it, so a creation is
    /// never sent after the access it grants is over.
    async fn start_create(
        &self,
        a: &Assignment,
        not_after: tokio::time::Instant,
    ) -> Result<String, ProvisionError>;
    async fn creation_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError>;
    async fn start_delete(&self, a: &Assignment) -> Result<DeleteStart, ProvisionError>;
    async fn deletion_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError>;
    /// A transient error when as many creations are in flight as allowed. `in_flight`:
    /// the creations the whole deployment has asked for and not seen settled, as the
    /// database knows them (`store::creations_in_flight`).
    fn creation_slot_free(&self, in_flight: usize) -> Result<(), ProvisionError> {
        let _ = in_flight;
        Ok(())
    }
    /// `replicas` replicas are alive (their heartbeats in the database): each takes that
    /// share of the AWS call budget, so that together they keep to it.
    fn share_budget(&self, replicas: u32) {
        let _ = replicas;
    }
}

/// Every backstop schedule the portal makes is named this, then 40 hex digits.
pub const SCHEDULE_PREFIX: &str = "portcullis-";

/// The backstop schedule's name for an assignment (see [`Backstop::schedule_name`]).
pub fn schedule_name(account_id: &str, permission_set_arn: &str, user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let key = format!("{account_id}|{permission_set_arn}|{user_id}");
    let digest = Sha256::digest(key.as_bytes());
    format!("{SCHEDULE_PREFIX}{}", &hex::encode(digest)[..40])
}

/// The AWS-side backstop: one one-time schedule per assignment, outside the portal, that
/// deletes the assignment after the latest end of its live grants plus a grace, should
/// the portal be down, wedged or gone by then. The worker keeps it in step
/// (`worker::backstop`).
#[async_trait]
pub trait Backstop: Send + Sync + 'static {
    /// The schedule's name for this assignment: [`SCHEDULE_PREFIX`] and 40 hex digits of
    /// a digest of its account, permission set and the portal's own user id (always
    /// known: a grant that shared the assignment never learned the AWS principal), so
    /// that every grant of the assignment names the same.
    fn schedule_name(&self, a: &Assignment) -> String {
        schedule_name(&a.account_id, &a.permission_set_arn, &a.user_id)
    }
    /// Creates the schedule for `a`, or moves it, to fire at `at` (epoch ms). Doing it
    /// twice is harmless.
    async fn arm(&self, a: &Assignment, at: i64) -> Result<(), ProvisionError>;
    /// Deletes the schedule for `a`; none there is fine.
    async fn disarm(&self, a: &Assignment) -> Result<(), ProvisionError> {
        self.remove(&self.schedule_name(a)).await
    }
    /// Deletes the schedule of this name; none there is fine.
    async fn remove(&self, name: &str) -> Result<(), ProvisionError>;
    /// The names of every schedule the portal made (reconciliation).
    async fn schedule_names(&self) -> Result<Vec<String>, ProvisionError>;
}

/// What AWS holds, whoever made it: the edge of reconciliation and of the AWS page.
#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    /// The assignments (users and groups) AWS holds for these (account, permission set)
    /// pairs: the ones the portal manages, never the whole organization.
    async fn list_assignments(
        &self,
        pairs: &BTreeSet<(String, String)>,
    ) -> Result<Vec<AssignmentRecord>, ProvisionError>;
    /// The provisioner's own id for the user of `a` (the Identity Store user id).
    async fn principal_of(&self, a: &Assignment) -> Result<String, ProvisionError>;
    /// Every assignment of one permission set in one account, users and groups alike.
    async fn assignments_at(
        &self,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Result<Vec<LiveAssignment>, ProvisionError>;
    /// Starts deleting an assignment found by [`Inventory::assignments_at`]; poll it with
    /// [`Assignments::deletion_status`].
    async fn start_delete_live(&self, a: &LiveAssignment) -> Result<String, ProvisionError>;
}

/// Reading the organization and the permission sets: the edge of catalog sync.
#[async_trait]
pub trait CatalogSource: Send + Sync + 'static {
    /// Reads the organization and the permission sets, updating `progress` as it goes.
    /// `None`: this provisioner has no catalog of its own (demo mode's is seeded).
    async fn read_catalog(&self, _progress: &Progress) -> Result<Option<Catalog>, ProvisionError> {
        Ok(None)
    }

    /// The members of each of these groups (by display name) in the directory the
    /// identity provider keeps in step with AWS (IAM Identity Center's Identity Store):
    /// approvers who never signed in to the portal are found there. `None`: this
    /// provisioner has no directory. Read with the catalog sync, never on a request's path.
    async fn read_groups(
        &self,
        _groups: &[String],
    ) -> Result<Option<BTreeMap<String, Vec<DirectoryPerson>>>, ProvisionError> {
        Ok(None)
    }
}

/// A member of a group, as the directory knows them (kept by the store).
pub use crate::store::DirectoryPerson;

/// Who AWS knows: the edge of making a request.
#[async_trait]
pub trait Principals: Send + Sync + 'static {
    /// Whether access can be granted to the person AWS knows as `user_name` at all:
    /// asked when they make a request, so that an unknown user hears it then, not
    /// through a failed grant later.
    async fn check_principal(&self, _user_name: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
}

/// The whole edge, as the wiring holds it (one value for IAM Identity Center or the
/// simulated organization). Each consumer takes only the narrow trait it needs.
pub trait Provisioner: Assignments + Inventory + CatalogSource + Principals {}

impl<T: Assignments + Inventory + CatalogSource + Principals> Provisioner for T {}

//! The edge to IAM Identity Center, shaped after SSO Admin: an assignment is created or
//! deleted by starting an operation and then polling its status until it settles.

pub mod simulated;
pub mod sso_admin;

use async_trait::async_trait;

/// One AWS account assignment: a user, a permission set, an account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assignment {
    pub account_id: String,
    pub permission_set_arn: String,
    /// The portal's user id (issuer|subject).
    pub user_id: String,
    /// The attribute Identity Store knows the user by (the email by default).
    pub user_name: String,
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

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Throttling, conflicts, 5xx, timeouts: try again later.
    #[error("transient provisioner error: {0}")]
    Transient(String),
    /// Will not succeed by retrying (bad configuration, unknown user, access denied).
    #[error("provisioner error: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Provisioner: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn assignment_exists(&self, a: &Assignment) -> Result<bool, ProvisionError>;
    async fn start_create(&self, a: &Assignment) -> Result<String, ProvisionError>;
    async fn creation_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError>;
    async fn start_delete(&self, a: &Assignment) -> Result<DeleteStart, ProvisionError>;
    async fn deletion_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError>;
    async fn list_assignments(&self) -> Result<Vec<AssignmentRecord>, ProvisionError>;
    /// Whether access can be granted to the person AWS knows as `user_name` at all:
    /// asked when they make a request, so that an unknown user hears it then, not
    /// through a failed grant later.
    async fn check_principal(&self, _user_name: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    /// A transient error when as many creations are in flight as allowed.
    fn creation_slot_free(&self) -> Result<(), ProvisionError> {
        Ok(())
    }
}

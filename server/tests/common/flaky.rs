//! Fault injection at the trait edges where no real component can be made to fail on
//! cue: the simulated provisioner with counted failures, and a mailer that always fails.

use super::*;

/// The simulated provisioner with faults injected at the trait edge: each counter makes
/// that many calls fail before calls go through again.
pub struct Flaky {
    pub inner: SimulatedProvisioner,
    /// `start_create` answers a transient error (throttling).
    pub fail_creates: AtomicU32,
    /// `start_delete` answers a transient error (throttling, ConflictException, 5xx).
    pub fail_deletes: AtomicU32,
    /// `deletion_status` reports the operation FAILED.
    pub fail_delete_status: AtomicU32,
    /// While set, `creation_status` reports IN_PROGRESS forever.
    pub hang_creates: AtomicBool,
    pub create_calls: AtomicU32,
    pub delete_calls: AtomicU32,
    /// `start_create` reaches AWS, then the reply is lost (a crash after the call and
    /// before the commit looks the same to the worker).
    pub lose_create_replies: AtomicU32,
    /// `start_delete` reaches AWS, then the reply is lost.
    pub lose_delete_replies: AtomicU32,
    /// `start_create` is refused for good (AccessDeniedException).
    pub refuse_creates: AtomicU32,
    /// The next `start_delete` waits for this before it reaches AWS (a step that
    /// outlives its lease).
    pub hold_next_delete: std::sync::Mutex<Option<Arc<tokio::sync::Notify>>>,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Flaky {
    pub fn new(inner: SimulatedProvisioner) -> Self {
        Self {
            inner,
            fail_creates: AtomicU32::new(0),
            fail_deletes: AtomicU32::new(0),
            fail_delete_status: AtomicU32::new(0),
            hang_creates: AtomicBool::new(false),
            create_calls: AtomicU32::new(0),
            delete_calls: AtomicU32::new(0),
            lose_create_replies: AtomicU32::new(0),
            lose_delete_replies: AtomicU32::new(0),
            refuse_creates: AtomicU32::new(0),
            hold_next_delete: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Assignments for Flaky {
    fn name(&self) -> &'static str {
        "flaky-simulated"
    }

    async fn assignment_exists(&self, a: &Assignment) -> Result<bool, ProvisionError> {
        self.inner.assignment_exists(a).await
    }

    async fn start_create(
        &self,
        a: &Assignment,
        not_after: tokio::time::Instant,
    ) -> Result<String, ProvisionError> {
        self.create_calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.fail_creates) {
            return Err(ProvisionError::Transient(
                "ThrottlingException: Rate exceeded (injected)".into(),
            ));
        }
        if take(&self.refuse_creates) {
            return Err(ProvisionError::Permanent(
                "AccessDeniedException: not authorized to create this assignment (injected)".into(),
            ));
        }
        let started = self.inner.start_create(a, not_after).await;
        if take(&self.lose_create_replies) {
            return Err(ProvisionError::Transient(
                "connection reset (injected)".into(),
            ));
        }
        started
    }

    async fn creation_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        if self.hang_creates.load(Ordering::SeqCst) {
            return Ok(OperationStatus::InProgress);
        }
        self.inner.creation_status(request_id).await
    }

    async fn start_delete(&self, a: &Assignment) -> Result<DeleteStart, ProvisionError> {
        self.delete_calls.fetch_add(1, Ordering::SeqCst);
        let hold = self.hold_next_delete.lock().unwrap().take();
        if let Some(hold) = hold {
            hold.notified().await;
        }
        if take(&self.fail_deletes) {
            return Err(ProvisionError::Transient(
                "ConflictException: another operation is in progress (injected)".into(),
            ));
        }
        let started = self.inner.start_delete(a).await;
        if take(&self.lose_delete_replies) {
            return Err(ProvisionError::Transient(
                "connection reset (injected)".into(),
            ));
        }
        started
    }

    async fn deletion_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        if take(&self.fail_delete_status) {
            return Ok(OperationStatus::Failed(
                "InternalServerException (injected)".into(),
            ));
        }
        self.inner.deletion_status(request_id).await
    }
}

#[async_trait]
impl Inventory for Flaky {
    async fn list_assignments(
        &self,
        pairs: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<Vec<AssignmentRecord>, ProvisionError> {
        self.inner.list_assignments(pairs).await
    }

    async fn principal_of(&self, a: &Assignment) -> Result<String, ProvisionError> {
        self.inner.principal_of(a).await
    }

    async fn assignments_at(
        &self,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Result<Vec<portcullis::provisioner::LiveAssignment>, ProvisionError> {
        self.inner
            .assignments_at(account_id, permission_set_arn)
            .await
    }

    async fn start_delete_live(
        &self,
        a: &portcullis::provisioner::LiveAssignment,
    ) -> Result<String, ProvisionError> {
        self.inner.start_delete_live(a).await
    }
}

#[async_trait]
impl CatalogSource for Flaky {}

#[async_trait]
impl Principals for Flaky {}

/// A mailer whose SMTP server is down.
pub struct BrokenMailer;

#[async_trait]
impl Mailer for BrokenMailer {
    async fn send(
        &self,
        _to: &str,
        _subject: &str,
        _text: &str,
        _html: &str,
    ) -> Result<(), MailError> {
        Err(MailError("connection refused (injected)".into()))
    }
}

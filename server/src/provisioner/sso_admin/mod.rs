//! IAM Identity Center through the SSO Admin API (`aws-sdk-ssoadmin`), with users resolved
//! in Identity Store (`aws-sdk-identitystore`).
//!
//! Retries belong to the worker (durable, capped exponential backoff with jitter), so the
//! SDK's own retries are off: every call here is one request, and each failure is
//! classified as transient (throttling, conflicts, 5xx, timeouts) or permanent. A
//! client-side budget keeps the portal under Identity Center's shared request rate.

pub mod backstop;
mod budget;
mod catalog;
mod directory;

pub use budget::Budget;
pub use catalog::iso8601_secs;
use catalog::{all_pages, set_phase};

use super::{
    Assignment, AssignmentRecord, Assignments, Catalog, CatalogAccount, CatalogPermissionSet,
    CatalogSource, DeleteStart, Inventory, LiveAssignment, OperationStatus, OrgUnit, Principals,
    Progress, ProvisionError,
};
use crate::config::AwsConfig;
use async_trait::async_trait;
use aws_sdk_ssoadmin::config::http::HttpResponse;
use aws_sdk_ssoadmin::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PrincipalType, StatusValues, TargetType,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct SsoAdminProvisioner {
    sso: aws_sdk_ssoadmin::Client,
    identity: aws_sdk_identitystore::Client,
    orgs: aws_sdk_organizations::Client,
    instance_arn: String,
    identity_store_id: String,
    user_attribute: String,
    budget: Budget,
    /// Organizations has its own (lower) limits, apart from Identity Center's.
    orgs_budget: Budget,
    /// Identity Store user ids by user name, and back.
    users: Mutex<HashMap<String, String>>,
    /// CreateAccountAssignment calls of this process still waiting for their answer
    /// (their grants have no request id in the database yet).
    creating: Arc<AtomicUsize>,
    max_creations: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

/// One CreateAccountAssignment call of this process in progress; counted until dropped,
/// also when the step that made the call is dropped half way.
struct Creating(Arc<AtomicUsize>);

impl Creating {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n.clone())
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Calls a second to AWS Organizations while reading the catalog.
const ORGANIZATIONS_PER_SECOND: u32 = 5;

impl SsoAdminProvisioner {
    /// Connects with the standard credential chain and region (or the configured ones),
    /// and discovers the instance and identity store with ListInstances when not set.
    pub async fn connect(config: &AwsConfig) -> anyhow::Result<Self> {
        Self::connect_with(config, true).await
    }

    /// As [`Self::connect`], but a transient answer to `ListInstances` (unreachable,
    /// throttled) is an error at once instead of waited out: `portcullis check-config`.
    pub async fn connect_once(config: &AwsConfig) -> anyhow::Result<Self> {
        Self::connect_with(config, false).await
    }

    async fn connect_with(config: &AwsConfig, wait_out_transient: bool) -> anyhow::Result<Self> {
        let sdk = sdk_config(config).await;
        let sso = aws_sdk_ssoadmin::Client::new(&sdk);
        let identity = aws_sdk_identitystore::Client::new(&sdk);
        let orgs = aws_sdk_organizations::Client::new(&sdk);
        let (instance_arn, identity_store_id) = match (
            &config.instance_arn,
            &config.identity_store_id,
        ) {
            (Some(i), Some(s)) => (i.clone(), s.clone()),
            _ => {
                // Throttling, conflicts, 5xx and timeouts at start are waited out
                // (logged, 1 s doubling to 30 s), as the database is: a replica started
                // while AWS throttles must not exit. Refusals still stop it.
                let mut pause = Duration::from_secs(1);
                let out = loop {
                    match sso.list_instances().send().await {
                            Ok(out) => break out,
                            Err(e) => match classify("ListInstances", e) {
                                ProvisionError::Permanent(message) => anyhow::bail!(
                                    "cannot list IAM Identity Center instances (set aws.instance_arn \
                                     and aws.identity_store_id, or allow sso:ListInstances): {message}"
                                ),
                                err if !wait_out_transient => anyhow::bail!(
                                    "cannot reach IAM Identity Center (ListInstances): {err}"
                                ),
                                err => {
                                    tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "cannot reach IAM Identity Center yet; waiting");
                                    tokio::time::sleep(pause).await;
                                    pause = (pause * 2).min(Duration::from_secs(30));
                                }
                            },
                        }
                };
                let found = out.instances().iter().find(|i| {
                    config
                        .instance_arn
                        .as_deref()
                        .is_none_or(|want| i.instance_arn() == Some(want))
                });
                let Some(found) = found else {
                    anyhow::bail!(
                        "no IAM Identity Center instance found{}",
                        config
                            .instance_arn
                            .as_deref()
                            .map(|a| format!(" with ARN {a}"))
                            .unwrap_or_default()
                    );
                };
                (
                    found.instance_arn().unwrap_or_default().to_owned(),
                    config
                        .identity_store_id
                        .clone()
                        .or_else(|| found.identity_store_id().map(String::from))
                        .unwrap_or_default(),
                )
            }
        };
        anyhow::ensure!(
            !instance_arn.is_empty() && !identity_store_id.is_empty(),
            "the IAM Identity Center instance has no ARN or identity store id"
        );
        tracing::info!(instance = %instance_arn, identity_store = %identity_store_id, "IAM Identity Center");
        Ok(Self {
            sso,
            identity,
            orgs,
            instance_arn,
            identity_store_id,
            user_attribute: config.user_attribute.clone(),
            budget: Budget::per_second(config.requests_per_second),
            orgs_budget: Budget::per_second(ORGANIZATIONS_PER_SECOND),
            users: Mutex::new(HashMap::new()),
            creating: Arc::new(AtomicUsize::new(0)),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            max_creations: config.max_outstanding_creations.max(1) as usize,
        })
    }

    /// Changes the call budget (benchmarks: warm the user cache fast, then measure).
    /// Where calls are counted by API and outcome (`/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn set_requests_per_second(&mut self, rate: u32) {
        self.budget = Budget::per_second(rate);
    }

    /// The pace of calls to SSO Admin now (slower after AWS throttled).
    pub fn budget_interval(&self) -> Duration {
        self.budget.interval()
    }

    /// One cheap call with the configured credentials (the first page of permission
    /// sets): `portcullis check-config` proves it can reach AWS and is allowed to read.
    pub async fn probe(&self) -> Result<usize, ProvisionError> {
        self.budget.take().await;
        let out = self
            .sso
            .list_permission_sets()
            .instance_arn(&self.instance_arn)
            .max_results(10)
            .send()
            .await
            .map_err(|e| self.classify_on("ListPermissionSets", e))
            .inspect(|_| self.answered("ListPermissionSets"))?;
        Ok(out.permission_sets().len())
    }

    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    pub fn identity_store_id(&self) -> &str {
        &self.identity_store_id
    }

    /// The Identity Store user id of an assignment: the one kept on its grant, or looked up.
    async fn principal(&self, a: &Assignment) -> Result<String, ProvisionError> {
        match &a.principal_id {
            Some(id) => Ok(id.clone()),
            None => self.user_id(&a.user_name).await,
        }
    }

    /// The Identity Store user id of `user_name`, looked up once.
    pub async fn user_id(&self, user_name: &str) -> Result<String, ProvisionError> {
        if let Some(id) = self.users.lock().expect("users lock").get(user_name) {
            return Ok(id.clone());
        }
        self.budget.take().await;
        let attribute = aws_sdk_identitystore::types::UniqueAttribute::builder()
            .attribute_path(&self.user_attribute)
            .attribute_value(aws_smithy_types::Document::String(user_name.to_owned()))
            .build()
            .map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        let out = self
            .identity
            .get_user_id()
            .identity_store_id(&self.identity_store_id)
            .alternate_identifier(
                aws_sdk_identitystore::types::AlternateIdentifier::UniqueAttribute(attribute),
            )
            .send()
            .await
            .map_err(|e| {
                if e.code() == Some("ResourceNotFoundException") {
                    self.metrics.aws_call("GetUserId", "error");
                    ProvisionError::Permanent(format!(
                        "{user_name} is not a user in IAM Identity Center (looked up by {})",
                        self.user_attribute
                    ))
                } else {
                    self.classify_on("GetUserId", e)
                }
            })?;
        self.answered("GetUserId");
        let id = out.user_id().to_owned();
        self.users
            .lock()
            .expect("users lock")
            .insert(user_name.to_owned(), id.clone());
        Ok(id)
    }

    async fn live_at(
        &self,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Result<Vec<LiveAssignment>, ProvisionError> {
        all_pages(&self.budget, |next| async move {
            let out = self
                .sso
                .list_account_assignments()
                .instance_arn(&self.instance_arn)
                .account_id(account_id)
                .permission_set_arn(permission_set_arn)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| self.classify_on("ListAccountAssignments", e))
                .inspect(|_| self.answered("ListAccountAssignments"))?;
            let found = out.account_assignments().iter().filter_map(|a| {
                Some(LiveAssignment {
                    account_id: account_id.to_owned(),
                    permission_set_arn: permission_set_arn.to_owned(),
                    principal_type: a.principal_type()?.as_str().to_owned(),
                    principal_id: a.principal_id()?.to_owned(),
                })
            });
            Ok((found.collect(), out.next_token))
        })
        .await
    }
}

#[async_trait]
impl Assignments for SsoAdminProvisioner {
    fn name(&self) -> &'static str {
        "iam-identity-center"
    }

    fn share_budget(&self, replicas: u32) {
        self.budget.share_among(replicas);
        self.orgs_budget.share_among(replicas);
    }

    /// Asks about this user in this account only (ListAccountAssignmentsForPrincipal):
    /// listing the permission set's assignments instead costs a page per 100 people who
    /// hold it, which the benchmark showed dominating mass revocations.
    async fn assignment_exists(&self, a: &Assignment) -> Result<bool, ProvisionError> {
        let user = self.principal(a).await?;
        let filter = aws_sdk_ssoadmin::types::ListAccountAssignmentsFilter::builder()
            .account_id(&a.account_id)
            .build();
        let (user, filter) = (&user, &filter);
        let held = all_pages(&self.budget, |next| async move {
            let out = self
                .sso
                .list_account_assignments_for_principal()
                .instance_arn(&self.instance_arn)
                .principal_id(user)
                .principal_type(PrincipalType::User)
                .filter(filter.clone())
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| self.classify_on("ListAccountAssignmentsForPrincipal", e))
                .inspect(|_| self.answered("ListAccountAssignmentsForPrincipal"))?;
            let sets = out
                .account_assignments()
                .iter()
                .filter(|x| x.account_id() == Some(a.account_id.as_str()))
                .filter_map(|x| x.permission_set_arn().map(String::from));
            Ok((sets.collect(), out.next_token))
        })
        .await?;
        Ok(held.contains(&a.permission_set_arn))
    }

    async fn start_create(
        &self,
        a: &Assignment,
        not_after: tokio::time::Instant,
    ) -> Result<String, ProvisionError> {
        let user = self.principal(a).await?;
        // Counted by `creation_slot_free` until AWS answers (then the grant's request id
        // in the database counts it).
        let _creating = Creating::new(&self.creating);
        // The wait for a slot can be long (a burst, a throttled pace, a share among
        // replicas): a slot after the grant's end is not taken. (Checking the end only
        // before waiting let the chaos harness see creations 1.0-1.3 s after it.)
        if !self.budget.take_before(Some(not_after)).await {
            return Err(ProvisionError::TooLate);
        }
        let out = self
            .sso
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(&a.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(user)
            .send()
            .await
            .map_err(|e| self.classify_on("CreateAccountAssignment", e))
            .inspect(|_| self.answered("CreateAccountAssignment"))?;
        request_id(out.account_assignment_creation_status())
    }

    async fn creation_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        self.budget.take().await;
        let out = self
            .sso
            .describe_account_assignment_creation_status()
            .instance_arn(&self.instance_arn)
            .account_assignment_creation_request_id(request_id)
            .send()
            .await
            .map_err(|e| self.classify_on("DescribeAccountAssignmentCreationStatus", e))
            .inspect(|_| self.answered("DescribeAccountAssignmentCreationStatus"))?;
        status(out.account_assignment_creation_status())
    }

    /// Deletes straight away (no existence check first: a listing may lag a fresh
    /// creation, and it costs a call): AWS answering that there is no such assignment
    /// means it is already gone.
    async fn start_delete(&self, a: &Assignment) -> Result<DeleteStart, ProvisionError> {
        let user = self.principal(a).await?;
        self.budget.take().await;
        let out = self
            .sso
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(&a.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(user)
            .send()
            .await;
        match out {
            Ok(out) => {
                self.answered("DeleteAccountAssignment");
                Ok(DeleteStart::Started(request_id(
                    out.account_assignment_deletion_status(),
                )?))
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.answered("DeleteAccountAssignment");
                Ok(DeleteStart::AlreadyGone)
            }
            Err(e) => Err(self.classify_on("DeleteAccountAssignment", e)),
        }
    }

    async fn deletion_status(&self, request_id: &str) -> Result<OperationStatus, ProvisionError> {
        self.budget.take().await;
        let out = self
            .sso
            .describe_account_assignment_deletion_status()
            .instance_arn(&self.instance_arn)
            .account_assignment_deletion_request_id(request_id)
            .send()
            .await
            .map_err(|e| self.classify_on("DescribeAccountAssignmentDeletionStatus", e))
            .inspect(|_| self.answered("DescribeAccountAssignmentDeletionStatus"))?;
        status(out.account_assignment_deletion_status())
    }

    /// The deployment's creations in flight (the database's count) and this process's
    /// calls still under way, against `aws.max_outstanding_creations`. Creations started
    /// at the same moment on other replicas may each see a free slot: the cap (5 by
    /// default) stays below AWS's 10 for that.
    fn creation_slot_free(&self, in_flight: usize) -> Result<(), ProvisionError> {
        let n = in_flight + self.creating.load(Ordering::SeqCst);
        // A pace, not a failure: the worker tries again after a poll interval, without
        // counting an attempt (counted, its backoff grew to minutes under load).
        if n >= self.max_creations {
            return Err(ProvisionError::Throttled(format!(
                "{n} assignment creations are in flight already (aws.max_outstanding_creations)"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Inventory for SsoAdminProvisioner {
    /// The assignments (users and groups) of the account and permission set pairs the
    /// portal manages (entitlement targets, live grants): not the whole organization.
    async fn list_assignments(
        &self,
        pairs: &BTreeSet<(String, String)>,
    ) -> Result<Vec<AssignmentRecord>, ProvisionError> {
        let by_id: HashMap<String, String> = self
            .users
            .lock()
            .expect("users lock")
            .iter()
            .map(|(name, id)| (id.clone(), name.clone()))
            .collect();
        let mut out = Vec::new();
        for (account, set) in pairs {
            for live in self.live_at(account, set).await? {
                let principal = by_id.get(&live.principal_id).cloned().unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        live.principal_type.to_lowercase(),
                        live.principal_id
                    )
                });
                out.push(AssignmentRecord {
                    account_id: live.account_id,
                    permission_set_arn: live.permission_set_arn,
                    principal,
                    created_at: None,
                });
            }
        }
        Ok(out)
    }

    async fn principal_of(&self, a: &Assignment) -> Result<String, ProvisionError> {
        self.principal(a).await
    }

    async fn assignments_at(
        &self,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Result<Vec<LiveAssignment>, ProvisionError> {
        self.live_at(account_id, permission_set_arn).await
    }

    async fn start_delete_live(&self, a: &LiveAssignment) -> Result<String, ProvisionError> {
        let principal_type = PrincipalType::from(a.principal_type.as_str());
        self.budget.take().await;
        let out = self
            .sso
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(&a.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(principal_type)
            .principal_id(&a.principal_id)
            .send()
            .await
            .map_err(|e| self.classify_on("DeleteAccountAssignment", e))
            .inspect(|_| self.answered("DeleteAccountAssignment"))?;
        request_id(out.account_assignment_deletion_status())
    }
}

#[async_trait]
impl CatalogSource for SsoAdminProvisioner {
    async fn read_catalog(&self, progress: &Progress) -> Result<Option<Catalog>, ProvisionError> {
        let mut catalog = Catalog::default();
        self.read_organization(&mut catalog, progress).await?;
        self.read_permission_sets(&mut catalog, progress).await?;
        set_phase(progress, "read");
        Ok(Some(catalog))
    }

    async fn read_groups(
        &self,
        groups: &[String],
    ) -> Result<
        Option<std::collections::BTreeMap<String, Vec<super::DirectoryPerson>>>,
        ProvisionError,
    > {
        self.directory_groups(groups).await.map(Some)
    }
}

#[async_trait]
impl Principals for SsoAdminProvisioner {
    async fn check_principal(&self, user_name: &str) -> Result<(), ProvisionError> {
        self.user_id(user_name).await.map(|_| ())
    }
}

fn request_id(s: Option<&AccountAssignmentOperationStatus>) -> Result<String, ProvisionError> {
    s.and_then(|s| s.request_id())
        .map(String::from)
        .ok_or_else(|| ProvisionError::Transient("AWS answered without a request id".into()))
}

fn status(s: Option<&AccountAssignmentOperationStatus>) -> Result<OperationStatus, ProvisionError> {
    let Some(s) = s else {
        return Err(ProvisionError::Transient(
            "AWS answered without a status".into(),
        ));
    };
    Ok(match s.status() {
        Some(StatusValues::Succeeded) => OperationStatus::Succeeded,
        Some(StatusValues::Failed) => OperationStatus::Failed(
            s.failure_reason()
                .unwrap_or("AWS gave no reason")
                .to_owned(),
        ),
        _ => OperationStatus::InProgress,
    })
}

/// Throttling (AWS sends it with HTTP 400), conflicts, 5xx and timeouts are worth
/// retrying; anything else (access denied, validation, unknown resources) is not.
impl SsoAdminProvisioner {
    /// [`classify`], and a throttle slows the pace of the API that answered it.
    /// AWS answered this call (for `/metrics`; failures are counted by `classify_on`).
    fn answered(&self, operation: &str) {
        self.metrics.aws_call(operation, "ok");
    }

    fn classify_on<E>(&self, operation: &str, e: SdkError<E, HttpResponse>) -> ProvisionError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let err = classify(operation, e);
        let outcome = match &err {
            ProvisionError::Throttled(_) => "throttled",
            ProvisionError::Transient(m) if m.contains("ConflictException") => "conflict",
            _ => "error",
        };
        self.metrics.aws_call(operation, outcome);
        if matches!(err, ProvisionError::Throttled(_)) {
            // The catalog's reads (Organizations, and Identity Store's groups) have their
            // own pace; everything else shares the assignments' budget.
            let organizations = matches!(
                operation,
                "ListRoots"
                    | "ListAccountsForParent"
                    | "ListOrganizationalUnitsForParent"
                    | "GetGroupId"
                    | "ListGroupMemberships"
                    | "DescribeUser"
            );
            if organizations {
                self.orgs_budget.throttled();
            } else {
                self.budget.throttled();
            }
            tracing::info!(
                operation,
                pace_ms = self.budget.interval().as_millis() as u64,
                "throttled by AWS: slowing down"
            );
        }
        err
    }
}

/// The SDK's configuration for every AWS client of the portal: the standard credential
/// chain, the configured region and endpoint, no SDK retries (the worker retries), and the
/// call timeout.
pub(crate) async fn sdk_config(config: &AwsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(config.call_timeout_secs))
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}

pub(crate) fn classify<E>(operation: &str, e: SdkError<E, HttpResponse>) -> ProvisionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!("{operation}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProvisionError::Transient(message)
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if matches!(code, "ThrottlingException" | "TooManyRequestsException") {
                return ProvisionError::Throttled(message);
            }
            let transient = matches!(
                code,
                "ConflictException"
                    | "InternalServerException"
                    | "ServiceUnavailable"
                    | "ServiceUnavailableException"
                    | "RequestTimeout"
            ) || service.raw().status().as_u16() >= 500;
            if transient {
                ProvisionError::Transient(message)
            } else {
                ProvisionError::Permanent(message)
            }
        }
        _ => ProvisionError::Permanent(message),
    }
}

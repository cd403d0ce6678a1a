//! The IAM Identity Center provisioner against moto, behind the fault-injecting layer of
//! `.ci/moto` (one server per test, on loopback, killed by its PID when the test ends).
//! Every test checks AWS's final state through moto's own API, not the provisioner's.

mod common;

use aws_sdk_ssoadmin::types::PrincipalType;
use common::peers::{self, free_port, Peer};
use common::{person, Backend, TestEnv};
use portcullis::config::{AwsConfig, ProvisionerKind};
use portcullis::provisioner::sso_admin::{Budget, SsoAdminProvisioner};
use portcullis::provisioner::{
    Assignment, DeleteStart, OperationStatus, ProvisionError, Provisioner,
};
use portcullis::store::{AlertKind, DatabaseUrl, Store};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const ACCOUNT: &str = "111111111111";

struct Moto {
    child: Peer,
    url: String,
    http: reqwest::Client,
}

fn set_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Static test credentials for moto; every test sets the same values.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_PROFILE");
    });
}

impl Moto {
    async fn start() -> Moto {
        set_test_credentials();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = peers::python();
        let http = reqwest::Client::new();
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new(&python)
                .arg(root.join(".ci/moto/fault_server.py"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto");
            let mut moto = Moto {
                child: Peer::new(child),
                url: format!("http://127.0.0.1:{port}"),
                http: http.clone(),
            };
            for _ in 0..150 {
                if let Ok(r) = http.get(format!("{}/_fault/", moto.url)).send().await {
                    if r.status().is_success() {
                        return moto;
                    }
                }
                if moto.child.exited().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto did not start");
    }

    async fn fault(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/_fault/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
    }

    /// The fault layer's log of one operation's calls, oldest first.
    async fn log(&self, operation: &str) -> Vec<Value> {
        let log: Value = self
            .http
            .get(format!("{}/_fault/log?operation={operation}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log.as_array()
            .or_else(|| log["entries"].as_array())
            .cloned()
            .unwrap_or_default()
    }

    async fn calls(&self, operation: &str) -> usize {
        self.log(operation).await.len()
    }
}

/// A world in moto: the instance, a permission set, a user; and a provisioner on it.
struct World {
    moto: Moto,
    sso: aws_sdk_ssoadmin::Client,
    instance_arn: String,
    permission_set_arn: String,
    provisioner: SsoAdminProvisioner,
    store: Store,
    _dir: tempfile::TempDir,
}

fn aws_config(moto: &Moto) -> AwsConfig {
    AwsConfig {
        provisioner: ProvisionerKind::SsoAdmin,
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.url.clone()),
        call_timeout_secs: 2,
        requests_per_second: 1000,
        ..AwsConfig::default()
    }
}

async fn world() -> World {
    world_on(Moto::start().await).await
}

/// The SDK's configuration for moto (no SDK retries).
async fn sdk_for(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// SDK clients on moto (no SDK retries), and Alice in Identity Store.
async fn clients_with_alice(
    moto: &Moto,
) -> (
    aws_sdk_ssoadmin::Client,
    aws_sdk_identitystore::Client,
    String,
) {
    let sdk = sdk_for(moto).await;
    let sso = aws_sdk_ssoadmin::Client::new(&sdk);
    let identity = aws_sdk_identitystore::Client::new(&sdk);
    let instances = sso.list_instances().send().await.unwrap();
    let instance_arn = instances.instances()[0].instance_arn().unwrap().to_owned();
    let store_id = instances.instances()[0]
        .identity_store_id()
        .unwrap()
        .to_owned();
    identity
        .create_user()
        .identity_store_id(&store_id)
        .user_name("alice@example.com")
        .display_name("Alice Employee")
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name("Alice")
                .family_name("Employee")
                .build(),
        )
        .send()
        .await
        .unwrap();
    (sso, identity, instance_arn)
}

async fn world_on(moto: Moto) -> World {
    let (sso, _identity, instance_arn) = clients_with_alice(&moto).await;
    let ps = sso
        .create_permission_set()
        .instance_arn(&instance_arn)
        .name("ReadOnlyAccess")
        .session_duration("PT4H")
        .send()
        .await
        .unwrap();
    let permission_set_arn = ps
        .permission_set()
        .unwrap()
        .permission_set_arn()
        .unwrap()
        .to_owned();

    let dir = tempfile::TempDir::new().unwrap();
    let url = DatabaseUrl::new(format!("sqlite://{}/a.db?mode=rwc", dir.path().display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Discovery: no instance ARN or identity store id configured.
    let provisioner = SsoAdminProvisioner::connect(&aws_config(&moto))
        .await
        .unwrap();
    assert_eq!(provisioner.instance_arn(), instance_arn);
    World {
        moto,
        sso,
        instance_arn,
        permission_set_arn,
        provisioner,
        store,
        _dir: dir,
    }
}

impl World {
    fn alice(&self) -> Assignment {
        Assignment {
            account_id: ACCOUNT.into(),
            permission_set_arn: self.permission_set_arn.clone(),
            user_id: "https://idp|u-alice".into(),
            user_name: "alice@example.com".into(),
        }
    }

    /// What moto holds for the account and permission set: user principal ids.
    async fn assigned(&self) -> Vec<String> {
        self.sso
            .list_account_assignments()
            .instance_arn(&self.instance_arn)
            .account_id(ACCOUNT)
            .permission_set_arn(&self.permission_set_arn)
            .send()
            .await
            .unwrap()
            .account_assignments()
            .iter()
            .filter(|a| a.principal_type() == Some(&PrincipalType::User))
            .filter_map(|a| a.principal_id().map(String::from))
            .collect()
    }

    async fn create(&self) -> String {
        self.provisioner.start_create(&self.alice()).await.unwrap()
    }
}

#[tokio::test]
async fn grants_and_revokes_an_account_assignment() {
    let w = world().await;
    let a = w.alice();
    let user = w.provisioner.user_id("alice@example.com").await.unwrap();
    assert!(!w.provisioner.assignment_exists(&a).await.unwrap());

    let op = w.create().await;
    assert_eq!(
        w.provisioner.creation_status(&op).await.unwrap(),
        OperationStatus::Succeeded
    );
    assert_eq!(w.assigned().await, vec![user], "moto holds it");
    assert!(w.provisioner.assignment_exists(&a).await.unwrap());

    let DeleteStart::Started(op) = w.provisioner.start_delete(&a).await.unwrap() else {
        panic!("there was an assignment to delete");
    };
    assert_eq!(
        w.provisioner.deletion_status(&op).await.unwrap(),
        OperationStatus::Succeeded
    );
    assert!(w.assigned().await.is_empty(), "moto no longer holds it");
    // Removed already (by the portal, or by hand in the console): nothing to do.
    assert_eq!(
        w.provisioner.start_delete(&a).await.unwrap(),
        DeleteStart::AlreadyGone
    );
}

#[tokio::test]
async fn a_user_unknown_to_identity_store_gets_a_clear_permanent_error() {
    let w = world().await;
    let mut a = w.alice();
    a.user_name = "mallory@example.com".into();
    match w.provisioner.start_create(&a).await {
        Err(ProvisionError::Permanent(m)) => {
            assert!(m.contains("mallory@example.com is not a user"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(w.assigned().await.is_empty());
}

#[tokio::test]
async fn throttling_conflicts_5xx_and_timeouts_are_transient_one_call_each() {
    let w = world().await;
    w.provisioner.user_id("alice@example.com").await.unwrap();
    for (fault, expect_transient) in [
        (json!({"code": "ThrottlingException", "status": 400}), true),
        (json!({"code": "ConflictException", "status": 400}), true),
        (
            json!({"code": "InternalServerException", "status": 500}),
            true,
        ),
        (json!({"code": "ServiceUnavailable", "status": 503}), true),
        (
            json!({"code": "AccessDeniedException", "status": 400}),
            false,
        ),
        (json!({"code": "ValidationException", "status": 400}), false),
    ] {
        let before = w.moto.calls("CreateAccountAssignment").await;
        let mut rule = fault.clone();
        rule["operation"] = json!("CreateAccountAssignment");
        w.moto.fault("arm", rule).await;
        let err = w.provisioner.start_create(&w.alice()).await.unwrap_err();
        assert_eq!(
            matches!(err, ProvisionError::Transient(_)),
            expect_transient,
            "{fault}: {err}"
        );
        assert!(
            err.to_string().contains(fault["code"].as_str().unwrap()),
            "{err}"
        );
        assert_eq!(
            w.moto.calls("CreateAccountAssignment").await,
            before + 1,
            "{fault}: one call; retries are the worker's"
        );
        assert!(w.assigned().await.is_empty(), "{fault}: nothing created");
    }
    // Slower than the call timeout: transient too.
    w.moto
        .fault(
            "arm",
            json!({"operation": "CreateAccountAssignment", "delay_ms": 3000}),
        )
        .await;
    let err = w.provisioner.start_create(&w.alice()).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Transient(_)), "{err}");

    // The faults are spent: the next call works.
    tokio::time::sleep(Duration::from_millis(1500)).await; // the delayed call lands in moto
    let op = w.create().await;
    assert_eq!(
        w.provisioner.creation_status(&op).await.unwrap(),
        OperationStatus::Succeeded
    );
}

#[tokio::test]
async fn in_progress_until_aws_settles_and_failed_with_the_reason() {
    let w = world().await;
    w.moto
        .fault(
            "in_progress",
            json!({"operation": "DescribeAccountAssignmentCreationStatus", "count": 2}),
        )
        .await;
    let op = w.create().await;
    for _ in 0..2 {
        assert_eq!(
            w.provisioner.creation_status(&op).await.unwrap(),
            OperationStatus::InProgress
        );
    }
    assert_eq!(
        w.provisioner.creation_status(&op).await.unwrap(),
        OperationStatus::Succeeded
    );

    // A deletion that fails, with AWS's reason; the assignment stays.
    w.moto
        .fault(
            "fail",
            json!({"operation": "DescribeAccountAssignmentDeletionStatus", "count": 1,
                   "reason": "Assignment is locked by a pending operation"}),
        )
        .await;
    let DeleteStart::Started(op) = w.provisioner.start_delete(&w.alice()).await.unwrap() else {
        panic!("there was an assignment");
    };
    assert_eq!(
        w.provisioner.deletion_status(&op).await.unwrap(),
        OperationStatus::Failed("Assignment is locked by a pending operation".into())
    );
    assert_eq!(w.assigned().await.len(), 1, "still assigned in moto");
}

#[tokio::test]
async fn a_creation_that_fails_leaves_nothing_behind() {
    let w = world().await;
    w.moto
        .fault(
            "fail",
            json!({"operation": "DescribeAccountAssignmentCreationStatus", "count": 1,
                   "reason": "Quota exceeded for roles in account 111111111111"}),
        )
        .await;
    let op = w.create().await;
    match w.provisioner.creation_status(&op).await.unwrap() {
        OperationStatus::Failed(reason) => assert!(reason.contains("Quota exceeded"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(w.assigned().await.is_empty());
    assert!(!w.provisioner.assignment_exists(&w.alice()).await.unwrap());
}

/// No more than `aws.max_outstanding_creations` creations in flight: the next one is a
/// transient refusal (the worker tries again later) until one settles.
#[tokio::test]
async fn outstanding_creations_are_capped() {
    let moto = Moto::start().await;
    let mut w = world_on(moto).await;
    let mut config = aws_config(&w.moto);
    config.max_outstanding_creations = 2;
    w.provisioner = SsoAdminProvisioner::connect(&config).await.unwrap();
    w.moto
        .fault(
            "in_progress",
            json!({"operation": "DescribeAccountAssignmentCreationStatus", "count": 1}),
        )
        .await;
    let mut a = w.alice();
    let first = w.provisioner.start_create(&a).await.unwrap();
    a.account_id = "222222222222".into();
    let _second = w.provisioner.start_create(&a).await.unwrap();
    a.account_id = "333333333333".into();
    let before = w.moto.calls("CreateAccountAssignment").await;
    let err = w.provisioner.start_create(&a).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Transient(_)), "{err}");
    assert!(err.to_string().contains("in flight"), "{err}");
    assert_eq!(
        w.moto.calls("CreateAccountAssignment").await,
        before,
        "not sent to AWS"
    );
    // Still in progress: still counted.
    assert_eq!(
        w.provisioner.creation_status(&first).await.unwrap(),
        OperationStatus::InProgress
    );
    assert!(w.provisioner.start_create(&a).await.is_err());
    // Settled: a slot is free.
    assert_eq!(
        w.provisioner.creation_status(&first).await.unwrap(),
        OperationStatus::Succeeded
    );
    w.provisioner.start_create(&a).await.unwrap();
}

#[tokio::test]
async fn the_user_lookup_is_cached() {
    let w = world().await;
    let before = w.moto.calls("GetUserId").await;
    for _ in 0..3 {
        w.provisioner.user_id("alice@example.com").await.unwrap();
    }
    assert_eq!(w.moto.calls("GetUserId").await, before + 1);
}

/// Never faster than the budget: 21 calls at 10 a second need at least 2 s (the first
/// goes at once). A lower bound only; how close to it is the benchmark's business.
#[tokio::test]
async fn the_budget_is_never_exceeded() {
    let budget = Budget::per_second(10);
    let start = tokio::time::Instant::now();
    for _ in 0..21 {
        budget.take().await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
}

// ------------------------------------------------------------ with the worker

/// Moto with Alice in Identity Store, and a provisioner on it over the test's store.
async fn moto_for() -> (
    Moto,
    std::sync::Arc<SsoAdminProvisioner>,
    aws_sdk_ssoadmin::Client,
) {
    let moto = Moto::start().await;
    let (sso, _identity, _instance) = clients_with_alice(&moto).await;
    let provisioner = SsoAdminProvisioner::connect(&aws_config(&moto))
        .await
        .unwrap();
    (moto, std::sync::Arc::new(provisioner), sso)
}

/// Alice's request for sandbox-admin (approved at once), its grant, and a worker on AWS.
async fn alice_asks(
    env: &TestEnv,
    provisioner: &std::sync::Arc<SsoAdminProvisioner>,
) -> (portcullis::store::GrantRow, portcullis::worker::Worker) {
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let grant = env.only_grant(&rid).await;
    (
        grant,
        env.worker_with(provisioner.clone(), common::settings()),
    )
}

/// How many user assignments moto holds for the grant's account and permission set.
async fn in_moto(
    sso: &aws_sdk_ssoadmin::Client,
    p: &SsoAdminProvisioner,
    g: &portcullis::store::GrantRow,
) -> usize {
    sso.list_account_assignments()
        .instance_arn(p.instance_arn())
        .account_id(&g.account_id)
        .permission_set_arn(&g.permission_set_arn)
        .send()
        .await
        .unwrap()
        .account_assignments()
        .len()
}

/// The worker grants through IAM Identity Center and revokes at the end, by itself.
async fn the_worker_grants_and_revokes_in_aws(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 1);

    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 0, "revoked in AWS");
    assert_eq!(moto.calls("CreateAccountAssignment").await, 1);
    assert_eq!(moto.calls("DeleteAccountAssignment").await, 1);
}

/// A worker that stops between CreateAccountAssignment and its status: the next worker
/// polls the same request id, and AWS holds one assignment.
async fn a_restarted_worker_resumes_polling_the_same_request(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    moto.fault(
        "in_progress",
        json!({"operation": "DescribeAccountAssignmentCreationStatus", "count": 1}),
    )
    .await;
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let g = env.only_grant(&rid).await;
    {
        let first = env.worker_with(provisioner.clone(), common::settings());
        first.drain().await.unwrap();
        assert_eq!(
            env.grant(&g.access_grant_id).await.status.as_str(),
            "provisioning"
        );
    } // gone
    let second = env.worker_with(provisioner.clone(), common::settings());
    env.settle(&second).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(
        moto.calls("CreateAccountAssignment").await,
        1,
        "no second creation"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 1, "one assignment");
    let ids: std::collections::HashSet<String> = moto
        .log("DescribeAccountAssignmentCreationStatus")
        .await
        .iter()
        .filter_map(|e| {
            e["request"]["AccountAssignmentCreationRequestId"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every poll asked about the same request: {ids:?}"
    );
}

/// AWS refuses the creation with a reason: the grant fails, the requester is told and
/// admins are alerted with AWS's words.
async fn a_failed_creation_fails_the_grant_with_the_reason(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    moto.fault(
        "fail",
        json!({"operation": "DescribeAccountAssignmentCreationStatus", "count": 1,
               "reason": "Quota exceeded for roles in account 111111111111"}),
    )
    .await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "failed"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 0);
    let alerts = env.all_alerts().await;
    assert!(
        alerts
            .iter()
            .any(|a| format!("{a:?}").contains("Quota exceeded")),
        "{alerts:?}"
    );
}

/// Throttled twice, then fine: the worker retries and the grant becomes active.
async fn throttling_is_retried_by_the_worker(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    moto.fault(
        "arm",
        json!({"operation": "CreateAccountAssignment", "count": 2, "code": "ThrottlingException", "status": 400}),
    )
    .await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(moto.calls("CreateAccountAssignment").await, 3);
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 1);
}

/// Someone IAM Identity Center does not know hears it when asking, and nothing is stored.
async fn an_unknown_user_is_told_at_request_time(b: Backend) {
    use app::ssr::Portal as _;
    let env = TestEnv::new(b).await;
    let (_moto, provisioner, _sso) = moto_for().await;
    let portal = portcullis::portal::PortalService {
        store: env.store.clone(),
        clock: env.clock.clone(),
        provisioner,
        wake: env.wake.clone(),
        upkeep_wake: Default::default(),
        min_duration: Duration::from_secs(60),
        public_url: common::PUBLIC_URL.into(),
    };
    let requests_before = env.count("access_request").await;
    // Bob is in the portal but not in Identity Store.
    let err = portal
        .create_request(&person("bob"), "sandbox-admin", common::draft("1h"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("bob@example.com is not a user in IAM Identity Center"),
        "{message}"
    );
    assert_eq!(env.count("access_request").await, requests_before);
    // Alice is: her request goes through.
    portal
        .create_request(&person("alice"), "sandbox-admin", common::draft("1h"))
        .await
        .unwrap();
    assert_eq!(env.count("access_request").await, requests_before + 1);
}

both!(
    an_unknown_user_is_told_at_request_time,
    the_worker_grants_and_revokes_in_aws,
    a_restarted_worker_resumes_polling_the_same_request,
    a_failed_creation_fails_the_grant_with_the_reason,
    throttling_is_retried_by_the_worker,
    overlapping_grants_share_one_assignment_in_aws,
    revoking_an_assignment_already_removed_by_hand,
    an_assignment_made_outside_the_portal_is_kept_unless_owned,
    reconciliation_mends_and_reports_drift_both_ways,
    reconciliation_revokes_the_portals_leftovers,
);

// ------------------------------------------------------------ catalog sync

/// An organization in moto: Root > Workloads > Prod, and Root > Sandbox.
struct Org {
    root: String,
    workloads: String,
    prod: String,
    /// Directly in Workloads.
    tools_account: String,
    /// In Prod, below Workloads.
    prod_account: String,
    /// In Sandbox.
    sandbox_account: String,
}

async fn seed_org(moto: &Moto) -> (aws_sdk_organizations::Client, Org) {
    use aws_sdk_organizations::types::OrganizationFeatureSet;
    let orgs = aws_sdk_organizations::Client::new(&sdk_for(moto).await);
    orgs.create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let root = orgs.list_roots().send().await.unwrap().roots()[0]
        .id()
        .unwrap()
        .to_owned();
    let ou = |parent: String, name: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .unwrap()
                .organizational_unit()
                .unwrap()
                .id()
                .unwrap()
                .to_owned()
        }
    };
    let workloads = ou(root.clone(), "Workloads").await;
    let prod = ou(workloads.clone(), "Prod").await;
    let sandbox = ou(root.clone(), "Sandbox").await;
    let account = |name: &'static str, into: String| {
        let (orgs, root) = (orgs.clone(), root.clone());
        async move {
            let id = orgs
                .create_account()
                .account_name(name)
                .email(format!("{}@example.com", name.to_lowercase()))
                .send()
                .await
                .unwrap()
                .create_account_status()
                .unwrap()
                .account_id()
                .unwrap()
                .to_owned();
            orgs.move_account()
                .account_id(&id)
                .source_parent_id(root)
                .destination_parent_id(into)
                .send()
                .await
                .unwrap();
            id
        }
    };
    let tools_account = account("Tools", workloads.clone()).await;
    let prod_account = account("Production", prod.clone()).await;
    let sandbox_account = account("Sandbox", sandbox).await;
    (
        orgs,
        Org {
            root,
            workloads,
            prod,
            tools_account,
            prod_account,
            sandbox_account,
        },
    )
}

/// Accounts with their OU paths from the root down, nested OUs included, and permission
/// sets with their session durations; an OU entitlement covers the accounts below it;
/// a second sync drops what left the organization.
#[tokio::test]
async fn catalog_sync_reads_nested_ous_and_permission_sets() {
    use portcullis::store;
    let moto = Moto::start().await;
    let (orgs, org) = seed_org(&moto).await;
    let w = world_on(moto).await;
    w.sso
        .create_permission_set()
        .instance_arn(&w.instance_arn)
        .name("Admin")
        .description("Full access")
        .session_duration("PT1H30M")
        .send()
        .await
        .unwrap();
    // Slow enough to watch its progress from outside.
    w.moto
        .fault(
            "arm",
            json!({"operation": "ListAccountsForParent", "always": true, "delay_ms": 300}),
        )
        .await;
    let clock = portcullis::clock::SystemClock;
    let sync = portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock);
    let watch = async {
        let mut seen = Vec::new();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut conn = w.store.conn().await.unwrap();
            let runs = store::recent_runs(&mut conn, store::JobKind::SyncCatalog, 1)
                .await
                .unwrap();
            if let Some(r) = runs.first() {
                seen.push((r.status.clone(), r.progress.clone()));
                if r.status.as_str() != "running" {
                    break;
                }
            }
        }
        seen
    };
    let (result, seen) = tokio::join!(sync, watch);
    result.unwrap();
    assert!(
        seen.iter()
            .any(|(s, p)| s == "running" && p.starts_with("reading the organization: ")),
        "progress while running: {seen:?}"
    );

    let mut conn = w.store.conn().await.unwrap();
    let accounts = store::all_accounts(&mut conn).await.unwrap();
    let path_of = |id: &str| {
        accounts
            .iter()
            .find(|a| a.account_id == id)
            .map(|a| a.ou_path.clone())
            .unwrap_or_else(|| panic!("{id} not synced: {accounts:?}"))
    };
    let root = &org.root;
    assert_eq!(
        path_of(&org.prod_account),
        format!("/{root}/{}/{}/", org.workloads, org.prod)
    );
    assert_eq!(
        path_of(&org.tools_account),
        format!("/{root}/{}/", org.workloads)
    );
    assert_eq!(
        accounts.len(),
        4,
        "three accounts and the management account"
    );
    let under: Vec<String> = store::accounts_under_ou(&mut conn, &org.workloads)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.account_id)
        .collect();
    let mut want = vec![org.tools_account.clone(), org.prod_account.clone()];
    want.sort();
    assert_eq!(under, want, "Workloads covers Prod's account too");
    assert!(!under.contains(&org.sandbox_account));
    let ous = store::all_org_units(&mut conn).await.unwrap();
    let prod = ous.iter().find(|o| o.ou_id == org.prod).unwrap();
    assert_eq!(prod.name, "Prod");
    assert_eq!(prod.parent_id.as_deref(), Some(org.workloads.as_str()));

    // An entitlement on the Workloads OU grants in both accounts below it. (moto's
    // permission set ARNs are not shaped like AWS's, which the domain insists on: a real
    // one stands in.)
    let target = app::domain::Target {
        scope: app::domain::TargetScope::Ou {
            ou_id: app::domain::OuId::parse(&org.workloads).unwrap(),
        },
        permission_set_arn: app::domain::PermissionSetArn::parse(
            "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef",
        )
        .unwrap(),
    };
    let pairs = portcullis::grants::expand_targets(&mut conn, &[target])
        .await
        .unwrap();
    let mut covered: Vec<String> = pairs.into_iter().map(|(a, _)| a.account_id).collect();
    covered.sort();
    assert_eq!(covered, want);

    let sets = store::all_permission_sets(&mut conn).await.unwrap();
    let secs = |name: &str| {
        sets.iter()
            .find(|p| p.name == name)
            .map(|p| p.session_duration_secs)
            .unwrap_or_else(|| panic!("{name} not synced: {sets:?}"))
    };
    assert_eq!(secs("ReadOnlyAccess"), 4 * 3600);
    assert_eq!(secs("Admin"), 5400);
    let run = &store::recent_runs(&mut conn, store::JobKind::SyncCatalog, 1)
        .await
        .unwrap()[0];
    assert_eq!(run.status.as_str(), "succeeded");
    assert!(
        run.summary
            .as_deref()
            .unwrap()
            .starts_with("4 OUs, 4 accounts, 2 permission sets"),
        "{run:?}"
    );
    drop(conn);

    // The sandbox account leaves the organization: the next sync drops it.
    w.moto.fault("reset", json!({})).await;
    orgs.remove_account_from_organization()
        .account_id(&org.sandbox_account)
        .send()
        .await
        .unwrap();
    portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock)
        .await
        .unwrap();
    let mut conn = w.store.conn().await.unwrap();
    let accounts = store::all_accounts(&mut conn).await.unwrap();
    assert_eq!(accounts.len(), 3);
    assert!(accounts.iter().all(|a| a.account_id != org.sandbox_account));
    let run = &store::recent_runs(&mut conn, store::JobKind::SyncCatalog, 1)
        .await
        .unwrap()[0];
    assert!(
        run.summary
            .as_deref()
            .unwrap()
            .contains("removed 0 OUs, 1 accounts"),
        "{run:?}"
    );
}

/// AWS failing mid-sync leaves the catalog as it was, and the run says why.
#[tokio::test]
async fn a_failed_catalog_sync_changes_nothing() {
    use portcullis::store;
    let moto = Moto::start().await;
    let (_orgs, _org) = seed_org(&moto).await;
    let w = world_on(moto).await;
    let clock = portcullis::clock::SystemClock;
    portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock)
        .await
        .unwrap();
    let before = {
        let mut conn = w.store.conn().await.unwrap();
        store::all_accounts(&mut conn).await.unwrap().len()
    };
    w.moto
        .fault(
            "arm",
            json!({"operation": "DescribePermissionSet", "count": 1, "code": "AccessDeniedException", "status": 400}),
        )
        .await;
    let err = portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("AccessDeniedException"),
        "{err:#}"
    );
    let mut conn = w.store.conn().await.unwrap();
    assert_eq!(store::all_accounts(&mut conn).await.unwrap().len(), before);
    assert_eq!(
        store::all_permission_sets(&mut conn).await.unwrap().len(),
        1
    );
    let run = &store::recent_runs(&mut conn, store::JobKind::SyncCatalog, 1)
        .await
        .unwrap()[0];
    assert_eq!(run.status.as_str(), "failed");
    assert!(run
        .summary
        .as_deref()
        .unwrap()
        .contains("AccessDeniedException"));
}

#[test]
fn session_durations_parse_from_iso_8601() {
    use portcullis::provisioner::sso_admin::iso8601_secs;
    assert_eq!(iso8601_secs("PT1H"), Some(3600));
    assert_eq!(iso8601_secs("PT1H30M"), Some(5400));
    assert_eq!(iso8601_secs("PT12H"), Some(43200));
    assert_eq!(iso8601_secs("PT45M10S"), Some(2710));
    assert_eq!(iso8601_secs("P1D"), None);
    assert_eq!(iso8601_secs("PT"), None);
    assert_eq!(iso8601_secs("PT5"), None);
}

// ------------------------------------------------------------ shared assignments and drift

/// Alice's Identity Store user id.
async fn alice_in_aws(p: &SsoAdminProvisioner) -> String {
    p.user_id("alice@example.com").await.unwrap()
}

/// Removes or adds an assignment as someone in the AWS console would.
async fn by_hand(
    sso: &aws_sdk_ssoadmin::Client,
    p: &SsoAdminProvisioner,
    g: &portcullis::store::GrantRow,
    principal: &str,
    add: bool,
) {
    use aws_sdk_ssoadmin::types::TargetType;
    if add {
        sso.create_account_assignment()
            .instance_arn(p.instance_arn())
            .target_id(&g.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&g.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(principal)
            .send()
            .await
            .unwrap();
    } else {
        sso.delete_account_assignment()
            .instance_arn(p.instance_arn())
            .target_id(&g.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&g.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(principal)
            .send()
            .await
            .unwrap();
    }
}

/// Two grants on one assignment (a second request while the first is active, as an
/// extension would be): one creation, kept when the first ends, deleted after the last.
async fn overlapping_grants_share_one_assignment_in_aws(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (first, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    let second = env
        .only_grant(&env.ask(&person("alice"), "sandbox-admin", "2h").await)
        .await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&second.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(in_moto(&sso, &provisioner, &first).await, 1);
    assert_eq!(
        moto.calls("CreateAccountAssignment").await,
        1,
        "created once"
    );

    env.set_time(first.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&first.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(
        in_moto(&sso, &provisioner, &first).await,
        1,
        "kept for the second"
    );
    assert_eq!(moto.calls("DeleteAccountAssignment").await, 0);

    env.set_time(env.grant(&second.access_grant_id).await.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&second.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(
        in_moto(&sso, &provisioner, &first).await,
        0,
        "deleted after the last"
    );
    assert_eq!(moto.calls("DeleteAccountAssignment").await, 1);
}

/// Someone removed the assignment in the console: the revocation finds nothing to
/// delete, says so, and calls no delete.
async fn revoking_an_assignment_already_removed_by_hand(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    let alice = alice_in_aws(&provisioner).await;
    by_hand(&sso, &provisioner, &g, &alice, false).await;
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(
        moto.calls("DeleteAccountAssignment").await,
        1,
        "only the hand's"
    );
    let revoked = env.audit_with("grant.revoked").await;
    assert!(
        revoked[0].detail.contains("already gone from AWS"),
        "{revoked:?}"
    );
}

/// An assignment made in the console before Alice asked: her grant uses it, and it is
/// left in place when the grant ends, unless the portal owns the permission set.
async fn an_assignment_made_outside_the_portal_is_kept_unless_owned(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let alice = alice_in_aws(&provisioner).await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    by_hand(&sso, &provisioner, &g, &alice, true).await;
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    assert_eq!(
        moto.calls("CreateAccountAssignment").await,
        1,
        "only the hand's"
    );
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 1, "kept");
    assert_eq!(moto.calls("DeleteAccountAssignment").await, 0);
    let revoked = env.audit_with("grant.revoked").await;
    assert!(
        revoked[0]
            .detail
            .contains("made outside the portal and is kept"),
        "{revoked:?}"
    );

    // The portal owns the permission set: the next grant's end deletes it.
    let owned = portcullis::config::Upkeep {
        owned_permission_sets: vec![g.permission_set_arn.clone()],
        ..Default::default()
    };
    let w = env
        .worker_with(provisioner.clone(), common::settings())
        .with_upkeep(owned);
    let next = env
        .only_grant(&env.ask(&person("alice"), "sandbox-admin", "1h").await)
        .await;
    env.settle(&w).await;
    env.set_time(next.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&next.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(in_moto(&sso, &provisioner, &g).await, 0, "deleted: owned");
}

/// Reconciliation: a hand-removed assignment of an active grant is made again and
/// reported; an assignment made outside the portal is reported (once, audited) and left,
/// or deleted when the portal owns the permission set, and its alert then resolves.
async fn reconciliation_mends_and_reports_drift_both_ways(b: Backend) {
    use portcullis::upkeep::reconcile;
    const DRIFT_EXTERNAL: AlertKind = AlertKind::DriftExternal;
    const DRIFT_MISSING: AlertKind = AlertKind::DriftMissing;
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    let alice = alice_in_aws(&provisioner).await;
    // A grant active for a while, then its assignment vanishes in the console.
    env.advance(Duration::from_secs(120));
    by_hand(&sso, &provisioner, &g, &alice, false).await;
    // And Mallory, whom the portal never granted anything, holds the same permission set.
    let identity = aws_sdk_identitystore::Client::new(&sdk_for(&moto).await);
    let store_id = sso.list_instances().send().await.unwrap().instances()[0]
        .identity_store_id()
        .unwrap()
        .to_owned();
    let mallory = identity
        .create_user()
        .identity_store_id(&store_id)
        .user_name("mallory@example.com")
        .display_name("Mallory")
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name("Mallory")
                .family_name("Outside")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .user_id()
        .to_owned();
    by_hand(&sso, &provisioner, &g, &mallory, true).await;

    let upkeep = portcullis::config::Upkeep::default();
    let found = reconcile::run(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!(
        (found.missing, found.external, found.orphans_revoked),
        (1, 1, 0),
        "{found:?}"
    );
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "scheduled"
    );
    assert_eq!(env.alerts(DRIFT_MISSING.as_str()).await.len(), 1);
    assert_eq!(env.alerts(DRIFT_EXTERNAL.as_str()).await.len(), 1);
    assert_eq!(
        env.audit_with("reconcile.assignment_missing").await.len(),
        1
    );
    assert_eq!(env.audit_with("reconcile.drift_external").await.len(), 1);
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    let mut held = in_moto_principals(&sso, &provisioner, &g).await;
    held.sort();
    let mut want = vec![alice.clone(), mallory.clone()];
    want.sort();
    assert_eq!(held, want, "Alice's made again, Mallory's left");
    // The admin page's list: the managed pairs, Alice by name, Mallory by her AWS id.
    let pairs = portcullis::grants::managed_pairs(&mut *env.conn().await)
        .await
        .unwrap();
    let listed: Vec<String> = provisioner
        .list_assignments(&pairs)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.account_id == g.account_id)
        .map(|r| r.principal)
        .collect();
    assert!(
        listed.contains(&"alice@example.com".to_owned()),
        "{listed:?}"
    );
    assert!(listed.contains(&format!("user {mallory}")), "{listed:?}");

    // The next run, through the worker's job: in sync for Alice, Mallory reported once.
    {
        let mut conn = env.conn().await;
        let now = env.now();
        portcullis::store::schedule_singleton(
            &mut conn,
            portcullis::store::JobKind::Reconcile,
            now,
            now,
        )
        .await
        .unwrap();
    }
    w.drain().await.unwrap();
    assert_eq!(env.audit_with("reconcile.finished").await.len(), 2);
    assert_eq!(
        env.audit_with("reconcile.drift_external").await.len(),
        1,
        "once"
    );
    assert_eq!(env.alerts(DRIFT_EXTERNAL.as_str()).await.len(), 1);

    // The portal owns the permission set: Mallory's goes, and the alert resolves after.
    let owned = portcullis::config::Upkeep {
        owned_permission_sets: vec![g.permission_set_arn.clone()],
        ..Default::default()
    };
    let found = reconcile::run(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &owned,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!(found.external_revoked, 1, "{found:?}");
    assert_eq!(
        in_moto_principals(&sso, &provisioner, &g).await,
        vec![alice.clone()]
    );
    let found = reconcile::run(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &owned,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!(
        (found.in_sync, found.external, found.missing),
        (1, 0, 0),
        "{found:?}"
    );
    let open_external = {
        let mut conn = env.conn().await;
        portcullis::store::open_alerts_of(&mut conn, &[DRIFT_EXTERNAL])
            .await
            .unwrap()
    };
    assert!(open_external.is_empty(), "{open_external:?}");

    // Made again by the portal, so deleted by it at the end.
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(in_moto_principals(&sso, &provisioner, &g).await.is_empty());
}

/// The portal's own assignment outlived its grants (say a deletion was lost): the next
/// reconciliation deletes it and audits it, but not while someone the portal holds an
/// assignment record for cannot be looked up in AWS (their live grant could need it), and
/// an AWS error on the deletion fails the run without stopping it.
async fn reconciliation_revokes_the_portals_leftovers(b: Backend) {
    use portcullis::upkeep::reconcile::run as reconcile;
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    sqlx::query("UPDATE access_grant SET status = 'revoked' WHERE access_grant_id = $1")
        .bind(&g.access_grant_id)
        .execute(&mut *env.conn().await)
        .await
        .unwrap();
    sqlx::query("DELETE FROM job WHERE subject_id = $1")
        .bind(&g.access_grant_id)
        .execute(&mut *env.conn().await)
        .await
        .unwrap();
    // Bob, whom Identity Store does not know, has a record: deletions wait.
    let bob = person("bob");
    let bob_grant = portcullis::store::GrantRow {
        principal_id: bob.user_id.clone(),
        ..g.clone()
    };
    portcullis::store::set_assignment_origin(
        &mut *env.conn().await,
        &bob_grant,
        portcullis::store::Origin::Portal,
        env.now(),
    )
    .await
    .unwrap();
    let upkeep = portcullis::config::Upkeep::default();
    let found = reconcile(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!(
        (found.orphans_revoked, found.deletions_held),
        (0, 1),
        "{found:?}"
    );
    assert_eq!(
        in_moto_principals(&sso, &provisioner, &g).await.len(),
        1,
        "kept for now"
    );
    portcullis::store::forget_assignment(&mut *env.conn().await, bob_grant.key())
        .await
        .unwrap();

    // AWS refuses the deletion once: the run fails and says why; the next one deletes.
    moto.fault(
        "arm",
        json!({"operation": "DeleteAccountAssignment", "count": 1, "code": "ConflictException"}),
    )
    .await;
    let err = reconcile(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("ConflictException"), "{err:#}");
    assert_eq!(in_moto_principals(&sso, &provisioner, &g).await.len(), 1);
    assert_eq!(env.audit_with("reconcile.failed").await.len(), 1);
    let found = reconcile(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!((found.orphans_revoked, found.external), (1, 0), "{found:?}");
    assert!(in_moto_principals(&sso, &provisioner, &g).await.is_empty());
    assert_eq!(env.audit_with("reconcile.orphan_revoked").await.len(), 1);
    assert_eq!(env.alerts("drift_orphan").await.len(), 1);
    // The record is gone with the assignment; the next run resolves the alert.
    let managed = portcullis::store::managed_assignments(&mut *env.conn().await)
        .await
        .unwrap();
    assert!(managed.is_empty(), "{managed:?}");
    reconcile(
        &env.store,
        provisioner.as_ref(),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap();
    let open = portcullis::store::open_alerts_of(&mut *env.conn().await, &[AlertKind::DriftOrphan])
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
}

/// The user principal ids moto holds for the grant's account and permission set.
async fn in_moto_principals(
    sso: &aws_sdk_ssoadmin::Client,
    p: &SsoAdminProvisioner,
    g: &portcullis::store::GrantRow,
) -> Vec<String> {
    sso.list_account_assignments()
        .instance_arn(p.instance_arn())
        .account_id(&g.account_id)
        .permission_set_arn(&g.permission_set_arn)
        .send()
        .await
        .unwrap()
        .account_assignments()
        .iter()
        .filter_map(|a| a.principal_id().map(String::from))
        .collect()
}

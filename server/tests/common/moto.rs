//! moto behind the fault-injecting layer of `.ci/moto` (one server per test, on loopback,
//! killed by its PID when the test ends), and what the AWS suites build on it: SDK clients,
//! a world with an instance, a permission set and Alice, a provisioner over a test store,
//! and ways to read and change AWS's state through moto's own API, not the provisioner's.

use super::peers::{self, free_port, Peer};
use super::{person, TestEnv};
use aws_sdk_ssoadmin::types::PrincipalType;
use portcullis::config::{AwsConfig, ProvisionerKind};
use portcullis::provisioner::sso_admin::SsoAdminProvisioner;
use portcullis::provisioner::{Assignment, Assignments};
use portcullis::store::{DatabaseUrl, Store};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const ACCOUNT: &str = "111111111111";

pub struct Moto {
    child: Peer,
    pub url: String,
    http: reqwest::Client,
}

pub fn set_test_credentials() {
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
    pub async fn start() -> Moto {
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

    pub async fn fault(&self, path: &str, body: Value) {
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
    pub async fn log(&self, operation: &str) -> Vec<Value> {
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

    pub async fn calls(&self, operation: &str) -> usize {
        self.log(operation).await.len()
    }
}

// ------------------------------------------------------------ the provisioner alone

/// A world in moto: the instance, a permission set, a user; and a provisioner on it.
pub struct World {
    pub moto: Moto,
    pub sso: aws_sdk_ssoadmin::Client,
    pub instance_arn: String,
    pub permission_set_arn: String,
    pub provisioner: SsoAdminProvisioner,
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub fn aws_config(moto: &Moto) -> AwsConfig {
    AwsConfig {
        provisioner: ProvisionerKind::SsoAdmin,
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.url.clone()),
        call_timeout_secs: 2,
        requests_per_second: 1000,
        ..AwsConfig::default()
    }
}

pub async fn world() -> World {
    world_on(Moto::start().await).await
}

/// The SDK's configuration for moto (no SDK retries).
pub async fn sdk_for(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// SDK clients on moto (no SDK retries), and Alice in Identity Store.
pub async fn clients_with_alice(
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

pub async fn world_on(moto: Moto) -> World {
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
    let store = Store::connect(&url, super::audit_key()).await.unwrap();
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
    pub fn alice(&self) -> Assignment {
        Assignment {
            account_id: ACCOUNT.into(),
            permission_set_arn: self.permission_set_arn.clone(),
            user_id: "https://idp|u-alice".into(),
            user_name: "alice@example.com".into(),
            principal_id: None,
        }
    }

    /// What moto holds for the account and permission set: user principal ids.
    pub async fn assigned(&self) -> Vec<String> {
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

    pub async fn create(&self) -> String {
        self.provisioner
            .start_create(&self.alice(), far_off())
            .await
            .unwrap()
    }
}

/// A deadline for a creation that no test reaches.
pub fn far_off() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
}

// ------------------------------------------------------------ with the worker

/// Moto with Alice in Identity Store, and a provisioner on it over the test's store.
pub async fn moto_for() -> (
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
pub async fn alice_asks(
    env: &TestEnv,
    provisioner: &std::sync::Arc<SsoAdminProvisioner>,
) -> (portcullis::store::GrantRow, portcullis::worker::Worker) {
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    let grant = env.only_grant(&rid).await;
    (
        grant,
        env.worker_with(provisioner.clone(), super::settings()),
    )
}

/// How many user assignments moto holds for the grant's account and permission set.
pub async fn in_moto(
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

/// The user principal ids moto holds for the grant's account and permission set.
pub async fn in_moto_principals(
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

// ------------------------------------------------------------ by hand, as in the console

/// Alice's Identity Store user id.
pub async fn alice_in_aws(p: &SsoAdminProvisioner) -> String {
    p.user_id("alice@example.com").await.unwrap()
}

/// Removes or adds an assignment as someone in the AWS console would.
pub async fn by_hand(
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

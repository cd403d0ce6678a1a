//! Catalog sync from AWS Organizations and IAM Identity Center in moto (`common::moto`):
//! nested OUs, permission sets and their session durations, and a sync that fails.

mod common;

use common::moto::{sdk_for, world_on, Moto};
use serde_json::json;
use std::time::Duration;

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
    let sync = portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &[]);
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
    let run = &latest_sync(&mut conn).await;
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
    portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &[])
        .await
        .unwrap();
    let mut conn = w.store.conn().await.unwrap();
    let accounts = store::all_accounts(&mut conn).await.unwrap();
    assert_eq!(accounts.len(), 3);
    assert!(accounts.iter().all(|a| a.account_id != org.sandbox_account));
    let run = &latest_sync(&mut conn).await;
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
    portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &[])
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
    let err = portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &[])
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
    let run = &latest_sync(&mut conn).await;
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

/// Approver groups read from Identity Store with the sync (issue #12, item 0): each member
/// by `DescribeUser` (the primary email, else the first; nobody without one), a group
/// Identity Store lacks is empty, a group no policy names is not read, and a failed read
/// keeps the last copy.
#[tokio::test]
async fn approver_groups_are_read_from_identity_store() {
    use aws_sdk_identitystore::types::{Email, MemberId};
    use portcullis::store;
    let moto = Moto::start().await;
    let (_orgs, _org) = seed_org(&moto).await;
    let w = world_on(moto).await;
    let identity = aws_sdk_identitystore::Client::new(&sdk_for(&w.moto).await);
    let store_id = w.provisioner.identity_store_id().to_owned();
    let group = |name: &'static str| {
        let (identity, store_id) = (identity.clone(), store_id.clone());
        async move {
            identity
                .create_group()
                .identity_store_id(store_id)
                .display_name(name)
                .send()
                .await
                .unwrap()
                .group_id()
                .to_owned()
        }
    };
    let user = |name: &'static str, emails: Vec<Email>| {
        let (identity, store_id) = (identity.clone(), store_id.clone());
        async move {
            identity
                .create_user()
                .identity_store_id(store_id)
                .user_name(name)
                .display_name(format!("{name} Approver"))
                .name(
                    aws_sdk_identitystore::types::Name::builder()
                        .given_name(name)
                        .family_name("Approver")
                        .build(),
                )
                .set_emails(Some(emails))
                .send()
                .await
                .unwrap()
                .user_id()
                .to_owned()
        }
    };
    let email = |value: &str, primary: bool| {
        Email::builder()
            .value(value)
            .r#type("work")
            .primary(primary)
            .build()
    };
    let approvers = group("cloud-approvers").await;
    let elsewhere = group("not-named").await;
    let erin = user("erin", vec![email("erin@example.com", false)]).await;
    let carol = user(
        "carol",
        vec![
            email("carol.old@example.com", false),
            email("carol@example.com", true),
        ],
    )
    .await;
    let nomail = user("nomail", vec![]).await;
    let zed = user("zed", vec![email("zed@example.com", true)]).await;
    for (g, u) in [
        (&approvers, &erin),
        (&approvers, &carol),
        (&approvers, &nomail),
        (&elsewhere, &zed),
    ] {
        identity
            .create_group_membership()
            .identity_store_id(&store_id)
            .group_id(g)
            .member_id(MemberId::UserId(u.clone()))
            .send()
            .await
            .unwrap();
    }
    let mut policy = common::policy();
    policy.approvers.groups = vec!["cloud-approvers".into(), "not-in-identity-store".into()];
    let e = common::entitlement(
        "dir",
        common::moto::ACCOUNT,
        portcullis::seed::PS_AUDIT,
        policy,
    );
    {
        let mut conn = w.store.conn().await.unwrap();
        store::upsert_entitlement(&mut conn, &e, app::domain::Timestamp(0))
            .await
            .unwrap();
    }
    let clock = portcullis::clock::SystemClock;
    let also = vec!["night-desk".to_owned()];
    portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &also)
        .await
        .unwrap();
    let members = |group: &'static str| {
        let store = w.store.clone();
        async move {
            let mut conn = store.conn().await.unwrap();
            store::directory_members(&mut conn, &[group.to_owned()])
                .await
                .unwrap()
                .into_iter()
                .map(|p| format!("{} <{}>", p.display_name, p.email))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        members("cloud-approvers").await,
        [
            "carol Approver <carol@example.com>",
            "erin Approver <erin@example.com>"
        ]
    );
    assert!(members("not-named").await.is_empty());
    {
        let mut conn = w.store.conn().await.unwrap();
        let run = &latest_sync(&mut conn).await;
        assert!(
            run.summary
                .as_deref()
                .unwrap()
                .ends_with("approver directory: 2 members of 1 of 3 group(s)"),
            "{run:?}"
        );
    }

    // Identity Store refuses: the sync fails and says so, the directory stays as it was.
    w.moto
        .fault(
            "arm",
            json!({"operation": "ListGroupMemberships", "count": 1, "code": "AccessDeniedException", "status": 400}),
        )
        .await;
    let err = portcullis::upkeep::catalog::sync(&w.store, &w.provisioner, &clock, &also)
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("approver directory could not be read") && err.contains("AccessDenied"),
        "{err}"
    );
    assert_eq!(members("cloud-approvers").await.len(), 2);
}

/// The latest catalog sync run.
async fn latest_sync(conn: &mut sqlx::AnyConnection) -> portcullis::store::RunRow {
    portcullis::store::recent_runs(conn, portcullis::store::JobKind::SyncCatalog, 1)
        .await
        .unwrap()
        .remove(0)
}

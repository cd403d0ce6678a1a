//! Demo mode's catalog and personas: three accounts in two OUs, three permission sets,
//! six entitlements with different policies, and four people to sign in as.

use crate::provisioner::DirectoryPerson;
use crate::store::{self, AccountRow, PermissionSetRow, Store};
use anyhow::Result;
use app::domain::Entitlement;
use app::domain::{
    AccountId, ApprovalStep, ApproverRule, OuId, PermissionSetArn, Policy, Principal, Target,
    TargetScope, Timestamp,
};
use std::collections::BTreeMap;

pub const SANDBOX: &str = "111111111111";
pub const STAGING: &str = "222222222222";
pub const PRODUCTION: &str = "333333333333";
pub const OU_SANDBOX: &str = "ou-demo-sandbox";
pub const OU_WORKLOADS: &str = "ou-demo-workloads";
pub const PS_ADMIN: &str =
    "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-0000000000000001";
pub const PS_READONLY: &str =
    "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-0000000000000002";
pub const PS_AUDIT: &str =
    "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-0000000000000003";

pub fn personas() -> Vec<Principal> {
    let p = |name: &str, display: &str, groups: &[&str], manager: Option<&str>, admin: bool| {
        Principal {
            user_id: format!("demo|{name}"),
            email: format!("{name}@example.com"),
            email_verified: true,
            display_name: display.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            manager: manager.map(|m| format!("{m}@example.com")),
            is_admin: admin,
        }
    };
    vec![
        p(
            "alice",
            "Alice Employee",
            &["engineering"],
            Some("bob"),
            false,
        ),
        p(
            "bob",
            "Bob Manager",
            &["engineering", "engineering-leads"],
            None,
            false,
        ),
        p(
            "carol",
            "Carol Approver",
            &["cloud-approvers", "security"],
            None,
            false,
        ),
        p("dana", "Dana Admin", &["portcullis-admins"], None, true),
    ]
}

/// The simulated directory (Identity Store in demo mode): every persona in their groups,
/// and Erin, a cloud approver who has never signed in to the portal: she is told of the
/// requests she may decide all the same (issue #12, item 0).
pub fn directory() -> BTreeMap<String, Vec<DirectoryPerson>> {
    let mut groups: BTreeMap<String, Vec<DirectoryPerson>> = BTreeMap::new();
    let erin = Principal {
        user_id: String::new(),
        email: DIRECTORY_ONLY_APPROVER.into(),
        email_verified: false,
        display_name: "Erin Approver".into(),
        groups: vec!["cloud-approvers".into()],
        manager: None,
        is_admin: false,
    };
    for p in personas().into_iter().chain([erin]) {
        for g in &p.groups {
            groups.entry(g.clone()).or_default().push(DirectoryPerson {
                email: p.email.clone(),
                display_name: p.display_name.clone(),
            });
        }
    }
    groups
}

/// The demo directory's approver who never signs in.
pub const DIRECTORY_ONLY_APPROVER: &str = "erin@example.com";

/// What each persona is for, shown on the demo sign-in page.
pub fn persona_blurb(name: &str) -> &'static str {
    match name {
        "alice" => "Employee in engineering. Her manager is Bob.",
        "bob" => "Alice's manager: approves production read-only and staging admin's first step.",
        "carol" => "Cloud approver: approves production admin and staging admin's second step. In security.",
        "dana" => "Portcullis admin: dashboard, grants, audit log.",
        _ => "",
    }
}

fn arn(s: &str) -> PermissionSetArn {
    PermissionSetArn::parse(s).expect("demo ARNs are valid")
}

fn account(id: &str) -> TargetScope {
    TargetScope::Account {
        account_id: AccountId::parse(id).expect("demo account ids are valid"),
    }
}

pub fn entitlements() -> Vec<Entitlement> {
    let policy = |max_h: u64| Policy {
        eligible_groups: vec!["engineering".into()],
        eligible_users: vec![],
        approvers: ApproverRule::default(),
        manager_fallback: ApproverRule::default(),
        approvals_required: 1,
        steps: Vec::new(),
        max_duration_secs: max_h * 3600,
        default_duration_secs: 3600,
        require_ticket: false,
        ticket_pattern: None,
        ticket_example: None,
        auto_approve: false,
        break_glass: false,
        decision_timeout_secs: 24 * 3600,
        max_total_secs: None,
        extension_auto_approve_secs: 0,
        escalation: ApproverRule::default(),
        escalate_after_secs: 0,
        review_within_secs: 24 * 3600,
        chat: Vec::new(),
    };
    vec![
        Entitlement {
            id: "sandbox-admin".into(),
            name: "Sandbox administrator".into(),
            description: "Full access to the sandbox account, for experiments.".into(),
            targets: vec![Target {
                scope: account(SANDBOX),
                permission_set_arn: arn(PS_ADMIN),
            }],
            policy: Policy {
                auto_approve: true,
                ..policy(4)
            },
        },
        Entitlement {
            id: "prod-readonly".into(),
            name: "Production read-only".into(),
            description: "Read-only access to production, to investigate incidents.".into(),
            targets: vec![Target {
                scope: account(PRODUCTION),
                permission_set_arn: arn(PS_READONLY),
            }],
            policy: Policy {
                approvers: ApproverRule {
                    manager: true,
                    ..Default::default()
                },
                // Bob has no manager: cloud-approvers decide his requests.
                manager_fallback: ApproverRule {
                    groups: vec!["cloud-approvers".into()],
                    ..Default::default()
                },
                // An hour more needs nobody; longer goes to the approvers.
                extension_auto_approve_secs: 3600,
                ..policy(8)
            },
        },
        Entitlement {
            id: "prod-admin".into(),
            name: "Production administrator".into(),
            description:
                "Administrator on production, for changes under an approved change ticket.".into(),
            targets: vec![Target {
                scope: account(PRODUCTION),
                permission_set_arn: arn(PS_ADMIN),
            }],
            policy: Policy {
                approvers: ApproverRule {
                    groups: vec!["cloud-approvers".into()],
                    ..Default::default()
                },
                require_ticket: true,
                ticket_pattern: Some(r"(CHG|INC)-\d{4,8}".into()),
                ticket_example: Some("CHG-10234".into()),
                // Not decided in 2 hours: the portal's admins may decide it too.
                escalation: ApproverRule {
                    groups: vec!["portcullis-admins".into()],
                    ..Default::default()
                },
                escalate_after_secs: 2 * 3600,
                ..policy(2)
            },
        },
        Entitlement {
            id: "staging-admin".into(),
            name: "Staging administrator".into(),
            description: "Administrator on staging: the manager approves, then a cloud \
                approver."
                .into(),
            targets: vec![Target {
                scope: account(STAGING),
                permission_set_arn: arn(PS_ADMIN),
            }],
            // Two steps (issue #12, item 1): Bob approves Alice's request, then Carol (or
            // Erin, from the directory) approves it too.
            policy: Policy {
                steps: vec![
                    ApprovalStep {
                        name: Some("Manager".into()),
                        approvers: ApproverRule {
                            manager: true,
                            ..Default::default()
                        },
                        count: 1,
                    },
                    ApprovalStep {
                        name: Some("Cloud approvers".into()),
                        approvers: ApproverRule {
                            groups: vec!["cloud-approvers".into()],
                            ..Default::default()
                        },
                        count: 1,
                    },
                ],
                ..policy(4)
            },
        },
        Entitlement {
            id: "prod-breakglass".into(),
            name: "Break-glass production administrator".into(),
            description: "Administrator on production at once, for emergencies: the admins are \
                alerted and review every use."
                .into(),
            targets: vec![Target {
                scope: account(PRODUCTION),
                permission_set_arn: arn(PS_ADMIN),
            }],
            policy: Policy {
                break_glass: true,
                ..policy(1)
            },
        },
        Entitlement {
            id: "security-audit".into(),
            name: "Security audit of workloads".into(),
            description: "SecurityAudit on every account in the Workloads OU.".into(),
            targets: vec![Target {
                scope: TargetScope::Ou {
                    ou_id: OuId::parse(OU_WORKLOADS).expect("valid"),
                },
                permission_set_arn: arn(PS_AUDIT),
            }],
            policy: Policy {
                eligible_groups: vec!["security".into()],
                approvers: ApproverRule {
                    groups: vec!["portcullis-admins".into()],
                    ..Default::default()
                },
                ..policy(8)
            },
        },
    ]
}

/// Writes the demo catalog and personas; safe to run at every start.
pub async fn seed_demo(store: &Store, now: Timestamp) -> Result<()> {
    seed_catalog(store, now).await?;
    let mut tx = store.begin().await?;
    for p in personas() {
        store::upsert_user(&mut tx, &p, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The simulated organization's accounts and permission sets, and the demo entitlements:
/// what `aws.provisioner = "simulated"` grants access to.
pub async fn seed_catalog(store: &Store, now: Timestamp) -> Result<()> {
    let mut tx = store.begin().await?;
    let units = [
        ("r-demo", "Root", None, "/r-demo/".to_owned()),
        (
            OU_SANDBOX,
            "Sandbox",
            Some("r-demo"),
            format!("/r-demo/{OU_SANDBOX}/"),
        ),
        (
            OU_WORKLOADS,
            "Workloads",
            Some("r-demo"),
            format!("/r-demo/{OU_WORKLOADS}/"),
        ),
    ];
    for (id, name, parent, path) in units {
        let row = store::OrgUnitRow {
            ou_id: id.into(),
            name: name.into(),
            parent_id: parent.map(String::from),
            path,
        };
        store::upsert_org_unit(&mut tx, &row, now).await?;
    }
    let accounts = [
        (SANDBOX, "sandbox", OU_SANDBOX),
        (STAGING, "staging", OU_WORKLOADS),
        (PRODUCTION, "production", OU_WORKLOADS),
    ];
    for (id, name, ou) in accounts {
        let row = AccountRow {
            account_id: id.into(),
            name: name.into(),
            ou_id: ou.into(),
            ou_path: format!("/r-demo/{ou}/"),
        };
        store::upsert_account(&mut tx, &row, now).await?;
    }
    let sets = [
        (PS_ADMIN, "AdministratorAccess", "Full administrator", 3600),
        (
            PS_READONLY,
            "ReadOnlyAccess",
            "Read everything, change nothing",
            4 * 3600,
        ),
        (
            PS_AUDIT,
            "SecurityAudit",
            "Read security configuration",
            2 * 3600,
        ),
    ];
    for (arn, name, description, secs) in sets {
        let row = PermissionSetRow {
            permission_set_arn: arn.into(),
            name: name.into(),
            description: description.into(),
            session_duration_secs: secs,
        };
        store::upsert_permission_set(&mut tx, &row, now).await?;
    }
    for e in entitlements() {
        store::upsert_entitlement(&mut tx, &e, now).await?;
    }
    // Shown retired (the admin page lists it; nobody can ask for it any more), since it
    // was first seeded.
    let legacy = retired_entitlement();
    let was_retired = store::entitlement_retired_at(&mut tx, &legacy.id).await?;
    store::upsert_entitlement(&mut tx, &legacy, now).await?;
    store::retire_entitlement(&mut tx, &legacy.id, was_retired.unwrap_or(now)).await?;
    tx.commit().await?;
    Ok(())
}

/// The simulated catalog's entitlements as they stay, once seeded: with `chat.everything`
/// added (they are seeded, not configured, so this is how the configuration's webhooks
/// hear of them: the demo, and the end-to-end suite's local receiver), and a version kept
/// of each one that changed since the last start (a new release of the demo).
pub async fn finish_catalog(
    store: &Store,
    chat: &crate::config::ChatConfig,
    now: Timestamp,
) -> Result<()> {
    let mut tx = store.begin().await?;
    for e in chat.apply_to(&entitlements()) {
        if !chat.everything.is_empty() {
            store::upsert_entitlement(&mut tx, &e, now).await?;
        }
        keep_version(&mut tx, &e, false, now).await?;
    }
    keep_version(&mut tx, &retired_entitlement(), true, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Who changes a seeded entitlement, as its versions say.
pub const FROM_DEMO: &str = "the demo catalog";

/// Keeps a version of a seeded entitlement when it changed (a new release of the demo).
async fn keep_version(
    tx: &mut store::Tx,
    e: &Entitlement,
    retired: bool,
    now: Timestamp,
) -> Result<()> {
    let definition = crate::config::entitlement_toml(e)?;
    store::record_entitlement_version(tx, &e.id, &definition, retired, FROM_DEMO, now).await?;
    Ok(())
}

/// The demo's retired entitlement: the warehouse the company moved off.
pub fn retired_entitlement() -> Entitlement {
    let mut e = entitlements()
        .into_iter()
        .find(|e| e.id == "prod-readonly")
        .expect("the demo has prod-readonly");
    e.id = "legacy-warehouse".into();
    e.name = "Legacy data warehouse".into();
    e.description = "Read-only access to the old warehouse account (retired: moved to the \
                     new platform)."
        .into();
    e
}

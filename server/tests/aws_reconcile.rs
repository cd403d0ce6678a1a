//! Assignments shared by grants and drift from what the portal granted, against moto
//! (`common::moto`): overlapping grants, assignments removed or made by hand in the
//! console, and reconciliation mending, reporting and revoking.

mod common;

use common::moto::{
    alice_asks, alice_in_aws, by_hand, in_moto, in_moto_principals, moto_for, sdk_for,
};
use common::{person, Backend, TestEnv};
use portcullis::provisioner::Inventory;
use portcullis::store::AlertKind;
use serde_json::json;
use std::time::Duration;

both!(
    overlapping_grants_share_one_assignment_in_aws,
    revoking_an_assignment_already_removed_by_hand,
    an_assignment_made_outside_the_portal_is_kept_unless_owned,
    reconciliation_mends_and_reports_drift_both_ways,
    reconciliation_revokes_the_portals_leftovers,
);

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

/// Someone removed the assignment in the console: the revocation deletes straight away
/// (no existence check first), AWS answers that there is nothing to delete, and the grant
/// is revoked saying so: one call, no listing, no status poll.
async fn revoking_an_assignment_already_removed_by_hand(b: Backend) {
    let env = TestEnv::new(b).await;
    let (moto, provisioner, sso) = moto_for().await;
    let (g, w) = alice_asks(&env, &provisioner).await;
    env.settle(&w).await;
    let alice = alice_in_aws(&provisioner).await;
    by_hand(&sso, &provisioner, &g, &alice, false).await;
    let listings = moto.calls("ListAccountAssignmentsForPrincipal").await;
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    let deletes: Vec<u64> = moto
        .log("DeleteAccountAssignment")
        .await
        .iter()
        .map(|e| e["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        deletes,
        [200, 400],
        "the hand's, then ours answered not found"
    );
    assert_eq!(
        moto.calls("ListAccountAssignmentsForPrincipal").await,
        listings,
        "no existence check before the delete"
    );
    assert_eq!(
        moto.calls("DescribeAccountAssignmentDeletionStatus").await,
        0,
        "nothing to poll"
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
        None,
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
        None,
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
        None,
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
        None,
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
        None,
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
        None,
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
        None,
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

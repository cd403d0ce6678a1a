//! Identity binding, in the store and the use cases: emails are unique (ignoring case), an
//! email names someone only when it is verified, the migration's answer to emails that
//! already collide, and the database's mode (demo or serve). Every test runs on SQLite and
//! on PostgreSQL. Sign-in itself is in `oidc.rs`, the HTTP side in `http.rs`.

mod common;

use app::domain::Principal;
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::config::Mode;
use portcullis::store::{self, PortalMode};
use portcullis::{claim_database, notify, seed};
use sqlx::Row;

both!(
    emails_are_unique_ignoring_case,
    an_approver_is_matched_by_id_not_by_an_unverified_email,
    colliding_emails_are_resolved_by_the_migration,
    demo_and_serve_never_share_a_database,
    approvers_are_found_by_index_among_many,
    group_rows_follow_the_latest_sign_in_and_are_filled_for_people_already_known,
);

/// Approvers come from indexed lookups (group rows, the names in the rule and the manager
/// claim), and the policy still has the last word: among 2,000 people, exactly the group
/// members, the named approver and the verified manager, never the requester.
async fn approvers_are_found_by_index_among_many(b: Backend) {
    let env = TestEnv::new(b).await;
    {
        let mut tx = env.store.begin().await.unwrap();
        for i in 0..2_000 {
            let groups: &[&str] = if i % 500 == 0 {
                &["big-approvers"]
            } else {
                &["staff"]
            };
            store::upsert_user(&mut tx, &extra_person(&format!("p{i}"), groups), env.now())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut requester = extra_person("p7", &["staff", "big-approvers"]);
    requester.manager = Some("P42@example.com".into());
    env.upsert_user(&requester).await;
    let mut policy = seed::entitlements()
        .into_iter()
        .find(|e| e.id == "prod-readonly")
        .unwrap()
        .policy;
    policy.approvers.manager = true;
    policy.approvers.groups = vec!["big-approvers".into()];
    policy.approvers.users = vec![" test|p1999 ".into(), "nobody@example.com".into()];
    let approvers = notify::approvers_of(&mut *env.conn().await, &policy, &requester, 0)
        .await
        .unwrap();
    let mut ids: Vec<&str> = approvers
        .iter()
        .filter_map(|p| p.user_id.as_deref())
        .collect();
    ids.sort();
    // The named address nobody signed in with is written to as a stranger's (item 0).
    let strangers: Vec<&str> = approvers
        .iter()
        .filter(|p| p.user_id.is_none())
        .map(|p| p.email.as_str())
        .collect();
    assert_eq!(strangers, ["nobody@example.com"]);
    assert_eq!(
        ids,
        [
            "test|p0",
            "test|p1000",
            "test|p1500",
            "test|p1999",
            "test|p42",
            "test|p500"
        ]
    );
    let members = notify::members_of(&mut *env.conn().await, "big-approvers")
        .await
        .unwrap();
    assert_eq!(members.len(), 5, "four of the 2,000 and the requester");
}

/// `user_group` holds the groups of each person's latest sign-in, and people known from
/// before the table are given their rows by the migration step.
async fn group_rows_follow_the_latest_sign_in_and_are_filled_for_people_already_known(b: Backend) {
    let env = TestEnv::new(b).await;
    let members = |g: &'static str| {
        let env = &env;
        async move {
            let mut ids: Vec<String> = notify::members_of(&mut *env.conn().await, g)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.user_id)
                .collect();
            ids.sort();
            ids
        }
    };
    env.upsert_user(&extra_person("zed", &["red", "blue", "red"]))
        .await;
    assert_eq!(members("red").await, ["test|zed"]);
    assert_eq!(members("blue").await, ["test|zed"]);
    // Signed in again with other groups: the old rows are gone.
    env.upsert_user(&extra_person("zed", &["green"])).await;
    assert!(members("red").await.is_empty());
    assert_eq!(members("green").await, ["test|zed"]);
    // Someone the table does not know yet (recorded before it existed).
    let zed_rows = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM user_group WHERE user_id = 'test|zed'")
                .fetch_one(&mut *env.conn().await)
                .await
                .unwrap();
        n
    };
    sqlx::query("DELETE FROM user_group WHERE user_id = 'test|zed'")
        .execute(&mut *env.conn().await)
        .await
        .unwrap();
    assert!(members("green").await.is_empty());
    env.store.migrate().await.unwrap();
    assert_eq!(members("green").await, ["test|zed"]);
    assert_eq!(zed_rows().await, 1);
    // Run again, nothing more to do.
    env.store.migrate().await.unwrap();
    assert_eq!(zed_rows().await, 1);
}

async fn emails_are_unique_ignoring_case(b: Backend) {
    let env = TestEnv::new(b).await;
    let mut impostor = extra_person("impostor", &["cloud-approvers"]);
    impostor.email = "BOB@example.com".into();
    let before = env.count("app_user").await;
    let refused = store::upsert_user(&mut *env.conn().await, &impostor, env.now()).await;
    assert!(refused.is_err(), "a second user with Bob's email");
    assert_eq!(env.count("app_user").await, before);
    let owner = store::email_owner(&mut *env.conn().await, "Bob@Example.COM")
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("demo|bob"));
    // The owner may change the case of his own email.
    let bob = Principal {
        email: "Bob@Example.com".into(),
        ..person("bob")
    };
    env.upsert_user(&bob).await;
    assert_eq!(env.count("app_user").await, before);
}

async fn an_approver_is_matched_by_id_not_by_an_unverified_email(b: Backend) {
    let env = TestEnv::new(b).await;
    // Alice's manager claim is bob@example.com; Bob's provider did not verify that email.
    let alice = person("alice");
    assert_eq!(alice.manager.as_deref(), Some("bob@example.com"));
    let bob = Principal {
        email_verified: false,
        ..person("bob")
    };
    env.upsert_user(&bob).await;
    let policy = seed::entitlements()
        .into_iter()
        .find(|e| e.id == "prod-readonly")
        .unwrap()
        .policy;
    assert!(policy.approvers.manager && policy.approvers.users.is_empty());
    let rid = env.ask(&alice, "prod-readonly", "1h").await;

    let approvers = notify::approvers_of(&mut *env.conn().await, &policy, &alice, 0)
        .await
        .unwrap();
    assert!(
        approvers
            .iter()
            .all(|p| p.user_id.as_deref() != Some("demo|bob")),
        "not matched by an unverified email: {approvers:?}"
    );
    // The manager claim's address is still written to, as a stranger's: whoever reads it
    // must sign in with that email verified to decide.
    assert!(
        approvers
            .iter()
            .any(|p| p.user_id.is_none() && p.email == "bob@example.com"),
        "{approvers:?}"
    );
    let err = env.portal.decide(&bob, &rid, true, "").await.unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    assert_eq!(env.audit_with("denied.decide").await.len(), 1);
    assert_eq!(env.request_status(&rid).await, "pending");

    // Named by user id, the same Bob is her manager.
    let alice = Principal {
        manager: Some("demo|bob".into()),
        ..alice
    };
    env.upsert_user(&alice).await;
    let approvers = notify::approvers_of(&mut *env.conn().await, &policy, &alice, 0)
        .await
        .unwrap();
    let ids: Vec<&str> = approvers
        .iter()
        .map(|p| p.user_id.as_deref().unwrap_or(&p.email))
        .collect();
    assert_eq!(ids, ["demo|bob"]);
    env.portal.decide(&bob, &rid, true, "ok").await.unwrap();
    assert_eq!(env.request_status(&rid).await, "approved");
    env.check_invariants().await;
}

/// Runs the migrations older than the identity one, as a database from before it has.
async fn migrate_to_before_identity(store: &store::Store) -> tempfile::TempDir {
    let old = tempfile::TempDir::new().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "20261201000003" {
            std::fs::copy(&path, old.path().join(name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(store.pool())
        .await
        .unwrap();
    old
}

async fn add_old_user(store: &store::Store, id: &str, email: &str, created_at: i64) {
    sqlx::query(
        "INSERT INTO app_user (user_id, email, display_name, groups_json, manager, is_admin, created_at, updated_at)
         VALUES ($1, $2, $1, '[]', NULL, 0, $3, $3)",
    )
    .bind(id)
    .bind(email)
    .bind(created_at)
    .execute(store.pool())
    .await
    .unwrap();
}

async fn colliding_emails_are_resolved_by_the_migration(b: Backend) {
    let (store, _dir) = fresh_store(b).await;
    let _old = migrate_to_before_identity(&store).await;
    add_old_user(&store, "https://idp|u-later", "pat@example.com", 2_000).await;
    add_old_user(&store, "https://idp|u-first", "Pat@Example.com", 1_000).await;
    add_old_user(&store, "https://idp|u-third", "PAT@EXAMPLE.COM", 3_000).await;
    add_old_user(&store, "https://idp|u-solo", "solo@example.com", 500).await;
    let mut conn = store.conn().await.unwrap();
    for (token, user) in [
        ("s-later", "https://idp|u-later"),
        ("s-first", "https://idp|u-first"),
    ] {
        // The sessions table as it was then (no `authenticated_at` yet).
        sqlx::query(
            "INSERT INTO web_session (session_hash, user_id, demo, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, 0, $3, $3, $4)",
        )
        .bind(store::hash_token(token))
        .bind(user)
        .bind(T0.millis())
        .bind(T0.plus(std::time::Duration::from_secs(3600)).millis())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    drop(conn);

    store.migrate().await.unwrap();

    let rows = sqlx::query("SELECT user_id, email, email_verified FROM app_user ORDER BY user_id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get("user_id"), r.get("email"), r.get("email_verified")))
        .collect();
    assert_eq!(
        got,
        [
            ("https://idp|u-first".into(), "Pat@Example.com".into(), 0),
            (
                "https://idp|u-later".into(),
                "(email conflict) https://idp|u-later".into(),
                0
            ),
            ("https://idp|u-solo".into(), "solo@example.com".into(), 0),
            (
                "https://idp|u-third".into(),
                "(email conflict) https://idp|u-third".into(),
                0
            ),
        ],
        "the first account keeps the email; the later ones get a placeholder"
    );
    let sessions: Vec<String> = sqlx::query_scalar("SELECT user_id FROM web_session")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        sessions,
        ["https://idp|u-first"],
        "the later ones signed out"
    );
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        store::portal_mode(&mut conn).await.unwrap(),
        Some(PortalMode::Serve),
        "real users: a serve database"
    );
    // From now on the index holds.
    let mut p = extra_person("pat", &[]);
    p.email = "pat@EXAMPLE.com".into();
    assert!(store::upsert_user(&mut conn, &p, T0).await.is_err());
    drop(conn);

    // A demo database from before: its personas make it a demo one.
    let (demo, _dir2) = fresh_store(b).await;
    let _old2 = migrate_to_before_identity(&demo).await;
    add_old_user(&demo, "demo|alice", "alice@example.com", 1_000).await;
    demo.migrate().await.unwrap();
    let mut conn = demo.conn().await.unwrap();
    assert_eq!(
        store::portal_mode(&mut conn).await.unwrap(),
        Some(PortalMode::Demo)
    );
    drop(conn);
    let err = claim_database(&demo, Mode::Serve, T0).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("`portcullis serve` refuses this database"),
        "{err}"
    );
}

async fn demo_and_serve_never_share_a_database(b: Backend) {
    // A new database has no mode until the first start claims one.
    let env = TestEnv::new(b).await;
    assert_eq!(
        store::portal_mode(&mut *env.conn().await).await.unwrap(),
        None
    );
    claim_database(&env.store, Mode::Demo, T0).await.unwrap();
    claim_database(&env.store, Mode::Demo, T0).await.unwrap();
    let err = claim_database(&env.store, Mode::Serve, T0)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`portcullis serve` refuses this database"),
        "{err}"
    );
    assert_eq!(
        store::portal_mode(&mut *env.conn().await).await.unwrap(),
        Some(PortalMode::Demo)
    );

    let env = TestEnv::new(b).await;
    claim_database(&env.store, Mode::Serve, T0).await.unwrap();
    let err = claim_database(&env.store, Mode::Demo, T0)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("demo mode refuses this database"),
        "{err}"
    );
    claim_database(&env.store, Mode::Serve, T0).await.unwrap();
}

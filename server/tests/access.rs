//! The access explorer (issue #14, item 6), on SQLite and PostgreSQL: who holds access now
//! (through which grant, until when) and who could ask for it, narrowed by person,
//! account, OU and permission set, cut at a limit that says how many more matched, and
//! exported whole as CSV; and the what-if, which says whom a new definition of an
//! entitlement would let ask or decide and changes nothing. Admins only.

mod common;

use app::error::AppError;
use app::ssr::Portal;
use app::views::AccessFilter;
use common::*;
use portcullis::config::entitlement_toml;
use portcullis::seed::{OU_SANDBOX, PRODUCTION, SANDBOX};
use portcullis::store;

both!(
    the_explorer_shows_who_holds_and_who_could_ask,
    the_what_if_says_whom_a_definition_would_change,
);

fn only(f: impl FnOnce(&mut AccessFilter)) -> AccessFilter {
    let mut filter = AccessFilter::default();
    f(&mut filter);
    filter
}

async fn the_explorer_shows_who_holds_and_who_could_ask(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let w = env.worker();
    // Sandbox administrator is approved at once: alice holds it after the worker's turn.
    let request = env.ask(&alice, "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let grant = env.only_grant(&request).await;
    assert_eq!(grant.status.to_string(), "active");

    let all = env
        .portal
        .access_explorer(&dana, AccessFilter::default())
        .await
        .unwrap();
    assert_eq!(all.holding.len(), 1, "{:?}", all.holding);
    let held = &all.holding[0];
    assert_eq!(held.email, alice.email);
    assert_eq!(held.account, format!("sandbox ({SANDBOX})"));
    assert_eq!(held.permission_set, "AdministratorAccess");
    assert_eq!(held.entitlement, "Sandbox administrator");
    assert_eq!(held.status, "active");
    assert_eq!(held.request_id.as_deref(), Some(request.as_str()));
    assert_eq!(held.detail, grant.ends_at.format_utc());
    assert_eq!((all.holding_more, all.eligible_more), (0, 0));

    // Engineering may ask for Sandbox administrator: alice and bob, not carol or dana.
    let sandbox_askers: Vec<&str> = all
        .eligible
        .iter()
        .filter(|r| r.entitlement == "Sandbox administrator")
        .map(|r| r.email.as_str())
        .collect();
    assert_eq!(sandbox_askers, ["alice@example.com", "bob@example.com"]);
    assert!(all.eligible.iter().all(|r| r.request_id.is_none()));
    let prod_ro = all
        .eligible
        .iter()
        .find(|r| r.entitlement == "Production read-only" && r.email == alice.email)
        .expect("alice could ask for production read-only");
    assert_eq!(prod_ro.account, format!("production ({PRODUCTION})"));
    assert!(
        prod_ro.detail.to_lowercase().contains("manager"),
        "{}",
        prod_ro.detail
    );
    // A retired entitlement is open to nobody.
    assert!(all
        .eligible
        .iter()
        .all(|r| !r.entitlement.to_lowercase().contains("warehouse")));

    // The what-if may start from each live entitlement's definition (not a retired one's).
    let ids: Vec<&str> = all.definitions.iter().map(|d| d.id.as_str()).collect();
    assert!(ids.contains(&"prod-readonly") && !ids.contains(&"legacy-warehouse"));
    let prod_ro_toml = &all.definitions[ids.iter().position(|i| *i == "prod-readonly").unwrap()];
    assert!(prod_ro_toml.toml.contains("id = \"prod-readonly\""));
    assert!(
        prod_ro_toml
            .toml
            .contains("eligible_groups = [\"engineering\"]"),
        "the browser test edits this line: {}",
        prod_ro_toml.toml
    );

    // Each filter narrows both lists, in any case.
    let bobs = env
        .portal
        .access_explorer(&dana, only(|f| f.person = Some("BOB".into())))
        .await
        .unwrap();
    assert!(bobs.holding.is_empty());
    assert!(!bobs.eligible.is_empty());
    assert!(bobs.eligible.iter().all(|r| r.email == bob.email));
    let sandbox_ou = env
        .portal
        .access_explorer(&dana, only(|f| f.ou = Some("sandbox".into())))
        .await
        .unwrap();
    assert_eq!(sandbox_ou.holding.len(), 1);
    assert!(!sandbox_ou.eligible.is_empty());
    assert!(sandbox_ou
        .eligible
        .iter()
        .all(|r| r.ou_path.contains(OU_SANDBOX)));
    let by_account = env
        .portal
        .access_explorer(&dana, only(|f| f.account = Some(PRODUCTION.into())))
        .await
        .unwrap();
    assert!(by_account.holding.is_empty());
    assert!(by_account
        .eligible
        .iter()
        .all(|r| r.account.contains(PRODUCTION)));
    let read_only = env
        .portal
        .access_explorer(&dana, only(|f| f.permission_set = Some("readonly".into())))
        .await
        .unwrap();
    assert!(!read_only.eligible.is_empty());
    assert!(read_only
        .eligible
        .iter()
        .all(|r| r.permission_set == "ReadOnlyAccess"));
    let nobody = env
        .portal
        .access_explorer(&dana, only(|f| f.person = Some("zed".into())))
        .await
        .unwrap();
    assert!(nobody.holding.is_empty() && nobody.eligible.is_empty());

    // Cut at the limit, saying how many more matched; the export has every row.
    let cut = env
        .portal
        .access_rows(&dana, AccessFilter::default(), 2)
        .await
        .unwrap();
    assert_eq!(cut.eligible.len(), 2);
    assert_eq!(cut.eligible_more, all.eligible.len() - 2);
    let csv = env
        .portal
        .access_export(&dana, AccessFilter::default())
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("kind,person,email,account"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + all.holding.len() + all.eligible.len());
    assert!(
        lines[1].starts_with(r#""holds","Alice Employee","alice@example.com","#),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(&format!("\"{request}\"")),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(r#""could_ask","#))
            .count(),
        all.eligible.len()
    );

    // Admins only; a filter word too long is refused.
    for nobody in [&alice, &bob, &person("carol")] {
        let refused = env
            .portal
            .access_explorer(nobody, AccessFilter::default())
            .await
            .unwrap_err();
        assert!(matches!(refused, AppError::Forbidden(_)), "{refused:?}");
        let refused = env
            .portal
            .access_export(nobody, AccessFilter::default())
            .await
            .unwrap_err();
        assert!(matches!(refused, AppError::Forbidden(_)), "{refused:?}");
    }
    let long = env
        .portal
        .access_explorer(&dana, only(|f| f.account = Some("1".repeat(201))))
        .await
        .unwrap_err();
    assert_eq!(long.field("account"), Some("at most 200 characters".into()));
}

async fn the_what_if_says_whom_a_definition_would_change(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, dana) = (person("alice"), person("dana"));
    let current = {
        let mut conn = env.conn().await;
        store::get_entitlement(&mut conn, "prod-readonly")
            .await
            .unwrap()
            .unwrap()
    };
    let versions_before = env.count("entitlement_version").await;

    // The same definition: nobody's access changes.
    let same = entitlement_toml(&current).unwrap();
    let w = env.portal.what_if(&dana, &same).await.unwrap();
    assert!(!w.new);
    assert_eq!(w.entitlement, "Production read-only (prod-readonly)");
    assert!(
        w.eligible_gain.is_empty()
            && w.eligible_lose.is_empty()
            && w.approvers_gain.is_empty()
            && w.approvers_lose.is_empty()
            && w.notes.is_empty(),
        "{w:?}"
    );

    // Security may ask too, the cloud approvers no longer stand in for a missing manager,
    // and grants may last 2 h at most.
    let mut changed = current.clone();
    changed.policy.eligible_groups.push("security".into());
    changed.policy.manager_fallback = Default::default();
    changed.policy.max_duration_secs = 2 * 3600;
    changed.policy.default_duration_secs = 3600;
    let w = env
        .portal
        .what_if(&dana, &entitlement_toml(&changed).unwrap())
        .await
        .unwrap();
    assert_eq!(w.eligible_gain, ["Carol Approver <carol@example.com>"]);
    assert!(w.eligible_lose.is_empty());
    assert!(w.approvers_gain.is_empty());
    assert_eq!(w.approvers_lose, ["Carol Approver <carol@example.com>"]);
    assert!(
        w.notes.iter().any(|n| n == "Longest grant: 8h → 2h."),
        "{:?}",
        w.notes
    );

    // Only the manager decides now; no step asks the manager any more.
    let mut groups_only = current.clone();
    groups_only.policy.approvers = app::domain::ApproverRule {
        groups: vec!["security".into()],
        ..Default::default()
    };
    groups_only.policy.manager_fallback = Default::default();
    let w = env
        .portal
        .what_if(&dana, &entitlement_toml(&groups_only).unwrap())
        .await
        .unwrap();
    assert!(
        w.notes
            .iter()
            .any(|n| n == "Requesters' managers would no longer decide."),
        "{:?}",
        w.notes
    );

    // A new entitlement, as a bare table: everyone in engineering could ask.
    let mut fresh = current.clone();
    fresh.id = "prod-readonly-2".into();
    let bare = entitlement_toml(&fresh)
        .unwrap()
        .replace("[[entitlements]]\n", "")
        .replace("[entitlements.", "[");
    let w = env.portal.what_if(&dana, &bare).await.unwrap();
    assert!(w.new, "{bare}");
    assert_eq!(
        w.eligible_gain,
        [
            "Alice Employee <alice@example.com>",
            "Bob Manager <bob@example.com>"
        ]
    );

    // Bad definitions are refused with a reason; only admins may ask.
    for (bad, why) in [
        ("not toml at all", "not an entitlement's TOML"),
        (
            "[[entitlements]]\nid = \"x\"\n",
            "not an entitlement's TOML",
        ),
    ] {
        let err = env.portal.what_if(&dana, bad).await.unwrap_err();
        let message = err.field("definition").unwrap_or_default();
        assert!(message.starts_with(why), "{bad}: {message}");
    }
    let two = format!("{same}\n{}", entitlement_toml(&fresh).unwrap());
    let err = env.portal.what_if(&dana, &two).await.unwrap_err();
    assert_eq!(
        err.field("definition"),
        Some("give one entitlement, not 2".into())
    );
    let mut unchecked = current.clone();
    unchecked.policy.max_duration_secs = 0;
    let err = env
        .portal
        .what_if(&dana, &entitlement_toml(&unchecked).unwrap())
        .await
        .unwrap_err();
    assert!(err.field("definition").is_some(), "{err:?}");
    let huge = "#".repeat(65 * 1024);
    let err = env.portal.what_if(&dana, &huge).await.unwrap_err();
    assert_eq!(err.field("definition"), Some("at most 64 KiB".into()));
    let refused = env.portal.what_if(&alice, &same).await.unwrap_err();
    assert!(matches!(refused, AppError::Forbidden(_)), "{refused:?}");

    // Nothing changed.
    let mut conn = env.conn().await;
    let after = store::get_entitlement(&mut conn, "prod-readonly")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, current);
    assert!(store::get_entitlement(&mut conn, "prod-readonly-2")
        .await
        .unwrap()
        .is_none());
    drop(conn);
    assert_eq!(env.count("entitlement_version").await, versions_before);
}

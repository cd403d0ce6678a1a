//! Approval workflows (issue #12): what an entitlement's policy asks of a request beyond
//! the simple case. So far: the ticket format per entitlement, retired entitlements, and
//! the manager fallback.
//! Every test runs on SQLite and on PostgreSQL.

mod common;

use app::domain::ApproverRule;
use app::error::AppError;
use app::ssr::Portal;
use common::*;
use portcullis::portal::apply_configured_entitlements as apply;
use portcullis::seed::{PS_READONLY, SANDBOX};

both!(
    a_ticket_must_have_its_entitlements_format,
    an_entitlement_no_longer_configured_is_retired,
    a_manager_nobody_knows_is_replaced_by_the_fallback,
);

/// The demo's "Production administrator" takes change or incident tickets only
/// (`(CHG|INC)-\d{4,8}`): the form shows the example, a ticket of another format is
/// refused with a message naming it and changes nothing, and one of the format is taken.
async fn a_ticket_must_have_its_entitlements_format(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let cards = env.portal.eligible_entitlements(&alice).await.unwrap();
    let card = cards.iter().find(|c| c.id == "prod-admin").unwrap();
    assert_eq!(card.ticket_example.as_deref(), Some("CHG-10234"));
    assert!(card.require_ticket);
    let other = cards.iter().find(|c| c.id == "prod-readonly").unwrap();
    assert_eq!(other.ticket_example, None);

    let requests = env.count("access_request").await;
    let audit = env.count("audit_event").await;
    for wrong in [
        "JIRA-4411",
        "CHG-12",
        "CHG-123456789",
        "xCHG-1234",
        "INC-1234/2",
    ] {
        let err = env
            .portal
            .create_request(&alice, "prod-admin", draft_with_ticket("1h", wrong))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Invalid(_)), "{wrong}: {err:?}");
        assert_eq!(
            err.field("ticket").as_deref(),
            Some("this entitlement needs a ticket like CHG-10234"),
            "{wrong}"
        );
    }
    assert_eq!(
        env.count("access_request").await,
        requests,
        "nothing was made"
    );
    assert_eq!(env.count("audit_event").await, audit);

    let rid = env
        .portal
        .create_request(&alice, "prod-admin", draft_with_ticket("1h", " INC-20931 "))
        .await
        .unwrap();
    assert_eq!(env.request(&rid).await.ticket.as_deref(), Some("INC-20931"));
}

/// The demo catalog's entitlements, seeded in every test database: kept, not retired.
fn seeded() -> Vec<String> {
    portcullis::seed::entitlements()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// An entitlement dropped from the configuration is retired at the next start: audited,
/// gone from the request page, refused with a clear message if asked for anyway, its
/// pending requests can be turned down but not approved, and its live grant runs to its
/// end and is revoked on time. The admin page lists it as retired. Declared again, it is
/// live again.
async fn an_entitlement_no_longer_configured_is_retired(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, dana) = (person("alice"), person("bob"), person("dana"));
    let auto = entitlement(
        "config-auto",
        SANDBOX,
        PS_READONLY,
        app::domain::Policy {
            auto_approve: true,
            ..policy()
        },
    );
    let by_manager = entitlement(
        "config-manager",
        SANDBOX,
        PS_READONLY,
        app::domain::Policy {
            approvers: ApproverRule {
                manager: true,
                ..Default::default()
            },
            ..policy()
        },
    );
    let both = [auto.clone(), by_manager.clone()];
    assert_eq!(
        apply(&env.store, &both, &seeded(), env.now())
            .await
            .unwrap(),
        2
    );
    let w = env.worker();
    let active = env.ask(&alice, "config-auto", "1h").await;
    env.settle(&w).await;
    let grant = env.only_grant(&active).await;
    assert_eq!(
        env.grant(&grant.access_grant_id).await.status.as_str(),
        "active"
    );
    let pending = env.ask(&alice, "config-manager", "1h").await;
    let pending_too = env.ask(&alice, "config-manager", "2h").await;
    assert_eq!(env.request_status(&pending).await, "pending");

    // The next start declares neither.
    assert_eq!(
        apply(&env.store, &[], &seeded(), env.now()).await.unwrap(),
        2
    );
    let retired = env.audit_with("entitlement.retired").await;
    assert_eq!(retired.len(), 2);
    assert!(
        retired
            .iter()
            .any(|e| e.detail.contains("its 1 live grant(s) run to their end")),
        "{retired:?}"
    );
    // Applying the same configuration again changes nothing.
    assert_eq!(
        apply(&env.store, &[], &seeded(), env.now()).await.unwrap(),
        0
    );

    let cards = env.portal.eligible_entitlements(&alice).await.unwrap();
    assert!(
        !cards.iter().any(|c| c.id.starts_with("config-")),
        "{cards:?}"
    );
    assert!(
        cards.iter().any(|c| c.id == "prod-admin"),
        "the others stay"
    );
    let requests = env.count("access_request").await;
    let err = env
        .portal
        .create_request(&alice, "config-auto", draft("1h"))
        .await
        .unwrap_err();
    let says = err.field("entitlement").unwrap_or_default();
    assert!(
        says.contains("was retired on") && says.contains("can no longer be requested"),
        "{err:?}"
    );
    assert_eq!(env.count("access_request").await, requests);

    // Pending requests: not approved, but may be turned down.
    let err = env
        .portal
        .decide(&bob, &pending, true, "ok")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::Conflict(m) if m.contains("can no longer be approved")),
        "{err:?}"
    );
    assert_eq!(env.request_status(&pending).await, "pending");
    env.portal
        .decide(&bob, &pending_too, false, "retired")
        .await
        .unwrap();
    assert_eq!(env.request_status(&pending_too).await, "rejected");

    // The live grant runs to its end, and ends on time.
    env.settle(&w).await;
    assert_eq!(
        env.grant(&grant.access_grant_id).await.status.as_str(),
        "active"
    );
    env.set_time(grant.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&grant.access_grant_id).await.status.as_str(),
        "revoked"
    );

    // The admin page lists them as retired, the demo's legacy one too, live ones first.
    let overview = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    let status: Vec<(&str, bool)> = overview
        .entitlements
        .iter()
        .map(|e| (e.id.as_str(), e.retired_at.is_some()))
        .collect();
    for id in ["config-auto", "config-manager", "legacy-warehouse"] {
        assert!(status.contains(&(id, true)), "{id}: {status:?}");
    }
    assert!(status.contains(&("prod-admin", false)), "{status:?}");
    let first_retired = status.iter().position(|(_, r)| *r).unwrap();
    assert!(
        status[first_retired..].iter().all(|(_, r)| *r),
        "{status:?}"
    );

    // Declared again: live again, and audited as such.
    assert_eq!(
        apply(
            &env.store,
            std::slice::from_ref(&auto),
            &seeded(),
            env.now()
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(env.audit_with("entitlement.restored").await.len(), 1);
    let rid = env.ask(&alice, "config-auto", "1h").await;
    assert_eq!(env.request_status(&rid).await, "approved");
    // A restart of a simulated organization (its catalog seeded again, then the
    // configuration applied) changes nothing: the configured one stays live.
    portcullis::seed::seed_catalog(&env.store, env.now())
        .await
        .unwrap();
    assert_eq!(
        apply(
            &env.store,
            std::slice::from_ref(&auto),
            &seeded(),
            env.now()
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(env.audit_with("entitlement.restored").await.len(), 1);
    env.check_invariants().await;
}

/// The demo's "Production read-only" goes to the requester's manager, and to a member of
/// cloud-approvers when there is no manager on record or the one named is not known to
/// the portal: they are told, may decide, and the requester's page says who decides. Once
/// the manager is known, the fallback no longer decides.
async fn a_manager_nobody_knows_is_replaced_by_the_fallback(b: Backend) {
    let env = TestEnv::new(b).await;
    let (alice, bob, carol) = (person("alice"), person("bob"), person("carol"));
    let w = env.worker();
    let queue = |who: app::domain::Principal| {
        let env = &env;
        async move {
            env.portal
                .approvals(&who)
                .await
                .unwrap()
                .pending
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };

    // Bob has no manager on record: cloud-approvers decide, and Carol is told.
    let carols_mail = env.mail_to("carol@example.com").await.len();
    let bobs = env.ask(&bob, "prod-readonly", "1h").await;
    w.drain().await.unwrap();
    assert!(queue(carol.clone()).await.contains(&bobs));
    let told = env.mail_to("carol@example.com").await;
    assert_eq!(
        told.len(),
        carols_mail + 1,
        "Carol is told of Bob's request"
    );
    assert!(
        told.iter().any(|m| m.body_text.contains("Bob Manager")),
        "{told:?}"
    );
    let mine = env.portal.my_access(&bob).await.unwrap();
    let view = mine.requests.iter().find(|r| r.id == bobs).unwrap();
    assert_eq!(
        view.deciders.as_deref(),
        Some("Decided by a member of cloud-approvers (no manager is on record for you)")
    );
    env.portal.decide(&carol, &bobs, true, "ok").await.unwrap();
    assert_eq!(env.request_status(&bobs).await, "approved");

    // Alice's manager, Bob, is known: only he decides; Carol is neither asked nor allowed.
    let carols_mail = env.mail_to("carol@example.com").await.len();
    let alices = env.ask(&alice, "prod-readonly", "1h").await;
    w.drain().await.unwrap();
    assert_eq!(env.mail_to("carol@example.com").await.len(), carols_mail);
    assert!(!queue(carol.clone()).await.contains(&alices));
    assert!(queue(bob.clone()).await.contains(&alices));
    let err = env
        .portal
        .decide(&carol, &alices, true, "ok")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    let view = env.portal.my_access(&alice).await.unwrap();
    let view = view.requests.iter().find(|r| r.id == alices).unwrap();
    assert_eq!(
        view.deciders.as_deref(),
        Some("Decided by your manager (bob@example.com)")
    );

    // Erin's manager claim names Zed, who has never signed in: the fallback decides...
    let erin = app::domain::Principal {
        manager: Some("zed@example.com".into()),
        ..extra_person("erin", &["engineering"])
    };
    env.upsert_user(&erin).await;
    let erins = env.ask(&erin, "prod-readonly", "1h").await;
    assert!(queue(carol.clone()).await.contains(&erins));
    let view = env.portal.my_access(&erin).await.unwrap();
    let says = view.requests[0].deciders.clone().unwrap_or_default();
    assert!(
        says.contains("a member of cloud-approvers instead of your manager (zed@example.com"),
        "{says}"
    );
    // ... until Zed signs in: then Zed decides, and Carol no longer may.
    let zed = extra_person("zed", &["engineering"]);
    env.upsert_user(&zed).await;
    assert!(!queue(carol.clone()).await.contains(&erins));
    assert!(queue(zed.clone()).await.contains(&erins));
    let err = env
        .portal
        .decide(&carol, &erins, true, "ok")
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Forbidden(_)), "{err:?}");
    env.portal.decide(&zed, &erins, true, "ok").await.unwrap();
    assert_eq!(env.request_status(&erins).await, "approved");
}

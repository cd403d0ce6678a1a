//! Approval workflows (issue #12): what an entitlement's policy asks of a request beyond
//! the simple case. So far: the ticket format per entitlement. Every test runs on SQLite
//! and on PostgreSQL.

mod common;

use app::error::AppError;
use app::ssr::Portal;
use common::*;

both!(a_ticket_must_have_its_entitlements_format);

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

//! The admin overview's long lists and the audit log a page at a time (issue #13), on
//! SQLite and PostgreSQL: walking the cursors from the first page visits every row once,
//! in order (requests newest first, live grants soonest end first, events newest first),
//! rows that share a time included; a cursor that is not one is refused and reads nothing.

mod common;

use app::error::AppError;
use app::ssr::Portal;
use app::views::{AuditFilter, OverviewCursor};
use common::*;

both!(the_overview_and_the_audit_log_page_through_every_row_once);

async fn the_overview_and_the_audit_log_page_through_every_row_once(b: Backend) {
    let env = TestEnv::new(b).await;
    let dana = person("dana");
    let w = env.worker();
    // 120 people ask at the same instant (the clock stands still): their requests share
    // one created_at and their grants one ends_at, so only the ids order them.
    for i in 0..120 {
        let p = extra_person(&format!("pager{i:03}"), &["engineering"]);
        env.upsert_user(&p).await;
        env.ask(&p, "sandbox-admin", "1h").await;
    }
    env.settle(&w).await;

    let ids = |sql: &str| {
        let sql = sql.to_owned();
        let env = &env;
        async move {
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .fetch_all(&mut *env.conn().await)
                .await
                .unwrap();
            rows.into_iter().map(|(id,)| id).collect::<Vec<_>>()
        }
    };
    let all_requests = ids(
        "SELECT access_request_id FROM access_request ORDER BY created_at DESC, access_request_id DESC",
    )
    .await;
    let live_grants = ids(
        "SELECT access_grant_id FROM access_grant WHERE status IN ('scheduled', 'provisioning', \
         'active', 'deprovisioning') ORDER BY ends_at, access_grant_id",
    )
    .await;
    assert!(all_requests.len() >= 120 && live_grants.len() >= 120);

    // Requests, 50 a page.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = OverviewCursor {
            requests: cursor.clone(),
            grants: None,
        };
        let o = env.portal.admin_overview(&dana, page).await.unwrap();
        assert_eq!(o.paged, cursor.is_some());
        assert!(o.requests.len() <= 50, "{}", o.requests.len());
        seen.extend(o.requests.into_iter().map(|r| r.id));
        pages += 1;
        assert!(pages <= 10, "the cursor must move on");
        match o.older_requests {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all_requests);
    assert_eq!(pages, all_requests.len().div_ceil(50));

    // Live grants, 100 a page.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = OverviewCursor {
            requests: None,
            grants: cursor.clone(),
        };
        let o = env.portal.admin_overview(&dana, page).await.unwrap();
        assert!(o.grants.len() <= 100);
        seen.extend(o.grants.into_iter().map(|g| g.id));
        pages += 1;
        assert!(pages <= 10, "the cursor must move on");
        match o.later_grants {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, live_grants);
    assert_eq!(pages, 2);

    // The audit log, 100 a page, whole and filtered.
    for action in [None, Some("request.")] {
        let all: Vec<i64> = env
            .audit()
            .await
            .into_iter()
            .filter(|a| action.is_none_or(|p| a.action.starts_with(p)))
            .map(|a| a.seq)
            .rev()
            .collect();
        assert!(all.len() > 200, "{}", all.len());
        let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
        loop {
            let filter = AuditFilter {
                action: action.map(str::to_owned),
                before,
                ..Default::default()
            };
            let page = env.portal.audit_log(&dana, filter).await.unwrap();
            assert!(page.events.len() <= 100);
            seen.extend(page.events.iter().map(|e| e.seq));
            pages += 1;
            assert!(pages <= 100, "the cursor must move on");
            match page.older {
                Some(seq) => before = Some(seq),
                None => break,
            }
        }
        assert_eq!(seen, all, "{action:?}");
        assert_eq!(pages, all.len().div_ceil(100));
    }

    // Not a cursor: refused, naming the list.
    for (requests, grants, field) in [
        (Some("yesterday"), None, "requests"),
        (Some("17."), None, "requests"),
        (None, Some(".grant-1"), "grants"),
        (None, Some("9999999999999999999999.x"), "grants"),
    ] {
        let page = OverviewCursor {
            requests: requests.map(str::to_owned),
            grants: grants.map(str::to_owned),
        };
        match env.portal.admin_overview(&dana, page).await {
            Err(AppError::Invalid(errors)) => assert_eq!(errors[0].field, field),
            other => panic!("{requests:?} {grants:?}: {other:?}"),
        }
    }
    let zero = AuditFilter {
        before: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        env.portal.audit_log(&dana, zero).await,
        Err(AppError::Invalid(_))
    ));
    // Only admins page through either.
    let alice = person("alice");
    assert!(env
        .portal
        .admin_overview(&alice, OverviewCursor::default())
        .await
        .is_err());
}

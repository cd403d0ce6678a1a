//! Invariant 6, the audit you can verify: the keyed chain (and the unkeyed events written
//! before the key), the scheduled verification and its alert, and the admin export route.
//! The command line (`portcullis audit verify`, `export`) is in `audit_cli.rs`.

mod common;

use app::domain::Timestamp;
use app::ssr::Portal;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::cli::*;
use common::*;
use portcullis::audit::{self, Actor, Event};
use portcullis::config::Config;
use portcullis::store::{self, AuditKey, AuditQuery, DatabaseUrl, JobKind, Store, MIGRATOR};
use sqlx::Row;
use std::borrow::Cow;
use std::time::Duration;
use tower::ServiceExt;

both!(
    keyed_chain_verifies_and_a_wrong_key_does_not,
    events_before_the_key_still_verify_after_the_migration,
    scheduled_verification_alerts_once_and_resolves,
    export_streams_every_matching_event_in_both_formats,
    export_is_for_admins_only,
    keyed_events_rehashed_without_the_key_are_found,
);

fn other_key() -> AuditKey {
    AuditKey::from_bytes(&[0x5a; 32]).unwrap()
}

async fn keyed_chain_verifies_and_a_wrong_key_does_not(b: Backend) {
    let env = TestEnv::new(b).await;
    write_events(&env.store, 5, "test.event", "x", env.now()).await;
    let mut conn = env.conn().await;
    let ok = store::verify_audit_chain(&mut conn, env.store.audit_key())
        .await
        .unwrap();
    let n = env.count("audit_event").await;
    assert!(n >= 5);
    assert_eq!((ok.events, ok.keyed_from, ok.first_bad), (n, 1, None));
    // Every event is keyed: another key fails at the first one.
    let wrong = store::verify_audit_chain(&mut conn, &other_key())
        .await
        .unwrap();
    assert_eq!(wrong.first_bad, Some(1));
    // Rewriting an event and its hash without the key (the old, unkeyed rule) is found.
    let row = sqlx::query("SELECT prev_hash FROM audit_event WHERE seq = 2")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let prev: String = row.get("prev_hash");
    let forged = env.audit().await.into_iter().find(|r| r.seq == 2).unwrap();
    let e = Event {
        action: &forged.action,
        person_id: forged.person_id.as_deref(),
        subject_kind: &forged.subject_kind,
        subject_id: &forged.subject_id,
        entitlement_id: forged.entitlement_id.as_deref(),
        detail: "forged".into(),
    };
    let actor = Actor {
        id: forged.actor_id.clone(),
        name: forged.actor_name.clone(),
    };
    let hash = store::legacy_chain_hash(&prev, 2, forged.at.millis(), &actor, &e);
    sqlx::query("UPDATE audit_event SET detail = 'forged', hash = $1 WHERE seq = 2")
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(env.verify_chain().await, Some(2));
}

/// Appends one event the way Portcullis did before the key: plain SHA-256.
async fn append_unkeyed(store: &Store, seq_detail: &str, now: Timestamp) {
    let mut tx = store.begin().await.unwrap();
    let head = sqlx::query(
        "UPDATE audit_head SET seq = seq + 1 WHERE audit_head_id = 1 RETURNING seq, hash",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let (seq, prev): (i64, String) = (head.get("seq"), head.get("hash"));
    let actor = Actor::system();
    let e = audit_event("legacy.event", seq_detail);
    let hash = store::legacy_chain_hash(&prev, seq, now.millis(), &actor, &e);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE audit_head_id = 1")
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_event (seq, at, actor_id, actor_name, action, person_id, subject_kind,
             subject_id, entitlement_id, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(now.millis())
    .bind(&actor.id)
    .bind(&actor.name)
    .bind(e.action)
    .bind(e.person_id)
    .bind(e.subject_kind)
    .bind(e.subject_id)
    .bind(e.entitlement_id)
    .bind(&e.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// A database from before the key: migrated up to 20261201000001 with 4 events chained
/// the old way, then the rest of the migrations, then 3 keyed events.
async fn database_from_before_the_key(b: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, _dir) = fresh_database(b).await;
    let store = Store::connect(&DatabaseUrl::new(url), audit_key())
        .await
        .unwrap();
    let before = sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < 20261201000002)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(store.pool()).await.unwrap();
    for i in 0..4 {
        append_unkeyed(&store, &format!("old {i}"), T0).await;
    }
    store.migrate().await.unwrap();
    write_events(&store, 3, "test.keyed", "new", T0).await;

    (store, _dir)
}

/// Events from before the key still verify after the migration, the unkeyed way, once
/// the configuration says how many there are (`audit.unkeyed_events`); until then the
/// check fails at event 1 and says what to set.
async fn events_before_the_key_still_verify_after_the_migration(b: Backend) {
    let (store, _dir) = database_from_before_the_key(b).await;
    let mut conn = store.conn().await.unwrap();
    // The database says 4 events predate the key; the configuration must say so too.
    let unpinned = store::verify_audit_chain(&mut conn, store.audit_key())
        .await
        .unwrap();
    assert_eq!((unpinned.first_bad, unpinned.claimed_unkeyed), (Some(1), 4));
    assert!(unpinned
        .unkeyed_hint()
        .is_some_and(|h| h.contains("audit.unkeyed_events = 4")));
    let key = store.audit_key().clone().with_unkeyed_events(4);
    let check = store::verify_audit_chain(&mut conn, &key).await.unwrap();
    assert_eq!(
        (check.events, check.keyed_from, check.first_bad),
        (7, 5, None)
    );
    // The keyed part needs the key; the unkeyed part before it does not.
    let wrong = store::verify_audit_chain(&mut conn, &other_key().with_unkeyed_events(4))
        .await
        .unwrap();
    assert_eq!(wrong.first_bad, Some(5));
    // Moving the marker does not pass keyed events off as unkeyed ones: the configuration,
    // not the marker, says where the key starts (rehashing them too is the next test)...
    sqlx::query("UPDATE audit_head SET keyed_from = 8")
        .execute(&mut *conn)
        .await
        .unwrap();
    let moved = store::verify_audit_chain(&mut conn, &key).await.unwrap();
    assert_eq!((moved.keyed_from, moved.claimed_unkeyed), (5, 7));
    assert!(moved.is_intact());
    sqlx::query("UPDATE audit_head SET keyed_from = 5")
        .execute(&mut *conn)
        .await
        .unwrap();
    // ...and so is an old event rewritten with the old rule: the next link breaks.
    sqlx::query("UPDATE audit_event SET detail = 'rewritten' WHERE seq = 2")
        .execute(&mut *conn)
        .await
        .unwrap();
    let tampered = store::verify_audit_chain(&mut conn, &key).await.unwrap();
    assert_eq!(tampered.first_bad, Some(2));
}

async fn verification_runs(env: &TestEnv) -> Vec<store::RunRow> {
    store::recent_runs(&mut *env.conn().await, JobKind::VerifyAudit, 10)
        .await
        .unwrap()
}

async fn scheduled_verification_alerts_once_and_resolves(b: Backend) {
    let env = TestEnv::new(b).await;
    write_events(&env.store, 3, "test.event", "x", env.now()).await;
    let dana = person("dana");
    assert_eq!(
        env.portal
            .admin_overview(&dana, Default::default())
            .await
            .unwrap()
            .audit_chain,
        None
    );
    let now = env.now();
    store::schedule_singleton(&mut *env.conn().await, JobKind::VerifyAudit, now, now)
        .await
        .unwrap();
    // Scheduling it again (a second replica starting) keeps one job.
    store::schedule_singleton(&mut *env.conn().await, JobKind::VerifyAudit, now, now)
        .await
        .unwrap();
    assert_eq!(env.jobs("verify_audit").await.len(), 1);
    let worker =
        env.worker()
            .in_lane(store::Lane::Maintenance)
            .with_upkeep(portcullis::config::Upkeep {
                verify_audit_every: Duration::from_secs(600),
                ..Default::default()
            });
    // The grants lane leaves it alone.
    let grants = env.worker().in_lane(store::Lane::Grants);
    assert_eq!(grants.drain().await.unwrap(), 0);

    let n = env.count("audit_event").await;
    assert_eq!(worker.drain().await.unwrap(), 1);
    let runs = verification_runs(&env).await;
    assert_eq!(runs[0].status, "succeeded");
    assert_eq!(
        runs[0].summary.as_deref(),
        Some(format!("{n} events").as_str())
    );
    assert!(env.alerts("audit_chain_broken").await.is_empty());
    assert_eq!(env.audit_with("audit.verified").await.len(), 1);
    let shown = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap()
        .audit_chain;
    let shown = shown.expect("the overview shows the verification");
    assert!(shown.verified);
    assert_eq!(shown.summary, format!("{n} events"));
    // It runs again after its period, not before.
    assert_eq!(
        env.job("verify_audit", "verify_audit")
            .await
            .unwrap()
            .run_at,
        now.plus(Duration::from_secs(600))
    );

    // Someone edits an event: the next run raises one alert, and the one after no second.
    let original: String = sqlx::query_scalar("SELECT detail FROM audit_event WHERE seq = 2")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_event SET detail = 'nothing happened' WHERE seq = 2")
        .execute(env.store.pool())
        .await
        .unwrap();
    for _ in 0..2 {
        env.advance(Duration::from_secs(601));
        assert_eq!(worker.drain().await.unwrap(), 1);
    }
    let alerts = env.alerts("audit_chain_broken").await;
    assert_eq!(alerts.len(), 1, "one alert while it stays broken");
    assert!(
        alerts[0].message.contains("event 2"),
        "{}",
        alerts[0].message
    );
    assert_eq!(verification_runs(&env).await[0].status, "failed");
    assert_eq!(env.audit_with("audit.chain_broken").await.len(), 2);
    let shown = env
        .portal
        .admin_overview(&dana, Default::default())
        .await
        .unwrap();
    let chain = shown.audit_chain.unwrap();
    assert!(!chain.verified);
    assert_eq!(chain.summary, "broken at event 2");
    assert!(shown.alerts.iter().any(|a| a.kind == "audit_chain_broken"));

    // Restored (from a backup, say): the next run resolves the alert.
    sqlx::query("UPDATE audit_event SET detail = $1 WHERE seq = 2")
        .bind(&original)
        .execute(env.store.pool())
        .await
        .unwrap();
    env.advance(Duration::from_secs(601));
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert!(env.alerts("audit_chain_broken").await.is_empty());
    assert!(
        env.portal
            .admin_overview(&dana, Default::default())
            .await
            .unwrap()
            .audit_chain
            .unwrap()
            .verified
    );
    assert_eq!(env.verify_chain().await, None);
}

// ------------------------------------------------------------------ the export route

const HOST: &str = "127.0.0.1:3000";
const ORIGIN: &str = "http://127.0.0.1:3000";

async fn sign_in(router: &axum::Router, persona: &str) -> String {
    let req = Request::post("/demo/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("persona={persona}&return_to=%2F")))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn get(router: &axum::Router, path: &str, cookie: &str) -> axum::response::Response {
    let req = Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    router.clone().oneshot(req).await.unwrap()
}

async fn text(res: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// 1,200 events for carol with a formula in the detail, mixed with 300 others.
async fn export_history(env: &TestEnv) {
    let carol = person("carol");
    let mut tx = env.store.begin().await.unwrap();
    for i in 0..1500 {
        let (who, action) = if i % 5 == 4 {
            (person("bob"), "noise.other")
        } else {
            (carol.clone(), "export.case")
        };
        let e = Event {
            action,
            person_id: Some(&who.user_id),
            subject_kind: "test",
            subject_id: "x",
            entitlement_id: None,
            detail: format!("=HYPERLINK(\"http://evil\",\"{i}\")"),
        };
        audit::audit(&mut tx, &Actor::of(&who), e, env.now())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn export_streams_every_matching_event_in_both_formats(b: Backend) {
    let env = TestEnv::new(b).await;
    export_history(&env).await;
    let (router, _) = common::web::router(&env.store, Config::default(), true, None);
    let dana = sign_in(&router, "dana").await;

    let res = get(
        &router,
        "/admin/audit.csv?action=export.&person=carol",
        &dana,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = text(res).await;
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("seq,at,actor_id,"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1200, "every matching event, not the newest 500");
    let seqs: Vec<i64> = rows
        .iter()
        .map(|l| {
            l.split(',')
                .next()
                .unwrap()
                .trim_matches('"')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(rows.iter().all(|l| l.contains("\"export.case\"")));
    // The formula is neutralised, every cell quoted.
    assert!(
        rows[0].contains(",\"'=HYPERLINK(\"\"http://evil\"\",\"\"0\"\")\","),
        "{}",
        rows[0]
    );
    assert!(rows.iter().all(|l| l.starts_with('"') && l.ends_with('"')));

    let res = get(
        &router,
        "/admin/audit.csv?format=jsonl&action=export.",
        &dana,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let jsonl = text(res).await;
    let events: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1200);
    assert_eq!(events[0]["actor_id"], "demo|carol");
    assert_eq!(events[0]["detail"], "=HYPERLINK(\"http://evil\",\"0\")");
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z'));
    for key in [
        "seq",
        "actor_name",
        "person_id",
        "subject_kind",
        "subject_id",
        "prev_hash",
        "hash",
    ] {
        assert!(!events[1199][key].is_null(), "{key}");
    }
    // No filter: every event there is, in one stream.
    let all = text(get(&router, "/admin/audit.csv?format=jsonl", &dana).await).await;
    let total = env.count("audit_event").await;
    assert!(all.lines().count() as i64 >= 1500);
    assert!(all.lines().count() as i64 <= total);
    // An unknown format is refused.
    let res = get(&router, "/admin/audit.csv?format=xml", &dana).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The store's pages, as the CLI reads them, agree.
    let q = AuditQuery::filter(Some(" carol ".into()), None, Some("export.".into()));
    let mut conn = env.conn().await;
    let first = store::audit_page(
        &mut conn,
        &AuditQuery {
            limit: 1000,
            ..q.clone()
        },
        0,
    )
    .await
    .unwrap();
    assert_eq!(first.len(), 1000);
    let rest = store::audit_page(
        &mut conn,
        &AuditQuery { limit: 1000, ..q },
        first.last().unwrap().seq,
    )
    .await
    .unwrap();
    assert_eq!(rest.len(), 200);
}

async fn export_is_for_admins_only(b: Backend) {
    let env = TestEnv::new(b).await;
    write_events(&env.store, 3, "test.event", "x", env.now()).await;
    let (router, _) = common::web::router(&env.store, Config::default(), true, None);
    let alice = sign_in(&router, "alice").await;
    for path in ["/admin/audit.csv", "/admin/audit.csv?format=jsonl"] {
        let res = get(&router, path, &alice).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!text(res).await.contains("test.event"));
    }
    assert_eq!(env.audit_with("denied.audit_export").await.len(), 2);
    // An admin's filter that is too long: refused as bad input (400), not 500.
    let dana = sign_in(&router, "dana").await;
    let long = "x".repeat(201);
    let res = get(&router, &format!("/admin/audit.csv?action={long}"), &dana).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(!text(res).await.contains("test.event"));
    // Without a session: no export either.
    let req = Request::get("/admin/audit.csv")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_ne!(res.status(), StatusCode::OK);
}

/// An event's columns, as the chain hashes them.
type EventColumns = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
);

/// Someone who can write to the database but has no key moves `audit_head.keyed_from`
/// past the head and rehashes every event the unkeyed way: the configuration
/// (`audit.unkeyed_events`) says which events may be unkeyed, so the first keyed one that
/// lost its key is found.
async fn keyed_events_rehashed_without_the_key_are_found(b: Backend) {
    let (store, _dir) = database_from_before_the_key(b).await;
    let key = store.audit_key().clone().with_unkeyed_events(4);
    let mut conn = store.conn().await.unwrap();
    assert!(store::verify_audit_chain(&mut conn, &key)
        .await
        .unwrap()
        .is_intact());
    let rows: Vec<EventColumns> = sqlx::query_as(
        "SELECT seq, at, actor_id, actor_name, action, person_id, subject_kind, subject_id,
                    entitlement_id, detail FROM audit_event ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut prev = "0".repeat(64);
    for (seq, at, actor_id, actor_name, action, person, kind, subject, ent, detail) in &rows {
        let actor = Actor {
            id: actor_id.clone(),
            name: actor_name.clone(),
        };
        let e = Event {
            action,
            person_id: person.as_deref(),
            subject_kind: kind,
            subject_id: subject,
            entitlement_id: ent.as_deref(),
            detail: detail.clone(),
        };
        let hash = store::legacy_chain_hash(&prev, *seq, *at, &actor, &e);
        sqlx::query("UPDATE audit_event SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1, keyed_from = 8")
        .bind(&prev)
        .execute(&mut *conn)
        .await
        .unwrap();
    let downgraded = store::verify_audit_chain(&mut conn, &key).await.unwrap();
    assert_eq!(
        downgraded.first_bad,
        Some(5),
        "keyed events passed off as unkeyed"
    );
    let rewritten_unkeyed =
        store::verify_audit_chain(&mut conn, &key.clone().with_unkeyed_events(7))
            .await
            .unwrap();
    assert_eq!(
        rewritten_unkeyed.first_bad, None,
        "(with a configuration that allowed it, the same rewrite would pass)"
    );
}

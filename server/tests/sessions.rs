//! Sessions in the store: they expire (idle and absolute) and only a hash of the token
//! is kept. Runs on SQLite and on PostgreSQL.

mod common;

use common::*;
use portcullis::store;
use std::time::Duration;

both!(sessions_expire_and_store_only_a_hash);

async fn sessions_expire_and_store_only_a_hash(b: Backend) {
    let env = TestEnv::new(b).await;
    let alice = person("alice");
    let idle = Duration::from_secs(8 * 3600);
    let token = "f00dcafe".repeat(8);
    let t0 = env.now();
    {
        let mut c = env.conn().await;
        store::create_session(
            &mut c,
            &token,
            &alice.user_id,
            true,
            t0,
            t0.plus(Duration::from_secs(24 * 3600)),
        )
        .await
        .unwrap();
    }
    let stored: Vec<String> = sqlx::query_scalar("SELECT session_hash FROM web_session")
        .fetch_all(env.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token, "the token itself is never stored");
    assert!(!stored[0].contains(&token));
    assert_eq!(stored[0], store::hash_token(&token));

    let find = |tok: String| {
        let env = &env;
        async move {
            store::find_session(&mut *env.conn().await, &tok, env.now(), idle)
                .await
                .unwrap()
        }
    };
    let (p, demo) = find(token.clone()).await.expect("fresh session");
    assert_eq!(p, alice);
    assert!(demo);
    assert!(find("f00dcafe".into()).await.is_none());
    assert!(
        find(stored[0].clone()).await.is_none(),
        "the hash is not a token"
    );

    // Used regularly, a session lives until its absolute expiry, not a second more.
    for hour in 1..24 {
        env.set_time(t0.millis() + hour * HOUR_MS);
        assert!(find(token.clone()).await.is_some(), "hour {hour}");
    }
    env.set_time(t0.millis() + 24 * HOUR_MS - 1);
    assert!(find(token.clone()).await.is_some());
    env.set_time(t0.millis() + 24 * HOUR_MS);
    assert!(find(token.clone()).await.is_none(), "absolute expiry");

    // Idle timeout: 8h without use ends it.
    let token2 = "beef".repeat(16);
    let t1 = env.now();
    {
        let mut c = env.conn().await;
        store::create_session(
            &mut c,
            &token2,
            &alice.user_id,
            false,
            t1,
            t1.plus(Duration::from_secs(24 * 3600)),
        )
        .await
        .unwrap();
    }
    env.set_time(t1.millis() + 8 * HOUR_MS - 1);
    assert!(
        find(token2.clone()).await.is_some(),
        "just under the idle timeout"
    );
    // That use restarted the idle clock.
    env.set_time(t1.millis() + 16 * HOUR_MS - 2);
    assert!(find(token2.clone()).await.is_some());
    let token3 = "abcd".repeat(16);
    let t2 = env.now();
    {
        let mut c = env.conn().await;
        store::create_session(
            &mut c,
            &token3,
            &alice.user_id,
            false,
            t2,
            t2.plus(Duration::from_secs(24 * 3600)),
        )
        .await
        .unwrap();
    }
    env.set_time(t2.millis() + 8 * HOUR_MS);
    assert!(find(token3.clone()).await.is_none(), "idle for 8h");
    // Sign-out deletes it.
    {
        let mut c = env.conn().await;
        store::delete_session(&mut c, &token2).await.unwrap();
        store::delete_session(&mut c, &token3).await.unwrap();
    }
    env.set_time(t2.millis());
    assert!(find(token2.clone()).await.is_none(), "deleted");
}

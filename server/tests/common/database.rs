//! A fresh database per test: a SQLite file, or a PostgreSQL database created on the
//! server `POSTGRES_TEST_URL` names (skipped without it, failing under CI).

use super::*;

/// `POSTGRES_TEST_URL`, unless unset or blank.
fn postgres_test_url() -> Option<String> {
    std::env::var(ENV_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Whether a PostgreSQL test can run. Without `POSTGRES_TEST_URL` it is skipped, and the
/// first one skipped in this test binary says so on stderr (written past libtest's capture,
/// so that the line shows); under CI (`CI` set, to anything) it panics instead.
pub fn postgres_or_skip() -> bool {
    if postgres_test_url().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{}; CI is set, so they fail instead of being skipped",
            postgres_missing()
        );
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: PostgreSQL tests need {ENV_VAR}; run .ci/test, or set \
             {ENV_VAR}=$(.ci/postgres start /tmp/pg-tests 55433)"
        );
    });
    false
}

fn postgres_missing() -> String {
    format!(
        "PostgreSQL tests need a server: set {ENV_VAR} to an admin URL, e.g. \
         `{ENV_VAR}=$(.ci/postgres start /tmp/pg-tests 55433)` \
         (gives postgres://postgres@127.0.0.1:55433/postgres)"
    )
}

pub fn postgres_admin_url() -> String {
    postgres_test_url().unwrap_or_else(|| panic!("{}", postgres_missing()))
}

/// The admin URL with its database name replaced.
fn with_database(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

/// A new empty database: a SQLite file in a temp dir (kept while the dir lives), or a
/// PostgreSQL database of its own. Returns its URL.
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    sqlx::any::install_default_drivers();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let db = format!("t_{:016x}", rand::random::<u64>());
            let mut conn = sqlx::AnyConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {ENV_VAR} ({admin}): {e}"));
            conn.execute(format!("CREATE DATABASE {db}").as_str())
                .await
                .expect("CREATE DATABASE");
            let _ = conn.close().await;
            (with_database(&admin, &db), None)
        }
    }
}

/// A fresh, empty database (not migrated) and a store on it.
pub async fn fresh_store(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database(backend).await;
    let store = Store::connect(&DatabaseUrl::new(url), audit_key())
        .await
        .expect("connect");
    (store, dir)
}

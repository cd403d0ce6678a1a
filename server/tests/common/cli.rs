//! The built `portcullis` binary run as an operator would, and audit events written as a
//! use case would (for the suites that read them back through the command line).

use super::person;
use app::domain::Timestamp;
use portcullis::audit::{self, Actor, Event};
use portcullis::store::Store;
use std::ffi::OsStr;

/// Runs `portcullis args` with only `env` set (and `RUST_LOG=warn`): its exit code,
/// standard output and standard error.
pub fn run_portcullis<K, V>(
    args: &[&str],
    env: impl IntoIterator<Item = (K, V)>,
) -> (i32, String, String)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).env_clear().env("RUST_LOG", "warn").envs(env);
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// An audit event by the test about subject `t1`.
pub fn audit_event(action: &str, detail: &str) -> Event<'static> {
    Event {
        action: Box::leak(action.to_owned().into_boxed_str()),
        person_id: Some("demo|alice"),
        subject_kind: "test",
        subject_id: "t1",
        entitlement_id: None,
        detail: detail.to_owned(),
    }
}

/// `n` events in one transaction, as a use case would write them.
pub async fn write_events(store: &Store, n: usize, action: &str, detail: &str, now: Timestamp) {
    let mut tx = store.begin().await.unwrap();
    for _ in 0..n {
        let e = audit_event(action, detail);
        audit::audit(&mut tx, &Actor::of(&person("alice")), e, now)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

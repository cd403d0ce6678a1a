//! What the suites that start real servers share: a free loopback port, a child process
//! killed (by its PID) when dropped, and the Python venv of the test peers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A free port below Linux's ephemeral range (32768-60999), for a server a test stops and
/// starts again on the same port: a port from [`free_port`] can meanwhile become the
/// local end of some outgoing connection (a database client's, say), and the restart then
/// finds it taken.
pub fn free_port_for_restarts() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + rand::random::<u16>() % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// A server process the test started; it is killed and reaped when this is dropped.
pub struct Peer(Child);

impl Peer {
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// Whether the process has exited already (it failed to start).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python of the venv for the test peers written in Python (moto, aiosmtpd), made
/// or reused by `.ci/moto/venv`.
pub fn python() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/moto/venv");
    let venv = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("bash");
    assert!(venv.status.success(), "cannot set up the Python test venv");
    PathBuf::from(String::from_utf8(venv.stdout).unwrap().trim()).join("bin/python")
}

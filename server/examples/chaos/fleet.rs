//! The run's settings and the fleet of `portcullis serve` replicas: started, SIGKILLed
//! and restarted by the PIDs this harness holds.

use super::*;

/// What `.ci/chaos` passes, and the run's knobs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) root: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) pg_dir: String,
    pub(crate) pg_port: u16,
    pub(crate) pg_url: String,
    pub(crate) moto: String,
    pub(crate) oidc: String,
    pub(crate) oidc_accounts: PathBuf,
    pub(crate) public: String,
    pub(crate) ports: Vec<u16>,
    pub(crate) lifecycles: usize,
    pub(crate) kills: u32,
    pub(crate) kill_every: Duration,
    pub(crate) outage: Duration,
    /// The outage starts once this share (percent) of the lifecycles has started.
    pub(crate) outage_at_pct: u64,
    pub(crate) bound_secs: f64,
    pub(crate) users: usize,
    pub(crate) accounts: usize,
    pub(crate) in_flight: usize,
    pub(crate) min_grant_secs: u64,
    pub(crate) max_grant_secs: u64,
    pub(crate) seed: u64,
    pub(crate) rate: u64,
    /// Hard limit on the whole run (seconds).
    pub(crate) deadline: Duration,
}

impl Settings {
    pub(crate) fn from_env() -> Result<Self> {
        let ports = env_str("CHAOS_REPLICA_PORTS")?
            .split(',')
            .map(|p| p.trim().parse::<u16>().context("CHAOS_REPLICA_PORTS"))
            .collect::<Result<Vec<_>>>()?;
        anyhow::ensure!(
            (1..=5).contains(&ports.len()),
            "1 to 5 replicas, not {}",
            ports.len()
        );
        Ok(Self {
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
            bin: env_str("CHAOS_BIN")?.into(),
            dir: env_str("CHAOS_DIR")?.into(),
            pg_dir: env_str("CHAOS_PG_DIR")?,
            pg_port: env_str("CHAOS_PG_PORT")?.parse()?,
            pg_url: env_str("CHAOS_PG_URL")?,
            moto: env_str("CHAOS_MOTO_URL")?,
            oidc: env_str("CHAOS_OIDC_URL")?,
            oidc_accounts: env_str("CHAOS_OIDC_ACCOUNTS")?.into(),
            public: format!("http://127.0.0.1:{}", ports[0]),
            ports,
            lifecycles: env_u64("CHAOS_LIFECYCLES", 100) as usize,
            kills: env_u64("CHAOS_KILLS", 4) as u32,
            kill_every: Duration::from_millis(env_u64("CHAOS_KILL_EVERY_MS", 15_000)),
            outage: Duration::from_secs(env_u64("CHAOS_OUTAGE_SECS", 20)),
            outage_at_pct: env_u64("CHAOS_OUTAGE_AT_PCT", 40).min(100),
            bound_secs: env_u64("CHAOS_BOUND_SECS", 30) as f64,
            users: env_u64("CHAOS_USERS", 12).clamp(1, 200) as usize,
            accounts: env_u64("CHAOS_ACCOUNTS", 3).clamp(1, 20) as usize,
            in_flight: env_u64("CHAOS_IN_FLIGHT", 24).max(1) as usize,
            min_grant_secs: env_u64("CHAOS_MIN_GRANT_SECS", 12),
            max_grant_secs: env_u64("CHAOS_MAX_GRANT_SECS", 24),
            seed: env_u64("CHAOS_SEED", 42),
            rate: env_u64("CHAOS_RATE", 10),
            deadline: Duration::from_secs(env_u64("CHAOS_DEADLINE_SECS", 900)),
        })
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.join("portcullis.toml")
    }
}

pub(crate) struct Replica {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
    /// Set while the harness kills it on purpose.
    pub(crate) killing: bool,
}

/// The `serve` processes this harness started, by index; each killed only by its PID.
pub(crate) struct Fleet {
    pub(crate) settings: Settings,
    pub(crate) replicas: Mutex<Vec<Replica>>,
    pub(crate) starts: AtomicU32,
    pub(crate) kills: AtomicU32,
    pub(crate) unexpected_exits: Mutex<Vec<String>>,
    /// When each replica was started and killed (epoch seconds), for a failure's report.
    pub(crate) timeline: Mutex<Vec<(f64, String)>>,
}

impl Fleet {
    pub(crate) fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            replicas: Mutex::new(
                settings
                    .ports
                    .iter()
                    .map(|&port| Replica {
                        port,
                        child: None,
                        killing: false,
                    })
                    .collect(),
            ),
            starts: AtomicU32::new(0),
            kills: AtomicU32::new(0),
            unexpected_exits: Mutex::new(Vec::new()),
            timeline: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn start(&self, i: usize) -> Result<()> {
        let s = &self.settings;
        let port = s.ports[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.dir.join(format!("replica-{i}.log")))?;
        let child = Command::new(&s.bin)
            .args(["serve", "--config"])
            .arg(s.config_path())
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_WORKER__REPLICA_ID", format!("chaos-{i}"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting portcullis serve")?;
        // The PIDs for .ci/chaos's clean-up, should this driver itself die.
        if let Some(pid) = child.id() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(s.dir.join("replicas.pids"))?;
            writeln!(f, "{pid}")?;
        }
        let mut replicas = self.replicas.lock().unwrap();
        replicas[i].child = Some(child);
        replicas[i].killing = false;
        self.starts.fetch_add(1, Ordering::Relaxed);
        self.note(format!("replica {i} started"));
        Ok(())
    }

    /// SIGKILLs replica `i` (the child this harness started) and waits for it.
    pub(crate) async fn kill(&self, i: usize) -> bool {
        let child = {
            let mut replicas = self.replicas.lock().unwrap();
            replicas[i].killing = true;
            replicas[i].child.take()
        };
        let Some(mut child) = child else { return false };
        let _ = child.start_kill(); // SIGKILL to this child's PID
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        self.kills.fetch_add(1, Ordering::Relaxed);
        self.note(format!("replica {i} SIGKILLed"));
        true
    }

    pub(crate) fn note(&self, what: String) {
        self.timeline.lock().unwrap().push((now_secs(), what));
    }

    /// Ports of the replicas currently running.
    pub(crate) fn live_ports(&self) -> Vec<u16> {
        self.replicas
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.child.is_some())
            .map(|r| r.port)
            .collect()
    }

    /// Records and restarts replicas that exited without being killed.
    pub(crate) fn check_exits(&self) -> Vec<usize> {
        let mut gone = Vec::new();
        let mut replicas = self.replicas.lock().unwrap();
        for (i, r) in replicas.iter_mut().enumerate() {
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let tail = last_words(&self.settings.dir.join(format!("replica-{i}.log")));
                    self.unexpected_exits
                        .lock()
                        .unwrap()
                        .push(format!("replica {i} exited on its own ({status}): {tail}"));
                    r.child = None;
                    gone.push(i);
                }
            }
        }
        gone
    }

    pub(crate) async fn stop_all(&self) {
        for i in 0..self.settings.ports.len() {
            let child = self.replicas.lock().unwrap()[i].child.take();
            if let Some(mut child) = child {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
        }
    }
}

/// The last line of a replica's log that says why it stopped, without colours, short.
pub(crate) fn last_words(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .or_else(|| text.lines().last())
        .unwrap_or_default();
    strip_ansi(line).chars().take(300).collect()
}

/// A log line without its terminal colours.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut plain = String::new();
    let mut escape = false;
    for c in line.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
}

//! Portcullis' server: configuration, store, worker, provisioners, HTTP.
//!
//! This file only wires the parts together. The map of the code, the lifecycles, the
//! numbered invariants that comments cite and the rules of each edge are in
//! `ARCHITECTURE.md` at the top of the repository.

pub mod approval;
pub mod audit;
pub mod chat;
pub mod clock;
pub mod config;
pub mod export;
pub mod grants;
pub mod http;
pub mod mailer;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod operate;
pub mod portal;
pub mod provisioner;
pub mod seed;
pub mod store;
pub mod upkeep;
pub mod worker;

use anyhow::{Context, Result};
use clock::{Clock, SystemClock};
use config::{Config, Mode};
use leptos::prelude::LeptosOptions;
use std::sync::Arc;
use std::time::Duration;
use store::{DatabaseUrl, Store};
use tokio::sync::{watch, Notify};

/// Where demo mode keeps its database unless told otherwise.
pub const DEMO_DATABASE_URL: &str = "sqlite://portcullis-demo.db?mode=rwc";

/// The store the `audit` commands read: `database_url` with `audit.key`, or without a
/// database URL the demo database with the demo key (as `portcullis demo` would). The
/// database must be migrated already: these commands change nothing.
pub async fn audit_store(config: &Config) -> Result<Store> {
    let (url, mode) = match &config.database_url {
        Some(url) => (url.clone(), Mode::Serve),
        // Read, never created.
        None => (
            DatabaseUrl::new(DEMO_DATABASE_URL.trim_end_matches("?mode=rwc")),
            Mode::Demo,
        ),
    };
    let key = config.audit.key(mode)?;
    let store = Store::connect(&url, key).await?;
    if !store.is_ready().await {
        anyhow::bail!(
            "the database at {url} is not at this version's schema: start `portcullis serve` \
             (or `demo`) once to migrate it"
        );
    }
    Ok(store)
}

/// How long start-up waits at most between two tries to reach the database.
const DATABASE_RETRY_CAP: Duration = Duration::from_secs(30);

/// Connects and migrates, waiting for the database as long as it takes: a portal started
/// while its database is down (a restart of both, a failover) comes up when the database
/// does, instead of exiting. Each failed try is logged with its cause; the waits grow from
/// 1 s to [`DATABASE_RETRY_CAP`].
pub async fn connect_waiting(url: &DatabaseUrl, key: config::AuditKey) -> Store {
    let mut wait = Duration::from_secs(1);
    loop {
        let tried = async {
            let store = Store::connect(url, key.clone()).await?;
            store.migrate().await?;
            anyhow::Ok(store)
        }
        .await;
        match tried {
            Ok(store) => return store,
            Err(e) => {
                tracing::warn!(
                    database = %url,
                    error = format!("{e:#}"),
                    retry_in_secs = wait.as_secs(),
                    "waiting for the database"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(DATABASE_RETRY_CAP);
            }
        }
    }
}

/// Whether an error is the database being away (down, restarting, unreachable), which
/// start-up waits out, rather than a refusal (another mode's database, a bad setting).
fn database_away(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // connection_exception, and operator intervention (shutting down, starting up).
            Some(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        })
}

/// Runs a start-up step on the database again while the database is away (logged, 1 s
/// doubling to [`DATABASE_RETRY_CAP`]), as [`connect_waiting`] waits for the first
/// connection: a replica restarted as its database goes down (the chaos harness does
/// this) comes up with the database instead of exiting half way through its start.
async fn waiting_for_database<T, F, Fut>(what: &str, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = Duration::from_secs(1);
    loop {
        match step().await {
            Err(e) if database_away(&e) => {
                tracing::warn!(
                    step = what,
                    error = format!("{e:#}"),
                    retry_in_secs = wait.as_secs(),
                    "waiting for the database"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(DATABASE_RETRY_CAP);
            }
            done => return done,
        }
    }
}

pub async fn run(mut config: Config, mode: Mode) -> Result<()> {
    config.validate(mode)?;
    let demo = mode == Mode::Demo;
    let url = match (&config.database_url, demo) {
        (Some(url), _) => url.clone(),
        (None, true) => DatabaseUrl::new(DEMO_DATABASE_URL),
        (None, false) => unreachable!("validate() requires a database URL in serve mode"),
    };
    let audit_key = config.audit.key(mode)?;
    if audit_key.is_demo() {
        tracing::warn!("audit.key is not set: the audit chain is keyed with the public demo key");
    }
    // The socket is bound first: while the process waits for the database or AWS, it
    // answers `/healthz` 200 and `/readyz` 503 (saying what it waits for), not silence.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // The port actually bound (`:0` picks one): demo mode answers only to it.
    config.listen = listener.local_addr().context("the listening address")?;
    let waiting_for = Arc::new(std::sync::Mutex::new("the database"));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let starting = tokio::spawn(http::serve_starting(
        listener,
        config.http.header_timeout(),
        waiting_for.clone(),
        async {
            let _ = started_rx.await;
        },
    ));
    let metrics_at = config.metrics.address()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let store = connect_waiting(&url, audit_key).await;
    tracing::info!(database = %url, "database ready");

    // Due times and leases are compared against the database's clock (invariant 8), so
    // replicas whose own clocks drift still agree on when access ends.
    let clock: Arc<dyn Clock> = waiting_for_database("clock", || async {
        clock::DatabaseClock::start(store.clone(), Arc::new(SystemClock))
            .await
            .context("reading the database's clock")
    })
    .await?;
    waiting_for_database("claim", || claim_database(&store, mode, clock.now())).await?;
    if demo {
        waiting_for_database("seed", || async {
            seed::seed_demo(&store, clock.now())
                .await
                .context("seeding the demo catalog")
        })
        .await?;
    }
    let simulated = demo || config.aws.provisioner == config::ProvisionerKind::Simulated;
    let mut backstop: Option<Arc<dyn provisioner::Backstop>> = None;
    let mut sim_backstop: Option<Arc<provisioner::simulated::SimulatedBackstop>> = None;
    let provisioner: Arc<dyn provisioner::Provisioner> = if simulated {
        if !demo {
            tracing::warn!(
                "aws.provisioner = \"simulated\": access is granted in the simulated demo \
                 organization only, never in AWS"
            );
            seed::seed_catalog(&store, clock.now())
                .await
                .context("seeding the simulated catalog")?;
        }
        // The simulated backstop: always in the demo (to show it), else as configured.
        if demo || config.aws.backstop != config::BackstopKind::Off {
            let b = Arc::new(provisioner::simulated::SimulatedBackstop::new(
                store.clone(),
                clock.clone(),
            ));
            tracing::info!("AWS-side backstop on: a simulated schedule per assignment");
            sim_backstop = Some(b.clone());
            backstop = Some(b);
        }
        Arc::new(
            provisioner::simulated::SimulatedProvisioner::new(
                store.clone(),
                clock.clone(),
                Duration::from_millis(config.demo.provision_delay_ms),
            )
            .with_directory(seed::directory()),
        )
    } else {
        *waiting_for.lock().expect("starting lock") = "AWS IAM Identity Center";
        let p = provisioner::sso_admin::SsoAdminProvisioner::connect(&config.aws)
            .await
            .context("connecting to IAM Identity Center")?
            .with_metrics(metrics.clone());
        if let Some(settings) = config.aws.backstop()? {
            let b = provisioner::sso_admin::backstop::SchedulerBackstop::connect(
                &config.aws,
                settings,
                p.instance_arn(),
            )
            .await;
            match b.check_group().await {
                Ok(()) => tracing::info!(
                    group = b.group(),
                    "AWS-side backstop on: a schedule per assignment in EventBridge Scheduler"
                ),
                Err(e) => {
                    tracing::error!(group = b.group(), error = %e, "the backstop's schedule group cannot be read: schedules will fail and alert until it can")
                }
            }
            if let Err(e) = b.check_role().await {
                tracing::error!(error = %e, "the role the backstop's schedules run as cannot be found: they would fail when they fire");
            }
            backstop = Some(Arc::new(b));
        }
        Arc::new(p)
    };
    *waiting_for.lock().expect("starting lock") = "the database (start-up steps)";
    waiting_for_database("entitlements", || async {
        // The simulated organization's catalog is seeded at every start, not configured.
        let seeded: Vec<String> = if simulated {
            seed::finish_catalog(&store, &config.chat, clock.now())
                .await
                .context("the simulated catalog's entitlements")?;
            seed::entitlements().into_iter().map(|e| e.id).collect()
        } else {
            Vec::new()
        };
        let entitlements = config.chat.apply_to(&config.entitlements);
        portal::apply_configured_entitlements(&store, &entitlements, &seeded, clock.now())
            .await
            .context("the [[entitlements]] of the configuration")
    })
    .await?;
    let mailer: Arc<dyn mailer::Mailer> = match &config.smtp {
        Some(smtp) => {
            let m = mailer::SmtpMailer::new(smtp).context("SMTP settings")?;
            tracing::info!(server = m.server(), "mail goes out over SMTP");
            Arc::new(m)
        }
        None => {
            tracing::info!("no SMTP settings: mail stays in the outbox (the outbox page)");
            Arc::new(mailer::OutboxOnly)
        }
    };
    // Chat webhooks take their outbox rows; every other row goes to the mailer.
    let mailer: Arc<dyn mailer::Mailer> = if config.chat.webhooks.is_empty() {
        mailer
    } else {
        let names: Vec<&String> = config.chat.webhooks.keys().collect();
        tracing::info!(webhooks = ?names, "chat webhooks on");
        Arc::new(chat::ChatMailer::new(mailer, &config.chat).context("[chat] settings")?)
    };
    let wake = Arc::new(Notify::new());
    let upkeep_wake = Arc::new(Notify::new());
    let mail_wake = Arc::new(Notify::new());
    // Sync the catalog and verify the audit chain now, and reconcile once the catalog has
    // had time to land.
    waiting_for_database("upkeep jobs", || async {
        let mut conn = store.conn().await?;
        let now = clock.now();
        store::schedule_singleton(&mut conn, store::JobKind::SyncCatalog, now, now).await?;
        store::schedule_singleton(&mut conn, store::JobKind::VerifyAudit, now, now).await?;
        let first = now.plus(Duration::from_secs(60));
        store::schedule_singleton(&mut conn, store::JobKind::Reconcile, first, now).await?;
        anyhow::Ok(())
    })
    .await?;
    let public_url = config.public_url();
    let oidc = match (&config.oidc, demo) {
        (Some(o), false) => {
            tracing::info!(issuer = %o.issuer_url, client_id = %o.client_id, "sign-in with OpenID Connect");
            Some(Arc::new(oidc::Oidc::new(o.clone(), &public_url)?))
        }
        _ => None,
    };

    let portal = Arc::new(portal::PortalService {
        store: store.clone(),
        clock: clock.clone(),
        provisioner: provisioner.clone(),
        wake: wake.clone(),
        upkeep_wake: upkeep_wake.clone(),
        min_duration: config.min_duration()?,
        start_horizon: config.start_horizon()?,
        new_requests_per_hour: config.http.new_requests_per_hour,
        metrics: metrics.clone(),
        public_url: public_url.clone(),
    });
    let site = Arc::new(
        http::Site::load(config.site_root.as_deref()).context("reading the compiled site")?,
    );
    if site.has_bundle() {
        tracing::info!(from = %site.origin, name = %site.output_name(), "compiled site");
    } else {
        tracing::warn!(from = %site.origin, "no compiled site found here: pages will load without CSS and WebAssembly (build with `cargo leptos build`, or `.ci/release` for a binary that carries it)");
    }
    let site_root = config
        .site_root
        .clone()
        .unwrap_or_else(|| site.origin.clone());
    let leptos_options = LeptosOptions::builder()
        .output_name(site.output_name())
        .site_root(site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build();

    let (stop_tx, stop_rx) = watch::channel(false);
    // One worker as every lane has it; each lane then says what it takes.
    let new_worker = |lane: store::Lane| {
        worker::Worker::new(
            store.clone(),
            provisioner.clone(),
            mailer.clone(),
            clock.clone(),
            wake.clone(),
            config.worker.clone(),
            public_url.clone(),
        )
        .with_mail(config.mail.clone())
        .with_upkeep(config.upkeep())
        .with_metrics(metrics.clone())
        .with_backstop_if(backstop.clone(), config.aws.backstop_grace_secs)
        .in_lane(lane)
    };
    // Several grant workers at once, revocations first (`claim_job_in`): AWS's budget,
    // not one job at a time, limits a burst.
    let grant_workers: Vec<worker::Worker> = (0..config.worker.concurrency.max(1))
        .map(|n| {
            new_worker(store::Lane::Grants)
                .instance(n)
                .passing_wakes_to(mail_wake.clone())
        })
        .collect();
    let worker_heartbeat = Some(grant_workers[0].heartbeat());
    // Mail delivery in a lane of its own: a slow SMTP server never holds up a grant or a
    // revocation. The grants worker passes its wake-ups on.
    let mail_worker = new_worker(store::Lane::Mail).woken_by(mail_wake);
    // Catalog sync and reconciliation in a lane of their own, so their paced AWS calls
    // never hold up a revocation. It wakes the grants worker when it re-queues a grant.
    let upkeep = new_worker(store::Lane::Maintenance).woken_by(upkeep_wake);
    // A restarted replica takes its own jobs back at once rather than after their leases
    // lapse (the release takes new tokens: a run of the old process could finish nothing).
    {
        let mut own: Vec<&str> = grant_workers.iter().map(|w| w.id()).collect();
        own.extend([mail_worker.id(), upkeep.id()]);
        let released = waiting_for_database("release leases", || async {
            let mut conn = store.conn().await?;
            store::release_leases_of(&mut conn, &own).await
        })
        .await?;
        if released > 0 {
            tracing::info!(released, replica = %config.worker.replica(), "released this replica's leases from its previous run");
        }
    }
    // On PostgreSQL, a job written by another replica wakes this one's workers at once.
    if store.dialect() == store::Dialect::Postgres {
        waiting_for_database("listen", || async {
            store::listen_for_jobs(&url, wake.clone())
                .await
                .context("listening for jobs from other replicas")
        })
        .await?;
    }
    let worker_tasks: Vec<_> = grant_workers
        .into_iter()
        .map(|w| tokio::spawn(w.run(stop_rx.clone())))
        .collect();
    let mail_task = tokio::spawn(mail_worker.run(stop_rx.clone()));
    let replica_task = tokio::spawn(replica_heartbeats(
        store.clone(),
        clock.clone(),
        provisioner.clone(),
        config.worker.replica(),
        stop_rx.clone(),
    ));
    let upkeep_task = tokio::spawn(upkeep.run(stop_rx.clone()));
    // The simulated Scheduler runs its due schedules, as EventBridge would.
    let sim_backstop_task =
        sim_backstop.map(|b| tokio::spawn(fire_simulated_schedules(b, stop_rx.clone())));

    let metrics_task = metrics_at.map(|at| {
        tokio::spawn(serve_metrics(
            at,
            http::metrics_router(
                store.clone(),
                clock.clone(),
                metrics.clone(),
                Duration::from_secs(config.worker.overdue_after_secs),
            ),
            stop_rx.clone(),
        ))
    });
    let _ = started_tx.send(());
    let listener = starting.await.context("the start-up listener")?;
    let state = http::AppState {
        leptos_options,
        site,
        store,
        clock,
        portal,
        limits: Arc::new(http::Limits::new(&config.http)),
        config: Arc::new(config.clone()),
        demo,
        oidc,
        worker_heartbeat,
        metrics,
    };
    let app = http::router(state);
    tracing::info!(
        "Portcullis {} listening on {public_url}",
        if demo { "demo" } else { "server" }
    );
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down");
    };
    http::serve(listener, app, config.http.header_timeout(), shutdown).await;
    let _ = stop_tx.send(true);
    for task in worker_tasks {
        let _ = task.await;
    }
    let _ = mail_task.await;
    let _ = upkeep_task.await;
    let _ = replica_task.await;
    for task in [metrics_task, sim_backstop_task].into_iter().flatten() {
        let _ = task.await;
    }
    Ok(())
}

/// Runs the simulated backstop's due schedules every few seconds until `stop`.
async fn fire_simulated_schedules(
    backstop: Arc<provisioner::simulated::SimulatedBackstop>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = backstop.fire_due().await {
            tracing::warn!(error = %e, "the simulated backstop could not run its schedules");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Serves `/metrics` on its own address until `stop`. An address that cannot be bound is
/// logged and metrics stay off: the portal itself (access ending on time) goes on.
async fn serve_metrics(
    at: std::net::SocketAddr,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::bind(at).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %at, error = %e, "cannot serve metrics there (metrics.listen); metrics are off");
            return;
        }
    };
    tracing::info!(address = %at, "metrics at /metrics");
    let stopped = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

/// How often a replica says it is alive; one silent for three beats no longer counts.
const REPLICA_BEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps this replica's heartbeat in the database and its share of the AWS call budget
/// (the configured rate divided among the live replicas) up to date, until `stop`; then
/// leaves the count, so the others take its share at once. While the database is away,
/// the last share holds.
async fn replica_heartbeats(
    store: Store,
    clock: Arc<dyn Clock>,
    provisioner: Arc<dyn provisioner::Provisioner>,
    replica: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = 0;
    loop {
        let beat = async {
            let mut conn = store.conn().await?;
            store::replica_heartbeat(&mut conn, &replica, clock.now(), 3 * REPLICA_BEAT).await
        }
        .await;
        match beat {
            Ok(live) => {
                if live != last {
                    tracing::info!(replicas = live, replica = %replica, "the AWS call budget is shared among {live} replica(s)");
                    last = live;
                }
                provisioner.share_budget(live);
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "replica heartbeat failed; keeping the last budget share"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(REPLICA_BEAT) => {}
            _ = stop.changed() => break,
        }
    }
    if let Ok(mut conn) = store.conn().await {
        let _ = store::replica_gone(&mut conn, &replica).await;
    }
}

/// Demo and production never share a database (invariant 11): the first start records its
/// mode, and a start in the other mode is refused before anything is served or seeded.
pub async fn claim_database(store: &Store, mode: Mode, now: app::domain::Timestamp) -> Result<()> {
    let wanted = match mode {
        Mode::Demo => store::PortalMode::Demo,
        Mode::Serve => store::PortalMode::Serve,
    };
    let mut conn = store.conn().await?;
    let recorded = store::claim_portal_mode(&mut conn, wanted, now).await?;
    match (wanted, recorded) {
        (a, b) if a == b => Ok(()),
        (store::PortalMode::Demo, _) => anyhow::bail!(
            "demo mode refuses this database: `portcullis serve` has used it, and demo sign-in \
             lets anyone act as anyone. Give the demo a database of its own (leave \
             PORTCULLIS_DATABASE_URL unset for {DEMO_DATABASE_URL})"
        ),
        (store::PortalMode::Serve, _) => anyhow::bail!(
            "`portcullis serve` refuses this database: `portcullis demo` has used it, and its \
             users and sessions are demo personas anyone could sign in as. Point \
             PORTCULLIS_DATABASE_URL at a database of its own"
        ),
    }
}

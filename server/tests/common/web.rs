//! The portal's HTTP router for tests, wired as `portcullis::run` wires it: the simulated
//! provisioner (10 ms per operation), the system clock, `target/site` for assets.

use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::oidc::Oidc;
use portcullis::portal::PortalService;
use portcullis::provisioner::simulated::SimulatedProvisioner;
use portcullis::store::Store;
use std::sync::Arc;
use std::time::Duration;

pub fn router(
    store: &Store,
    config: Config,
    demo: bool,
    oidc: Option<Arc<Oidc>>,
) -> (axum::Router, Arc<PortalService>) {
    router_with_worker(store, config, demo, oidc, None)
}

/// [`router`] with a worker heartbeat for `/readyz` to watch.
pub fn router_with_worker(
    store: &Store,
    config: Config,
    demo: bool,
    oidc: Option<Arc<Oidc>>,
    worker_heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
) -> (axum::Router, Arc<PortalService>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let portal = Arc::new(PortalService {
        store: store.clone(),
        clock: clock.clone(),
        provisioner: Arc::new(SimulatedProvisioner::new(
            store.clone(),
            clock.clone(),
            Duration::from_millis(10),
        )),
        wake: Arc::new(tokio::sync::Notify::new()),
        upkeep_wake: Default::default(),
        min_duration: Duration::from_secs(60),
        public_url: config.public_url(),
    });
    let leptos_options = leptos::prelude::LeptosOptions::builder()
        .output_name("portcullis")
        .site_root("target/site")
        .site_pkg_dir("pkg")
        .build();
    let router = portcullis::http::router(portcullis::http::AppState {
        leptos_options,
        store: store.clone(),
        clock,
        portal: portal.clone(),
        config: Arc::new(config),
        demo,
        oidc,
        worker_heartbeat,
    });
    (router, portal)
}

//! The HTTP server loop: hyper's HTTP/1.1 connection with a header read timeout (a client
//! that trickles its headers is cut off), the peer's address given to every request (the
//! rate limits key on it), and a graceful shutdown that lets requests in flight finish.
//! While the rest of the process starts (waiting for the database, say), the same socket
//! answers with [`starting`]: `/healthz` 200, `/readyz` and everything else 503.

use super::*;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    accept(
        &listener,
        app,
        header_timeout,
        true,
        Some(&graceful),
        shutdown,
    )
    .await;
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {}s; stopping anyway",
            DRAIN.as_secs()
        );
    }
}

/// Answers on `listener` while the process starts, until `started`; then gives the
/// listener back for [`serve`]. Load balancers see the replica alive (`/healthz`) but not
/// ready (`/readyz` 503, saying what it waits for); pages get 503 with `Retry-After`.
/// Connections are closed after each answer, so none lingers on this router.
pub async fn serve_starting(
    listener: TcpListener,
    header_timeout: Duration,
    waiting_for: Arc<std::sync::Mutex<&'static str>>,
    started: impl Future<Output = ()>,
) -> TcpListener {
    let app = Router::new()
        .route("/healthz", get(|| async { "starting" }))
        .route(
            "/readyz",
            get(move || {
                let what = *waiting_for.lock().expect("starting lock");
                async move {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("starting: waiting for {what}"),
                    )
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, "5"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                "Portcullis is starting; try again in a few seconds.\n",
            )
        });
    accept(&listener, app, header_timeout, false, None, started).await;
    listener
}

async fn accept(
    listener: &TcpListener,
    app: Router,
    header_timeout: Duration,
    keep_alive: bool,
    graceful: Option<&GracefulShutdown>,
    stop: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service =
            app.clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                    req
                });
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        match graceful {
            Some(g) => {
                let conn = g.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            None => {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
}

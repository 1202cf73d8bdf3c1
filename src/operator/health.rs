//! The listener for `/healthz`, `/readyz` and `/metrics`, and how a challenge
//! listener that cannot start is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use kube::runtime::reflector::Store;

use super::Shutdown;
use crate::api::Certificate;
use crate::metrics::Metrics;

/// Runs a listener; a listener that cannot start (port taken) is reported, not fatal:
/// the other challenge types keep working.
pub(super) async fn log_listener_error(
    name: &str,
    listener: impl std::future::Future<Output = std::io::Result<()>>,
) {
    if let Err(e) = listener.await {
        tracing::error!(error = %e, "the {name} listener stopped; {name} challenges cannot be answered by this replica");
    }
}

async fn metrics_text(
    State(metrics): State<Arc<Metrics>>,
) -> (
    [(axum::http::HeaderName, &'static str); 1],
    axum::body::Body,
) {
    let chunks = metrics.encode_chunks().into_iter();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        axum::body::Body::from_stream(futures::stream::iter(
            chunks.map(Ok::<_, std::convert::Infallible>),
        )),
    )
}

pub(super) async fn serve_health(
    addr: SocketAddr,
    store: Store<Certificate>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    // Ready once the Certificate cache has synced: before that, HTTP-01
                    // answers could be missing.
                    match tokio::time::timeout(Duration::from_millis(10), store.wait_until_ready())
                        .await
                    {
                        Ok(Ok(())) => (axum::http::StatusCode::OK, "ok\n"),
                        _ => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "cache not synced\n",
                        ),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

//! The service's own endpoints: liveness and readiness for the load balancer, Prometheus metrics,
//! the stylesheet and script the pages use, and the front door that sends a visitor to sign in
//! or to My Account.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::Latchkey;
use crate::web::kit::{MaybeSignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(home))
        .route("/static/latchkey.css", get(stylesheet))
        .route("/static/latchkey.js", get(script))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

const CSS: &str = include_str!("../../static/latchkey.css");

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS).into_response()
}

const JS: &str = include_str!("../../static/latchkey.js");

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], JS).into_response()
}

async fn home(MaybeSignedIn(current): MaybeSignedIn) -> Redirect {
    Redirect::to(if current.is_some() { "/account" } else { "/sign-in" })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(web): WebState) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(2), web.app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
    }
}

async fn metrics(State(web): WebState) -> impl IntoResponse {
    sample_load(&web.app);
    let body = web.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// The hashing pool's and the store's load, read when `/metrics` is scraped: on an idle node
/// every one of these is 0, so one that stays up is a leak an operator sees before users do.
fn sample_load(app: &Latchkey) {
    let hashing = app.hasher.load();
    metrics::gauge!("latchkey_hash_queue_depth").set(hashing.queued as f64);
    metrics::gauge!("latchkey_hash_running").set(hashing.running as f64);
    let store = app.store.load();
    metrics::gauge!("latchkey_store_pool_in_use").set(store.pool_in_use as f64);
    metrics::gauge!("latchkey_store_writer_in_use").set(store.writer_in_use as f64);
    metrics::gauge!("latchkey_store_writer_waiting").set(store.writer_waiting as f64);
    metrics::counter!("latchkey_store_discarded_in_transaction_total").absolute(store.discarded_in_transaction_total);
}

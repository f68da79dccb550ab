//! The HTTP surface: routes for pages and the JSON API, the security headers every answer
//! carries, limits on bodies and time, and the service endpoints (/healthz, /readyz, /metrics).

pub mod api;
pub mod openapi;
pub mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::Latchkey;

pub struct Web {
    pub app: Arc<Latchkey>,
    pub csrf_key: Vec<u8>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(web: Arc<Web>) -> Router {
    let limit = web.app.config.body_limit_bytes;
    let timeout = Duration::from_secs(web.app.config.request_timeout_secs);
    Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::serve))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        // Link tokens live in URLs: never hand them to another site in a Referer.
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .with_state(web)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(web): State<Arc<Web>>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(2), web.app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
    }
}

async fn metrics(State(web): State<Arc<Web>>) -> impl IntoResponse {
    let body = web.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        crate::error::ApiError::not_found().into_response()
    } else {
        pages::not_found_page()
    }
}

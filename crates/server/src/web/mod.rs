//! The HTTP surface: one route module per flow (pages and JSON API together) on the floor of `kit`,
//! assembled into one router with the headers every answer carries, the body and time limits, and
//! the metrics every request records.
//!
//! No route module imports another (`tests/architecture.rs` checks it).

mod body_limit;
pub mod complete_setup;
pub mod confirm_email;
pub mod console;
pub mod kit;
pub mod my_account;
pub mod openapi;
pub mod operator;
pub mod password_reset;
pub mod service;
pub mod sign_in;
pub mod sso;
pub mod two_factor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

pub use kit::Web;

pub fn router(web: Arc<Web>) -> Router {
    let limit = web.app.config.body_limit_bytes;
    let timeout = Duration::from_secs(web.app.config.request_timeout_secs);
    Router::new()
        .merge(sign_in::routes())
        .merge(complete_setup::routes())
        .merge(password_reset::routes())
        .merge(my_account::routes())
        .merge(two_factor::routes())
        .merge(sso::routes())
        .merge(confirm_email::routes())
        .merge(console::routes())
        .merge(operator::routes())
        .merge(service::routes())
        .route("/api/openapi.json", get(openapi::serve))
        .route_layer(axum::middleware::from_fn(observe))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, body_limit::refuse_oversized))
        .layer(axum::middleware::from_fn_with_state(timeout, answer_in_time))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        // Link tokens live in URLs: never hand them to another site in a Referer.
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .with_state(web)
}

/// One log line and two metrics per request, named by the route's template: the path itself can
/// hold a link token (`/complete-setup/{token}`) and must never reach a log.
async fn observe(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let abandoned = Abandoned(Some(route.clone()));
    let resp = next.run(req).await;
    abandoned.answered();
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("latchkey_http_requests_total", "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("latchkey_http_request_seconds", "route" => route.clone()).record(elapsed.as_secs_f64());
    if status == 503 && resp.headers().contains_key(axum::http::header::RETRY_AFTER) {
        if let Some(shed) = SHED.count_one() {
            tracing::warn!(%route, shed, "requests shed: the server is at capacity (503 with Retry-After)");
        }
    } else if status >= 500 {
        tracing::warn!(%method, %route, status, ms = elapsed.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, %route, status, ms = elapsed.as_millis() as u64, "request");
    }
    resp
}

/// Counts a request dropped before its answer was ready, which otherwise would leave no trace:
/// its client hung up (hyper drops the handler's future when the connection closes), or
/// `request_timeout_secs` cut it off (`answer_in_time` sits outside this layer; those are also
/// in `latchkey_http_timeouts_total`).
struct Abandoned(Option<String>);

impl Abandoned {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(route) = self.0.take() {
            metrics::counter!("latchkey_http_requests_abandoned_total", "route" => route).increment(1);
        }
    }
}

/// Requests refused because the server is at capacity are load shedding working as meant, not
/// one fault each: a flood of them would write a warning per request, and the writing would
/// slow the requests still served. One line a second says how many there were.
struct ShedLog {
    second: AtomicU64,
    count: AtomicU64,
}

static SHED: ShedLog = ShedLog { second: AtomicU64::new(u64::MAX), count: AtomicU64::new(0) };

impl ShedLog {
    /// Counts one refusal; when it is the first of a new second, returns the count to log: the
    /// refusals since the last line, this one included.
    fn count_one(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.second.swap(now, Ordering::Relaxed) == now {
            return None;
        }
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// A request past `request_timeout_secs` (a database that stopped answering, say) is dropped and
/// answered 503 with a message: JSON for the API, a page for the browser. Nothing it had not
/// committed is written.
async fn answer_in_time(State(limit): State<Duration>, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let api = req.uri().path().starts_with("/api/");
    let method = req.method().clone();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            // The path can hold a link token: the method alone is logged.
            tracing::warn!(%method, secs = limit.as_secs(), "request timed out");
            metrics::counter!("latchkey_http_timeouts_total").increment(1);
            let e = crate::app::AppError::timed_out();
            if api { e.into_response() } else { kit::error_page(&e) }
        }
    }
}

async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        crate::app::AppError::not_found().into_response()
    } else {
        kit::not_found_page()
    }
}

//! The service's own endpoints: liveness and readiness for the load balancer, the stylesheet and
//! script the pages use, and the front door that sends a visitor to sign in or to My Account.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::web::kit::{MaybeSignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(home))
        .route("/static/latchkey.css", get(stylesheet))
        .route("/static/latchkey.js", get(script))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

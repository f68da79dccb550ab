//! Linking an identity to an account, page and API: the account's login name and password (and its
//! second factor, when it has one) prove it, as a password sign-in that ends linked.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use latchkey_core::FieldErrors;
use serde::Deserialize;
use utoipa::ToSchema;

use super::WaitingQuery;
use crate::app::{AppError, WaitingIdentity};
use crate::web::kit::{
    csrf_forms, error_page, render, sign_in_response, signed_in_response, with_retry_after, AnonymousForm, ApiJson, ApiPath, Client, CsrfBinding, ErrorBody,
    SignInResponse, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sso/link", get(link_page).post(link_submit))
        .route("/api/v1/sso/waiting/{waiting}/link", post(link))
}

#[derive(Template)]
#[template(path = "pages/sso_link.html")]
struct LinkPage<'a> {
    csrf: String,
    waiting: String,
    provider: &'static str,
    email: Option<String>,
    login_name: &'a str,
    error: Option<String>,
    errors: FieldErrors,
}

/// The link form for a waiting identity, with the login name as typed and a refusal's error.
fn link_view(web: &Web, headers: &HeaderMap, w: WaitingIdentity, login_name: &str, failed: Option<&AppError>) -> Response {
    let binding = CsrfBinding::of(web, headers, None);
    let page = LinkPage {
        csrf: binding.token(web),
        waiting: w.token,
        provider: w.provider.label(),
        email: w.email,
        login_name,
        error: failed.map(|e| e.message.clone()),
        errors: failed.map(|e| e.fields.clone()).unwrap_or_default(),
    };
    let status = failed.map_or(StatusCode::OK, |e| e.status());
    with_retry_after(render(status, &page, binding.set_cookie), failed.and_then(|e| e.retry_after()))
}

async fn link_page(State(web): WebState, headers: HeaderMap, Query(q): Query<WaitingQuery>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    match web.app.sso_waiting(&q.waiting, browser).await {
        Ok(w) => link_view(&web, &headers, w, "", None),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct LinkForm {
    csrf_token: String,
    #[serde(default)]
    waiting: String,
    #[serde(default)]
    login_name: String,
    #[serde(default)]
    password: String,
}

csrf_forms!(LinkForm);

async fn link_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<LinkForm>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    match web.app.sso_link(&f.waiting, &f.login_name, &f.password, browser, &ctx).await {
        Ok(outcome) => signed_in_response(&web, outcome),
        // A wrong password and the like: the form again, for as long as the identity waits.
        Err(e) if e.status().is_client_error() && !e.code.starts_with("sso_") => match web.app.sso_waiting(&f.waiting, browser).await {
            Ok(w) => {
                let login_name: String = f.login_name.chars().take(300).collect();
                link_view(&web, &headers, w, &login_name, Some(&e))
            }
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    login_name: String,
    password: String,
}

/// Links the identity to an account proved by its login name and password (and its second factor,
/// at `POST /api/v1/sign-in/{flow}/verify`, when it has one): a password sign-in that ends linked.
#[utoipa::path(post, path = "/api/v1/sso/waiting/{waiting}/link", tag = "single sign-on", request_body = LinkBody, params(("waiting" = String, Path,)),
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn link(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiPath(waiting): ApiPath<String>,
    ApiJson(b): ApiJson<LinkBody>,
) -> Result<Response, AppError> {
    let browser = web.sso_binding(&headers)?;
    Ok(sign_in_response(&web, web.app.sso_link(&waiting, &b.login_name, &b.password, browser, &ctx).await?))
}

//! Single sign-on through the JSON API (C7), for a client that drives the browser itself: start a
//! trip (the answer carries the provider's URL and binds this browser with a cookie), hand back
//! what the provider sent to the redirect URI, then choose an account or link one. The steps and
//! rules are the pages' own (`app::sso_sign_in`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{sign_in_response, ApiJson, ApiPath};
use super::session::Client;
use super::Web;
use crate::app::{ProviderAnswer, SsoStep, WaitingIdentity};
use crate::error::{ApiError, ErrorBody};

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/sso/{provider}/start", post(start))
        .route("/api/v1/sso/{provider}/callback", post(callback))
        .route("/api/v1/sso/waiting/{waiting}", get(waiting))
        .route("/api/v1/sso/waiting/{waiting}/choose", post(choose))
        .route("/api/v1/sso/waiting/{waiting}/link", post(link))
}

#[derive(Serialize, ToSchema)]
pub struct SsoStart {
    /// Send the browser here; the provider comes back to `/sso/{provider}/callback` (or the client's
    /// own handling of that URI) with `code` and `state`.
    authorization_url: String,
}

/// Starts a trip to Google (`google`) or Microsoft 365 (`microsoft`).
#[utoipa::path(post, path = "/api/v1/sso/{provider}/start", tag = "single sign-on", params(("provider" = String, Path,)),
    responses((status = 200, body = SsoStart), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start(State(web): WebState, headers: HeaderMap, ApiPath(provider): ApiPath<String>) -> Result<Response, ApiError> {
    let (browser, set_cookie) = web.sso_binding_or_new(&headers);
    let url = web.app.sso_start(&provider, &browser).await?;
    let mut resp = Json(SsoStart { authorization_url: url }).into_response();
    if let Some(v) = set_cookie.and_then(|c| c.parse().ok()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackBody {
    code: Option<String>,
    state: Option<String>,
    /// The provider's `error` (e.g. `access_denied`).
    error: Option<String>,
    /// Accepted so a client can pass the provider's answer as it came; never shown or logged.
    #[allow(dead_code)]
    error_description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CandidateInfo {
    user_id: i64,
    login_name: String,
    company: String,
}

/// An identity waiting at the account chooser (`choose`) or for linking (`link`).
#[derive(Serialize, ToSchema)]
pub struct SsoWaiting {
    /// `choose` or `link`.
    state: &'static str,
    /// For `/api/v1/sso/waiting/{waiting}/...`; works only in this browser, for a few minutes.
    waiting: String,
    provider: String,
    email: Option<String>,
    candidates: Vec<CandidateInfo>,
    /// The account chosen last time, pre-selected.
    preselected: Option<i64>,
}

fn waiting_body(state: &'static str, w: WaitingIdentity) -> SsoWaiting {
    SsoWaiting {
        state,
        waiting: w.token,
        provider: w.provider.as_str().to_owned(),
        email: w.email,
        candidates: w.candidates.into_iter().map(|c| CandidateInfo { user_id: c.user_id, login_name: c.login_name, company: c.company_name }).collect(),
        preselected: w.preselected,
    }
}

/// What the provider sent to the redirect URI. Ends like a password sign-in (`signed_in`,
/// `second_factor`, `enrollment_required`), or at the chooser (`choose`) or linking (`link`).
#[utoipa::path(post, path = "/api/v1/sso/{provider}/callback", tag = "single sign-on", request_body = CallbackBody, params(("provider" = String, Path,)),
    responses((status = 200, description = "A SignInResponse, or an SsoWaiting for `choose` / `link`", body = SsoWaiting),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn callback(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiPath(provider): ApiPath<String>,
    ApiJson(b): ApiJson<CallbackBody>,
) -> Result<Response, ApiError> {
    let browser = web.sso_binding(&headers)?;
    let answer = ProviderAnswer { code: b.code, state: b.state, error: b.error };
    Ok(match web.app.sso_callback(&provider, answer, browser, &ctx).await? {
        SsoStep::SignIn(outcome) => sign_in_response(&web, outcome),
        SsoStep::Choose(w) => Json(waiting_body("choose", w)).into_response(),
        SsoStep::Link(w) => Json(waiting_body("link", w)).into_response(),
    })
}

/// The waiting identity with the accounts offered now.
#[utoipa::path(get, path = "/api/v1/sso/waiting/{waiting}", tag = "single sign-on", params(("waiting" = String, Path,)),
    responses((status = 200, body = SsoWaiting), (status = 400, body = ErrorBody)))]
pub async fn waiting(State(web): WebState, headers: HeaderMap, ApiPath(waiting): ApiPath<String>) -> Result<Json<SsoWaiting>, ApiError> {
    let browser = web.sso_binding(&headers)?;
    let w = web.app.sso_waiting(&waiting, browser).await?;
    let state = if w.candidates.is_empty() { "link" } else { "choose" };
    Ok(Json(waiting_body(state, w)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseBody {
    user_id: i64,
}

/// The account chooser: one of the offered accounts; remembered for next time.
#[utoipa::path(post, path = "/api/v1/sso/waiting/{waiting}/choose", tag = "single sign-on", request_body = ChooseBody, params(("waiting" = String, Path,)),
    responses((status = 200, body = super::api::SignInResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn choose(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiPath(waiting): ApiPath<String>,
    ApiJson(b): ApiJson<ChooseBody>,
) -> Result<Response, ApiError> {
    let browser = web.sso_binding(&headers)?;
    Ok(sign_in_response(&web, web.app.sso_choose(&waiting, b.user_id, browser, &ctx).await?))
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
    responses((status = 200, body = super::api::SignInResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn link(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiPath(waiting): ApiPath<String>,
    ApiJson(b): ApiJson<LinkBody>,
) -> Result<Response, ApiError> {
    let browser = web.sso_binding(&headers)?;
    Ok(sign_in_response(&web, web.app.sso_link(&waiting, &b.login_name, &b.password, browser, &ctx).await?))
}

//! The trip to the provider and back, page and API: start (a state, nonce and PKCE verifier bound
//! to this browser), then the callback, which ends signed in, at the account chooser or linking.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{waiting_body, SsoWaiting};
use crate::app::{AppError, ProviderAnswer, SsoStep};
use crate::web::kit::{error_page, sign_in_response, signed_in_response, with_cookie, ApiJson, ApiPath, Client, ErrorBody, MaybeSignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sso/{provider}/start", get(start_page))
        .route("/sso/{provider}/callback", get(callback_page))
        .route("/api/v1/sso/{provider}/start", post(start))
        .route("/api/v1/sso/{provider}/callback", post(callback))
}

/// "Sign in with Google": a plain link, so the redirect to the provider is a navigation (a form
/// post redirected off-site would be stopped by the `form-action 'self'` policy).
///
/// Someone already signed in goes back to My Account, as on the sign-in page: a trip would sign in
/// again as whoever the identity leads to (perhaps another account) beside the open session.
async fn start_page(State(web): WebState, headers: HeaderMap, MaybeSignedIn(current): MaybeSignedIn, Path(provider): Path<String>) -> Response {
    if current.is_some() {
        return Redirect::to("/account").into_response();
    }
    let (browser, set_cookie) = web.sso_binding_or_new(&headers);
    match web.app.sso_start(&provider, &browser).await {
        Ok(url) => with_cookie(Redirect::to(&url).into_response(), set_cookie),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback_page(State(web): WebState, headers: HeaderMap, Client(ctx): Client, Path(provider): Path<String>, Query(q): Query<CallbackQuery>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    let answer = ProviderAnswer { code: q.code, state: q.state, error: q.error };
    match web.app.sso_callback(&provider, answer, browser, &ctx).await {
        Ok(SsoStep::SignIn(outcome)) => signed_in_response(&web, outcome),
        Ok(SsoStep::Choose(w)) => Redirect::to(&format!("/sso/choose?waiting={}", w.token)).into_response(),
        Ok(SsoStep::Link(w)) => Redirect::to(&format!("/sso/link?waiting={}", w.token)).into_response(),
        Err(e) => error_page(&e),
    }
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
pub async fn start(State(web): WebState, headers: HeaderMap, ApiPath(provider): ApiPath<String>) -> Result<Response, AppError> {
    let (browser, set_cookie) = web.sso_binding_or_new(&headers);
    let url = web.app.sso_start(&provider, &browser).await?;
    Ok(with_cookie(Json(SsoStart { authorization_url: url }).into_response(), set_cookie))
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
) -> Result<Response, AppError> {
    let browser = web.sso_binding(&headers)?;
    let answer = ProviderAnswer { code: b.code, state: b.state, error: b.error };
    Ok(match web.app.sso_callback(&provider, answer, browser, &ctx).await? {
        SsoStep::SignIn(outcome) => sign_in_response(&web, outcome),
        SsoStep::Choose(w) => Json(waiting_body("choose", w)).into_response(),
        SsoStep::Link(w) => Json(waiting_body("link", w)).into_response(),
    })
}

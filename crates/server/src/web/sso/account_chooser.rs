//! The account chooser, page and API: an identity whose email leads to several accounts picks one
//! of those offered (the last one chosen is pre-selected and remembered).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

use super::WaitingQuery;
use crate::app::{AppError, WaitingIdentity};
use crate::web::kit::{
    csrf_forms, error_page, render, sign_in_response, signed_in_response, AnonymousForm, ApiJson, ApiPath, Client, CsrfBinding, ErrorBody, SignInResponse, Web,
    WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sso/choose", get(choose_page).post(choose_submit))
        .route("/api/v1/sso/waiting/{waiting}/choose", post(choose))
}

struct CandidateRow {
    user_id: i64,
    login_name: String,
    company_name: String,
    checked: bool,
    /// The identity's remembered choice (not merely the first, pre-checked one).
    last_used: bool,
}

#[derive(Template)]
#[template(path = "pages/sso_choose.html")]
struct ChoosePage {
    csrf: String,
    waiting: String,
    provider: &'static str,
    email: Option<String>,
    candidates: Vec<CandidateRow>,
    error: Option<String>,
}

fn choose_view(web: &Web, headers: &HeaderMap, w: WaitingIdentity, status: StatusCode, error: Option<String>) -> Response {
    let binding = CsrfBinding::of(web, headers, None);
    // The remembered account is pre-selected; otherwise the first, so Continue always has a choice.
    let preselected = w.preselected.or_else(|| w.candidates.first().map(|c| c.user_id));
    let candidates = w
        .candidates
        .into_iter()
        .map(|c| CandidateRow {
            checked: Some(c.user_id) == preselected,
            last_used: Some(c.user_id) == w.preselected,
            user_id: c.user_id,
            login_name: c.login_name,
            company_name: c.company_name,
        })
        .collect();
    let page = ChoosePage { csrf: binding.token(web), waiting: w.token, provider: w.provider.label(), email: w.email, candidates, error };
    render(status, &page, binding.set_cookie)
}

async fn choose_page(State(web): WebState, headers: HeaderMap, Query(q): Query<WaitingQuery>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    match web.app.sso_waiting(&q.waiting, browser).await {
        // Nothing to choose between any more (a link or an email changed): linking is what is left.
        Ok(w) if w.candidates.is_empty() => Redirect::to(&format!("/sso/link?waiting={}", w.token)).into_response(),
        Ok(w) => choose_view(&web, &headers, w, StatusCode::OK, None),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct ChooseForm {
    csrf_token: String,
    #[serde(default)]
    waiting: String,
    #[serde(default)]
    user: String,
}

csrf_forms!(ChooseForm);

async fn choose_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<ChooseForm>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    let Ok(user_id) = f.user.parse::<i64>() else {
        return match web.app.sso_waiting(&f.waiting, browser).await {
            Ok(w) => choose_view(&web, &headers, w, StatusCode::UNPROCESSABLE_ENTITY, Some("Choose one of the accounts shown.".into())),
            Err(e) => error_page(&e),
        };
    };
    match web.app.sso_choose(&f.waiting, user_id, browser, &ctx).await {
        Ok(outcome) => signed_in_response(&web, outcome),
        Err(e) if e.code == "account_not_offered" => match web.app.sso_waiting(&f.waiting, browser).await {
            Ok(w) => choose_view(&web, &headers, w, e.status(), Some(e.message.clone())),
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseBody {
    user_id: i64,
}

/// The account chooser: one of the offered accounts; remembered for next time.
#[utoipa::path(post, path = "/api/v1/sso/waiting/{waiting}/choose", tag = "single sign-on", request_body = ChooseBody, params(("waiting" = String, Path,)),
    responses((status = 200, body = SignInResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn choose(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiPath(waiting): ApiPath<String>,
    ApiJson(b): ApiJson<ChooseBody>,
) -> Result<Response, AppError> {
    let browser = web.sso_binding(&headers)?;
    Ok(sign_in_response(&web, web.app.sso_choose(&waiting, b.user_id, browser, &ctx).await?))
}

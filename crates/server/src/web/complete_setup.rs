//! Complete Setup, pages and API: the welcome email's link (24 hours) opens a form for the password,
//! its confirmation and the voicemail PIN; saving it activates the account.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::FieldErrors;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::{rfc3339, AppError};
use crate::web::kit::{
    csrf_forms, error_page, human_time, link_info, password_hint, render, AnonymousForm, ApiJson, ApiPath, Client, CsrfBinding, ErrorBody, LinkInfo,
    LoginNameBody, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/complete-setup/{token}", get(complete_setup_page).post(complete_setup_submit))
        .route("/api/v1/activation/{token}", get(activation_open).post(activation_complete))
}

#[derive(Template)]
#[template(path = "pages/complete_setup.html")]
struct CompleteSetupPage {
    csrf: String,
    token: String,
    login_name: String,
    company_name: String,
    expires_at: String,
    expires_human: String,
    password_hint: String,
    error: Option<String>,
    errors: FieldErrors,
}

async fn complete_setup_page(State(web): WebState, headers: HeaderMap, Path(token): Path<String>) -> Response {
    complete_setup_view(&web, &headers, token, None).await
}

/// The Complete Setup page for a link, showing `failed` (a refused Save) next to its fields; a
/// link that no longer works shows its own page instead.
async fn complete_setup_view(web: &Web, headers: &HeaderMap, token: String, failed: Option<AppError>) -> Response {
    let v = match web.app.open_activation(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(failed.as_ref().unwrap_or(&e)),
    };
    let binding = CsrfBinding::of(web, headers, None);
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status());
    let page = CompleteSetupPage {
        csrf: binding.token(web),
        token,
        login_name: v.login_name,
        company_name: v.company_name,
        expires_at: rfc3339(v.expires_at),
        expires_human: human_time(v.expires_at),
        password_hint: password_hint(v.password_min_length),
        error: failed.as_ref().map(|e| e.message.clone()),
        errors: failed.map(|e| e.fields).unwrap_or_default(),
    };
    render(status, &page, binding.set_cookie)
}

#[derive(Deserialize)]
struct CompleteSetupFields {
    csrf_token: String,
    password: String,
    password_confirmation: String,
    pin: String,
}

csrf_forms!(CompleteSetupFields);

async fn complete_setup_submit(
    State(web): WebState,
    headers: HeaderMap,
    Path(token): Path<String>,
    Client(ctx): Client,
    AnonymousForm(f): AnonymousForm<CompleteSetupFields>,
) -> Response {
    let form = CompleteSetupForm { password: f.password, password_confirmation: f.password_confirmation, pin: f.pin };
    match web.app.complete_setup(&token, &form, &ctx).await {
        Ok(_) => Redirect::to("/sign-in?done=setup").into_response(),
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY || e.status() == StatusCode::SERVICE_UNAVAILABLE => {
            complete_setup_view(&web, &headers, token, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
}

#[utoipa::path(get, path = "/api/v1/activation/{token}", tag = "activation",
    params(("token" = String, Path, description = "the token of the welcome email's Complete Setup link")),
    responses((status = 200, body = LinkInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, description = "link_expired, link_used or link_replaced", body = ErrorBody)))]
pub async fn activation_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<LinkInfo>, AppError> {
    let v = web.app.open_activation(&token).await?;
    Ok(Json(link_info(v)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteSetupBody {
    password: String,
    password_confirmation: String,
    /// Voicemail PIN: at least 4 digits, not all the same, not sequential.
    pin: String,
}

#[utoipa::path(post, path = "/api/v1/activation/{token}", tag = "activation", request_body = CompleteSetupBody,
    params(("token" = String, Path,)),
    responses((status = 200, body = LoginNameBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn activation_complete(
    State(web): WebState,
    ApiPath(token): ApiPath<String>,
    Client(ctx): Client,
    ApiJson(body): ApiJson<CompleteSetupBody>,
) -> Result<Json<LoginNameBody>, AppError> {
    let form = CompleteSetupForm { password: body.password, password_confirmation: body.password_confirmation, pin: body.pin };
    let user = web.app.complete_setup(&token, &form, &ctx).await?;
    Ok(Json(LoginNameBody { login_name: user.login_name }))
}

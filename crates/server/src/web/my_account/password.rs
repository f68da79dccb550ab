//! Changing the password (every other session ends) and the voicemail PIN, each behind the
//! current password: the forms of My Account and their API calls.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::account_with_error;
use crate::app::AppError;
use crate::web::kit::{csrf_forms, ApiJson, Client, Done, ErrorBody, PageUser, SessionForm, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/password", post(account_password))
        .route("/account/pin", post(account_pin))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/me/pin", post(change_pin))
}

#[derive(Deserialize)]
struct PasswordFields {
    csrf_token: String,
    current_password: String,
    password: String,
    password_confirmation: String,
}

#[derive(Deserialize)]
struct PinFields {
    csrf_token: String,
    // Its own name: the page has a second "current password" field, and ids must be unique.
    #[serde(rename = "pin_current_password")]
    current_password: String,
    pin: String,
}

csrf_forms!(PasswordFields, PinFields);

async fn account_password(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, SessionForm(f): SessionForm<PasswordFields>) -> Response {
    match web.app.change_password(&current.user, &current.token, &f.current_password, &f.password, &f.password_confirmation, &ctx).await {
        Ok(()) => Redirect::to("/account?done=password").into_response(),
        Err(e) => account_with_error(&web, &current, e, false).await,
    }
}

async fn account_pin(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, SessionForm(f): SessionForm<PinFields>) -> Response {
    match web.app.change_pin(&current.user, &f.current_password, &f.pin, &ctx).await {
        Ok(()) => Redirect::to("/account?done=pin").into_response(),
        Err(e) => account_with_error(&web, &current, e, true).await,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    password: String,
    password_confirmation: String,
}

/// Changes the password; every other session ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", request_body = ChangePasswordBody,
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(web): WebState,
    Client(ctx): Client,
    SignedIn(current): SignedIn,
    ApiJson(b): ApiJson<ChangePasswordBody>,
) -> Result<Json<Done>, AppError> {
    web.app.change_password(&current.user, &current.token, &b.current_password, &b.password, &b.password_confirmation, &ctx).await?;
    Ok(Json(Done { message: "Your password was changed. Your other sessions were signed out." }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePinBody {
    current_password: String,
    pin: String,
}

#[utoipa::path(post, path = "/api/v1/me/pin", tag = "me", request_body = ChangePinBody,
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_pin(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<ChangePinBody>) -> Result<Json<Done>, AppError> {
    web.app.change_pin(&current.user, &b.current_password, &b.pin, &ctx).await?;
    Ok(Json(Done { message: "Your voicemail PIN was changed." }))
}

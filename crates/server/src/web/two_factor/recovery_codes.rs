//! Recovery codes, page and API: shown once when the first method is set up (with a download, a box
//! to copy from and a printout), and a new set after a verification code.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use serde::Serialize;
use utoipa::ToSchema;

use super::{recovery_codes_page, verification_hint, CodeBody, CodeFields, CodeStepPage};
use crate::app::AppError;
use crate::web::kit::{ApiJson, Client, CsrfOnly, Current, ErrorBody, PageUser, SessionForm, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/recovery-codes", get(recovery_page).post(recovery_submit))
        .route("/account/recovery-codes/send", post(recovery_send))
        .route("/api/v1/me/recovery-codes", post(recovery_codes))
}

async fn recovery_step(web: &Web, current: &Current) -> CodeStepPage {
    let has_app = web.app.user_methods(current.user.id).await.is_ok_and(|m| m.contains(&Method::Totp));
    CodeStepPage::new(
        web,
        current,
        "Get new recovery codes",
        format!("New codes replace all of your current ones. To confirm it is you, we email a verification code to {}.", current.user.designated_email),
    )
    .send("/account/recovery-codes/send", "Email me a verification code")
    .confirm("/account/recovery-codes", "Get new recovery codes", verification_hint(has_app))
}

async fn recovery_page(State(web): WebState, PageUser(current): PageUser) -> Response {
    recovery_step(&web, &current).await.outcome(Ok(None))
}

async fn recovery_send(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, SessionForm(_): SessionForm<CsrfOnly>) -> Response {
    let sent = web.app.send_verification_code(&current.user, None, &ctx).await;
    recovery_step(&web, &current).await.after_send(sent)
}

async fn recovery_submit(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, SessionForm(f): SessionForm<CodeFields>) -> Response {
    match web.app.new_recovery_codes(&current.user, &f.code, &ctx).await {
        Ok(codes) => recovery_codes_page(&current.user.login_name, codes, "recovery-codes"),
        Err(e) => recovery_step(&web, &current).await.outcome(Err(e)),
    }
}

#[derive(Serialize, ToSchema)]
pub struct NewRecoveryCodes {
    /// Shown once: the earlier set no longer works.
    codes: Vec<String>,
}

/// "Get new recovery codes": replaces the whole set after a verification code.
#[utoipa::path(post, path = "/api/v1/me/recovery-codes", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = NewRecoveryCodes), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn recovery_codes(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<NewRecoveryCodes>, AppError> {
    let codes = web.app.new_recovery_codes(&current.user, &b.code, &ctx).await?;
    Ok(Json(NewRecoveryCodes { codes }))
}

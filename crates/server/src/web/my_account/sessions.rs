//! The account's sessions: listed with their device, one signed out, or every other one: the
//! forms of My Account and their API calls.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{rfc3339, AppError};
use crate::web::kit::{error_page, ApiPath, Client, CsrfOnly, ErrorBody, PageUser, SessionForm, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/sessions/revoke-others", post(account_revoke_others))
        .route("/account/sessions/{id}/revoke", post(account_revoke_session))
        .route("/api/v1/me/sessions", get(sessions))
        .route("/api/v1/me/sessions/{id}", delete(revoke_session))
        .route("/api/v1/me/sessions/revoke-others", post(revoke_other_sessions))
}

async fn account_revoke_others(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, SessionForm(_): SessionForm<CsrfOnly>) -> Response {
    match web.app.revoke_other_sessions(&current.user, &current.token, &ctx).await {
        Ok(_) => Redirect::to("/account?done=sessions").into_response(),
        Err(e) => error_page(&e),
    }
}

async fn account_revoke_session(
    State(web): WebState,
    Client(ctx): Client,
    PageUser(current): PageUser,
    Path(id): Path<String>,
    SessionForm(_): SessionForm<CsrfOnly>,
) -> Response {
    match web.app.revoke_session(&current.user, &id, &ctx).await {
        Ok(()) if id == current.session.handle => Redirect::to("/sign-in?done=signed-out").into_response(),
        Ok(()) => Redirect::to("/account?done=session").into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// Handle for `DELETE /api/v1/me/sessions/{id}` (not the session secret).
    id: String,
    created_at: String,
    last_seen_at: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    /// The session making this request.
    current: bool,
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", responses((status = 200, body = [SessionInfo]), (status = 401, body = ErrorBody)))]
pub async fn sessions(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Vec<SessionInfo>>, AppError> {
    let list = web.app.sessions(&current.user).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| SessionInfo {
                current: s.handle == current.session.handle,
                id: s.handle,
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                client_ip: s.client_ip,
                user_agent: s.user_agent,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "me", params(("id" = String, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiPath(id): ApiPath<String>) -> Result<StatusCode, AppError> {
    web.app.revoke_session(&current.user, &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out every other session of the account.
#[utoipa::path(post, path = "/api/v1/me/sessions/revoke-others", tag = "me",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_other_sessions(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<StatusCode, AppError> {
    web.app.revoke_other_sessions(&current.user, &current.token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

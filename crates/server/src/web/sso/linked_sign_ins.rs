//! The linked sign-ins of an account, page and API: the provider identities that sign in to it,
//! each removable (it can be linked again at any time); removal is audited and the user emailed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::{AppError, ErrorKind};
use crate::web::kit::{error_page, sso_link_info, ApiPath, Client, CsrfOnly, ErrorBody, PageUser, SessionForm, SignedIn, SsoLinkInfo, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/sso-links/{id}/remove", post(remove_link))
        .route("/api/v1/me/sso-links", get(sso_links))
        .route("/api/v1/me/sso-links/{id}", axum::routing::delete(sso_link_remove))
}

/// "Remove" in Account Security: the identity no longer signs in to this account.
async fn remove_link(State(web): WebState, Client(ctx): Client, PageUser(current): PageUser, Path(id): Path<String>, SessionForm(_): SessionForm<CsrfOnly>) -> Response {
    let Ok(id) = id.parse::<i64>() else { return error_page(&AppError::not_found()) };
    match web.app.remove_sso_link(&current.user, id, &ctx).await {
        Ok(()) => Redirect::to("/account?done=sso-unlinked").into_response(),
        Err(e) => error_page(&e),
    }
}

/// The provider identities that sign in to this account.
#[utoipa::path(get, path = "/api/v1/me/sso-links", tag = "me", responses((status = 200, body = [SsoLinkInfo]), (status = 401, body = ErrorBody)))]
pub async fn sso_links(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Vec<SsoLinkInfo>>, AppError> {
    Ok(Json(web.app.sso_links(&current.user).await?.into_iter().map(sso_link_info).collect()))
}

/// Unlinks an identity (it can be linked again at any time); audited, the user is emailed.
#[utoipa::path(delete, path = "/api/v1/me/sso-links/{id}", tag = "me", params(("id" = i64, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sso_link_remove(State(web): WebState, ApiPath(id): ApiPath<String>, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<StatusCode, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::new(ErrorKind::NotFound, "link_not_found", "There is no such linked sign-in on your account."))?;
    web.app.remove_sso_link(&current.user, id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Single sign-on with Google or Microsoft (C7), pages and API: a sub-module each for the trip, the
//! account chooser, linking and the linked sign-ins; here, the browser's binding and waiting identity.

pub mod account_chooser;
pub mod linked_sign_ins;
pub mod linking;
pub mod trip;

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::secret::Token;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{AppError, ErrorKind, WaitingIdentity};
use crate::web::kit::{cookie_value, ApiPath, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/sso/waiting/{waiting}", get(waiting))
        .merge(trip::routes())
        .merge(account_chooser::routes())
        .merge(linking::routes())
        .merge(linked_sign_ins::routes())
}

impl Web {
    /// The cookie that binds a trip to the provider, and what follows it, to one browser.
    pub fn sso_cookie_name(&self) -> &'static str {
        if self.app.config.cookie_secure { "__Host-latchkey_sso" } else { "latchkey_sso" }
    }

    /// The browser's binding: the callback and every later step need the one the trip started with.
    pub fn sso_binding<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, AppError> {
        cookie_value(headers, self.sso_cookie_name()).filter(|v| !v.is_empty() && v.len() <= 128).ok_or_else(|| {
            AppError::new(ErrorKind::Malformed, "sso_state_invalid", "This sign-in was started in another browser, or cookies are blocked. Start again.")
        })
    }

    /// The browser's binding, made when it has none; the `Set-Cookie` to send when it was made.
    pub fn sso_binding_or_new(&self, headers: &HeaderMap) -> (String, Option<String>) {
        match self.sso_binding(headers) {
            Ok(b) => (b.to_owned(), None),
            Err(_) => {
                let fresh = Token::generate();
                let set = self.cookie(self.sso_cookie_name(), Some(fresh.expose()));
                (fresh.expose().to_owned(), Some(set))
            }
        }
    }
}

/// The `?waiting=` of the chooser and link pages.
#[derive(Deserialize)]
struct WaitingQuery {
    #[serde(default)]
    waiting: String,
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

/// The waiting identity with the accounts offered now.
#[utoipa::path(get, path = "/api/v1/sso/waiting/{waiting}", tag = "single sign-on", params(("waiting" = String, Path,)),
    responses((status = 200, body = SsoWaiting), (status = 400, body = ErrorBody)))]
pub async fn waiting(State(web): WebState, headers: HeaderMap, ApiPath(waiting): ApiPath<String>) -> Result<Json<SsoWaiting>, AppError> {
    let browser = web.sso_binding(&headers)?;
    let w = web.app.sso_waiting(&waiting, browser).await?;
    let state = if w.candidates.is_empty() { "link" } else { "choose" };
    Ok(Json(waiting_body(state, w)))
}

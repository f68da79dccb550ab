//! The single sign-on pages (C7): the trip to Google or Microsoft and back, the account chooser,
//! and the link page. Every error lands on a page that leads back to the password sign-in.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use latchkey_core::secret::Token;
use latchkey_core::FieldErrors;
use serde::Deserialize;

use super::pages::{check_csrf, error_page, render, signed_in_response, CsrfOnly, PageForm};
use super::session::{cookie_value, Client, CsrfBinding, MaybeSignedIn, PageUser};
use super::Web;
use crate::app::{ProviderAnswer, SsoStep, WaitingIdentity};
use crate::error::ApiError;

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sso/{provider}/start", get(start))
        .route("/sso/{provider}/callback", get(callback))
        .route("/sso/choose", get(choose_page).post(choose_submit))
        .route("/sso/link", get(link_page).post(link_submit))
        .route("/account/sso-links/{id}/remove", axum::routing::post(remove_link))
}

/// "Remove" in Account Security: the identity no longer signs in to this account.
async fn remove_link(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    PageUser(current): PageUser,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else { return error_page(&ApiError::not_found()) };
    match web.app.remove_sso_link(&current.user, id, &ctx).await {
        Ok(()) => Redirect::to("/account?done=sso-unlinked").into_response(),
        Err(e) => error_page(&e),
    }
}

impl Web {
    /// The cookie that binds a trip to the provider, and what follows it, to one browser.
    pub fn sso_cookie_name(&self) -> &'static str {
        if self.app.config.cookie_secure { "__Host-latchkey_sso" } else { "latchkey_sso" }
    }

    /// The browser's binding: the callback and every later step need the one the trip started with.
    pub fn sso_binding<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, ApiError> {
        cookie_value(headers, self.sso_cookie_name()).filter(|v| !v.is_empty() && v.len() <= 128).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "sso_state_invalid", "This sign-in was started in another browser, or cookies are blocked. Start again.")
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

fn with_cookie(mut resp: Response, cookie: Option<String>) -> Response {
    if let Some(v) = cookie.and_then(|c| c.parse().ok()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// "Sign in with Google": a plain link, so the redirect to the provider is a navigation (a form
/// post redirected off-site would be stopped by the `form-action 'self'` policy).
///
/// Someone already signed in goes back to My Account, as on the sign-in page: a trip would sign in
/// again as whoever the identity leads to (perhaps another account) beside the open session.
async fn start(State(web): WebState, headers: HeaderMap, MaybeSignedIn(current): MaybeSignedIn, Path(provider): Path<String>) -> Response {
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

async fn callback(State(web): WebState, headers: HeaderMap, Client(ctx): Client, Path(provider): Path<String>, Query(q): Query<CallbackQuery>) -> Response {
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

#[derive(Deserialize)]
struct WaitingQuery {
    #[serde(default)]
    waiting: String,
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

async fn choose_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<ChooseForm>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
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
            Ok(w) => choose_view(&web, &headers, w, e.status, Some(e.message.clone())),
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
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

async fn link_page(State(web): WebState, headers: HeaderMap, Query(q): Query<WaitingQuery>) -> Response {
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    match web.app.sso_waiting(&q.waiting, browser).await {
        Ok(w) => {
            let binding = CsrfBinding::of(&web, &headers, None);
            let page =
                LinkPage { csrf: binding.token(&web), waiting: w.token, provider: w.provider.label(), email: w.email, login_name: "", error: None, errors: FieldErrors::new() };
            render(StatusCode::OK, &page, binding.set_cookie)
        }
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

async fn link_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<LinkForm>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    let browser = match web.sso_binding(&headers) {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    match web.app.sso_link(&f.waiting, &f.login_name, &f.password, browser, &ctx).await {
        Ok(outcome) => signed_in_response(&web, outcome),
        // A wrong password and the like: the form again, for as long as the identity waits.
        Err(e) if e.status.is_client_error() && !e.code.starts_with("sso_") => match web.app.sso_waiting(&f.waiting, browser).await {
            Ok(w) => {
                let binding = CsrfBinding::of(&web, &headers, None);
                let login_name: String = f.login_name.chars().take(300).collect();
                let page = LinkPage {
                    csrf: binding.token(&web),
                    waiting: w.token,
                    provider: w.provider.label(),
                    email: w.email,
                    login_name: &login_name,
                    error: Some(e.message.clone()),
                    errors: e.fields.clone(),
                };
                let mut resp = render(e.status, &page, binding.set_cookie);
                if let Some(v) = e.retry_after.and_then(|s| s.to_string().parse().ok()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
}

//! Cookies, the signed-in session and the client's address: what every request carries, read once
//! into typed extractors. The API's session extractors also check the `X-CSRF-Token` header.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::secret::Token;
use latchkey_store::{Session, User};

use super::error::error_page;
use super::Web;
use crate::app::{AppError, ErrorKind, RequestContext};

/// The header a cookie-authenticated API call carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Web {
    pub fn session_cookie_name(&self) -> &'static str {
        if self.app.config.cookie_secure { "__Host-latchkey_session" } else { "latchkey_session" }
    }

    pub fn csrf_cookie_name(&self) -> &'static str {
        if self.app.config.cookie_secure { "__Host-latchkey_csrf" } else { "latchkey_csrf" }
    }

    /// `Set-Cookie` for a cookie only this site's pages send back (HttpOnly, SameSite=Lax, Path=/,
    /// Secure with the `__Host-` prefix). `None` clears it.
    pub fn cookie(&self, name: &str, value: Option<&str>) -> String {
        let secure = if self.app.config.cookie_secure { "; Secure" } else { "" };
        match value {
            Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax{secure}"),
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
        }
    }

    pub fn session_cookie(&self, token: Option<&Token>) -> String {
        self.cookie(self.session_cookie_name(), token.map(Token::expose))
    }
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address (the socket peer, or the configured proxy header) and user agent.
pub struct Client(pub RequestContext);

impl FromRequestParts<Arc<Web>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let header_name = web.app.config.client_ip_header.as_str();
        let from_header = (!header_name.is_empty())
            .then(|| parts.headers.get(header_name).and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().chars().take(64).collect::<String>());
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
        Ok(Client(RequestContext { client_ip: from_header.or(peer), user_agent }))
    }
}

/// The live session of the request, when there is one.
pub struct Current {
    pub token: String,
    pub session: Session,
    pub user: User,
}

impl Current {
    /// This session as enrolment needs it: a restricted one is promoted with the method it enables.
    pub fn enrolling(&self) -> crate::app::EnrollingSession {
        crate::app::EnrollingSession::of(&self.token, self.session.restricted)
    }
}

/// Every session extractor starts here; the session it finds is what a [`super::SessionForm`] of
/// the same request binds its CSRF token to.
pub struct MaybeSignedIn(pub Option<Current>);

/// The session a session extractor of this request found, left in the request's extensions for
/// the form extractor that comes after it.
#[derive(Clone)]
pub(super) struct FoundSession(pub(super) String);

impl FromRequestParts<Arc<Web>> for MaybeSignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie_value(&parts.headers, web.session_cookie_name()) else { return Ok(MaybeSignedIn(None)) };
        let token = token.to_owned();
        let current = web.app.resolve_session(&token).await?.map(|(session, user)| Current { token, session, user });
        if let Some(c) = &current {
            parts.extensions.insert(FoundSession(c.token.clone()));
        }
        Ok(MaybeSignedIn(current))
    }
}

/// A signed-in API caller with a full session. Unsafe methods must carry the session's CSRF
/// token in `X-CSRF-Token`: the cookie alone never authorises a change.
pub struct SignedIn(pub Current);

impl FromRequestParts<Arc<Web>> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let Enrolling(current) = Enrolling::from_request_parts(parts, web).await?;
        if current.session.restricted {
            return Err(AppError::new(
                ErrorKind::Forbidden,
                "enrollment_required",
                "Your organization requires two-factor authentication: set up a method to continue.",
            ));
        }
        Ok(SignedIn(current))
    }
}

/// A caller whose session may be restricted to two-factor enrolment (the enrolment endpoints
/// take these); CSRF as for [`SignedIn`].
pub struct Enrolling(pub Current);

impl FromRequestParts<Arc<Web>> for Enrolling {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let MaybeSignedIn(current) = MaybeSignedIn::from_request_parts(parts, web).await?;
        let current = current.ok_or_else(AppError::unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !web.csrf_valid(&current.token, presented) {
                return Err(AppError::csrf());
            }
        }
        Ok(Enrolling(current))
    }
}

/// A signed-in page visitor; anyone else is sent to the sign-in page.
pub struct PageUser(pub Current);

impl FromRequestParts<Arc<Web>> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        match MaybeSignedIn::from_request_parts(parts, web).await {
            Ok(MaybeSignedIn(Some(c))) if c.session.restricted => Err(Redirect::to("/account/two-factor/enroll").into_response()),
            Ok(MaybeSignedIn(Some(c))) => Ok(PageUser(c)),
            Ok(MaybeSignedIn(None)) => Err(Redirect::to("/sign-in").into_response()),
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// A signed-in page visitor whose session may be restricted to enrolment (the pages that set up a
/// method, and sign-out); anyone else is sent to the sign-in page.
pub struct PageEnrolling(pub Current);

impl FromRequestParts<Arc<Web>> for PageEnrolling {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        match MaybeSignedIn::from_request_parts(parts, web).await {
            Ok(MaybeSignedIn(Some(c))) => Ok(PageEnrolling(c)),
            Ok(MaybeSignedIn(None)) => Err(Redirect::to("/sign-in").into_response()),
            Err(e) => Err(error_page(&e)),
        }
    }
}

//! Cookies, the signed-in session, the client's address and CSRF tokens: what every request
//! carries, read once into typed extractors.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::secret::{constant_time_eq, hmac_b64, Token};
use latchkey_store::{Session, User};

use super::Web;
use crate::app::RequestContext;
use crate::error::ApiError;

pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";

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

    /// The CSRF token for a binding (the session id, or the anonymous CSRF cookie before sign-in).
    pub fn csrf_token_for(&self, binding: &str) -> String {
        hmac_b64(&self.csrf_key, format!("csrf|{binding}").as_bytes())
    }

    pub fn csrf_valid(&self, binding: &str, presented: &str) -> bool {
        !binding.is_empty() && constant_time_eq(self.csrf_token_for(binding).as_bytes(), presented.as_bytes())
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

pub struct MaybeSignedIn(pub Option<Current>);

impl FromRequestParts<Arc<Web>> for MaybeSignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie_value(&parts.headers, web.session_cookie_name()) else { return Ok(MaybeSignedIn(None)) };
        let token = token.to_owned();
        Ok(MaybeSignedIn(web.app.resolve_session(&token).await?.map(|(session, user)| Current { token, session, user })))
    }
}

/// A signed-in API caller with a full session. Unsafe methods must carry the session's CSRF
/// token in `X-CSRF-Token`: the cookie alone never authorises a change.
pub struct SignedIn(pub Current);

impl FromRequestParts<Arc<Web>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let Enrolling(current) = Enrolling::from_request_parts(parts, web).await?;
        if current.session.restricted {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let MaybeSignedIn(current) = MaybeSignedIn::from_request_parts(parts, web).await?;
        let current = current.ok_or_else(ApiError::unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !web.csrf_valid(&current.token, presented) {
                return Err(ApiError::csrf());
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
            Err(e) => Err(super::pages::error_page(&e)),
        }
    }
}

/// The CSRF binding of a request: the session id when signed in, else the anonymous cookie (made
/// here when missing, and returned so the response can set it).
pub struct CsrfBinding {
    pub binding: String,
    pub set_cookie: Option<String>,
}

impl CsrfBinding {
    pub fn of(web: &Web, headers: &HeaderMap, current: Option<&Current>) -> Self {
        if let Some(c) = current {
            return Self { binding: c.token.clone(), set_cookie: None };
        }
        match cookie_value(headers, web.csrf_cookie_name()).filter(|v| !v.is_empty() && v.len() <= 128) {
            Some(v) => Self { binding: v.to_owned(), set_cookie: None },
            None => {
                let fresh = Token::generate();
                let set = web.cookie(web.csrf_cookie_name(), Some(fresh.expose()));
                Self { binding: fresh.expose().to_owned(), set_cookie: Some(set) }
            }
        }
    }

    pub fn token(&self, web: &Web) -> String {
        web.csrf_token_for(&self.binding)
    }
}

//! CSRF: a token is the HMAC of what binds it to this browser (the session, or before sign-in an
//! anonymous cookie); a page's form is checked by the extractor that reads it, so none can skip it.
//!
//! The API's session extractors (`kit::session`) check the `X-CSRF-Token` header instead.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Form;
use latchkey_core::secret::{constant_time_eq, hmac_b64, Token};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::error_page;
use super::session::{cookie_value, Current, FoundSession, PageEnrolling};
use super::Web;
use crate::app::AppError;

impl Web {
    /// The CSRF token for a binding (the session id, or the anonymous CSRF cookie before sign-in).
    pub fn csrf_token_for(&self, binding: &str) -> String {
        hmac_b64(&self.csrf_key, format!("csrf|{binding}").as_bytes())
    }

    pub fn csrf_valid(&self, binding: &str, presented: &str) -> bool {
        !binding.is_empty() && constant_time_eq(self.csrf_token_for(binding).as_bytes(), presented.as_bytes())
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
        match anonymous_binding(web, headers) {
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

/// The browser's anonymous CSRF cookie, when it has a usable one.
fn anonymous_binding<'a>(web: &Web, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie_value(headers, web.csrf_cookie_name()).filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A form's fields, one of which is its CSRF token. The token stays a field of each form (rather
/// than being read apart from it) so that each form keeps its own answer to a missing one: most
/// refuse the form as unreadable, the console's user forms (every field defaulted) as forged.
pub trait CsrfForm: DeserializeOwned + Send {
    fn csrf_token(&self) -> &str;
}

/// Declares forms whose CSRF token is their `csrf_token` field.
macro_rules! csrf_forms {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::web::kit::CsrfForm for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        })+
    };
}
pub(crate) use csrf_forms;

/// A form with nothing but its token (a button: sign out, send a code, revoke).
#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf_token: String,
}

csrf_forms!(CsrfOnly);

/// A form posted before sign-in (sign in, Complete Setup, a reset, the second-factor step, the
/// account chooser…), its token checked against the browser's anonymous CSRF cookie.
pub struct AnonymousForm<T>(pub T);

impl<T: CsrfForm> FromRequest<Arc<Web>> for AnonymousForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let binding = anonymous_binding(web, req.headers()).map(str::to_owned);
        let form: T = read_form(req, web).await?;
        check(web, binding.as_deref(), form.csrf_token())?;
        Ok(AnonymousForm(form))
    }
}

/// A signed-in visitor's form, its token checked against the session that a session extractor
/// before it in the handler found (`PageUser`, `ConsoleUser`); without one, it is refused.
pub struct SessionForm<T>(pub T);

/// Why a [`SessionForm`] was refused: a handler that must answer something else first for a
/// readable form (an address that names nothing) can tell the two apart.
pub enum FormRefused {
    /// The body is not a form of this shape.
    Unreadable(Response),
    /// The token is not the session's.
    Forged(Response),
}

impl IntoResponse for FormRefused {
    fn into_response(self) -> Response {
        match self {
            FormRefused::Unreadable(r) | FormRefused::Forged(r) => r,
        }
    }
}

impl<T: CsrfForm> FromRequest<Arc<Web>> for SessionForm<T> {
    type Rejection = FormRefused;

    async fn from_request(req: Request, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let session = req.extensions().get::<FoundSession>().map(|s| s.0.clone());
        let form: T = read_form(req, web).await.map_err(FormRefused::Unreadable)?;
        check(web, session.as_deref(), form.csrf_token()).map_err(FormRefused::Forged)?;
        Ok(SessionForm(form))
    }
}

/// A form of a page that a session restricted to enrolment may use (setting up a method, signing
/// out): the form is read first, then the session (anyone else goes to the sign-in page), then the
/// token is checked against it. Form first, as these pages always read it: a form that cannot be
/// read is answered as such, signed in or not.
pub struct EnrollingForm<T>(pub Current, pub T);

impl<T: CsrfForm> FromRequest<Arc<Web>> for EnrollingForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let mut head = parts.clone();
        let form: T = read_form(Request::from_parts(parts, body), web).await?;
        let PageEnrolling(current) = PageEnrolling::from_request_parts(&mut head, web).await?;
        check(web, Some(&current.token), form.csrf_token())?;
        Ok(EnrollingForm(current, form))
    }
}

/// `Form` whose rejections become a readable page instead of plain text.
async fn read_form<T: DeserializeOwned>(req: Request, web: &Arc<Web>) -> Result<T, Response> {
    Form::<T>::from_request(req, web)
        .await
        .map(|Form(v)| v)
        .map_err(|r| error_page(&AppError::rejected(r.status(), "bad_request", "The form could not be read. Reload the page and try again.")))
}

/// Refuses a form whose token is not the one of `binding` (none: nothing binds this browser yet).
fn check(web: &Web, binding: Option<&str>, presented: &str) -> Result<(), Response> {
    match binding {
        Some(b) if web.csrf_valid(b, presented) => Ok(()),
        _ => Err(error_page(&AppError::csrf())),
    }
}

//! The error every service returns: a status, a stable code a client can match on, a sentence a
//! person can read and, for forms, messages per field. `web::kit` turns it into a response (JSON
//! for the API, a page for the browser).

use axum::http::StatusCode;
use latchkey_core::flows::UserFacing;
use latchkey_core::FieldErrors;
use latchkey_store::StoreError;

use crate::hashing::HashError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: FieldErrors,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), fields: FieldErrors::new(), retry_after: None }
    }

    /// A flow error with the status its kind calls for.
    pub fn from_flow(status: StatusCode, e: &impl UserFacing) -> Self {
        Self::new(status, e.code(), e.message())
    }

    pub fn validation(fields: FieldErrors) -> Self {
        Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Please correct the fields below.") }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut f = FieldErrors::new();
        f.add(field, message);
        Self::validation(f)
    }

    /// A 422 about one field whose sentence is the whole story: it is the message and the field's.
    pub fn field_refused(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut fields = FieldErrors::new();
        fields.add(field, message.clone());
        Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "There is nothing here.")
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_signed_in", "Sign in first.")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn csrf() -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf_failed", "The form expired or came from another site. Reload the page and try again.")
    }

    pub fn throttled(retry_after_secs: u64, message: String) -> Self {
        Self { retry_after: Some(retry_after_secs), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message) }
    }

    pub fn busy() -> Self {
        Self {
            retry_after: Some(2),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "The server is busy. Try again in a few seconds.")
        }
    }

    /// The request ran past `request_timeout_secs`.
    pub fn timed_out() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "The server took too long to answer. Try again shortly.")
        }
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side. Try again.")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::new(StatusCode::CONFLICT, "conflict", format!("That {what} is already taken.")),
            StoreError::NotFound => Self::not_found(),
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "store unavailable");
                Self { retry_after: Some(5), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "The service is temporarily unavailable. Try again shortly.") }
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "store error");
                Self { retry_after: Some(5), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "The service is temporarily unavailable. Try again shortly.") }
            }
        }
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::busy(),
            HashError::Failed(detail) => {
                tracing::error!(%detail, "hashing failed");
                Self::internal()
            }
        }
    }
}

//! The error every service returns: what went wrong (an [`ErrorKind`]), a stable code a client can
//! match on, a sentence a person can read and, for forms, messages per field. It knows no transport:
//! `web::kit` alone turns a kind into a status code, a JSON body or a page.

use latchkey_core::flows::UserFacing;
use latchkey_core::FieldErrors;
use latchkey_store::StoreError;

use crate::hashing::HashError;

/// What went wrong, in the words of the service: the one thing a transport chooses its answer by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be read at all (a broken body, an address that is not text).
    Malformed,
    /// The request was read but breaks a rule; `fields` says which, where a field is to blame.
    Invalid,
    /// The request is bigger than the service reads.
    TooLarge,
    /// The request is in a format the service does not read.
    UnsupportedFormat,
    /// Who asks is not known, or proved it wrong (not signed in, a wrong password or code).
    Unauthorized,
    /// Who asks is known and may not do this.
    Forbidden,
    /// There is no such thing (for this caller).
    NotFound,
    /// It was there and is no longer: an expired, used or replaced link, an expired sign-in.
    Gone,
    /// The thing is not in the state this asks for, or the name is taken.
    Conflict,
    /// Too many attempts: try again after `retry_after` seconds.
    Throttled { retry_after: u64 },
    /// The server is too busy or took too long: try again after `retry_after` seconds.
    Busy { retry_after: u64 },
    /// Something the service needs (the store, a mail or text gateway, a sign-in provider) is not
    /// answering; `retry_after` when a wait is known to help.
    Unavailable { retry_after: Option<u64> },
    /// A fault on our side that the caller can do nothing about.
    Internal,
}

#[derive(Debug, Clone)]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub fields: FieldErrors,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into(), fields: FieldErrors::new() }
    }

    /// A flow error of the kind its place calls for.
    pub fn from_flow(kind: ErrorKind, e: &impl UserFacing) -> Self {
        Self::new(kind, e.code(), e.message())
    }

    /// Seconds after which trying again may succeed, when the kind knows.
    pub fn retry_after(&self) -> Option<u64> {
        match self.kind {
            ErrorKind::Throttled { retry_after } | ErrorKind::Busy { retry_after } => Some(retry_after),
            ErrorKind::Unavailable { retry_after } => retry_after,
            _ => None,
        }
    }

    pub fn validation(fields: FieldErrors) -> Self {
        Self { fields, ..Self::new(ErrorKind::Invalid, "validation_failed", "Please correct the fields below.") }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut f = FieldErrors::new();
        f.add(field, message);
        Self::validation(f)
    }

    /// A refusal about one field whose sentence is the whole story: it is the message and the field's.
    pub fn field_refused(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut fields = FieldErrors::new();
        fields.add(field, message.clone());
        Self { fields, ..Self::new(ErrorKind::Invalid, code, message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorKind::NotFound, "not_found", "There is nothing here.")
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorKind::Unauthorized, "not_signed_in", "Sign in first.")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    pub fn csrf() -> Self {
        Self::new(ErrorKind::Forbidden, "csrf_failed", "The form expired or came from another site. Reload the page and try again.")
    }

    pub fn throttled(retry_after: u64, message: String) -> Self {
        Self::new(ErrorKind::Throttled { retry_after }, "too_many_attempts", message)
    }

    pub fn busy() -> Self {
        Self::new(ErrorKind::Busy { retry_after: 2 }, "busy", "The server is busy. Try again in a few seconds.")
    }

    /// The request ran past `request_timeout_secs`.
    pub fn timed_out() -> Self {
        Self::new(ErrorKind::Busy { retry_after: 5 }, "timeout", "The server took too long to answer. Try again shortly.")
    }

    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "internal", "Something went wrong on our side. Try again.")
    }

    fn store_unavailable() -> Self {
        Self::new(ErrorKind::Unavailable { retry_after: Some(5) }, "store_unavailable", "The service is temporarily unavailable. Try again shortly.")
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::new(ErrorKind::Conflict, "conflict", format!("That {what} is already taken.")),
            StoreError::NotFound => Self::not_found(),
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "store unavailable");
                Self::store_unavailable()
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "store error");
                Self::store_unavailable()
            }
        }
    }
}

impl From<HashError> for AppError {
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

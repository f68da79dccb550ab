//! Each self-service process as an explicit state machine: an enum of states and a function per
//! transition that returns the next state or a typed error. The server runs them; the store
//! persists them; what happens after the password is right is decided here and only here.

pub mod activation;
pub mod email_link;
pub mod enrolment;
pub mod password_reset;
pub mod second_factor;
pub mod session;
pub mod sign_in;
pub mod sso;

use crate::account::InvalidName;

/// The API code and the sentence for a person: every flow error implements this, and the server
/// builds every error response from it.
pub trait UserFacing {
    /// Stable machine-readable code, e.g. `link_expired`.
    fn code(&self) -> &'static str;
    /// What happened and what to do next, in words a person understands.
    fn message(&self) -> String;
}

impl UserFacing for InvalidName {
    fn code(&self) -> &'static str {
        "invalid_input"
    }
    fn message(&self) -> String {
        self.0.clone()
    }
}

//! Latchkey's domain, with no I/O: accounts and their names, the password and voicemail PIN
//! policies, secrets (tokens, codes) and each self-service process as an explicit state machine.
//!
//! Everything here is deterministic given a [`clock::Clock`] and the [`random`] source, so it is tested
//! exhaustively with unit and property tests; the store and the server only move data in and out.

pub mod account;
pub mod clock;
pub mod email_review;
pub mod error;
pub mod flows;
pub mod policy;
pub mod random;
pub mod seal;
pub mod secret;
pub mod throttle;
pub mod two_factor;

pub use account::{CompanyDomain, Email, Extension, LoginName, Role, UserState};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::FieldErrors;

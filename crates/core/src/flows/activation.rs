//! Activation by welcome email (C2): `Invited --Complete Setup--> Active`.
//!
//! The person opens the link ([`open`]), then submits password, confirmation and voicemail PIN
//! ([`submit`]). The store then consumes the link and activates the account in one transaction.

use time::OffsetDateTime;

use super::email_link::{EmailLink, LinkError, LinkPurpose};
use super::UserFacing;
use crate::account::UserState;
use crate::error::FieldErrors;
use crate::policy::{PasswordPolicy, PinPolicy};

#[derive(Debug, Clone)]
pub struct CompleteSetupForm {
    pub password: String,
    pub password_confirmation: String,
    pub pin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error("link")]
    Link(#[from] LinkError),
    /// The account is no longer waiting for activation (disabled meanwhile).
    #[error("not invited")]
    NotInvited,
    #[error("invalid")]
    Invalid(FieldErrors),
}

impl UserFacing for ActivationError {
    fn code(&self) -> &'static str {
        match self {
            ActivationError::Link(e) => e.code(),
            ActivationError::NotInvited => "account_not_invited",
            ActivationError::Invalid(_) => "validation_failed",
        }
    }
    fn message(&self) -> String {
        match self {
            ActivationError::Link(e) => e.message(),
            ActivationError::NotInvited => "This account cannot be set up any more. Ask your office manager.".into(),
            ActivationError::Invalid(_) => "Please correct the fields below.".into(),
        }
    }
}

/// Opening the Complete Setup page: allowed while the link is valid and the account invited.
pub fn open(link: &EmailLink, account: UserState, now: OffsetDateTime) -> Result<(), ActivationError> {
    if link.purpose != LinkPurpose::Welcome {
        return Err(LinkError::NotFound.into());
    }
    link.check(now)?;
    if account != UserState::Invited {
        // A valid link on an active account cannot happen (activation consumes it); on a
        // disabled one the office manager has closed the door.
        return Err(ActivationError::NotInvited);
    }
    Ok(())
}

/// Save: every field error at once, and only then the link. The caller hashes and stores.
pub fn submit(
    link: &EmailLink,
    account: UserState,
    form: &CompleteSetupForm,
    policy: &PasswordPolicy,
    now: OffsetDateTime,
) -> Result<(), ActivationError> {
    open(link, account, now)?;
    let mut errors = FieldErrors::new();
    policy.check_new(&form.password, &form.password_confirmation, &mut errors);
    PinPolicy::check(&form.pin, &mut errors);
    errors.into_result().map_err(ActivationError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn form(pw: &str, confirm: &str, pin: &str) -> CompleteSetupForm {
        CompleteSetupForm { password: pw.into(), password_confirmation: confirm.into(), pin: pin.into() }
    }

    #[test]
    fn a_valid_setup_is_accepted() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let link = EmailLink::issue(LinkPurpose::Welcome, t0);
        let ok = submit(&link, UserState::Invited, &form("Welcome2Sonar", "Welcome2Sonar", "2580"), &PasswordPolicy::default(), t0);
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn every_field_error_is_reported_at_once() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let link = EmailLink::issue(LinkPurpose::Welcome, t0);
        let Err(ActivationError::Invalid(e)) =
            submit(&link, UserState::Invited, &form("short", "other", "1234"), &PasswordPolicy::default(), t0)
        else {
            panic!("expected field errors");
        };
        assert_eq!(e.get("password").len(), 3);
        assert_eq!(e.get("password_confirmation").len(), 1);
        assert_eq!(e.get("pin").len(), 1);
    }

    #[test]
    fn expired_reset_and_wrong_state_are_refused() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let link = EmailLink::issue(LinkPurpose::Welcome, t0);
        let good = form("Welcome2Sonar", "Welcome2Sonar", "2580");
        let p = PasswordPolicy::default();
        assert_eq!(
            submit(&link, UserState::Invited, &good, &p, t0 + Duration::hours(25)),
            Err(ActivationError::Link(LinkError::Expired(LinkPurpose::Welcome)))
        );
        assert_eq!(submit(&link, UserState::Disabled, &good, &p, t0), Err(ActivationError::NotInvited));
        let reset = EmailLink::issue(LinkPurpose::PasswordReset, t0);
        assert_eq!(open(&reset, UserState::Invited, t0), Err(ActivationError::Link(LinkError::NotFound)));
    }
}

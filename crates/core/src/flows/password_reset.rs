//! Forgot password and forgot login name (C4).
//!
//! Request: by designated email or by login name; every active account of that address gets its
//! own reset link in one email (an invited account gets a fresh welcome link instead, since it has
//! no password to reset). The answer never depends on whether anything matched.
//! Reset: `Valid link --new password--> password replaced, every session ended`.

use time::OffsetDateTime;

use super::email_link::{EmailLink, LinkError, LinkPurpose};
use super::UserFacing;
use crate::account::{Email, LoginName, UserState};
use crate::error::FieldErrors;
use crate::policy::PasswordPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetRequest {
    ByEmail(Email),
    ByLoginName(LoginName),
}

impl ResetRequest {
    /// One of the two fields, not both, not neither.
    pub fn parse(email: Option<&str>, login_name: Option<&str>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = email.map(str::trim).filter(|s| !s.is_empty());
        let login = login_name.map(str::trim).filter(|s| !s.is_empty());
        match (email, login) {
            (Some(e), None) => Email::parse(e).map(ResetRequest::ByEmail).map_err(|err| {
                errors.add("email", err.0);
                errors
            }),
            (None, Some(l)) => LoginName::parse(l).map(ResetRequest::ByLoginName).map_err(|err| {
                errors.add("login_name", err.0);
                errors
            }),
            (Some(_), Some(_)) => {
                errors.add("email", "Enter your designated email or your login name, not both.");
                Err(errors)
            }
            (None, None) => {
                errors.add("email", "Enter your designated email or your login name.");
                Err(errors)
            }
        }
    }
}

/// What the reset email offers one matching account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOffer {
    /// A password reset link (active accounts).
    ResetLink,
    /// A new Complete Setup link (the welcome email was lost before activation).
    WelcomeLink,
    /// Nothing: a disabled account gets no way in from an anonymous request.
    Nothing,
}

pub fn offer_for(state: UserState) -> ResetOffer {
    match state {
        UserState::Active => ResetOffer::ResetLink,
        UserState::Invited => ResetOffer::WelcomeLink,
        UserState::Disabled => ResetOffer::Nothing,
    }
}

#[derive(Debug, Clone)]
pub struct NewPasswordForm {
    pub password: String,
    pub password_confirmation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    #[error("link")]
    Link(#[from] LinkError),
    #[error("account not active")]
    NotActive,
    #[error("invalid")]
    Invalid(FieldErrors),
}

impl UserFacing for ResetError {
    fn code(&self) -> &'static str {
        match self {
            ResetError::Link(e) => e.code(),
            ResetError::NotActive => "account_not_active",
            ResetError::Invalid(_) => "validation_failed",
        }
    }
    fn message(&self) -> String {
        match self {
            ResetError::Link(e) => e.message(),
            ResetError::NotActive => "This account cannot reset its password. Ask your office manager.".into(),
            ResetError::Invalid(_) => "Please correct the fields below.".into(),
        }
    }
}

pub fn open(link: &EmailLink, account: UserState, now: OffsetDateTime) -> Result<(), ResetError> {
    if link.purpose != LinkPurpose::PasswordReset {
        return Err(LinkError::NotFound.into());
    }
    link.check(now)?;
    if account != UserState::Active {
        return Err(ResetError::NotActive);
    }
    Ok(())
}

pub fn submit(
    link: &EmailLink,
    account: UserState,
    form: &NewPasswordForm,
    policy: &PasswordPolicy,
    now: OffsetDateTime,
) -> Result<(), ResetError> {
    open(link, account, now)?;
    let mut errors = FieldErrors::new();
    policy.check_new(&form.password, &form.password_confirmation, &mut errors);
    errors.into_result().map_err(ResetError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn a_request_names_an_email_or_a_login_name() {
        assert!(matches!(ResetRequest::parse(Some("a@example.com"), None), Ok(ResetRequest::ByEmail(_))));
        assert!(matches!(ResetRequest::parse(None, Some("101@example.com")), Ok(ResetRequest::ByLoginName(_))));
        assert!(ResetRequest::parse(None, None).is_err());
        assert!(ResetRequest::parse(Some(" "), Some("")).is_err());
        assert!(ResetRequest::parse(Some("a@example.com"), Some("101@example.com")).is_err());
        assert!(ResetRequest::parse(Some("not an email"), None).unwrap_err().get("email").len() == 1);
    }

    #[test]
    fn offers_follow_the_account_state() {
        assert_eq!(offer_for(UserState::Active), ResetOffer::ResetLink);
        assert_eq!(offer_for(UserState::Invited), ResetOffer::WelcomeLink);
        assert_eq!(offer_for(UserState::Disabled), ResetOffer::Nothing);
    }

    #[test]
    fn reset_links_expire_after_three_hours() {
        let t0 = datetime!(2026-11-23 09:00 UTC);
        let link = EmailLink::issue(LinkPurpose::PasswordReset, t0);
        let form = NewPasswordForm { password: "NewPassw0rd".into(), password_confirmation: "NewPassw0rd".into() };
        let p = PasswordPolicy::default();
        assert_eq!(submit(&link, UserState::Active, &form, &p, t0 + Duration::minutes(170)), Ok(()));
        assert_eq!(
            submit(&link, UserState::Active, &form, &p, t0 + Duration::hours(3)),
            Err(ResetError::Link(LinkError::Expired(LinkPurpose::PasswordReset)))
        );
        let welcome = EmailLink::issue(LinkPurpose::Welcome, t0);
        assert_eq!(open(&welcome, UserState::Active, t0), Err(ResetError::Link(LinkError::NotFound)));
    }
}

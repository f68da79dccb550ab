//! Setting up and changing second-factor methods (C6; the Sonar seed's steps 4–8, and Account
//! Security's "remove", "get new recovery codes" and "default method").
//!
//! ```text
//!   Offered ──start──▶ Pending ──confirm (a right code)──▶ Enabled
//!     │                  ├─ authenticator app: a sealed secret shown as a QR code (kept 30 min)
//!     │                  └─ text / email: a code sent to the number or the designated email
//!     └─ refused: 2FA off for the company, method not allowed, email codes before the email is verified
//!
//!   Enabled ──▶ a session restricted to enrolment becomes a full one; the first method brings
//!               recovery codes, shown once; the wrong-code count is cleared
//!   Enabled ──remove / new recovery codes──▶ only with a proof from a method that stays
//! ```
//!
//! The confirming code is judged by the second-factor step's handlers
//! ([`second_factor`](super::second_factor)) and spent by the store in the same transaction as the
//! change it confirms: a request cut off in between changes nothing and leaves the code unspent.

use time::{Duration, OffsetDateTime};

use super::second_factor::Refusal;
use super::sign_in::CompanyTwoFactor;
use super::UserFacing;
use crate::two_factor::one_time_code::Channel;
use crate::two_factor::totp::{self, TotpSecret};
use crate::two_factor::{Method, TwoFactorMode};

/// How long the set-up page keeps showing the same pending secret, so that a reload or a refused
/// Save keeps the QR code the app may already have scanned.
pub const PENDING_SECRET_SHOWN: Duration = Duration::minutes(30);

/// Why a method cannot be set up, or an account's methods cannot change, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentError {
    #[error("two-factor authentication is off for the company")]
    Unavailable,
    #[error("the company does not allow this method")]
    NotAllowed,
    #[error("the designated email is not verified")]
    EmailNotVerified,
    #[error("no pending authenticator app set-up")]
    NoPendingSecret,
    #[error("the method is not set up")]
    NotEnabled,
    #[error("the company requires a method")]
    RequiredByCompany,
    #[error("no two-factor method")]
    NoTwoFactor,
    #[error("the company locked its default method")]
    LockedByCompany,
    #[error("a default must be a method set up")]
    SetUpFirst,
}

impl UserFacing for EnrolmentError {
    fn code(&self) -> &'static str {
        match self {
            EnrolmentError::Unavailable => "two_factor_unavailable",
            EnrolmentError::NotAllowed => "method_not_allowed",
            EnrolmentError::EmailNotVerified => "email_not_verified",
            EnrolmentError::NoPendingSecret => "no_pending_enrollment",
            EnrolmentError::NotEnabled => "method_not_enabled",
            EnrolmentError::RequiredByCompany => "required_by_company",
            EnrolmentError::NoTwoFactor => "no_two_factor",
            EnrolmentError::LockedByCompany => "locked_by_company",
            EnrolmentError::SetUpFirst => "invalid_input",
        }
    }

    fn message(&self) -> String {
        match self {
            EnrolmentError::Unavailable => "Two-factor authentication is not enabled for your organization.",
            EnrolmentError::NotAllowed => "Your organization does not allow this method.",
            EnrolmentError::EmailNotVerified => "Verify your designated email first: we send a code to it, and you enter the code.",
            EnrolmentError::NoPendingSecret => "Start the authenticator app set-up first.",
            EnrolmentError::NotEnabled => "This method is not set up for your account.",
            EnrolmentError::RequiredByCompany => {
                "Your organization requires two-factor authentication: set up another method before removing this one."
            }
            EnrolmentError::NoTwoFactor => "Set up a two-factor method first: recovery codes come with it.",
            EnrolmentError::LockedByCompany => "Set by your administrator as default.",
            EnrolmentError::SetUpFirst => "Set up this method first.",
        }
        .into()
    }
}

/// Offered → Pending: the company offers 2FA and allows `method`.
pub fn may_enrol(company: &CompanyTwoFactor, method: Method) -> Result<(), EnrolmentError> {
    if !company.available() {
        return Err(EnrolmentError::Unavailable);
    }
    if !company.allowed.contains(&method) {
        return Err(EnrolmentError::NotAllowed);
    }
    Ok(())
}

/// Email codes go to the designated email, and only once a code proved it reaches its owner; a code
/// sent for the method confirms it only while that address is still the designated one.
pub fn email_codes_reach(designated: &str, verified: bool, sent_to: Option<&str>) -> Result<(), EnrolmentError> {
    match (verified, sent_to) {
        (true, None) => Ok(()),
        (true, Some(sent_to)) if sent_to == designated => Ok(()),
        _ => Err(EnrolmentError::EmailNotVerified),
    }
}

/// Whether the pending secret created at `created_at` is still the one to show.
pub fn shows_pending_secret(created_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - created_at < PENDING_SECRET_SHOWN
}

/// Pending → Enabled for the authenticator app: the app's code proves it holds the secret. The
/// confirming code's step is spent (it cannot sign in right after). Every refusal counts: set-up
/// is reached with a session, and the lock keeps a stolen one from trying codes freely.
pub fn confirm_authenticator_app(secret: &TotpSecret, code: &str, now: OffsetDateTime) -> Result<i64, Refusal> {
    totp::verify(secret, code, now, None).map_err(|e| Refusal::Wrong(e.message()))
}

/// Removing `method` from `enabled`: it must be set up, and where the company requires 2FA the last
/// method stays. (When the last one goes, so do the recovery codes: the store does that.)
pub fn may_remove(company: &CompanyTwoFactor, enabled: &[Method], method: Method) -> Result<(), EnrolmentError> {
    if !enabled.contains(&method) {
        return Err(EnrolmentError::NotEnabled);
    }
    if company.available() && company.mode == TwoFactorMode::Required && enabled.len() == 1 {
        return Err(EnrolmentError::RequiredByCompany);
    }
    Ok(())
}

/// "Get new recovery codes": only for an account with a method, since they stand in for one.
pub fn may_renew_recovery_codes(enabled: &[Method]) -> Result<(), EnrolmentError> {
    if enabled.is_empty() {
        return Err(EnrolmentError::NoTwoFactor);
    }
    Ok(())
}

/// The user's own default method: one set up, unless the office manager locked another.
pub fn may_prefer(company: &CompanyTwoFactor, enabled: &[Method], method: Method) -> Result<(), EnrolmentError> {
    if company.default_locked && company.default_method.is_some_and(|d| d != method) {
        return Err(EnrolmentError::LockedByCompany);
    }
    if !enabled.contains(&method) {
        return Err(EnrolmentError::SetUpFirst);
    }
    Ok(())
}

/// The proofs a change to 2FA accepts: the verification code, unless it was texted to the SMS
/// method being removed; a code from the authenticator app, unless the app is the one going. A
/// method cannot vouch for its own removal.
pub fn verification_code_proves(sent_over: Option<&Channel>, removing: Option<Method>) -> bool {
    !(removing == Some(Method::Sms) && matches!(sent_over, Some(Channel::Sms(_))))
}

/// See [`verification_code_proves`].
pub fn authenticator_code_proves(removing: Option<Method>) -> bool {
    removing != Some(Method::Totp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::two_factor::E164;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

    fn company(mode: TwoFactorMode, allowed: &[Method]) -> CompanyTwoFactor {
        CompanyTwoFactor { feature_enabled: true, mode, allowed: allowed.to_vec(), default_method: None, default_locked: false }
    }

    #[test]
    fn a_method_is_offered_only_where_the_company_allows_it() {
        let c = company(TwoFactorMode::Optional, &[Method::Totp]);
        assert_eq!(may_enrol(&c, Method::Totp), Ok(()));
        assert_eq!(may_enrol(&c, Method::Sms), Err(EnrolmentError::NotAllowed));
        assert_eq!(may_enrol(&company(TwoFactorMode::Off, &Method::ALL), Method::Totp), Err(EnrolmentError::Unavailable));
        let pilot_off = CompanyTwoFactor { feature_enabled: false, ..c };
        assert_eq!(may_enrol(&pilot_off, Method::Totp), Err(EnrolmentError::Unavailable));
    }

    #[test]
    fn email_codes_need_the_verified_designated_email() {
        assert_eq!(email_codes_reach("a@b.test", true, None), Ok(()));
        assert_eq!(email_codes_reach("a@b.test", false, None), Err(EnrolmentError::EmailNotVerified));
        assert_eq!(email_codes_reach("a@b.test", true, Some("a@b.test")), Ok(()));
        // The office manager changed the designated email after the code went out.
        assert_eq!(email_codes_reach("new@b.test", true, Some("a@b.test")), Err(EnrolmentError::EmailNotVerified));
    }

    #[test]
    fn the_pending_secret_is_shown_for_thirty_minutes() {
        assert!(shows_pending_secret(NOW, NOW + Duration::minutes(29)));
        assert!(!shows_pending_secret(NOW, NOW + Duration::minutes(30)));
    }

    #[test]
    fn every_refused_set_up_code_counts() {
        let secret = TotpSecret::from_bytes(&[3u8; 20]).unwrap();
        let right = totp::code_at(secret.as_bytes(), totp::step_at(NOW), 6).unwrap();
        assert_eq!(confirm_authenticator_app(&secret, &right, NOW), Ok(totp::step_at(NOW)));
        assert!(matches!(confirm_authenticator_app(&secret, "12", NOW), Err(Refusal::Wrong(_))));
    }

    #[test]
    fn the_last_method_stays_where_the_company_requires_two_factor() {
        let required = company(TwoFactorMode::Required, &Method::ALL);
        assert_eq!(may_remove(&required, &[Method::Totp], Method::Totp), Err(EnrolmentError::RequiredByCompany));
        assert_eq!(may_remove(&required, &[Method::Totp, Method::Sms], Method::Totp), Ok(()));
        assert_eq!(may_remove(&required, &[Method::Sms], Method::Totp), Err(EnrolmentError::NotEnabled));
        assert_eq!(may_remove(&company(TwoFactorMode::Optional, &Method::ALL), &[Method::Totp], Method::Totp), Ok(()));
        assert_eq!(may_renew_recovery_codes(&[]), Err(EnrolmentError::NoTwoFactor));
        assert_eq!(may_renew_recovery_codes(&[Method::Email]), Ok(()));
    }

    #[test]
    fn a_locked_default_cannot_be_overridden() {
        let locked = CompanyTwoFactor { default_method: Some(Method::Email), default_locked: true, ..company(TwoFactorMode::Optional, &Method::ALL) };
        assert_eq!(may_prefer(&locked, &[Method::Totp, Method::Email], Method::Totp), Err(EnrolmentError::LockedByCompany));
        assert_eq!(may_prefer(&locked, &[Method::Totp, Method::Email], Method::Email), Ok(()));
        let open = company(TwoFactorMode::Optional, &Method::ALL);
        assert_eq!(may_prefer(&open, &[Method::Totp], Method::Sms), Err(EnrolmentError::SetUpFirst));
    }

    #[test]
    fn a_method_cannot_vouch_for_its_own_removal() {
        let texted = Channel::Sms(E164::parse("+15550104477").unwrap());
        let emailed = Channel::Email("a@b.test".into());
        assert!(!verification_code_proves(Some(&texted), Some(Method::Sms)));
        assert!(verification_code_proves(Some(&emailed), Some(Method::Sms)));
        assert!(verification_code_proves(Some(&texted), Some(Method::Totp)));
        assert!(verification_code_proves(Some(&texted), None));
        assert!(!authenticator_code_proves(Some(Method::Totp)));
        assert!(authenticator_code_proves(Some(Method::Email)));
        assert!(authenticator_code_proves(None));
    }

    #[test]
    fn every_error_speaks_to_a_person() {
        use EnrolmentError::*;
        for e in [Unavailable, NotAllowed, EmailNotVerified, NoPendingSecret, NotEnabled, RequiredByCompany, NoTwoFactor, LockedByCompany, SetUpFirst] {
            assert!(!e.code().is_empty() && e.message().ends_with('.'), "{e:?}");
        }
    }
}

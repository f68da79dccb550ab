//! Sign-in (C5): `Password → (SecondFactor | EnrollmentRequired)? → SignedIn`.
//!
//! The password step's facts come in (was the account found, did the password match, what does
//! the company require); the next state comes out. The second-factor states are filled in by the
//! two-factor capability; until a company turns 2FA on, a right password signs in.

use super::UserFacing;
use crate::account::UserState;

/// What the company and the account ask for after a right password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactorRequirement {
    NotNeeded,
}

/// The facts the password step learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFacts {
    /// `None` when no account has that login name.
    pub account: Option<UserState>,
    /// Always computed, even for a missing account (against a dummy hash), so timing is the same.
    pub password_matches: bool,
    pub second_factor: SecondFactorRequirement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInState {
    SignedIn,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("throttled")]
    Throttled { retry_after_secs: u64 },
}

impl UserFacing for SignInError {
    fn code(&self) -> &'static str {
        match self {
            SignInError::InvalidCredentials => "invalid_credentials",
            SignInError::AccountDisabled => "account_disabled",
            SignInError::Throttled { .. } => "too_many_attempts",
        }
    }
    fn message(&self) -> String {
        match self {
            SignInError::InvalidCredentials => "The login name or password is not right.".into(),
            SignInError::AccountDisabled => "This account is disabled. Ask your office manager.".into(),
            SignInError::Throttled { retry_after_secs } => format!(
                "Too many failed attempts. Try again in {} minute(s), or use Forgot Password.",
                retry_after_secs.div_ceil(60)
            ),
        }
    }
}

/// The transition out of the password step.
pub fn after_password(facts: &PasswordFacts) -> Result<SignInState, SignInError> {
    match (facts.account, facts.password_matches) {
        // An invited account has no password yet; a missing one never matches. Both look alike.
        (None, _) | (Some(UserState::Invited), _) | (_, false) => Err(SignInError::InvalidCredentials),
        // Told only to someone who knows the password: no enumeration.
        (Some(UserState::Disabled), true) => Err(SignInError::AccountDisabled),
        (Some(UserState::Active), true) => match facts.second_factor {
            SecondFactorRequirement::NotNeeded => Ok(SignInState::SignedIn),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(account: Option<UserState>, ok: bool) -> PasswordFacts {
        PasswordFacts { account, password_matches: ok, second_factor: SecondFactorRequirement::NotNeeded }
    }

    #[test]
    fn only_an_active_account_with_the_right_password_signs_in() {
        assert_eq!(after_password(&facts(Some(UserState::Active), true)), Ok(SignInState::SignedIn));
        for (acct, ok) in [(None, true), (None, false), (Some(UserState::Invited), true), (Some(UserState::Active), false), (Some(UserState::Disabled), false)] {
            assert_eq!(after_password(&facts(acct, ok)), Err(SignInError::InvalidCredentials), "{acct:?} {ok}");
        }
        assert_eq!(after_password(&facts(Some(UserState::Disabled), true)), Err(SignInError::AccountDisabled));
    }

    #[test]
    fn throttle_message_rounds_up_to_minutes() {
        assert!(SignInError::Throttled { retry_after_secs: 61 }.message().contains("2 minute"));
    }
}

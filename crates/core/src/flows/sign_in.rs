//! Sign-in (C5, C6): `Password → (SecondFactor | EnrollmentRequired)? → SignedIn`.
//!
//! The password step's facts come in (was the account found, did the password match, what does
//! the company require); the next state comes out. [`requirement`] decides what follows a right
//! password from the company's policy and the user's methods.

use super::UserFacing;
use crate::account::UserState;
use crate::two_factor::{Method, TwoFactorMode};

/// What the company and the account ask for after a right password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactorRequirement {
    NotNeeded,
    /// Ask for one of `methods` (or a recovery code), `default` pre-selected.
    Verify { methods: Vec<Method>, default: Method },
    /// The company requires 2FA and the user has no method: enrol before the session starts.
    Enroll { allowed: Vec<Method> },
}

/// The company's two-factor rules as the sign-in needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyTwoFactor {
    /// The operator's pilot switch: off means no second factor, whatever else is set.
    pub feature_enabled: bool,
    pub mode: TwoFactorMode,
    pub allowed: Vec<Method>,
    pub default_method: Option<Method>,
    /// "Set by your administrator as default": the user's own preference does not override it.
    pub default_locked: bool,
}

impl CompanyTwoFactor {
    /// Whether users of the company see and use 2FA at all (the seed's "Don't see the feature?").
    pub fn available(&self) -> bool {
        self.feature_enabled && self.mode != TwoFactorMode::Off
    }
}

/// What a right password leads to. Methods the company no longer allows are not offered.
pub fn requirement(company: &CompanyTwoFactor, enabled: &[Method], preferred: Option<Method>) -> SecondFactorRequirement {
    if !company.available() {
        return SecondFactorRequirement::NotNeeded;
    }
    let methods: Vec<Method> = Method::ALL.into_iter().filter(|m| enabled.contains(m) && company.allowed.contains(m)).collect();
    if let Some(first) = methods.first().copied() {
        let has = |m: &Option<Method>| m.filter(|m| methods.contains(m));
        let default = if company.default_locked {
            has(&company.default_method).or(has(&preferred))
        } else {
            has(&preferred).or(has(&company.default_method))
        }
        .unwrap_or(first);
        return SecondFactorRequirement::Verify { methods, default };
    }
    match company.mode {
        TwoFactorMode::Required => SecondFactorRequirement::Enroll { allowed: company.allowed.clone() },
        _ => SecondFactorRequirement::NotNeeded,
    }
}

/// Where a stored sign-in flow stands: the password was right and the second factor is awaited.
/// The store keeps it as [`FlowState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    SecondFactor,
}

impl FlowState {
    pub const ALL: [FlowState; 1] = [FlowState::SecondFactor];

    /// The spelling the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::SecondFactor => "second_factor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
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
    SecondFactor { methods: Vec<Method>, default: Method },
    EnrollmentRequired { allowed: Vec<Method> },
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
        (Some(UserState::Active), true) => Ok(next_step(&facts.second_factor)),
    }
}

/// What a single sign-on identity leads to, once it resolved to one active account. The company's
/// second-factor rule holds as after a password, unless the office manager counts that provider's
/// own MFA as enough.
pub fn after_sso(second_factor: &SecondFactorRequirement, provider_mfa_sufficient: bool) -> SignInState {
    if provider_mfa_sufficient {
        SignInState::SignedIn
    } else {
        next_step(second_factor)
    }
}

fn next_step(second_factor: &SecondFactorRequirement) -> SignInState {
    match second_factor {
        SecondFactorRequirement::NotNeeded => SignInState::SignedIn,
        SecondFactorRequirement::Verify { methods, default } => SignInState::SecondFactor { methods: methods.clone(), default: *default },
        SecondFactorRequirement::Enroll { allowed } => SignInState::EnrollmentRequired { allowed: allowed.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sign_on_keeps_the_companys_second_factor_unless_the_providers_mfa_is_enough() {
        let verify = SecondFactorRequirement::Verify { methods: vec![Method::Totp], default: Method::Totp };
        assert_eq!(after_sso(&verify, false), SignInState::SecondFactor { methods: vec![Method::Totp], default: Method::Totp });
        assert_eq!(after_sso(&verify, true), SignInState::SignedIn);
        let enroll = SecondFactorRequirement::Enroll { allowed: vec![Method::Sms] };
        assert_eq!(after_sso(&enroll, false), SignInState::EnrollmentRequired { allowed: vec![Method::Sms] });
        assert_eq!(after_sso(&SecondFactorRequirement::NotNeeded, false), SignInState::SignedIn);
    }

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

    fn company(mode: TwoFactorMode) -> CompanyTwoFactor {
        CompanyTwoFactor { feature_enabled: true, mode, allowed: Method::ALL.to_vec(), default_method: None, default_locked: false }
    }

    #[test]
    fn a_right_password_leads_where_the_policy_says() {
        use Method::*;
        let optional = company(TwoFactorMode::Optional);
        assert_eq!(requirement(&optional, &[], None), SecondFactorRequirement::NotNeeded);
        assert_eq!(requirement(&optional, &[Sms, Totp], None), SecondFactorRequirement::Verify { methods: vec![Totp, Sms], default: Totp });
        assert_eq!(requirement(&optional, &[Sms, Totp], Some(Sms)), SecondFactorRequirement::Verify { methods: vec![Totp, Sms], default: Sms });
        let required = company(TwoFactorMode::Required);
        assert_eq!(requirement(&required, &[], None), SecondFactorRequirement::Enroll { allowed: Method::ALL.to_vec() });
        // The pilot switch off, or mode off: nobody is asked, even with methods.
        let off = CompanyTwoFactor { feature_enabled: false, ..required.clone() };
        assert_eq!(requirement(&off, &[Totp], None), SecondFactorRequirement::NotNeeded);
        assert_eq!(requirement(&company(TwoFactorMode::Off), &[Totp], None), SecondFactorRequirement::NotNeeded);
    }

    #[test]
    fn a_locked_default_wins_over_the_users_preference() {
        use Method::*;
        let locked = CompanyTwoFactor { default_method: Some(Email), default_locked: true, ..company(TwoFactorMode::Optional) };
        assert_eq!(requirement(&locked, &[Totp, Email], Some(Totp)), SecondFactorRequirement::Verify { methods: vec![Totp, Email], default: Email });
        let unlocked = CompanyTwoFactor { default_locked: false, ..locked.clone() };
        assert_eq!(requirement(&unlocked, &[Totp, Email], Some(Totp)), SecondFactorRequirement::Verify { methods: vec![Totp, Email], default: Totp });
        // A locked default the user has not enrolled falls back to what they have.
        assert_eq!(requirement(&locked, &[Totp], None), SecondFactorRequirement::Verify { methods: vec![Totp], default: Totp });
    }

    #[test]
    fn methods_the_company_no_longer_allows_are_not_offered() {
        use Method::*;
        let only_totp = CompanyTwoFactor { allowed: vec![Totp], ..company(TwoFactorMode::Required) };
        assert_eq!(requirement(&only_totp, &[Sms], None), SecondFactorRequirement::Enroll { allowed: vec![Totp] });
        let facts = PasswordFacts { account: Some(UserState::Active), password_matches: true, second_factor: requirement(&only_totp, &[Sms, Totp], None) };
        assert_eq!(after_password(&facts), Ok(SignInState::SecondFactor { methods: vec![Totp], default: Totp }));
    }

    #[test]
    fn a_flow_state_keeps_its_stored_spelling() {
        assert_eq!(FlowState::SecondFactor.as_str(), "second_factor");
        for f in FlowState::ALL {
            assert_eq!(FlowState::parse(f.as_str()), Some(f));
        }
        assert_eq!(FlowState::parse("enroll"), None);
    }

    #[test]
    fn throttle_message_rounds_up_to_minutes() {
        assert!(SignInError::Throttled { retry_after_secs: 61 }.message().contains("2 minute"));
    }
}

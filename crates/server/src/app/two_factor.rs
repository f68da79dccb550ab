//! Two-factor authentication (C6): the company's policy, enrolling the authenticator app, and the
//! second-factor step of the sign-in with a TOTP code or a recovery code.
//!
//! Every acceptance is one atomic statement in the store (a TOTP step only moves forward, a
//! recovery code is marked used once, a sign-in flow completes once), and every wrong code counts
//! against one per-account lock shared by all flows of that account. The code is checked here;
//! spending it and completing the flow are one transaction in the store, so a request that loses
//! the flow to another keeps its code unspent.

use latchkey_core::flows::sign_in::{requirement, CompanyTwoFactor, FlowState, SecondFactorRequirement};
use latchkey_core::flows::UserFacing;
use latchkey_core::secret::{Token, TokenHash};
use latchkey_core::seal::Sealed;
use latchkey_core::throttle::retry_after;
use latchkey_core::two_factor::one_time_code::CodeError;
use latchkey_core::two_factor::recovery::{self, RecoveryCodes};
use latchkey_core::two_factor::totp::{self, TotpSecret};
use latchkey_core::two_factor::{qr, Method};
use latchkey_core::LoginName;
use latchkey_store::{AccountOverview, FactorSpend, FlowCompletion, SignInFlow, SignInStart, StoredMethod, TwoFactorPolicy, User};

use super::auth::SignedIn;
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

/// What the authenticator app needs: the QR code, and the secret for typing in by hand.
pub struct TotpEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// What the authenticator app's code is, before anything is spent.
enum TotpCheck {
    NotSetUp,
    /// Right, for this step; later than the last spent one when it was read.
    Right(i64),
    Refused(totp::TotpError),
}

pub struct SecondFactorChallenge {
    pub flow: Token,
    pub methods: Vec<Method>,
    pub default: Method,
}

/// How long the set-up page keeps showing the same pending secret.
const PENDING_TOTP_MINUTES: i64 = 30;

fn company_rules(policy: &TwoFactorPolicy) -> CompanyTwoFactor {
    CompanyTwoFactor {
        feature_enabled: policy.enabled,
        mode: policy.mode,
        allowed: policy.allowed_methods.clone(),
        default_method: policy.default_method,
        default_locked: policy.default_method_locked,
    }
}

pub(super) fn flow_expired() -> AppError {
    AppError::new(ErrorKind::Gone, "flow_expired", "This sign-in has expired. Sign in again.")
}

fn invalid_code(message: &str) -> AppError {
    AppError::new(ErrorKind::Unauthorized, "invalid_code", message)
}

fn totp_ad(user_id: i64) -> Vec<u8> {
    format!("totp:user:{user_id}").into_bytes()
}

impl Latchkey {
    pub async fn company_two_factor(&self, company_id: i64) -> Result<CompanyTwoFactor, AppError> {
        Ok(company_rules(&self.store.two_factor_policy(company_id).await?))
    }

    /// What Account Security shows of an account, read in one statement, with its company's
    /// two-factor rules.
    pub async fn account_overview(&self, user: &User) -> Result<(AccountOverview, CompanyTwoFactor), AppError> {
        let overview = self.store.account_overview(user.id).await?;
        let company = company_rules(&overview.company_two_factor);
        Ok((overview, company))
    }

    pub async fn user_methods(&self, user_id: i64) -> Result<Vec<Method>, AppError> {
        Ok(self.store.methods_of_user(user_id).await?.iter().map(|m| m.method).collect())
    }

    pub(super) async fn second_factor_requirement(&self, user: &User) -> Result<SecondFactorRequirement, AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        if !company.available() {
            return Ok(SecondFactorRequirement::NotNeeded);
        }
        let methods = self.user_methods(user.id).await?;
        let preferred = self.store.preferred_method(user.id).await?;
        Ok(requirement(&company, &methods, preferred))
    }

    /// Sign-in flows are named in URLs by a token; the store keeps its hash.
    pub(super) async fn start_second_factor_flow(&self, user: &User) -> Result<Token, AppError> {
        let flow = Token::generate();
        let now = self.now();
        let record = SignInFlow {
            user_id: user.id,
            state: FlowState::SecondFactor,
            created_at: now,
            expires_at: now + time::Duration::minutes(self.config.two_factor.flow_minutes),
            completed_at: None,
        };
        self.store.create_sign_in_flow(flow.hash().as_str(), &record).await?;
        Ok(flow)
    }

    /// The operator's pilot switch for a company.
    pub async fn set_two_factor_feature(&self, domain: &str, enabled: bool, actor: Actor, ctx: &RequestContext) -> Result<(), AppError> {
        let company = self.company(domain).await?;
        let mut policy = self.store.two_factor_policy(company.id).await?;
        policy.enabled = enabled;
        let mut audit = self.audit("two_factor_feature_changed", Some(company.id), actor, None, ctx);
        audit.detail = if enabled { "enabled" } else { "disabled" }.into();
        self.store.set_two_factor_policy(company.id, &policy, &audit).await?;
        Ok(())
    }

    /// 403 unless the company offers 2FA and allows `method`.
    pub(super) async fn require_allowed(&self, user: &User, method: Method) -> Result<(), AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        if !company.available() {
            return Err(AppError::new(
                ErrorKind::Forbidden,
                "two_factor_unavailable",
                "Two-factor authentication is not enabled for your organization.",
            ));
        }
        if !company.allowed.contains(&method) {
            return Err(AppError::new(ErrorKind::Forbidden, "method_not_allowed", "Your organization does not allow this method."));
        }
        Ok(())
    }

    /// Step 4 of the Sonar seed: a new secret and its QR code, pending until a code confirms it.
    pub async fn start_totp_enrollment(&self, user: &User) -> Result<TotpEnrollment, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        let secret = TotpSecret::generate();
        let sealed = self.keyring.seal(secret.as_bytes(), &totp_ad(user.id)).map_err(|_| AppError::internal())?;
        self.store.begin_totp_enrollment(user.id, &sealed.blob, &sealed.key_id, self.now()).await?;
        self.enrollment_of(user, &secret)
    }

    /// The set-up page shows the pending secret while it is fresh, so that a reload or a refused
    /// Save keeps the QR code the app may already have scanned; otherwise a new one.
    pub async fn totp_enrollment_for_page(&self, user: &User) -> Result<TotpEnrollment, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        if let Some((blob, key_id, created_at)) = self.store.totp_enrollment(user.id).await? {
            if self.now() - created_at < time::Duration::minutes(PENDING_TOTP_MINUTES) {
                let secret = self.open_totp(user.id, &blob, &key_id)?;
                return self.enrollment_of(user, &secret);
            }
        }
        self.start_totp_enrollment(user).await
    }

    fn enrollment_of(&self, user: &User, secret: &TotpSecret) -> Result<TotpEnrollment, AppError> {
        let login = LoginName::parse(&user.login_name).map_err(|_| AppError::internal())?;
        let issuer = format!("{} ({})", self.config.two_factor.issuer, user.company_name);
        let otpauth_uri = totp::otpauth_uri(secret, &issuer, &login);
        let qr_svg = qr::svg(&otpauth_uri).map_err(|_| AppError::internal())?;
        Ok(TotpEnrollment { secret: secret.base32(), otpauth_uri, qr_svg })
    }

    pub(super) fn open_totp(&self, user_id: i64, blob: &str, key_id: &str) -> Result<TotpSecret, AppError> {
        let sealed = Sealed { key_id: key_id.to_owned(), blob: blob.to_owned() };
        let bytes = self.keyring.open(&sealed, &totp_ad(user_id)).map_err(|e| {
            tracing::error!(error = %e, user_id, "a TOTP seed could not be opened");
            AppError::internal()
        })?;
        TotpSecret::from_bytes(&bytes).map_err(|_| AppError::internal())
    }

    /// Steps 6–8 of the Sonar seed: the app's code and the current password save the method.
    /// Returns the recovery codes when this is the user's first method (shown once).
    pub async fn confirm_totp(&self, user: &User, code: &str, current_password: &str, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        self.require_allowed(user, Method::Totp).await?;
        self.ensure_not_locked(user).await?;
        self.confirm_password(user, current_password).await?;
        let (blob, key_id, _) = self
            .store
            .totp_enrollment(user.id)
            .await?
            .ok_or_else(|| AppError::new(ErrorKind::Conflict, "no_pending_enrollment", "Start the authenticator app set-up first."))?;
        let secret = self.open_totp(user.id, &blob, &key_id)?;
        let step = match totp::verify(&secret, code, self.now(), None) {
            Ok(step) => step,
            Err(e) => return Err(self.wrong_code(user, &e.message(), ctx).await),
        };
        let method = StoredMethod {
            method: Method::Totp,
            detail: None,
            totp_sealed: Some(blob),
            totp_key_id: Some(key_id),
            // The confirming code's step is spent: it cannot sign in right after.
            totp_last_step: Some(step),
            enabled_at: self.now(),
        };
        self.enable(user, &method, ctx).await
    }

    /// Stores a confirmed method; the first one brings recovery codes. Notifies the owner.
    pub(super) async fn enable(&self, user: &User, method: &StoredMethod, ctx: &RequestContext) -> Result<Option<Vec<String>>, AppError> {
        let codes = RecoveryCodes::generate();
        let hashes: Vec<String> = codes.hashes().iter().map(|h| h.as_str().to_owned()).collect();
        let mut audit = self.audit("two_factor_enrolled", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = method.method.as_str().to_owned();
        let first = self.store.enable_method(user.id, method, &hashes, &audit).await?;
        self.store.throttle_clear(&self.limits.second_factor_per_user.key(user.id)).await?;
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Two-factor authentication method added",
            &format!("The {} method was added to two-factor authentication", method_label(method.method)),
            self.now(),
        ))
        .await;
        Ok(first.then(|| codes.displayed()))
    }

    pub(super) async fn ensure_not_locked(&self, user: &User) -> Result<(), AppError> {
        let now = self.now();
        let key = self.limits.second_factor_per_user.key(user.id);
        if let Some(secs) = retry_after(self.store.throttle_locked_until(std::slice::from_ref(&key), now).await?, now) {
            return Err(AppError::throttled(
                secs,
                format!("Too many wrong codes. Two-factor sign-in is locked for {} minute(s).", secs.div_ceil(60)),
            ));
        }
        Ok(())
    }

    /// Counts a wrong code against the account (all flows share it) and answers 401, or 429 when
    /// that was the code that locked it. Counted before it is audited: a request cut off between
    /// the two writes leaves the wrong code counted, never uncounted.
    pub(super) async fn wrong_code(&self, user: &User, message: &str, ctx: &RequestContext) -> AppError {
        let now = self.now();
        let key = self.limits.second_factor_per_user.key(user.id);
        let counted = self.store.throttle_fail(&key, &self.limits.second_factor_per_user.policy, now).await;
        let mut audit = self.audit("second_factor_failed", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = "wrong code".into();
        if let Err(e) = self.store.append_audit(&audit).await {
            return e.into();
        }
        match counted {
            Ok(Some(until)) => match retry_after(Some(until), now) {
                Some(secs) => AppError::throttled(secs, format!("Too many wrong codes. Two-factor sign-in is locked for {} minute(s).", secs.div_ceil(60))),
                None => invalid_code(message),
            },
            Ok(None) => invalid_code(message),
            Err(e) => e.into(),
        }
    }

    /// The second-factor step: a TOTP, SMS or email code, or a recovery code, on a live flow.
    /// Success starts the session; `recovery_codes_left` is returned when a recovery code was used.
    pub async fn verify_second_factor(
        &self,
        flow_token: &str,
        method: &str,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<(SignedIn, Option<i64>), AppError> {
        let (flow_hash, user) = self.live_flow(flow_token).await?;
        self.ensure_not_locked(&user).await?;
        let factor = self.factor_to_spend(&user, method, code, ctx).await?;
        let (token, session, audit) = self.new_session(&user, false, method, ctx);
        let then = SignInStart { wrong_code_key: self.limits.second_factor_per_user.key(user.id), session, audit };
        let recovery_left = match self.store.complete_sign_in(flow_hash.as_str(), user.id, &factor, &then).await? {
            FlowCompletion::Completed { recovery_codes_left } => recovery_codes_left,
            // Another request completed it since `live_flow`: this one's code stays unspent.
            FlowCompletion::FlowGone => return Err(flow_expired()),
            FlowCompletion::FactorSpent => return Err(self.spent_factor(&user, &factor, ctx).await),
        };
        if let Some(left) = recovery_left {
            self.tell_recovery_code_used(&user, left).await;
        }
        // A single sign-on identity waiting for this sign-in to prove the account is linked now.
        self.link_waiting_identity(&flow_hash, &user, ctx).await?;
        Ok((SignedIn { token, user }, recovery_left))
    }

    /// Checks the presented code and says what completing the flow would spend; a wrong code is
    /// refused (and counted) here, before anything is written.
    async fn factor_to_spend(&self, user: &User, method: &str, code: &str, ctx: &RequestContext) -> Result<FactorSpend, AppError> {
        if method == "recovery_code" {
            let Ok(normalized) = recovery::normalize(code) else {
                return Err(self.wrong_code(user, "That recovery code is not right.", ctx).await);
            };
            let audit = self.audit("recovery_code_used", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
            return Ok(FactorSpend::RecoveryCode { hash: normalized.hash().as_str().to_owned(), audit });
        }
        let method = Method::parse(method).ok_or_else(|| AppError::field("method", "The method is totp, sms, email or recovery_code."))?;
        let stored = self.store.methods_of_user(user.id).await?;
        // Only what the user set up and the company still allows.
        if !self.verifiable_methods(user, &stored).await?.contains(&method) {
            return Err(AppError::new(ErrorKind::Invalid, "method_unavailable", "This method is not enabled for your account."));
        }
        match method {
            Method::Totp => Ok(FactorSpend::TotpStep(self.right_totp_step(user, &stored, code, ctx).await?)),
            Method::Sms | Method::Email => self.sign_in_code_to_spend(user, method, code, ctx).await,
        }
    }

    /// The refusal for a right-looking factor the store found spent (by a racing request, or a
    /// recovery code that never was one of the user's).
    async fn spent_factor(&self, user: &User, factor: &FactorSpend, ctx: &RequestContext) -> AppError {
        match factor {
            FactorSpend::RecoveryCode { .. } => self.wrong_code(user, "That recovery code is not right or was already used.", ctx).await,
            FactorSpend::TotpStep(_) => self.wrong_code(user, "This code was already used. Wait for the next code.", ctx).await,
            FactorSpend::Code { .. } => AppError::from_flow(ErrorKind::Unauthorized, &CodeError::Used),
        }
    }

    /// The methods a sign-in flow of `user` accepts, given the user's `stored` methods.
    async fn verifiable_methods(&self, user: &User, stored: &[StoredMethod]) -> Result<Vec<Method>, AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        let enabled: Vec<Method> = stored.iter().map(|m| m.method).collect();
        // The preference only picks the pre-selected method, not which ones are accepted.
        match requirement(&company, &enabled, None) {
            SecondFactorRequirement::Verify { methods, .. } => Ok(methods),
            _ => Err(flow_expired()),
        }
    }

    async fn right_totp_step(&self, user: &User, stored: &[StoredMethod], code: &str, ctx: &RequestContext) -> Result<i64, AppError> {
        match self.totp_check(user, stored, code)? {
            TotpCheck::Right(step) => Ok(step),
            TotpCheck::NotSetUp => {
                Err(AppError::new(ErrorKind::Invalid, "method_unavailable", "The authenticator app is not set up for your account."))
            }
            TotpCheck::Refused(totp::TotpError::Malformed) => Err(AppError::field("code", "Enter the 6-digit code from your authenticator app.")),
            TotpCheck::Refused(e) => Err(self.wrong_code(user, &e.message(), ctx).await),
        }
    }

    /// Checks `code` against the user's authenticator app, spending nothing.
    async fn check_totp_code(&self, user: &User, code: &str) -> Result<TotpCheck, AppError> {
        self.totp_check(user, &self.store.methods_of_user(user.id).await?, code)
    }

    /// Checks `code` against the authenticator app among the user's `methods`, spending nothing.
    fn totp_check(&self, user: &User, methods: &[StoredMethod], code: &str) -> Result<TotpCheck, AppError> {
        let Some(stored) = methods.iter().find(|m| m.method == Method::Totp) else {
            return Ok(TotpCheck::NotSetUp);
        };
        let (Some(blob), Some(key_id)) = (&stored.totp_sealed, &stored.totp_key_id) else {
            return Err(AppError::internal());
        };
        let secret = self.open_totp(user.id, blob, key_id)?;
        Ok(match totp::verify(&secret, code, self.now(), stored.totp_last_step) {
            Ok(step) => TotpCheck::Right(step),
            Err(e) => TotpCheck::Refused(e),
        })
    }

    /// Whether `code` is right for the user's authenticator app, spending its step when it is.
    /// Counts nothing: the caller decides what a refusal means.
    pub(super) async fn spend_totp(&self, user: &User, code: &str) -> Result<bool, AppError> {
        let TotpCheck::Right(step) = self.check_totp_code(user, code).await? else {
            return Ok(false);
        };
        // The atomic check-and-advance: of two nodes racing with the same code, one wins.
        Ok(self.store.advance_totp_step(user.id, step).await?)
    }

    async fn tell_recovery_code_used(&self, user: &User, left: i64) {
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "A recovery code was used",
            &format!("A recovery code was used to sign in ({left} left)"),
            self.now(),
        ))
        .await;
    }
}

/// How the security notices name a method.
pub(super) fn method_label(method: Method) -> &'static str {
    match method {
        Method::Totp => "authenticator app",
        Method::Sms => "text message (SMS)",
        Method::Email => "email code",
    }
}

impl Latchkey {
    /// What the second-factor page offers for a live flow: the methods and the pre-selected one.
    pub async fn flow_challenge(&self, flow_token: &str) -> Result<(Vec<Method>, Method), AppError> {
        let (_, user) = self.live_flow(flow_token).await?;
        match self.second_factor_requirement(&user).await? {
            SecondFactorRequirement::Verify { methods, default } => Ok((methods, default)),
            _ => Err(flow_expired()),
        }
    }

    /// A sign-in waiting at the second-factor step, with its active account; anything else
    /// (unknown, completed, expired, account disabled meanwhile) is 410 `flow_expired`.
    pub(super) async fn live_flow(&self, flow_token: &str) -> Result<(TokenHash, User), AppError> {
        if flow_token.is_empty() || flow_token.len() > 128 {
            return Err(flow_expired());
        }
        let hash = Token::from_client(flow_token).hash();
        let flow = self.store.sign_in_flow(hash.as_str()).await?.ok_or_else(flow_expired)?;
        if flow.completed_at.is_some() || self.now() >= flow.expires_at {
            return Err(flow_expired());
        }
        let user = self.store.user_by_id(flow.user_id).await?.filter(|u| u.state == latchkey_core::UserState::Active).ok_or_else(flow_expired)?;
        Ok((hash, user))
    }
}

impl Latchkey {
    /// The user's own choice of pre-selected method, unless the company locked its default.
    pub async fn set_preferred_method(&self, user: &User, method: Method) -> Result<(), AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        if company.default_locked && company.default_method.is_some_and(|d| d != method) {
            return Err(AppError::new(ErrorKind::Conflict, "locked_by_company", "Set by your administrator as default."));
        }
        if !self.user_methods(user.id).await?.contains(&method) {
            return Err(AppError::field("method", "Set up this method first."));
        }
        if self.store.preferred_method(user.id).await? == Some(method) {
            return Ok(());
        }
        self.store.set_preferred_method(user.id, Some(method)).await?;
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Default two-factor method changed",
            &format!("The default two-factor method became the {}", method_label(method)),
            self.now(),
        ))
        .await;
        Ok(())
    }

    /// The office manager's reset: every method and recovery code of the user goes; the user
    /// enrols again at the next sign-in (where required). Audited, and the user is told.
    pub async fn reset_two_factor(&self, domain: &str, extension: &str, actor: Actor, ctx: &RequestContext) -> Result<User, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        let audit = self.audit("two_factor_reset", Some(user.company_id), actor, Some(user.id), ctx);
        self.store.reset_two_factor(user.id, &audit).await?;
        self.store.throttle_clear(&self.limits.second_factor_per_user.key(user.id)).await?;
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Two-factor authentication was reset",
            "Your office manager reset two-factor authentication: your methods and recovery codes were removed",
            self.now(),
        ))
        .await;
        Ok(user)
    }
}

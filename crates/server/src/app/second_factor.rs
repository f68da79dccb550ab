//! The sign-in's second-factor step (C6), run on `core::flows::second_factor`: read what the
//! answer needs, let core's handler for the method judge it, then complete the flow, spend the
//! answer and start the session in one store transaction.
//!
//! Every wrong code counts against one per-account lock shared by all flows of that account, and
//! by the codes of enrolment and of changes to the account's methods.

use latchkey_core::flows::enrolment;
use latchkey_core::flows::second_factor::{self, Answer, Refusal, SentCode, Spend};
use latchkey_core::flows::sign_in::{requirement, FlowState, SecondFactorRequirement};
use latchkey_core::secret::{Token, TokenHash};
use latchkey_core::throttle::retry_after;
use latchkey_core::two_factor::one_time_code::{Channel, CodePurpose};
use latchkey_core::two_factor::totp::TotpSecret;
use latchkey_core::two_factor::{Method, E164};
use latchkey_store::{AuditEntry, FactorSpend, FlowCompletion, SignInFlow, SignInStart, StoredMethod, User};

use super::auth::SignedIn;
use super::codes::sent_code_of;
use super::enrolment::enrolment_error;
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

pub(super) fn flow_expired() -> AppError {
    AppError::new(ErrorKind::Gone, "flow_expired", "This sign-in has expired. Sign in again.")
}

fn method_unavailable() -> AppError {
    AppError::new(ErrorKind::Invalid, "method_unavailable", "This method is not enabled for your account.")
}

fn invalid_code(message: &str) -> AppError {
    AppError::new(ErrorKind::Unauthorized, "invalid_code", message)
}

/// What the store spends for a right answer. A recovery code writes its own audit entry (with how
/// many are left) in the same transaction.
pub(super) fn factor_of(spend: &Spend, recovery_audit: impl FnOnce() -> AuditEntry) -> FactorSpend {
    match spend {
        Spend::TotpStep(step) => FactorSpend::TotpStep(*step),
        Spend::RecoveryCode(hash) => FactorSpend::RecoveryCode { hash: hash.as_str().to_owned(), audit: recovery_audit() },
        Spend::Code { purpose, hash } => FactorSpend::Code { purpose: *purpose, hash: hash.as_str().to_owned() },
    }
}

impl Latchkey {
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

    /// The methods a live sign-in flow of `user` accepts now, given the user's `stored` methods:
    /// the user's, as far as the company still allows them.
    pub(super) async fn flow_methods(&self, user: &User, stored: &[StoredMethod]) -> Result<Vec<Method>, AppError> {
        let company = self.company_two_factor(user.company_id).await?;
        let enabled: Vec<Method> = stored.iter().map(|m| m.method).collect();
        // The preference only picks the pre-selected method, not which ones are accepted.
        match requirement(&company, &enabled, None) {
            SecondFactorRequirement::Verify { methods, .. } => Ok(methods),
            _ => Err(flow_expired()),
        }
    }

    /// The second-factor step: a TOTP, SMS or email code, or a recovery code, on a live flow.
    /// Success starts the session; `recovery_codes_left` is returned when a recovery code was used.
    pub async fn verify_second_factor(&self, flow_token: &str, method: &str, code: &str, ctx: &RequestContext) -> Result<(SignedIn, Option<i64>), AppError> {
        let (flow_hash, user) = self.live_flow(flow_token).await?;
        self.ensure_not_locked(&user).await?;
        let answer = match Answer::parse(method, code) {
            Ok(answer) => answer,
            Err(refusal) => return Err(self.refused(&user, refusal, ctx).await),
        };
        let spend = match self.judge(&user, &answer).await? {
            Ok(spend) => spend,
            Err(refusal) => return Err(self.refused(&user, refusal, ctx).await),
        };
        let factor = factor_of(&spend, || self.audit("recovery_code_used", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx));
        let (token, session, audit) = self.new_session(&user, false, method, ctx);
        let then = SignInStart { wrong_code_key: self.limits.second_factor_per_user.key(user.id), session, audit };
        let recovery_left = match self.store.complete_sign_in(flow_hash.as_str(), user.id, &factor, &then).await? {
            FlowCompletion::Completed { recovery_codes_left } => recovery_codes_left,
            // Another request completed it since `live_flow`: this one's code stays unspent.
            FlowCompletion::FlowGone => return Err(flow_expired()),
            FlowCompletion::FactorSpent => return Err(self.refused(&user, spend.refusal_when_spent(), ctx).await),
        };
        if let Some(left) = recovery_left {
            self.tell_recovery_code_used(&user, left).await;
        }
        // A single sign-on identity waiting for this sign-in to prove the account is linked now.
        self.link_waiting_identity(&flow_hash, &user, ctx).await?;
        Ok((SignedIn { token, user }, recovery_left))
    }

    /// The second-factor step asks for a texted or emailed code. Answers the masked destination.
    pub async fn send_sign_in_code(&self, flow_token: &str, method: &str, ctx: &RequestContext) -> Result<String, AppError> {
        let (_, user) = self.live_flow(flow_token).await?;
        let method = match Method::parse(method) {
            Some(m @ (Method::Sms | Method::Email)) => m,
            _ => return Err(AppError::field("method", "Codes are sent by sms or email.")),
        };
        let stored = self.store.methods_of_user(user.id).await?;
        if !self.flow_methods(&user, &stored).await?.contains(&method) {
            return Err(method_unavailable());
        }
        let (purpose, channel) = self.channel_of(&user, method).await?;
        let shown = channel.shown();
        self.send_code(&user, purpose, &channel, ctx).await?;
        Ok(shown)
    }

    /// Where the sign-in code for an enrolled SMS or email method goes.
    pub(super) async fn channel_of(&self, user: &User, method: Method) -> Result<(CodePurpose, Channel), AppError> {
        match method {
            Method::Sms => {
                let stored = self.store.methods_of_user(user.id).await?;
                let number = stored
                    .iter()
                    .find(|m| m.method == Method::Sms)
                    .and_then(|m| m.detail.as_deref())
                    .and_then(|d| E164::parse(d).ok())
                    .ok_or_else(method_unavailable)?;
                Ok((CodePurpose::SignInSms, Channel::Sms(number)))
            }
            Method::Email => {
                enrolment::email_codes_reach(&user.designated_email, user.designated_email_verified_at.is_some(), None).map_err(enrolment_error)?;
                Ok((CodePurpose::SignInEmail, Channel::Email(user.designated_email.clone())))
            }
            Method::Totp => Err(method_unavailable()),
        }
    }

    /// Reads what `answer`'s method needs and lets core's handler for it judge the answer; the
    /// outer error is the store's, the inner one the refusal.
    async fn judge(&self, user: &User, answer: &Answer) -> Result<Result<Spend, Refusal>, AppError> {
        if let Answer::RecoveryCode(code) = answer {
            return Ok(second_factor::recovery_code(code));
        }
        let stored = self.store.methods_of_user(user.id).await?;
        if let Err(refusal) = second_factor::accepts(&self.flow_methods(user, &stored).await?, answer) {
            return Ok(Err(refusal));
        }
        let now = self.now();
        Ok(match (answer, answer.code_purpose()) {
            (Answer::AuthenticatorApp(code), _) => {
                let app = self.authenticator_of(user, &stored)?;
                second_factor::authenticator_app(app.as_ref().map(|(secret, last)| (secret, *last)), code, now)
            }
            (_, Some(purpose)) => second_factor::sent_code(purpose, self.sent_code(user, purpose).await?.as_ref(), answer.code(), now),
            _ => Err(Refusal::Unavailable("This method is not enabled for your account.".into())),
        })
    }

    /// The user's authenticator app among `stored` methods, its secret opened: `None` when it is
    /// not set up.
    pub(super) fn authenticator_of(&self, user: &User, stored: &[StoredMethod]) -> Result<Option<(TotpSecret, Option<i64>)>, AppError> {
        let Some(app) = stored.iter().find(|m| m.method == Method::Totp) else {
            return Ok(None);
        };
        let (Some(blob), Some(key_id)) = (&app.totp_sealed, &app.totp_key_id) else {
            return Err(AppError::internal());
        };
        Ok(Some((self.open_totp(user.id, blob, key_id)?, app.totp_last_step)))
    }

    /// The live code of `purpose`, as core's handlers judge it.
    async fn sent_code(&self, user: &User, purpose: CodePurpose) -> Result<Option<SentCode>, AppError> {
        Ok(self.store.code(user.id, purpose).await?.as_ref().map(sent_code_of))
    }

    /// The answer to a refusal: a guess is counted against the account's lock first; a typo, a
    /// stale code or an unavailable method is only told.
    pub(super) async fn refused(&self, user: &User, refusal: Refusal, ctx: &RequestContext) -> AppError {
        match refusal {
            Refusal::Wrong(message) => self.wrong_code(user, &message, ctx).await,
            Refusal::Malformed { field, message } => AppError::field(field, message),
            Refusal::Stale(e) => AppError::from_flow(ErrorKind::Unauthorized, &e),
            Refusal::Unavailable(message) => AppError::new(ErrorKind::Invalid, "method_unavailable", message),
        }
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

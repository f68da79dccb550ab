//! Sign-in and sessions (C5). The password step is throttled per login name and per client
//! address in the store, so the limits hold across nodes; an unknown login name costs the same
//! hash as a wrong password.

use latchkey_core::flows::session::SessionState;
use latchkey_core::flows::sign_in::{self, PasswordFacts, SignInError, SignInState};
use latchkey_core::two_factor::Method;
use latchkey_core::flows::UserFacing;
use latchkey_core::secret::{random_handle, Token, TokenHash};
use latchkey_core::throttle::retry_after;
use latchkey_core::{LoginName, UserState};
use latchkey_store::{AuditEntry, NewSession, Session, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};

pub struct SignedIn {
    /// The new session id: goes into the cookie, only its hash is stored.
    pub token: Token,
    pub user: User,
}

/// Where a right password leads.
pub enum SignInOutcome {
    SignedIn(SignedIn),
    /// Ask for a second factor on the flow `flow` (its token goes back to the client).
    SecondFactor { flow: Token, methods: Vec<Method>, default: Method },
    /// 2FA is required and the user has none: `session` is restricted to enrolment.
    EnrollmentRequired { session: SignedIn, allowed: Vec<Method> },
}

fn sign_in_error(e: SignInError) -> AppError {
    match e {
        SignInError::Throttled { retry_after_secs } => AppError::throttled(retry_after_secs, e.message()),
        SignInError::InvalidCredentials => AppError::from_flow(ErrorKind::Unauthorized, &e),
        SignInError::AccountDisabled => AppError::from_flow(ErrorKind::Forbidden, &e),
    }
}

impl Latchkey {
    pub async fn sign_in(&self, login_name: &str, password: &str, ctx: &RequestContext) -> Result<SignInOutcome, AppError> {
        let login = LoginName::parse(login_name).map_err(|e| AppError::field("login_name", e.0))?;
        if password.is_empty() || password.len() > 1024 {
            return Err(sign_in_error(SignInError::InvalidCredentials));
        }
        // A place in the hashing pool first: under a flood, the sign-ins it has no room for are
        // refused before they read the store.
        let admitted = self.hasher.admit()?;
        let now = self.now();
        let account_key = self.limits.sign_in_per_login.key(login.as_str());
        let client = ctx.client_ip.as_deref().map(|ip| self.limits.sign_in_per_client.key(ip));
        let keys: Vec<String> = std::iter::once(account_key.clone()).chain(client.clone()).collect();
        if let Some(secs) = retry_after(self.store.throttle_locked_until(&keys, now).await?, now) {
            metrics::counter!("latchkey_sign_ins_total", "outcome" => "throttled").increment(1);
            return Err(sign_in_error(SignInError::Throttled { retry_after_secs: secs }));
        }

        let user = self.store.user_by_login_name(&login).await?;
        let verified = admitted.verify(password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await?;
        // What follows a right password; only asked when the password was right (no extra queries
        // for wrong guesses, and nothing learned about accounts whose password is unknown).
        let second_factor = match (&user, verified.matches) {
            (Some(u), true) => self.second_factor_requirement(u).await?,
            _ => latchkey_core::flows::sign_in::SecondFactorRequirement::NotNeeded,
        };
        let facts = PasswordFacts { account: user.as_ref().map(|u| u.state), password_matches: verified.matches, second_factor };
        let next = match sign_in::after_password(&facts) {
            Ok(next) => next,
            Err(e) => {
                if e == SignInError::InvalidCredentials {
                    self.store.throttle_fail(&account_key, &self.limits.sign_in_per_login.policy, now).await?;
                    if let Some(client) = &client {
                        self.store.throttle_fail(client, &self.limits.sign_in_per_client.policy, now).await?;
                    }
                }
                if let Some(u) = &user {
                    let mut audit = self.audit("sign_in_failed", Some(u.company_id), Actor::User(u.id), Some(u.id), ctx);
                    audit.detail = e.code().to_owned();
                    self.store.append_audit(&audit).await?;
                }
                metrics::counter!("latchkey_sign_ins_total", "outcome" => "failed").increment(1);
                return Err(sign_in_error(e));
            }
        };
        // `after_password` only signs in an existing, active account.
        let Some(user) = user.filter(|u| u.state == UserState::Active) else {
            return Err(AppError::internal());
        };
        self.store.throttle_clear(&account_key).await?;
        if verified.needs_rehash {
            let old = user.password_hash.clone().unwrap_or_default();
            let new = self.hasher.hash(password).await?;
            self.store.upgrade_password_hash(user.id, &old, &new).await?;
        }
        self.continue_sign_in(user, next, "password", ctx).await
    }

    /// The step after the first factor (a password, or a single sign-on identity): a session, the
    /// second-factor step, or a session restricted to enrolment. `how` names the first factor
    /// for the audit log (`password`, or the SSO provider).
    pub(super) async fn continue_sign_in(&self, user: User, next: SignInState, how: &str, ctx: &RequestContext) -> Result<SignInOutcome, AppError> {
        match next {
            SignInState::SignedIn => {
                let token = self.start_session(&user, false, how, ctx).await?;
                metrics::counter!("latchkey_sign_ins_total", "outcome" => "signed_in").increment(1);
                Ok(SignInOutcome::SignedIn(SignedIn { token, user }))
            }
            SignInState::SecondFactor { methods, default } => {
                let flow = self.start_second_factor_flow(&user).await?;
                metrics::counter!("latchkey_sign_ins_total", "outcome" => "second_factor").increment(1);
                Ok(SignInOutcome::SecondFactor { flow, methods, default })
            }
            SignInState::EnrollmentRequired { allowed } => {
                let token = self.start_session(&user, true, how, ctx).await?;
                metrics::counter!("latchkey_sign_ins_total", "outcome" => "enrollment_required").increment(1);
                Ok(SignInOutcome::EnrollmentRequired { session: SignedIn { token, user }, allowed })
            }
        }
    }

    /// A fresh session id for every sign-in: an id known before sign-in is never promoted.
    /// A `restricted` session reaches only two-factor enrolment. The audit event says `how` the
    /// user signed in: an office manager reading the log tells a password from SSO or a code.
    pub(super) async fn start_session(&self, user: &User, restricted: bool, how: &str, ctx: &RequestContext) -> Result<Token, AppError> {
        let (token, session, audit) = self.new_session(user, restricted, how, ctx);
        self.store.create_session(&session, &audit).await?;
        Ok(token)
    }

    /// A session to store for `user`, the cookie's token for it, and its `sign_in` audit entry.
    pub(super) fn new_session(&self, user: &User, restricted: bool, how: &str, ctx: &RequestContext) -> (Token, NewSession, AuditEntry) {
        let token = Token::generate();
        let session = NewSession {
            token_hash: token.hash(),
            handle: random_handle(),
            user_id: user.id,
            restricted,
            created_at: self.now(),
            client_ip: ctx.client_ip.clone(),
            user_agent: ctx.user_agent.as_deref().map(|ua| ua.chars().take(256).collect()),
        };
        let mut audit = self.audit("sign_in", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = if restricted { format!("{how}; two-factor set-up required") } else { how.to_owned() };
        (token, session, audit)
    }

    /// The live session a cookie names, with its active account; expired sessions are removed.
    pub async fn resolve_session(&self, token: &str) -> Result<Option<(Session, User)>, AppError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let hash = Token::from_client(token).hash();
        let Some((session, user)) = self.store.session_with_user(&hash).await? else { return Ok(None) };
        let now = self.now();
        let live = self.session_policy.state(session.created_at, session.last_seen_at, now) == SessionState::Live;
        if !live || user.state != UserState::Active {
            self.store.delete_session(&hash).await?;
            return Ok(None);
        }
        if self.session_policy.needs_touch(session.last_seen_at, now) {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Some((session, user)))
    }

    pub async fn sign_out(&self, token: &str, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        let audit = self.audit("sign_out", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        Ok(self.store.end_session(&Token::from_client(token).hash(), &audit).await?)
    }

    pub fn session_hash(token: &str) -> TokenHash {
        Token::from_client(token).hash()
    }
}

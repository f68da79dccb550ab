//! My Account: the signed-in user's password, voicemail PIN and sessions.

use latchkey_core::policy::{PasswordPolicy, PinPolicy};
use latchkey_core::throttle::retry_after;
use latchkey_core::FieldErrors;
use latchkey_store::{AuditEntry, Session, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates::{self, PasswordChange};

impl Latchkey {
    /// Re-checks the current password before a credential change; wrong guesses count against the
    /// same per-account throttle as sign-in, so a stolen session cannot guess the password.
    pub(super) async fn confirm_password(&self, user: &User, current: &str) -> Result<(), AppError> {
        let key = self.limits.sign_in_per_login.key(&user.login_name);
        let now = self.now();
        if let Some(secs) = retry_after(self.store.throttle_locked_until(std::slice::from_ref(&key), now).await?, now) {
            return Err(AppError::throttled(secs, "Too many wrong passwords. Try again later.".into()));
        }
        let ok = current.len() <= 1024 && self.hasher.verify(current, user.password_hash.as_deref()).await?.matches;
        if !ok {
            self.store.throttle_fail(&key, &self.limits.sign_in_per_login.policy, now).await?;
            let mut e = AppError::new(ErrorKind::Unauthorized, "invalid_credentials", "Your current password is not right.");
            e.fields.add("current_password", "Your current password is not right.");
            return Err(e);
        }
        Ok(())
    }

    /// Changes the password and ends every other session of the account.
    pub async fn change_password(
        &self,
        user: &User,
        session_token: &str,
        current: &str,
        password: &str,
        confirmation: &str,
        ctx: &RequestContext,
    ) -> Result<(), AppError> {
        let mut errors = FieldErrors::new();
        PasswordPolicy::with_min_length(user.company_password_min_length as usize).check_new(password, confirmation, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        self.confirm_password(user, current).await?;
        let hash = self.hasher.hash(password).await?;
        let audit = self.audit("password_changed", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        self.store.change_password(user.id, &hash, &Self::session_hash(session_token), &audit).await?;
        self.send(templates::password_changed(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            PasswordChange::Changed,
            &self.url("/forgot-password"),
            self.now(),
        ))
        .await;
        Ok(())
    }

    pub async fn change_pin(&self, user: &User, current: &str, pin: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let mut errors = FieldErrors::new();
        PinPolicy::check(pin, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        self.confirm_password(user, current).await?;
        let hash = self.hasher.hash(pin).await?;
        let audit = self.audit("pin_changed", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        self.store.change_pin(user.id, &hash, &audit).await?;
        self.send(templates::pin_changed(&user.designated_email, &user.company_name, &user.login_name, self.now())).await;
        Ok(())
    }

    pub async fn sessions(&self, user: &User) -> Result<Vec<Session>, AppError> {
        Ok(self.store.sessions_of_user(user.id).await?)
    }

    pub async fn revoke_session(&self, user: &User, handle: &str, ctx: &RequestContext) -> Result<(), AppError> {
        let audit = self.audit("session_revoked", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        if handle.len() > 64 || !self.store.delete_session_by_handle(user.id, handle, &audit).await? {
            return Err(AppError::not_found());
        }
        Ok(())
    }

    pub async fn revoke_other_sessions(&self, user: &User, session_token: &str, ctx: &RequestContext) -> Result<u64, AppError> {
        let audit = self.audit("other_sessions_revoked", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        let audit_for = |n: u64| AuditEntry { detail: format!("{n} session(s)"), ..audit.clone() };
        Ok(self.store.delete_other_sessions(user.id, &Self::session_hash(session_token), &audit_for).await?)
    }
}

//! Forgot password, password reset and forgot login name (C4). The two "forgot" requests answer
//! at once and do their work in the background, so neither the answer nor its timing tells
//! whether the address or login name exists.

use std::sync::Arc;

use latchkey_core::flows::email_link::{EmailLink, LinkError, LinkPurpose};
use latchkey_core::flows::password_reset::{self, offer_for, NewPasswordForm, ResetError, ResetOffer, ResetRequest};
use latchkey_core::policy::PasswordPolicy;
use latchkey_core::secret::Token;
use latchkey_core::{Email, UserState};
use latchkey_store::{ConsumeError, NewLink, User};

use super::activation::link_kind;
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates::{self, LinkEntry, LinkKind, PasswordChange};

fn reset_error(e: ResetError) -> AppError {
    match e {
        ResetError::Link(l) => AppError::from_flow(link_kind(&l), &l),
        ResetError::NotActive => AppError::from_flow(ErrorKind::Conflict, &ResetError::NotActive),
        ResetError::Invalid(fields) => AppError::validation(fields),
    }
}

impl Latchkey {
    /// Accepts the request and returns at once; the links are made and sent in the background.
    pub fn forgot_password(self: &Arc<Self>, email: Option<&str>, login_name: Option<&str>, ctx: &RequestContext) -> Result<(), AppError> {
        let request = ResetRequest::parse(email, login_name).map_err(AppError::validation)?;
        let (app, ctx) = (self.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Err(e) = app.send_reset_links(request, &ctx).await {
                tracing::error!(code = e.code, "forgot password: could not send");
            }
        });
        Ok(())
    }

    async fn send_reset_links(&self, request: ResetRequest, ctx: &RequestContext) -> Result<(), AppError> {
        let accounts: Vec<User> = match request {
            ResetRequest::ByEmail(email) => self.store.users_by_designated_email(&email).await?,
            ResetRequest::ByLoginName(name) => self.store.user_by_login_name(&name).await?.into_iter().collect(),
        };
        // Mail goes only to the addresses the accounts hold, never to what was typed: a look-alike
        // (`mi\u{212A}e@…`, a Kelvin sign) finds the same accounts but gets nothing.
        for (to, accounts) in by_stored_address(accounts) {
            self.send_reset_email(&to, &accounts, ctx).await?;
        }
        Ok(())
    }

    /// One email to `to` with a link for each of its accounts that may have one.
    async fn send_reset_email(&self, to: &str, accounts: &[User], ctx: &RequestContext) -> Result<(), AppError> {
        let now = self.now();
        let mut entries = Vec::new();
        for user in accounts {
            let (purpose, kind, path) = match offer_for(user.state) {
                ResetOffer::ResetLink => (LinkPurpose::PasswordReset, LinkKind::PasswordReset, "reset-password"),
                ResetOffer::WelcomeLink => (LinkPurpose::Welcome, LinkKind::CompleteSetup, "complete-setup"),
                ResetOffer::Nothing => continue,
            };
            let token = Token::generate();
            let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(purpose, now) };
            let audit = self.audit("password_reset_requested", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
            self.store.issue_link(user.id, &link, &audit).await?;
            entries.push(LinkEntry {
                login_name: user.login_name.clone(),
                company_name: user.company_name.clone(),
                url: self.url(&format!("/{path}/{}", token.expose())),
                kind,
            });
        }
        if !entries.is_empty() {
            self.send(templates::password_reset(to, &entries)).await;
        }
        Ok(())
    }

    pub fn forgot_login_name(self: &Arc<Self>, email: &str) -> Result<(), AppError> {
        let email = Email::parse(email).map_err(|e| AppError::field("email", e.0))?;
        let app = self.clone();
        tokio::spawn(async move {
            let accounts = match app.store.users_by_designated_email(&email).await {
                Ok(a) => a,
                Err(e) => return tracing::error!(error = %e, "forgot login name: store"),
            };
            let usable = accounts.into_iter().filter(|u| u.state != UserState::Disabled).collect();
            // To the stored addresses only, never to what was typed (see `send_reset_links`).
            for (to, accounts) in by_stored_address(usable) {
                let names: Vec<(String, String)> = accounts.into_iter().map(|u| (u.login_name, u.company_name)).collect();
                app.send(templates::forgot_login_name(&to, &names, &app.url("/sign-in"))).await;
            }
        });
        Ok(())
    }

    pub async fn open_reset(&self, token: &str) -> Result<super::LinkView, AppError> {
        let (link, user) = self.load_link(token, LinkPurpose::PasswordReset).await?;
        password_reset::open(&link.link, user.state, self.now()).map_err(reset_error)?;
        Ok(Self::link_view(user, link.link.expires_at))
    }

    /// Sets the new password, ends every session of the account, and tells the owner.
    pub async fn reset_password(&self, token: &str, form: &NewPasswordForm, ctx: &RequestContext) -> Result<User, AppError> {
        let (link, user) = self.load_link(token, LinkPurpose::PasswordReset).await?;
        let policy = PasswordPolicy::with_min_length(user.company_password_min_length as usize);
        password_reset::submit(&link.link, user.state, form, &policy, self.now()).map_err(reset_error)?;
        let password_hash = self.hasher.hash(&form.password).await?;
        let audit = self.audit("password_reset", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        let user = match self.store.reset_password(&Token::from_client(token).hash(), &password_hash, self.now(), &audit).await? {
            Ok(user) => user,
            Err(ConsumeError::LinkNotUsable) => {
                return Err(AppError::from_flow(ErrorKind::Gone, &LinkError::Used(LinkPurpose::PasswordReset)))
            }
            Err(ConsumeError::WrongAccountState) => return Err(reset_error(ResetError::NotActive)),
        };
        // A successful reset proves the account's owner is back: lift the sign-in lock.
        self.store.throttle_clear(&self.limits.sign_in_per_login.key(&user.login_name)).await?;
        self.send(templates::password_changed(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            PasswordChange::Reset,
            &self.url("/forgot-password"),
            self.now(),
        ))
        .await;
        Ok(user)
    }
}

/// Accounts grouped by their designated email's key (one mailbox, whatever the case), each group
/// with the address as its first account stores it: mail goes to a stored address, never to what
/// was typed.
fn by_stored_address(accounts: Vec<User>) -> Vec<(String, Vec<User>)> {
    let mut grouped: Vec<(String, String, Vec<User>)> = Vec::new();
    for user in accounts {
        let key = Email::key_of(&user.designated_email);
        match grouped.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, users)) => users.push(user),
            None => grouped.push((key, user.designated_email.clone(), vec![user])),
        }
    }
    grouped.into_iter().map(|(_, to, users)| (to, users)).collect()
}

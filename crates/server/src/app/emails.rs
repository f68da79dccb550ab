//! Additional emails (C1, C7): an office manager adds one (e.g. an assistant receiving a manager's
//! voicemail), a confirmation link goes to that address, and only once it is used can the address
//! sign in by SSO. The account's owner is told of every address added or removed.

use latchkey_core::flows::email_link::{EmailLink, LinkError, LinkPurpose};
use latchkey_core::secret::Token;
use latchkey_core::Email;
use latchkey_store::{AdditionalEmail, ConsumeError, NewLink, StoreError, User};
use time::OffsetDateTime;

use super::activation::link_kind;
use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

/// What the page behind a confirmation link shows.
pub struct EmailConfirmationView {
    pub email: String,
    pub login_name: String,
    pub company_name: String,
    pub expires_at: OffsetDateTime,
}

pub struct AddedEmail {
    pub email: Email,
    pub confirmation_email_sent: bool,
}

fn link_error(e: LinkError) -> AppError {
    AppError::from_flow(link_kind(&e), &e)
}

impl Latchkey {
    pub async fn additional_emails_of(&self, domain: &str, extension: &str) -> Result<Vec<AdditionalEmail>, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        Ok(self.store.additional_emails(user.id).await?)
    }

    /// Adds the address unverified and emails it a confirmation link; the owner is told.
    pub async fn add_additional_email(&self, domain: &str, extension: &str, email: &str, actor: Actor, ctx: &RequestContext) -> Result<AddedEmail, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        let email = Email::parse(email).map_err(|e| AppError::field("email", e.0))?;
        let token = Token::generate();
        let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::EmailConfirmation, self.now()) };
        let mut audit = self.audit("additional_email_added", Some(user.company_id), actor, Some(user.id), ctx);
        audit.detail = email.to_string();
        self.store.add_additional_email(user.id, &email, &link, &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => already_added(&user, &email),
            other => other.into(),
        })?;
        let url = self.url(&format!("/confirm-email/{}", token.expose()));
        let sent = self.send(templates::email_confirmation(email.as_str(), &user.company_name, &user.login_name, &url)).await;
        self.tell_owner(&user, "Email added to your account", &format!("The additional email {email} was added")).await;
        Ok(AddedEmail { email, confirmation_email_sent: sent })
    }

    /// Removes the address; a confirmation link still on its way stops working. The owner is told.
    pub async fn remove_additional_email(&self, domain: &str, extension: &str, email: &str, actor: Actor, ctx: &RequestContext) -> Result<(), AppError> {
        let user = self.user_of_company(domain, extension).await?;
        let not_found = || AppError::new(ErrorKind::NotFound, "email_not_found", format!("{} has no such additional email.", user.login_name));
        let email = Email::parse(email).map_err(|_| not_found())?;
        let mut audit = self.audit("additional_email_removed", Some(user.company_id), actor, Some(user.id), ctx);
        audit.detail = email.to_string();
        if !self.store.remove_additional_email(user.id, &email, &audit).await? {
            return Err(not_found());
        }
        self.tell_owner(&user, "Email removed from your account", &format!("The additional email {email} was removed")).await;
        Ok(())
    }

    async fn tell_owner(&self, user: &User, title: &str, change: &str) {
        self.send(templates::security_notice(&user.designated_email, &user.company_name, &user.login_name, title, change, self.now())).await;
    }

    /// Opening the link shows what it confirms and changes nothing: mail scanners open links too.
    pub async fn open_email_confirmation(&self, token: &str) -> Result<EmailConfirmationView, AppError> {
        let pending = self.pending_confirmation(token).await?;
        pending.link.check(self.now()).map_err(link_error)?;
        Ok(pending.view)
    }

    /// Confirm: consumes the link and marks the address verified in one transaction.
    pub async fn confirm_email(&self, token: &str, ctx: &RequestContext) -> Result<EmailConfirmationView, AppError> {
        let pending = self.pending_confirmation(token).await?;
        pending.link.check(self.now()).map_err(link_error)?;
        let mut audit = self.audit("additional_email_confirmed", Some(pending.company_id), Actor::User(pending.user_id), Some(pending.user_id), ctx);
        audit.detail = pending.view.email.clone();
        match self.store.confirm_additional_email(&Token::from_client(token).hash(), self.now(), &audit).await? {
            Ok(_) => Ok(pending.view),
            // Used, removed or expired between our check and our write: say what it is now.
            Err(ConsumeError::LinkNotUsable | ConsumeError::WrongAccountState) => {
                let now = self.pending_confirmation(token).await?.link.check(self.now()).err();
                Err(link_error(now.unwrap_or(LinkError::Used(LinkPurpose::EmailConfirmation))))
            }
        }
    }

    async fn pending_confirmation(&self, token: &str) -> Result<PendingConfirmation, AppError> {
        let (stored, user) = self.load_link(token, LinkPurpose::EmailConfirmation).await?;
        let email = stored.sent_to.ok_or_else(|| link_error(LinkError::NotFound))?;
        let expires_at = stored.link.expires_at;
        Ok(PendingConfirmation {
            link: stored.link,
            user_id: user.id,
            company_id: user.company_id,
            view: EmailConfirmationView { email, login_name: user.login_name, company_name: user.company_name, expires_at },
        })
    }
}

/// A confirmation link with the account it belongs to.
struct PendingConfirmation {
    view: EmailConfirmationView,
    link: EmailLink,
    user_id: i64,
    company_id: i64,
}

fn already_added(user: &User, email: &Email) -> AppError {
    AppError::field_refused("email", "email_already_added", format!("{} already has the email {email}.", user.login_name))
}

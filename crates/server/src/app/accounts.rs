//! Companies and their users (C1), and the welcome email that invites each user (C2).

use latchkey_core::flows::email_link::{EmailLink, LinkPurpose};
use latchkey_core::secret::Token;
use latchkey_core::{CompanyDomain, Email, Extension, LoginName, Role, UserState};
use latchkey_store::{Company, NewLink, NewUser, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

pub struct CreatedUser {
    pub user: User,
    /// The Complete Setup link, for the operator's CLI and the demo; never logged.
    pub complete_setup_url: String,
    pub email_sent: bool,
}

impl Latchkey {
    pub async fn create_company(&self, name: &str, domain: &str) -> Result<Company, AppError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AppError::field("name", "A company name is 1 to 100 characters."));
        }
        let domain = CompanyDomain::parse(domain).map_err(|e| AppError::field("domain", e.0))?;
        Ok(self.store.create_company(name, &domain, self.now()).await?)
    }

    pub async fn company(&self, domain: &str) -> Result<Company, AppError> {
        self.store.company_by_domain(domain).await?.ok_or_else(AppError::not_found)
    }

    /// Creates an invited user and sends the welcome email with its Complete Setup link.
    pub async fn create_user(
        &self,
        company_domain: &str,
        extension: &str,
        email: &str,
        role: Role,
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<CreatedUser, AppError> {
        let company = self.company(company_domain).await?;
        let mut errors = latchkey_core::FieldErrors::new();
        let ext = Extension::parse(extension).map_err(|e| errors.add("extension", e.0)).ok();
        let email = Email::parse(email).map_err(|e| errors.add("designated_email", e.0)).ok();
        let (Some(ext), Some(email)) = (ext, email) else {
            return Err(AppError::validation(errors));
        };
        let domain = CompanyDomain::parse(&company.domain).map_err(|_| AppError::internal())?;
        let now = self.now();
        let new = NewUser {
            company_id: company.id,
            login_name: LoginName::new(&ext, &domain),
            extension: ext,
            designated_email: email,
            role,
            created_at: now,
        };
        let token = Token::generate();
        let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::Welcome, now) };
        let audit = self.audit("user_created", Some(company.id), actor, None, ctx);
        let user = self.store.create_user(&new, &link, &audit).await.map_err(|e| match e {
            latchkey_store::StoreError::Conflict(_) => {
                AppError::new(ErrorKind::Conflict, "extension_taken", format!("Extension {} is already taken in this company.", new.extension))
            }
            other => other.into(),
        })?;
        let (complete_setup_url, email_sent) = self.send_welcome(&user, &token).await;
        Ok(CreatedUser { user, complete_setup_url, email_sent })
    }

    /// The account with that extension in the company; 404 for either unknown.
    pub async fn user_of_company(&self, company_domain: &str, extension: &str) -> Result<User, AppError> {
        let company = self.company(company_domain).await?;
        let ext = Extension::parse(extension).map_err(|_| AppError::not_found())?;
        let domain = CompanyDomain::parse(&company.domain).map_err(|_| AppError::internal())?;
        self.store.user_by_login_name(&LoginName::new(&ext, &domain)).await?.ok_or_else(AppError::not_found)
    }

    /// A new welcome email; the old link stops working.
    pub async fn resend_welcome(&self, company_domain: &str, extension: &str, actor: Actor, ctx: &RequestContext) -> Result<CreatedUser, AppError> {
        let user = self.user_of_company(company_domain, extension).await?;
        if user.state != UserState::Invited {
            return Err(AppError::new(
                ErrorKind::Conflict,
                "already_activated",
                "This account is already set up; the user can use Forgot Password instead.",
            ));
        }
        let token = Token::generate();
        let now = self.now();
        let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::Welcome, now) };
        self.store.issue_link(user.id, &link, &self.audit("welcome_resent", Some(user.company_id), actor, Some(user.id), ctx)).await?;
        let (complete_setup_url, email_sent) = self.send_welcome(&user, &token).await;
        Ok(CreatedUser { user, complete_setup_url, email_sent })
    }

    pub(super) async fn send_welcome(&self, user: &User, token: &Token) -> (String, bool) {
        let url = self.url(&format!("/complete-setup/{}", token.expose()));
        let email = templates::welcome(&user.designated_email, &user.company_name, &user.login_name, &url);
        let sent = self.send(email).await;
        (url, sent)
    }
}

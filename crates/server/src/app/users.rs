//! The office manager's users (C8): the list, with what each account signs in with, and the
//! changes an office manager makes to one account: disable, enable, a new designated email.

use latchkey_core::flows::sso::Provider;
use latchkey_core::two_factor::Method;
use latchkey_core::{Email, FieldErrors, UserState};
use latchkey_store::{AdditionalEmail, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

/// One account as the users list shows it.
pub struct UserSummary {
    pub user: User,
    /// In the order the seeds list them.
    pub methods: Vec<Method>,
    /// The providers linked to the account, by name.
    pub sso_providers: Vec<Provider>,
    pub additional_emails: Vec<AdditionalEmail>,
}

pub struct UserPage {
    pub users: Vec<UserSummary>,
    /// More accounts match after this page.
    pub more: bool,
}

/// What the list asks for: part of an extension, login name or email, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSearch {
    pub text: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl UserSearch {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 200;
    /// As long as the longest email: nothing longer can match.
    const MAX_TEXT: usize = 254;

    /// From the query string as sent; every broken rule at once, per field (`q`, `limit`, `offset`).
    pub fn parse(q: Option<&str>, limit: Option<&str>, offset: Option<&str>) -> Result<Self, AppError> {
        let mut errors = FieldErrors::new();
        let text = q.map(str::trim).filter(|t| !t.is_empty());
        if text.is_some_and(|t| t.chars().count() > Self::MAX_TEXT || t.chars().any(char::is_control)) {
            errors.add("q", "Search for part of an extension, login name or email (at most 254 characters).");
        }
        let limit = number(limit, Self::DEFAULT_LIMIT).filter(|n| (1..=Self::MAX_LIMIT).contains(n));
        if limit.is_none() {
            errors.add("limit", format!("The page size is a whole number from 1 to {}.", Self::MAX_LIMIT));
        }
        let offset = number(offset, 0).filter(|n| *n >= 0);
        if offset.is_none() {
            errors.add("offset", "The offset is a whole number, 0 or more.");
        }
        match (limit, offset) {
            (Some(limit), Some(offset)) if errors.is_empty() => Ok(Self { text: text.map(str::to_owned), limit, offset }),
            _ => Err(AppError::validation(errors)),
        }
    }
}

/// An absent or empty parameter takes its default; anything else must be a whole number.
fn number(raw: Option<&str>, default: i64) -> Option<i64> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Some(default),
        Some(s) => s.parse().ok(),
    }
}

/// The outcome of a new designated email.
pub struct DesignatedEmailChange {
    pub user: User,
    /// For an account not set up yet: whether its new welcome email went out.
    pub welcome_email_sent: Option<bool>,
}

fn conflict(code: &'static str, message: String) -> AppError {
    AppError::new(ErrorKind::Conflict, code, message)
}

fn of<T>(rows: &[(i64, T)], user_id: i64) -> impl Iterator<Item = &T> {
    rows.iter().filter(move |(id, _)| *id == user_id).map(|(_, v)| v)
}

impl Latchkey {
    /// A page of the company's users in extension order, each with its methods, SSO providers
    /// and additional emails.
    pub async fn company_users(&self, domain: &str, search: &UserSearch) -> Result<UserPage, AppError> {
        let company = self.company(domain).await?;
        // One more than asked tells whether another page follows.
        let mut users = self.store.company_users(company.id, search.text.as_deref(), search.limit + 1, search.offset).await?;
        let more = users.len() as i64 > search.limit;
        users.truncate(usize::try_from(search.limit).unwrap_or_default());
        Ok(UserPage { users: self.summaries(company.id, users).await?, more })
    }

    pub async fn user_summary(&self, domain: &str, extension: &str) -> Result<UserSummary, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        let company_id = user.company_id;
        self.summaries(company_id, vec![user]).await?.pop().ok_or_else(AppError::internal)
    }

    /// What the list shows beside the accounts: three queries for the whole page, not three each.
    async fn summaries(&self, company_id: i64, users: Vec<User>) -> Result<Vec<UserSummary>, AppError> {
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let methods = self.store.methods_of_users(company_id, &ids).await?;
        let providers = self.store.sso_providers_of_users(company_id, &ids).await?;
        let emails = self.store.additional_emails_of_users(company_id, &ids).await?;
        let summary = |user: User| {
            let enabled: Vec<&Method> = of(&methods, user.id).collect();
            UserSummary {
                methods: Method::ALL.into_iter().filter(|m| enabled.contains(&m)).collect(),
                sso_providers: of(&providers, user.id).copied().collect(),
                additional_emails: of(&emails, user.id).cloned().collect(),
                user,
            }
        };
        Ok(users.into_iter().map(summary).collect())
    }

    /// Disables the account: its sessions end at once, and sign-in, reset links and SSO refuse it.
    /// Office managers cannot disable themselves: nobody could undo it from their console.
    pub async fn disable_user(&self, domain: &str, extension: &str, actor: Actor, ctx: &RequestContext) -> Result<User, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        if actor == Actor::User(user.id) {
            return Err(conflict("cannot_disable_yourself", "You cannot disable your own account. Ask another office manager.".into()));
        }
        if user.state == UserState::Disabled {
            return Err(conflict("already_disabled", format!("{} is already disabled.", user.login_name)));
        }
        self.set_state(&user, UserState::Disabled, "user_disabled", actor, ctx).await
    }

    /// Back to what the account was: active once it was set up, else invited (its welcome link,
    /// if still valid, works again).
    pub async fn enable_user(&self, domain: &str, extension: &str, actor: Actor, ctx: &RequestContext) -> Result<User, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        if user.state != UserState::Disabled {
            return Err(conflict("not_disabled", format!("{} is not disabled.", user.login_name)));
        }
        let state = if user.activated_at.is_some() { UserState::Active } else { UserState::Invited };
        self.set_state(&user, state, "user_enabled", actor, ctx).await
    }

    async fn set_state(&self, user: &User, state: UserState, kind: &'static str, actor: Actor, ctx: &RequestContext) -> Result<User, AppError> {
        let audit = self.audit(kind, Some(user.company_id), actor, Some(user.id), ctx);
        self.store.set_user_state(user.id, state, &audit).await?;
        self.store.user_by_id(user.id).await?.ok_or_else(AppError::not_found)
    }

    /// A new designated email, unverified until proven. The welcome and reset links sent to the old
    /// address die; the old address is told (the new one masked), the new one gets a short notice,
    /// and an account not set up yet gets its welcome email again, at the new address.
    pub async fn change_designated_email(
        &self,
        domain: &str,
        extension: &str,
        email: &str,
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<DesignatedEmailChange, AppError> {
        let user = self.user_of_company(domain, extension).await?;
        let email = Email::parse(email).map_err(|e| AppError::field("email", e.0))?;
        self.refuse_own_address(&user, &email).await?;
        let mut audit = self.audit("designated_email_changed", Some(user.company_id), actor, Some(user.id), ctx);
        audit.detail = format!("{} to {email}", user.designated_email);
        self.store.change_designated_email(user.id, &email, &audit).await?;
        self.tell_old_and_new_address(&user, &email).await;
        let welcome_email_sent = match user.state {
            UserState::Invited => Some(self.resend_welcome(domain, extension, actor, ctx).await?.email_sent),
            UserState::Active | UserState::Disabled => None,
        };
        let user = self.store.user_by_id(user.id).await?.ok_or_else(AppError::not_found)?;
        Ok(DesignatedEmailChange { user, welcome_email_sent })
    }

    /// The address must be new to the account: the same one changes nothing, and one of its
    /// additional emails would then be there twice.
    async fn refuse_own_address(&self, user: &User, email: &Email) -> Result<(), AppError> {
        if email.key() == user.designated_email.to_lowercase() {
            return Err(AppError::field_refused("email", "same_email", format!("{email} is already the designated email of {}.", user.login_name)));
        }
        let additional = self.store.additional_emails(user.id).await?;
        if additional.iter().any(|a| a.email.to_lowercase() == email.key()) {
            return Err(AppError::field_refused(
                "email",
                "email_is_additional",
                format!("{email} is an additional email of {}: remove it there first.", user.login_name),
            ));
        }
        Ok(())
    }

    async fn tell_old_and_new_address(&self, user: &User, new: &Email) {
        let (company, login) = (&user.company_name, &user.login_name);
        let change = format!("The designated email was changed from this address to {}", new.masked());
        self.send(templates::security_notice(&user.designated_email, company, login, "Your designated email was changed", &change, self.now())).await;
        let notice = "This address was made the designated email";
        self.send(templates::security_notice(new.as_str(), company, login, "This is now your designated email", notice, self.now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_checked_field_by_field() {
        let all = UserSearch::parse(None, None, None).unwrap();
        assert_eq!(all, UserSearch { text: None, limit: UserSearch::DEFAULT_LIMIT, offset: 0 });
        let some = UserSearch::parse(Some("  Front@ "), Some("10"), Some("20")).unwrap();
        assert_eq!(some, UserSearch { text: Some("Front@".into()), limit: 10, offset: 20 });
        assert_eq!(UserSearch::parse(Some(" "), Some(""), Some("")).unwrap(), all);
        let bad = UserSearch::parse(Some(&"x".repeat(255)), Some("0"), Some("-1")).unwrap_err();
        assert_eq!(bad.kind, ErrorKind::Invalid);
        for field in ["q", "limit", "offset"] {
            assert_eq!(bad.fields.get(field).len(), 1, "{field}");
        }
        assert!(UserSearch::parse(None, Some("201"), None).is_err());
        assert!(UserSearch::parse(None, Some("ten"), None).is_err());
        assert!(UserSearch::parse(Some("a\u{0}b"), None, None).is_err());
    }
}

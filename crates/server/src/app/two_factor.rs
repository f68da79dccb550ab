//! Two-factor authentication (C6): the company's rules as the flows read them, the operator's
//! pilot switch and the office manager's reset. The flows themselves: `second_factor` (the
//! sign-in's step), `enrolment` (setting up methods), `account_security` (changing them).

use latchkey_core::flows::sign_in::{requirement, CompanyTwoFactor, SecondFactorRequirement};
use latchkey_core::two_factor::Method;
use latchkey_store::{AccountOverview, TwoFactorPolicy, User};

use super::{Actor, AppError, Latchkey, RequestContext};
use crate::mail::templates;

fn company_rules(policy: &TwoFactorPolicy) -> CompanyTwoFactor {
    CompanyTwoFactor {
        feature_enabled: policy.enabled,
        mode: policy.mode,
        allowed: policy.allowed_methods.clone(),
        default_method: policy.default_method,
        default_locked: policy.default_method_locked,
    }
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

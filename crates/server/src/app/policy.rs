//! The company's security policy (C3's tightening, C6): the office manager's two-factor rules and
//! the minimum password length, checked whole and written in one transaction with its audit entry.

use latchkey_core::policy::PasswordPolicy;
use latchkey_core::two_factor::{Method, TwoFactorMode};
use latchkey_store::TwoFactorPolicy;

use super::{Actor, AppError, Latchkey, RequestContext};

impl Latchkey {
    /// The office manager's two-factor rules: mode, allowed methods, a default method and its lock.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_two_factor_policy(
        &self,
        domain: &str,
        mode: TwoFactorMode,
        allowed: &[Method],
        default_method: Option<Method>,
        default_locked: bool,
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<TwoFactorPolicy, AppError> {
        let rules = SecurityRules { mode, allowed: allowed.to_vec(), default_method, default_locked, password_min_length: None };
        self.set_security_policy(domain, &rules, actor, ctx).await
    }

    /// The office manager's password rule alone; the two-factor rules stay as they are.
    pub async fn set_password_min_length(&self, domain: &str, min_length: i64, actor: Actor, ctx: &RequestContext) -> Result<TwoFactorPolicy, AppError> {
        let company = self.company(domain).await?;
        let current = self.store.two_factor_policy(company.id).await?;
        let rules = SecurityRules {
            mode: current.mode,
            allowed: current.allowed_methods,
            default_method: current.default_method,
            default_locked: current.default_method_locked,
            password_min_length: Some(min_length),
        };
        self.set_security_policy(domain, &rules, actor, ctx).await
    }

    /// The company's security policy, checked whole and written in one transaction with its
    /// `policy_changed` audit entry (which records the new rules).
    pub async fn set_security_policy(&self, domain: &str, rules: &SecurityRules, actor: Actor, ctx: &RequestContext) -> Result<TwoFactorPolicy, AppError> {
        let company = self.company(domain).await?;
        let errors = rules.violations();
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        let mut policy = self.store.two_factor_policy(company.id).await?;
        policy.mode = rules.mode;
        policy.allowed_methods = Method::ALL.into_iter().filter(|m| rules.allowed.contains(m)).collect();
        policy.default_method = rules.default_method;
        policy.default_method_locked = rules.default_locked;
        if let Some(n) = rules.password_min_length {
            policy.password_min_length = n;
        }
        let mut audit = self.audit("policy_changed", Some(company.id), actor, None, ctx);
        audit.detail = format!(
            "two_factor={} allowed={} default={} locked={} password_min_length={}",
            policy.mode,
            policy.allowed_methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
            policy.default_method.map_or("-", Method::as_str),
            policy.default_method_locked,
            policy.password_min_length
        );
        self.store.set_two_factor_policy(company.id, &policy, &audit).await?;
        Ok(policy)
    }
}

/// What an office manager sets on the security policy page (or `PUT …/policy`).
#[derive(Debug, Clone)]
pub struct SecurityRules {
    pub mode: TwoFactorMode,
    pub allowed: Vec<Method>,
    pub default_method: Option<Method>,
    pub default_locked: bool,
    /// `None` keeps the company's current minimum.
    pub password_min_length: Option<i64>,
}

impl SecurityRules {
    /// Every rule broken, by field.
    pub fn violations(&self) -> latchkey_core::FieldErrors {
        let mut errors = latchkey_core::FieldErrors::new();
        if self.allowed.is_empty() && self.mode != TwoFactorMode::Off {
            errors.add("allowed_methods", "Allow at least one method.");
        }
        if let Some(d) = self.default_method {
            if !self.allowed.contains(&d) {
                errors.add("default_method", "The default method must be one of the allowed methods.");
            }
        } else if self.default_locked {
            errors.add("default_method_locked", "Choose a default method to lock.");
        }
        if let Some(n) = self.password_min_length {
            let (lo, hi) = (PasswordPolicy::SEED_MIN_LENGTH as i64, PasswordPolicy::MAX_COMPANY_MIN_LENGTH as i64);
            if !(lo..=hi).contains(&n) {
                errors.add("password_min_length", format!("A minimum password length is {lo} to {hi} characters."));
            }
        }
        errors
    }
}

//! The office manager's side of single sign-on (C7, C8): which providers' own MFA counts in place
//! of Latchkey's second factor, and the email association review. Turning SSO and its providers on
//! stays the operator's (`latchkey company enable --feature sso`).

use latchkey_core::email_review::{self, Finding};
use latchkey_core::flows::sso::Provider;
use latchkey_store::SsoSettings;

use super::{Actor, AppError, Latchkey, RequestContext};

pub struct EmailReview {
    /// With SSO off nothing signs in by email yet: the findings are risks for the day it is on.
    pub sso_enabled: bool,
    pub findings: Vec<Finding>,
}

impl Latchkey {
    pub async fn sso_settings_of(&self, domain: &str) -> Result<SsoSettings, AppError> {
        let company = self.company(domain).await?;
        Ok(self.store.sso_settings(company.id).await?)
    }

    /// Sets the providers whose own MFA is enough after SSO; each must be one the operator enabled
    /// for the company. Audited as `sso_policy_changed`.
    pub async fn set_sso_mfa_sufficient(&self, domain: &str, providers: &[String], actor: Actor, ctx: &RequestContext) -> Result<SsoSettings, AppError> {
        let company = self.company(domain).await?;
        let mut settings = self.store.sso_settings(company.id).await?;
        settings.mfa_sufficient = mfa_sufficient_within(&settings, providers)?;
        let mut audit = self.audit("sso_policy_changed", Some(company.id), actor, None, ctx);
        audit.detail = format!("mfa_sufficient={}", super::sso::names(&settings.mfa_sufficient));
        self.store.set_sso_settings(company.id, &settings, &audit).await?;
        Ok(settings)
    }

    pub async fn email_review(&self, domain: &str) -> Result<EmailReview, AppError> {
        let company = self.company(domain).await?;
        let settings = self.store.sso_settings(company.id).await?;
        let rows = self.store.company_emails(company.id).await?;
        Ok(EmailReview { sso_enabled: settings.enabled && !settings.providers.is_empty(), findings: email_review::review(&rows) })
    }
}

/// The requested providers, sorted and once each, when every one is enabled for the company.
fn mfa_sufficient_within(settings: &SsoSettings, requested: &[String]) -> Result<Vec<Provider>, AppError> {
    let mut chosen: Vec<Provider> = Vec::new();
    for name in requested {
        let provider = Provider::parse(name.trim()).ok_or_else(|| {
            AppError::field_refused("mfa_sufficient", "unknown_provider", format!("{name:?} is not a provider: use google or microsoft."))
        })?;
        if !settings.allows(provider) {
            return Err(AppError::field_refused(
                "mfa_sufficient",
                "provider_not_enabled",
                format!("Sign-in with {} is not enabled for this company; the operator enables providers.", provider.label()),
            ));
        }
        chosen.push(provider);
    }
    chosen.sort_by_key(|p| p.as_str());
    chosen.dedup();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: bool, providers: &[Provider]) -> SsoSettings {
        SsoSettings { enabled, providers: providers.to_vec(), mfa_sufficient: vec![] }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn mfa_sufficient_is_a_subset_of_the_enabled_providers() {
        let both = settings(true, &[Provider::Google, Provider::Microsoft]);
        assert_eq!(mfa_sufficient_within(&both, &names(&["microsoft", "google", "google"])).unwrap(), [Provider::Google, Provider::Microsoft]);
        assert_eq!(mfa_sufficient_within(&both, &[]).unwrap(), Vec::<Provider>::new());
        let google = settings(true, &[Provider::Google]);
        let refused = mfa_sufficient_within(&google, &names(&["microsoft"])).unwrap_err();
        assert_eq!(refused.kind, crate::app::ErrorKind::Invalid);
        assert!(refused.fields.get("mfa_sufficient")[0].contains("Office 365"), "{:?}", refused.fields);
        assert!(mfa_sufficient_within(&google, &names(&["okta"])).is_err());
        assert!(mfa_sufficient_within(&settings(false, &[Provider::Google]), &names(&["google"])).is_err(), "the pilot is off");
    }
}

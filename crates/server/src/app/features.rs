//! The operator's pilot switches of a company, read and set together for the operator API:
//! two-factor authentication, and single sign-on with the providers it offers.

use latchkey_core::flows::sso::Provider;
use latchkey_store::Company;

use super::{Actor, AppError, Latchkey, RequestContext};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilotFeatures {
    pub two_factor: bool,
    pub sso_enabled: bool,
    /// Sorted by name, once each.
    pub sso_providers: Vec<Provider>,
}

impl Latchkey {
    pub async fn pilot_features(&self, company: &Company) -> Result<PilotFeatures, AppError> {
        let two_factor = self.store.two_factor_policy(company.id).await?.enabled;
        let sso = self.store.sso_settings(company.id).await?;
        Ok(PilotFeatures { two_factor, sso_enabled: sso.enabled, sso_providers: sso.providers })
    }

    /// Sets both switches as asked. Every provider is checked before anything is written; each
    /// switch that changes is written with its own audit entry, one that stays is not touched.
    pub async fn set_pilot_features(
        &self,
        domain: &str,
        two_factor: bool,
        sso_enabled: bool,
        providers: &[String],
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<PilotFeatures, AppError> {
        let providers = known_providers(providers)?;
        let company = self.company(domain).await?;
        let mut now = self.pilot_features(&company).await?;
        if now.two_factor != two_factor {
            self.set_two_factor_feature(&company.domain, two_factor, actor, ctx).await?;
            now.two_factor = two_factor;
        }
        let mut wanted = providers.clone();
        wanted.sort_by_key(|p| p.as_str());
        wanted.dedup();
        if now.sso_enabled != sso_enabled || now.sso_providers != wanted {
            let settings = self.replace_sso_feature(&company.domain, sso_enabled, &providers, actor, ctx).await?;
            (now.sso_enabled, now.sso_providers) = (settings.enabled, settings.providers);
        }
        Ok(now)
    }
}

fn known_providers(names: &[String]) -> Result<Vec<Provider>, AppError> {
    names
        .iter()
        .map(|name| {
            Provider::parse(name.trim()).ok_or_else(|| {
                AppError::field_refused("sso.providers", "unknown_provider", format!("{name:?} is not a provider: use google or microsoft."))
            })
        })
        .collect()
}

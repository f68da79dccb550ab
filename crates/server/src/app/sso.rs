//! Single sign-on with Google and Microsoft 365 (C7). This part: the operator's pilot switch and
//! the providers a company enabled. The relying party (discovery, the code flow with PKCE, ID
//! token checks) and the account resolution of `latchkey_core::flows::sso` build on it.

use latchkey_core::flows::sso::Provider;
use latchkey_store::SsoSettings;

use super::{Actor, Latchkey, RequestContext};
use crate::error::ApiError;

impl Latchkey {
    /// The operator's pilot switch for SSO, per company and per provider. Turning it on with no
    /// provider named enables both; turning it off with providers named removes just those.
    pub async fn set_sso_feature(&self, domain: &str, enabled: bool, providers: &[Provider], actor: Actor, ctx: &RequestContext) -> Result<SsoSettings, ApiError> {
        let company = self.company(domain).await?;
        let mut settings = self.store.sso_settings(company.id).await?;
        let named: Vec<String> = if providers.is_empty() { Provider::ALL.iter() } else { providers.iter() }.map(|p| p.as_str().to_owned()).collect();
        if enabled {
            settings.enabled = true;
            for p in named {
                if !settings.providers.contains(&p) {
                    settings.providers.push(p);
                }
            }
        } else if providers.is_empty() {
            settings.enabled = false;
        } else {
            settings.providers.retain(|p| !named.contains(p));
            settings.mfa_sufficient.retain(|p| !named.contains(p));
        }
        settings.providers.sort();
        let mut audit = self.audit("sso_feature_changed", Some(company.id), actor, None, ctx);
        audit.detail = format!("enabled={} providers={}", settings.enabled, settings.providers.join(","));
        self.store.set_sso_settings(company.id, &settings, &audit).await?;
        Ok(settings)
    }
}

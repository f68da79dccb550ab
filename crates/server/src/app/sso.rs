//! Single sign-on with Google and Microsoft 365 (C7). This part: the operator's pilot switch and
//! the providers a company enabled. The relying party (discovery, the code flow with PKCE, ID
//! token checks) and the account resolution of `latchkey_core::flows::sso` build on it.

use latchkey_core::flows::sso::Provider;
use latchkey_store::{SsoLink, SsoSettings, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};
use crate::mail::templates;

impl Latchkey {
    /// The operator's pilot switch for SSO, per company and per provider. Turning it on with no
    /// provider named enables both; turning it off with providers named removes just those.
    pub async fn set_sso_feature(&self, domain: &str, enabled: bool, providers: &[Provider], actor: Actor, ctx: &RequestContext) -> Result<SsoSettings, AppError> {
        let company = self.company(domain).await?;
        let mut settings = self.store.sso_settings(company.id).await?;
        let named: Vec<Provider> = if providers.is_empty() { Provider::ALL.to_vec() } else { providers.to_vec() };
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
        self.save_sso_feature(company.id, settings, actor, ctx).await
    }

    /// The pilot switch set as a whole (the API's PUT): on or off, with exactly `providers`. The
    /// office manager's MFA-after-SSO choice keeps only providers still offered.
    pub async fn replace_sso_feature(&self, domain: &str, enabled: bool, providers: &[Provider], actor: Actor, ctx: &RequestContext) -> Result<SsoSettings, AppError> {
        let company = self.company(domain).await?;
        let mut settings = self.store.sso_settings(company.id).await?;
        settings.enabled = enabled;
        settings.providers = providers.to_vec();
        settings.mfa_sufficient.retain(|p| settings.providers.contains(p));
        self.save_sso_feature(company.id, settings, actor, ctx).await
    }

    async fn save_sso_feature(&self, company_id: i64, mut settings: SsoSettings, actor: Actor, ctx: &RequestContext) -> Result<SsoSettings, AppError> {
        settings.providers.sort_by_key(|p| p.as_str());
        settings.providers.dedup();
        let mut audit = self.audit("sso_feature_changed", Some(company_id), actor, None, ctx);
        audit.detail = format!("enabled={} providers={}", settings.enabled, names(&settings.providers));
        self.store.set_sso_settings(company_id, &settings, &audit).await?;
        Ok(settings)
    }
}

/// Providers as the audit log spells a list of them: `google,microsoft`.
pub(super) fn names(providers: &[Provider]) -> String {
    providers.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

impl Latchkey {
    /// The identities linked to the user's account (Account Security).
    pub async fn sso_links(&self, user: &User) -> Result<Vec<SsoLink>, AppError> {
        Ok(self.store.sso_links_of_user(user.id).await?)
    }

    /// "Remove": the identity no longer signs in to this account (it can be linked again any
    /// time). Audited, and the user is told.
    pub async fn remove_sso_link(&self, user: &User, link_id: i64, ctx: &RequestContext) -> Result<(), AppError> {
        let link = self.store.sso_links_of_user(user.id).await?.into_iter().find(|l| l.id == link_id);
        let Some(link) = link else {
            return Err(AppError::new(ErrorKind::NotFound, "link_not_found", "There is no such linked sign-in on your account."));
        };
        let provider = link.provider.label();
        let mut audit = self.audit("sso_unlinked", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = format!("{} {}", link.provider.as_str(), link.email.as_deref().unwrap_or(""));
        if !self.store.remove_sso_link(user.id, link_id, &audit).await? {
            return Err(AppError::new(ErrorKind::NotFound, "link_not_found", "There is no such linked sign-in on your account."));
        }
        let who = link.email.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Single sign-on link removed",
            &format!("Sign-in with {provider}{who} was unlinked"),
            self.now(),
        ))
        .await;
        Ok(())
    }
}

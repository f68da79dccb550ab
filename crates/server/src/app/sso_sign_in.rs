//! Signing in with Google or Microsoft 365 (C7): the trip to the provider and back, then the
//! account the identity leads to (`latchkey_core::flows::sso::resolve`).
//!
//! ```text
//!  start ──▶ provider ──▶ callback ─┬─ one account ─────────────▶ the company's 2FA rule ──▶ session
//!                                   ├─ several accounts ──▶ chooser ──(an offered account)──┘
//!                                   └─ none ──────────────▶ link: login name + password
//!                                          (+ second factor) ──▶ link stored ──▶ session
//! ```
//!
//! The trip's state and the waiting identity are bound to the browser that started it (a cookie
//! only this site reads) and used once; the PKCE verifier is sealed at rest like a TOTP seed.

use latchkey_core::flows::sign_in::after_sso;
use latchkey_core::flows::sso::{choice_allowed, resolve, Candidate, Provider, ProviderIdentity, SsoOutcome};
use latchkey_core::seal::Sealed;
use latchkey_core::secret::{Token, TokenHash};
use latchkey_store::{AuditEntry, PendingSso, SsoAttempt, User};

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext, SignInOutcome, SignedIn};
use crate::mail::templates;
use crate::oidc::{OidcError, RelyingParty};

/// What the provider sent back to the callback.
#[derive(Debug, Default, Clone)]
pub struct ProviderAnswer {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// An identity waiting at the account chooser or the link page.
#[derive(Debug, Clone)]
pub struct WaitingIdentity {
    /// Names the waiting identity in the next request (only its hash is stored).
    pub token: String,
    pub provider: Provider,
    pub email: Option<String>,
    /// The accounts offered on the chooser; empty on the link page.
    pub candidates: Vec<Candidate>,
    pub preselected: Option<i64>,
}

/// Where the callback leads. Made once per sign-in and matched at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum SsoStep {
    SignIn(SignInOutcome),
    Choose(WaitingIdentity),
    Link(WaitingIdentity),
}

fn sso_error(kind: ErrorKind, code: &'static str, message: &str) -> AppError {
    AppError::new(kind, code, message)
}

fn bad_state() -> AppError {
    sso_error(ErrorKind::Malformed, "sso_state_invalid", "This sign-in link is not valid in this browser or was already used. Start again.")
}

fn expired() -> AppError {
    sso_error(ErrorKind::Malformed, "sso_expired", "This single sign-on has expired or was already finished. Start again.")
}

fn unavailable() -> AppError {
    sso_error(ErrorKind::Unavailable { retry_after: None }, "sso_unavailable", "The sign-in provider cannot be reached right now. Sign in with your password instead.")
}

fn hash(value: &str) -> TokenHash {
    Token::from_client(value).hash()
}

/// The sealed verifier is bound to its attempt: it cannot be moved to another row.
fn verifier_ad(state_hash: &str) -> Vec<u8> {
    format!("sso-pkce:{state_hash}").into_bytes()
}

impl Latchkey {
    fn relying_party(&self, provider: &str) -> Result<(&RelyingParty, Provider), AppError> {
        let found = Provider::parse(provider).and_then(|p| self.relying_parties.get(p).map(|rp| (rp.as_ref(), p)));
        found.ok_or_else(|| sso_error(ErrorKind::NotFound, "sso_not_offered", "Sign-in with this provider is not offered here."))
    }

    /// The providers the sign-in page offers.
    pub fn sso_providers(&self) -> Vec<Provider> {
        self.relying_parties.providers()
    }

    /// Starts a trip to the provider for the browser holding `browser`; returns where to send it.
    pub async fn sso_start(&self, provider: &str, browser: &str) -> Result<String, AppError> {
        let (party, provider) = self.relying_party(provider)?;
        let request = party.authorize().await.map_err(|e| self.provider_failed(provider, &e))?;
        let state_hash = hash(&request.state);
        let sealed = self.keyring.seal(request.pkce_verifier.as_bytes(), &verifier_ad(state_hash.as_str())).map_err(|_| AppError::internal())?;
        let now = self.now();
        let attempt = SsoAttempt {
            state_hash: state_hash.as_str().to_owned(),
            provider,
            browser_hash: hash(browser).as_str().to_owned(),
            nonce: request.nonce,
            pkce_verifier: format!("{}:{}", sealed.key_id, sealed.blob),
            created_at: now,
            expires_at: now + time::Duration::minutes(self.config.sso.attempt_minutes),
        };
        self.store.begin_sso_attempt(&attempt).await?;
        Ok(request.url)
    }

    /// The provider sent the browser back: check everything, then find the account.
    pub async fn sso_callback(&self, provider: &str, answer: ProviderAnswer, browser: &str, ctx: &RequestContext) -> Result<SsoStep, AppError> {
        let (party, provider) = self.relying_party(provider)?;
        let state = answer.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 512).ok_or_else(bad_state)?;
        let now = self.now();
        // Taken (used up) before anything else: a replayed or second callback finds nothing.
        let attempt = self.store.take_sso_attempt(hash(state).as_str(), hash(browser).as_str(), now).await?;
        let attempt = attempt.filter(|a| a.provider == provider).ok_or_else(bad_state)?;
        if let Some(error) = answer.error {
            tracing::info!(provider = provider.as_str(), error = %error.chars().take(64).collect::<String>(), "the provider refused the sign-in");
            return Err(sso_error(ErrorKind::Malformed, "sso_denied", &format!("{} did not sign you in. You can try again or sign in with your password.", provider.label())));
        }
        let code = answer.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096).ok_or_else(bad_state)?;
        let verifier = self.open_verifier(&attempt)?;
        let identity = party.finish(code, verifier, &attempt.nonce, now).await.map_err(|e| self.provider_failed(provider, &e))?;
        self.sso_resolve(party, identity, browser, ctx).await
    }

    fn open_verifier(&self, attempt: &SsoAttempt) -> Result<String, AppError> {
        let (key_id, blob) = attempt.pkce_verifier.split_once(':').ok_or_else(AppError::internal)?;
        let sealed = Sealed { key_id: key_id.to_owned(), blob: blob.to_owned() };
        let bytes = self.keyring.open(&sealed, &verifier_ad(&attempt.state_hash)).map_err(|e| {
            tracing::error!(error = %e, "an SSO attempt's verifier could not be opened");
            AppError::internal()
        })?;
        String::from_utf8(bytes).map_err(|_| AppError::internal())
    }

    fn provider_failed(&self, provider: Provider, e: &OidcError) -> AppError {
        metrics::counter!("latchkey_sso_failures_total", "provider" => provider.as_str(), "kind" => match e {
            OidcError::Unavailable(_) => "unavailable",
            OidcError::Refused(_) => "refused",
        })
        .increment(1);
        tracing::warn!(provider = provider.as_str(), error = %e, "single sign-on failed");
        match e {
            OidcError::Unavailable(_) => unavailable(),
            OidcError::Refused(_) => sso_error(
                ErrorKind::Unauthorized,
                "sso_refused",
                &format!("The answer from {} could not be verified, so you were not signed in. Start again.", provider.label()),
            ),
        }
    }

    /// The accounts an identity may sign in to, per C7: its links, else its trusted email.
    async fn sso_outcome(&self, provider: Provider, subject: &str, trusted_email: Option<&str>) -> Result<SsoOutcome, AppError> {
        let linked = self.store.users_linked_to(provider, subject).await?;
        let matched = match trusted_email {
            Some(email) if linked.is_empty() => self.store.users_with_verified_email(provider, email).await?,
            _ => Vec::new(),
        };
        let remembered = self.store.sso_choice(provider, subject).await?;
        Ok(resolve(candidates(linked), candidates(matched), remembered))
    }

    async fn sso_resolve(&self, party: &RelyingParty, identity: ProviderIdentity, browser: &str, ctx: &RequestContext) -> Result<SsoStep, AppError> {
        let trusted_email = identity.trusted_email(&party.trusted_tenants());
        let outcome = self.sso_outcome(identity.provider, &identity.subject, trusted_email.as_deref()).await?;
        if let SsoOutcome::SignIn { user_id } = outcome {
            let user = self.store.user_by_id(user_id).await?.ok_or_else(AppError::internal)?;
            return Ok(SsoStep::SignIn(self.sso_sign_in(user, identity.provider, &identity.subject, ctx).await?));
        }
        let token = Token::generate();
        let now = self.now();
        self.store
            .create_pending_sso(&PendingSso {
                id_hash: token.hash().as_str().to_owned(),
                provider: identity.provider,
                subject: identity.subject.clone(),
                email: identity.email.clone(),
                trusted_email,
                browser_hash: hash(browser).as_str().to_owned(),
                created_at: now,
                expires_at: now + time::Duration::minutes(self.config.sso.attempt_minutes),
            })
            .await?;
        let waiting = WaitingIdentity { token: token.expose().to_owned(), provider: identity.provider, email: identity.email, candidates: Vec::new(), preselected: None };
        Ok(match outcome {
            SsoOutcome::Choose { candidates, preselected } => SsoStep::Choose(WaitingIdentity { candidates, preselected, ..waiting }),
            _ => SsoStep::Link(waiting),
        })
    }

    /// An identity that resolved to `user`: the company's second-factor rule, unless the office
    /// manager counts that provider's MFA as enough.
    async fn sso_sign_in(&self, user: User, provider: Provider, subject: &str, ctx: &RequestContext) -> Result<SignInOutcome, AppError> {
        self.store.touch_sso_link(user.id, provider, subject, self.now()).await?;
        let settings = self.store.sso_settings(user.company_id).await?;
        let sufficient = settings.mfa_sufficient.contains(&provider);
        let next = after_sso(&self.second_factor_requirement(&user).await?, sufficient);
        metrics::counter!("latchkey_sso_sign_ins_total", "provider" => provider.as_str()).increment(1);
        self.continue_sign_in(user, next, provider.as_str(), ctx).await
    }

    /// The waiting identity for the chooser or the link page, with the accounts offered now.
    pub async fn sso_waiting(&self, token: &str, browser: &str) -> Result<WaitingIdentity, AppError> {
        let pending = self.live_pending(token, browser).await?;
        let provider = pending.provider;
        let outcome = self.sso_outcome(provider, &pending.subject, pending.trusted_email.as_deref()).await?;
        let (candidates, preselected) = match outcome {
            SsoOutcome::Choose { candidates, preselected } => (candidates, preselected),
            _ => (Vec::new(), None),
        };
        Ok(WaitingIdentity { token: token.to_owned(), provider, email: pending.email, candidates, preselected })
    }

    async fn live_pending(&self, token: &str, browser: &str) -> Result<PendingSso, AppError> {
        if token.is_empty() || token.len() > 128 {
            return Err(expired());
        }
        self.store.pending_sso(hash(token).as_str(), hash(browser).as_str(), self.now()).await?.ok_or_else(expired)
    }

    /// The account chooser's answer: only an account it offered, once; the choice is remembered
    /// and pre-selected next time.
    pub async fn sso_choose(&self, token: &str, user_id: i64, browser: &str, ctx: &RequestContext) -> Result<SignInOutcome, AppError> {
        let pending = self.live_pending(token, browser).await?;
        let provider = pending.provider;
        let outcome = self.sso_outcome(provider, &pending.subject, pending.trusted_email.as_deref()).await?;
        if !choice_allowed(&outcome, user_id) {
            return Err(sso_error(ErrorKind::Invalid, "account_not_offered", "Choose one of the accounts shown."));
        }
        if !self.store.finish_pending_sso(hash(token).as_str(), hash(browser).as_str(), self.now()).await? {
            return Err(expired());
        }
        let user = self.store.user_by_id(user_id).await?.ok_or_else(AppError::internal)?;
        self.store.remember_sso_choice(provider, &pending.subject, user_id, self.now()).await?;
        self.sso_sign_in(user, provider, &pending.subject, ctx).await
    }

    /// The link page: the account's login name and password, exactly as a password sign-in (same
    /// throttles, same second factor). The link is stored once the sign-in completes: now, or when
    /// the second factor is verified.
    pub async fn sso_link(&self, token: &str, login_name: &str, password: &str, browser: &str, ctx: &RequestContext) -> Result<SignInOutcome, AppError> {
        let pending = self.live_pending(token, browser).await?;
        let outcome = self.sign_in(login_name, password, ctx).await?;
        let user = match &outcome {
            SignInOutcome::SignedIn(s) | SignInOutcome::EnrollmentRequired { session: s, .. } => s.user.clone(),
            SignInOutcome::SecondFactor { flow, .. } => self.live_flow(flow.expose()).await?.1,
        };
        if !self.store.sso_settings(user.company_id).await?.allows(pending.provider) {
            self.undo_sign_in(&outcome).await?;
            return Err(sso_error(
                ErrorKind::Forbidden,
                "sso_not_enabled",
                "Your company has not turned on this sign-in provider. Ask your office manager, or sign in with your password.",
            ));
        }
        match &outcome {
            SignInOutcome::SecondFactor { flow, .. } => {
                if !self.store.attach_pending_sso_to_flow(&pending.id_hash, &pending.browser_hash, flow.hash().as_str(), user.id, self.now()).await? {
                    return Err(expired());
                }
            }
            _ => {
                // The identity ends and its link is stored in one transaction.
                let linked = self.store.link_pending_sso(&pending.id_hash, &pending.browser_hash, user.id, self.now(), &|p| self.link_audit(&user, p, ctx)).await?;
                let Some(pending) = linked else {
                    self.undo_sign_in(&outcome).await?;
                    return Err(expired());
                };
                self.tell_linked(&user, &pending).await;
            }
        }
        Ok(outcome)
    }

    /// A session a refused link must not leave behind.
    async fn undo_sign_in(&self, outcome: &SignInOutcome) -> Result<(), AppError> {
        if let SignInOutcome::SignedIn(SignedIn { token, .. }) | SignInOutcome::EnrollmentRequired { session: SignedIn { token, .. }, .. } = outcome {
            self.store.delete_session(&token.hash()).await?;
        }
        Ok(())
    }

    /// Called when a second-factor sign-in flow completes: the identity waiting on it is linked,
    /// taken and stored in one transaction.
    pub(super) async fn link_waiting_identity(&self, flow_hash: &TokenHash, user: &User, ctx: &RequestContext) -> Result<(), AppError> {
        let linked = self.store.link_identity_of_flow(flow_hash.as_str(), user.id, self.now(), &|p| self.link_audit(user, p, ctx)).await?;
        if let Some(pending) = linked {
            self.tell_linked(user, &pending).await;
        }
        Ok(())
    }

    fn link_audit(&self, user: &User, pending: &PendingSso, ctx: &RequestContext) -> AuditEntry {
        let mut audit = self.audit("sso_linked", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        audit.detail = format!("{} {}", pending.provider.as_str(), pending.email.as_deref().unwrap_or(""));
        audit
    }

    async fn tell_linked(&self, user: &User, pending: &PendingSso) {
        let who = pending.email.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        self.send(templates::security_notice(
            &user.designated_email,
            &user.company_name,
            &user.login_name,
            "Single sign-on link added",
            &format!("Sign-in with {}{who} was linked", pending.provider.label()),
            self.now(),
        ))
        .await;
    }
}

fn candidates(users: Vec<User>) -> Vec<Candidate> {
    users.into_iter().map(|u| Candidate { user_id: u.id, login_name: u.login_name, company_name: u.company_name }).collect()
}

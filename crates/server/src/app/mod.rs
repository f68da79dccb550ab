//! The application services: what Latchkey does, once, for the pages, the JSON API and the CLI
//! alike. Each method runs one step of a core flow: read what it needs from the store, ask core
//! for the next state, write it in one transaction, then send the email it calls for.

mod account_security;
mod accounts;
mod activation;
mod audit;
mod auth;
mod codes;
mod emails;
mod enrolment;
mod error;
mod features;
mod policy;
mod profile;
mod recovery;
mod second_factor;
mod sso;
mod sso_sign_in;
mod sso_admin;
mod tokens;
mod two_factor;
mod users;

pub use accounts::CreatedUser;
pub use activation::LinkView;
pub use audit::{audit_label, AuditEvent, AuditPage, AuditParams, AUDIT_KINDS, AUDIT_PAGE_MAX};
pub use auth::{SignInOutcome, SignedIn};
pub use sso_sign_in::{ProviderAnswer, SsoStep, WaitingIdentity};
pub use emails::{AddedEmail, EmailConfirmationView};
pub use error::{AppError, ErrorKind};
pub use policy::SecurityRules;
pub use features::PilotFeatures;
pub use sso_admin::EmailReview;
pub use tokens::{CreatedApiToken, API_TOKEN_PREFIX};
pub use enrolment::{EnrollingSession, TotpEnrollment};
pub use users::{DesignatedEmailChange, UserPage, UserSearch, UserSummary};

use std::sync::Arc;

use latchkey_core::flows::session::SessionPolicy;
use latchkey_core::throttle::Limits;
use latchkey_core::Clock;
use latchkey_store::{AuditEntry, Store};
use time::OffsetDateTime;

use crate::config::Config;
use crate::hashing::Hasher;
use crate::mail::{Mailer, OutgoingEmail};
use crate::sms::SmsGateway;

/// Who asked, for the audit log and the throttles.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Who acts: the operator at the CLI, the holder of an API token, or a signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Operator,
    ApiToken(i64),
    User(i64),
}

pub struct Latchkey {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub hasher: Hasher,
    pub mailer: Arc<dyn Mailer>,
    /// Texts for the SMS second factor: the HTTP gateway, or the outbox in development.
    pub sms: Arc<dyn SmsGateway>,
    pub config: Config,
    pub session_policy: SessionPolicy,
    /// The throttles, the wrong-code lock and the send limits: core's, with the settings applied.
    pub limits: Limits,
    pub keyring: latchkey_core::seal::Keyring,
    /// The OpenID providers the operator registered (single sign-on).
    pub relying_parties: crate::oidc::RelyingParties,
}

impl Latchkey {
    // Every part is built and checked by `crate::open` at start; a builder would add nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: Hasher,
        mailer: Arc<dyn Mailer>,
        sms: Arc<dyn SmsGateway>,
        keyring: latchkey_core::seal::Keyring,
        relying_parties: crate::oidc::RelyingParties,
        config: Config,
    ) -> Self {
        Self {
            session_policy: SessionPolicy {
                idle_timeout: time::Duration::minutes(config.session.idle_minutes),
                absolute_timeout: time::Duration::hours(config.session.absolute_hours),
            },
            limits: config.limits(),
            keyring,
            relying_parties,
            store,
            clock,
            hasher,
            mailer,
            sms,
            config,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.public_url(), path)
    }

    fn audit(&self, kind: &'static str, company_id: Option<i64>, actor: Actor, target: Option<i64>, ctx: &RequestContext) -> AuditEntry {
        AuditEntry {
            company_id,
            actor_user_id: match actor {
                Actor::User(id) => Some(id),
                Actor::Operator | Actor::ApiToken(_) => None,
            },
            actor_token_id: match actor {
                Actor::ApiToken(id) => Some(id),
                Actor::Operator | Actor::User(_) => None,
            },
            target_user_id: target,
            kind,
            detail: match actor {
                Actor::Operator => "by operator".into(),
                Actor::ApiToken(_) | Actor::User(_) => String::new(),
            },
            client_ip: ctx.client_ip.clone(),
            user_agent: ctx.user_agent.clone(),
            at: self.now(),
        }
    }

    /// Sends and reports whether it went out. A failed send is logged (without the body: it holds
    /// links) and never undoes the change that asked for it.
    async fn send(&self, email: OutgoingEmail) -> bool {
        match self.mailer.send(&email, self.now()).await {
            Ok(()) => {
                metrics::counter!("latchkey_emails_sent_total").increment(1);
                true
            }
            Err(e) => {
                metrics::counter!("latchkey_emails_failed_total").increment(1);
                tracing::error!(error = %e, subject = %email.subject, "email not sent");
                false
            }
        }
    }
}

/// RFC 3339, as the API promises.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

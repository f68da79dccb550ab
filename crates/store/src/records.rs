//! What the store hands back and takes in: plain records, times as `OffsetDateTime`.

use latchkey_core::flows::email_link::{EmailLink, LinkPurpose};
use latchkey_core::secret::TokenHash;
use latchkey_core::{Email, Extension, LoginName, Role, UserState};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    pub id: i64,
    pub name: String,
    pub domain: String,
    pub password_min_length: i64,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub company_id: i64,
    pub extension: Extension,
    pub login_name: LoginName,
    pub designated_email: Email,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// An account with its company's name and domain (every page shows them).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub company_id: i64,
    pub company_name: String,
    pub company_domain: String,
    pub company_password_min_length: i64,
    pub extension: String,
    pub login_name: String,
    pub designated_email: String,
    pub designated_email_verified_at: Option<OffsetDateTime>,
    pub role: Role,
    pub state: UserState,
    pub password_hash: Option<String>,
    pub pin_hash: Option<String>,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub last_sign_in_at: Option<OffsetDateTime>,
}

// Hashes stay out of debug output too.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("login_name", &self.login_name)
            .field("state", &self.state)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalEmail {
    pub email: String,
    pub verified_at: Option<OffsetDateTime>,
}

/// A link to store: its hash, never its token.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub token_hash: TokenHash,
    pub link: EmailLink,
}

impl NewLink {
    pub fn purpose(&self) -> LinkPurpose {
        self.link.purpose
    }
}

#[derive(Debug, Clone)]
pub struct StoredLink {
    pub user_id: i64,
    /// The additional email a confirmation link was sent to; `None` for links to the designated
    /// email (welcome, reset), which follow whatever it is.
    pub sent_to: Option<String>,
    pub link: EmailLink,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: TokenHash,
    pub handle: String,
    pub user_id: i64,
    /// Restricted sessions reach only two-factor enrolment (2FA required, no method yet).
    pub restricted: bool,
    pub created_at: OffsetDateTime,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub handle: String,
    pub user_id: i64,
    pub restricted: bool,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One security event, written in the same transaction as the change it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub company_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    /// The operator's API token that acted, when one did.
    pub actor_token_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub kind: &'static str,
    pub detail: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub company_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub actor_token_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub kind: String,
    pub detail: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
}

//! Complete Setup: the page behind the welcome email's button (C2).

use latchkey_core::flows::activation::{self, ActivationError, CompleteSetupForm};
use latchkey_core::flows::email_link::{LinkError, LinkPurpose};
use latchkey_core::policy::PasswordPolicy;
use latchkey_core::secret::Token;
use latchkey_store::{ConsumeError, StoredLink, User};
use time::OffsetDateTime;

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};

/// What the page behind an emailed link (Complete Setup or reset) shows about it.
pub struct LinkView {
    pub login_name: String,
    pub company_name: String,
    pub expires_at: OffsetDateTime,
    pub password_min_length: usize,
}

/// The longest token a link can carry; anything longer is not ours and is not looked up.
const MAX_TOKEN_LEN: usize = 128;

pub(super) fn link_kind(e: &LinkError) -> ErrorKind {
    match e {
        LinkError::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Gone,
    }
}

fn activation_error(e: ActivationError) -> AppError {
    match e {
        ActivationError::Link(l) => AppError::from_flow(link_kind(&l), &l),
        ActivationError::NotInvited => AppError::from_flow(ErrorKind::Conflict, &ActivationError::NotInvited),
        ActivationError::Invalid(fields) => AppError::validation(fields),
    }
}

impl Latchkey {
    /// The link and its account, or the link error a person should see.
    pub(super) fn link_view(user: User, expires_at: OffsetDateTime) -> LinkView {
        LinkView {
            password_min_length: PasswordPolicy::with_min_length(user.company_password_min_length as usize).min_length,
            login_name: user.login_name,
            company_name: user.company_name,
            expires_at,
        }
    }

    pub(super) async fn load_link(&self, token: &str, purpose: LinkPurpose) -> Result<(StoredLink, User), AppError> {
        let not_found = || AppError::from_flow(ErrorKind::NotFound, &LinkError::NotFound);
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(not_found());
        }
        let link = self.store.link_by_token(&Token::from_client(token).hash()).await?.ok_or_else(not_found)?;
        if link.link.purpose != purpose {
            return Err(not_found());
        }
        let user = self.store.user_by_id(link.user_id).await?.ok_or_else(not_found)?;
        Ok((link, user))
    }

    pub async fn open_activation(&self, token: &str) -> Result<LinkView, AppError> {
        let (link, user) = self.load_link(token, LinkPurpose::Welcome).await?;
        activation::open(&link.link, user.state, self.now()).map_err(activation_error)?;
        Ok(Self::link_view(user, link.link.expires_at))
    }

    /// Save on the Complete Setup page: checks every field, hashes, then activates in one
    /// transaction that also consumes the link.
    pub async fn complete_setup(&self, token: &str, form: &CompleteSetupForm, ctx: &RequestContext) -> Result<User, AppError> {
        let (link, user) = self.load_link(token, LinkPurpose::Welcome).await?;
        let policy = PasswordPolicy::with_min_length(user.company_password_min_length as usize);
        activation::submit(&link.link, user.state, form, &policy, self.now()).map_err(activation_error)?;
        let password_hash = self.hasher.hash(&form.password).await?;
        let pin_hash = self.hasher.hash(&form.pin).await?;
        let audit = self.audit("account_activated", Some(user.company_id), Actor::User(user.id), Some(user.id), ctx);
        let hash = Token::from_client(token).hash();
        match self.store.activate(&hash, &password_hash, &pin_hash, self.now(), &audit).await? {
            Ok(user) => Ok(user),
            // Another request used the link between our check and our write: say what it is now.
            Err(ConsumeError::LinkNotUsable) => {
                let (link, user) = self.load_link(token, LinkPurpose::Welcome).await?;
                Err(activation::open(&link.link, user.state, self.now()).err().map(activation_error).unwrap_or_else(|| {
                    AppError::from_flow(ErrorKind::Gone, &LinkError::Used(LinkPurpose::Welcome))
                }))
            }
            Err(ConsumeError::WrongAccountState) => Err(activation_error(ActivationError::NotInvited)),
        }
    }
}

//! The operator's API tokens (C10): made at the CLI and shown once, kept as the SHA-256 of their
//! secret, listed without it, revoked rather than deleted so the audit log can still name them.

use latchkey_core::secret::{Token, TokenHash};
use latchkey_store::ApiToken;

use super::{Actor, AppError, ErrorKind, Latchkey, RequestContext};

/// Operator API tokens start with this, so a leaked one is recognisable in a scan of a repository.
pub const API_TOKEN_PREFIX: &str = "lk_";

/// A token just made: the secret exists here and in the operator's terminal, nowhere else.
/// No `Debug`, so it cannot slip into a log line.
pub struct CreatedApiToken {
    pub token: ApiToken,
    /// `lk_…`, for `Authorization: Bearer`.
    pub secret: String,
}

impl Latchkey {
    /// Makes a token for every company (`company_domain` `None`: operator scope) or for one
    /// company with an office manager's rights. Audited with the company when it has one.
    pub async fn create_api_token(&self, name: &str, company_domain: Option<&str>, actor: Actor, ctx: &RequestContext) -> Result<CreatedApiToken, AppError> {
        let name = token_name(name)?;
        let company = match company_domain {
            Some(domain) => Some(self.store.company_by_domain(domain).await?.ok_or_else(|| {
                AppError::field_refused("company", "unknown_company", format!("No company has the domain {:?}.", domain.trim()))
            })?),
            None => None,
        };
        let secret = format!("{API_TOKEN_PREFIX}{}", Token::generate().expose());
        let audit = |t: &ApiToken| {
            let mut entry = self.audit("api_token_created", t.company_id, actor, None, ctx);
            entry.detail = describe(t);
            entry
        };
        let token = self.store.create_api_token(name, &TokenHash::of(&secret), company.map(|c| c.id), self.now(), &audit).await?;
        Ok(CreatedApiToken { token, secret })
    }

    /// Every token, live and revoked, oldest first; never a secret or a hash.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, AppError> {
        Ok(self.store.list_api_tokens().await?)
    }

    /// Revokes a token: from now on it gets 401. 404 for an unknown id; a token already revoked
    /// stays as it was (nothing is written) and is returned as it is.
    pub async fn revoke_api_token(&self, id: i64, actor: Actor, ctx: &RequestContext) -> Result<ApiToken, AppError> {
        let token = self.api_token(id).await?;
        if token.revoked_at.is_some() {
            return Ok(token);
        }
        let mut audit = self.audit("api_token_revoked", token.company_id, actor, None, ctx);
        audit.detail = describe(&token);
        // A racing revocation may win between the read and the write; either way it is revoked.
        self.store.revoke_api_token(id, self.now(), &audit).await?;
        self.api_token(id).await
    }

    async fn api_token(&self, id: i64) -> Result<ApiToken, AppError> {
        let token = self.store.list_api_tokens().await?.into_iter().find(|t| t.id == id);
        token.ok_or_else(|| AppError::new(ErrorKind::NotFound, "token_not_found", format!("There is no API token with the id {id}.")))
    }
}

/// 1 to 64 printable characters, so a listing stays one line a token.
fn token_name(name: &str) -> Result<&str, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::field("name", "A token name is 1 to 64 printable characters."));
    }
    Ok(name)
}

/// The audit detail: which token, by id and name (names need not be unique).
fn describe(t: &ApiToken) -> String {
    format!("token {} \"{}\"", t.id, t.name)
}

#[cfg(test)]
mod tests {
    use super::token_name;

    #[test]
    fn a_token_name_is_one_to_64_printable_characters() {
        assert_eq!(token_name("  deploy bot ").unwrap(), "deploy bot");
        assert!(token_name(&"x".repeat(64)).is_ok());
        assert!(token_name(&"x".repeat(65)).is_err());
        assert!(token_name("   ").is_err());
        assert!(token_name("two\nlines").is_err());
        assert!(token_name("tab\there").is_err());
    }
}

//! Additional emails (C1, C7): added by an office manager, verified by a confirmation link emailed
//! to the address (the same single-use hashed links as welcome and reset), and read whole for the
//! email association review.

use std::str::FromStr;

use async_trait::async_trait;
use latchkey_core::email_review::{AccountEmail, EmailSlot};
use latchkey_core::secret::TokenHash;
use latchkey_core::{Email, Role};
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::records::{AuditEntry, NewLink, User};
use crate::sql::{get, insert_audit, map_err, ts, SqlStore};
use crate::{ConsumeError, StoreError, StoreResult};

#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Adds an unverified additional email, the confirmation link bound to it, and the audit entry
    /// in one transaction. `Conflict("email")` when the account already has the address (as its
    /// designated or an additional email, in any case); `NotFound` when there is no such account.
    async fn add_additional_email(&self, user_id: i64, email: &Email, confirmation: &NewLink, audit: &AuditEntry) -> StoreResult<()>;
    /// Removes the address and kills every unused confirmation link sent to it (replaced at
    /// `audit.at`), with the audit entry; false, and nothing written, when the account has no such
    /// additional email.
    async fn remove_additional_email(&self, user_id: i64, email: &Email, audit: &AuditEntry) -> StoreResult<bool>;
    /// Consumes the confirmation link and marks the address it was sent to verified — one
    /// transaction, so two clicks racing verify once.
    async fn confirm_additional_email(&self, token: &TokenHash, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<Result<User, ConsumeError>>;
    /// Every email, designated and additional, of every account of the company, by address.
    async fn company_emails(&self, company_id: i64) -> StoreResult<Vec<AccountEmail>>;
}

/// A confirmation link knows its address; welcome and reset links leave these empty.
const INSERT_BOUND_LINK: &str = "INSERT INTO email_links (token_hash, user_id, purpose, created_at, expires_at, user_email_id, email) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

const COMPANY_EMAILS: &str = "\
    SELECT u.login_name, u.extension, u.role, u.designated_email AS email, u.designated_email_key AS email_key, \
           'designated' AS slot, u.designated_email_verified_at AS verified_at \
    FROM users u WHERE u.company_id = $1 \
    UNION ALL \
    SELECT u.login_name, u.extension, u.role, e.email, e.email_key, 'additional' AS slot, e.verified_at \
    FROM user_emails e JOIN users u ON u.id = e.user_id WHERE u.company_id = $1 \
    ORDER BY email_key, login_name, slot";

impl SqlStore {
    /// Refuses an address the account already has, before anything is written.
    async fn refuse_own_address(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user_id: i64, key: &str) -> StoreResult<()> {
        let designated = sqlx::query("SELECT designated_email_key FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        if get::<String>(&designated, "designated_email_key")? == key {
            return Err(StoreError::Conflict("email"));
        }
        Ok(())
    }
}

#[async_trait]
impl EmailStore for SqlStore {
    async fn add_additional_email(&self, user_id: i64, email: &Email, confirmation: &NewLink, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::refuse_own_address(&mut tx, user_id, &email.key()).await?;
        // The unique (user_id, email_key) rule refuses an address added twice, even by two
        // office managers racing.
        let row = sqlx::query("INSERT INTO user_emails (user_id, email, email_key, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(user_id)
            .bind(email.as_str())
            .bind(email.key())
            .bind(ts(confirmation.link.created_at))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("email"),
                other => other,
            })?;
        let user_email_id: i64 = get(&row, "id")?;
        sqlx::query(INSERT_BOUND_LINK)
            .bind(confirmation.token_hash.as_str())
            .bind(user_id)
            .bind(confirmation.purpose().as_str())
            .bind(ts(confirmation.link.created_at))
            .bind(ts(confirmation.link.expires_at))
            .bind(user_email_id)
            .bind(email.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn remove_additional_email(&self, user_id: i64, email: &Email, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // Links first: once the row is gone its links no longer point at it.
        sqlx::query(
            "UPDATE email_links SET replaced_at = $1 WHERE used_at IS NULL AND replaced_at IS NULL \
             AND user_email_id IN (SELECT id FROM user_emails WHERE user_id = $2 AND email_key = $3)",
        )
        .bind(ts(audit.at))
        .bind(user_id)
        .bind(email.key())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let removed = sqlx::query("DELETE FROM user_emails WHERE user_id = $1 AND email_key = $2")
            .bind(user_id)
            .bind(email.key())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if removed.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn confirm_additional_email(&self, token: &TokenHash, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<Result<User, ConsumeError>> {
        let token_hash = token.as_str().to_owned();
        self.consume_and(token, latchkey_core::flows::email_link::LinkPurpose::EmailConfirmation, now, audit, move |_| {
            (
                "UPDATE user_emails SET verified_at = $2 \
                 WHERE user_id = $3 AND verified_at IS NULL AND id = (SELECT user_email_id FROM email_links WHERE token_hash = $1)"
                    .to_owned(),
                vec![Some(token_hash)],
            )
        })
        .await
    }

    async fn company_emails(&self, company_id: i64) -> StoreResult<Vec<AccountEmail>> {
        let rows = sqlx::query(COMPANY_EMAILS).bind(company_id).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(account_email_from_row).collect()
    }
}

fn account_email_from_row(row: &AnyRow) -> StoreResult<AccountEmail> {
    let role: String = get(row, "role")?;
    let slot = if get::<String>(row, "slot")? == "additional" { EmailSlot::Additional } else { EmailSlot::Designated };
    Ok(AccountEmail {
        login_name: get(row, "login_name")?,
        extension: get(row, "extension")?,
        role: Role::from_str(&role).map_err(|_| StoreError::Backend(format!("unknown role {role}")))?,
        email: get(row, "email")?,
        email_key: get(row, "email_key")?,
        slot,
        verified: get::<Option<i64>>(row, "verified_at")?.is_some(),
    })
}

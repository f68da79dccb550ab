//! The operator's API tokens (C10): made by the CLI, kept as the SHA-256 of their secret, scoped to
//! the operator (every company) or to one company, and revoked rather than deleted so the audit log
//! can still name them.

use async_trait::async_trait;
use latchkey_core::secret::TokenHash;
use time::OffsetDateTime;

use crate::records::AuditEntry;
use crate::sql::{get, insert_audit, map_err, opt_time, to_time, ts, SqlStore};
use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// `None`: operator scope. `Some`: that company only, with an office manager's rights.
    pub company_id: Option<i64>,
    /// The company's domain, for listings.
    pub company_domain: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait ApiTokenStore: Send + Sync {
    /// Stores the new token and the audit entry `audit` makes for it (so it can name the new id),
    /// in one transaction.
    async fn create_api_token(
        &self,
        name: &str,
        hash: &TokenHash,
        company_id: Option<i64>,
        now: OffsetDateTime,
        audit: &(dyn for<'t> Fn(&'t ApiToken) -> AuditEntry + Send + Sync),
    ) -> StoreResult<ApiToken>;
    /// The live (not revoked) token with that hash; marks it used at `now`.
    async fn use_api_token(&self, hash: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<ApiToken>>;
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a live token and writes `audit`, in one transaction; false (and nothing written)
    /// when there is no live token with that id.
    async fn revoke_api_token(&self, id: i64, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<bool>;
}

const TOKEN_COLUMNS: &str = "t.id, t.name, t.company_id, c.domain AS company_domain, t.created_at, t.last_used_at, t.revoked_at \
    FROM api_tokens t LEFT JOIN companies c ON c.id = t.company_id";

fn token_from_row(row: &sqlx::any::AnyRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: get(row, "id")?,
        name: get(row, "name")?,
        company_id: get(row, "company_id")?,
        company_domain: get(row, "company_domain")?,
        created_at: to_time(get(row, "created_at")?),
        last_used_at: opt_time(row, "last_used_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

#[async_trait]
impl ApiTokenStore for SqlStore {
    async fn create_api_token(
        &self,
        name: &str,
        hash: &TokenHash,
        company_id: Option<i64>,
        now: OffsetDateTime,
        audit: &(dyn for<'t> Fn(&'t ApiToken) -> AuditEntry + Send + Sync),
    ) -> StoreResult<ApiToken> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("INSERT INTO api_tokens (name, token_hash, company_id, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(name)
            .bind(hash.as_str())
            .bind(company_id)
            .bind(ts(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let id: i64 = get(&row, "id")?;
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} WHERE t.id = $1")).bind(id).fetch_one(&mut *tx).await.map_err(map_err)?;
        let token = token_from_row(&row)?;
        insert_audit(&mut *tx, &audit(&token)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(token)
    }

    async fn use_api_token(&self, hash: &TokenHash, now: OffsetDateTime) -> StoreResult<Option<ApiToken>> {
        // One statement finds and marks it, so a revoked token is never half-accepted.
        let row = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL RETURNING id")
            .bind(ts(now))
            .bind(hash.as_str())
            .fetch_optional(&self.writer)
            .await
            .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = get(&row, "id")?;
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} WHERE t.id = $1")).bind(id).fetch_one(&self.pool).await.map_err(map_err)?;
        token_from_row(&row).map(Some)
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} ORDER BY t.id")).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: i64, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(ts(now))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }
}

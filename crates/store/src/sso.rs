//! What single sign-on keeps (C7): the company's providers, links between provider identities and
//! accounts, the account chooser's remembered choices, and the short-lived state of a trip to the
//! provider and back. A trip's state and a waiting identity are each consumed by one conditional
//! statement, so a replayed callback or a second tab cannot use them twice.

use async_trait::async_trait;
use latchkey_core::flows::sso::Provider;
use time::OffsetDateTime;

use crate::exec::{bind, Arg, Exec};
use crate::records::{AuditEntry, User};
use crate::sql::{get, insert_audit, known, known_list, list_text, map_err, opt_time, to_time, ts, user_from_row, user_query, SqlStore};
use crate::{StoreError, StoreResult};

/// The operator's pilot switch and the office manager's choices. The database keeps the
/// providers' API names (`google,microsoft`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsoSettings {
    pub enabled: bool,
    pub providers: Vec<Provider>,
    /// Providers whose own MFA counts in place of Latchkey's second factor.
    pub mfa_sufficient: Vec<Provider>,
}

impl SsoSettings {
    /// Whether the company's people may sign in with `provider`: the pilot is on and the operator
    /// enabled that provider. The SQL twin is `PROVIDER_ENABLED` below.
    pub fn allows(&self, provider: Provider) -> bool {
        self.enabled && self.providers.contains(&provider)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLink {
    pub id: i64,
    pub user_id: i64,
    pub provider: Provider,
    pub subject: String,
    pub email: Option<String>,
    pub linked_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A trip to the provider. The verifier and nonce are needed once, at the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct SsoAttempt {
    pub state_hash: String,
    pub provider: Provider,
    pub browser_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for SsoAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoAttempt").field("provider", &self.provider).field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// A checked identity waiting at the account chooser or the link page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSso {
    pub id_hash: String,
    pub provider: Provider,
    pub subject: String,
    pub email: Option<String>,
    /// The provider email when it may be matched against verified account emails.
    pub trusted_email: Option<String>,
    pub browser_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Makes the audit entry of a link from the waiting identity it links (its detail names it).
pub type AuditOf<'a> = dyn Fn(&PendingSso) -> AuditEntry + Send + Sync + 'a;

#[async_trait]
pub trait SsoStore: Send + Sync {
    async fn sso_settings(&self, company_id: i64) -> StoreResult<SsoSettings>;
    async fn set_sso_settings(&self, company_id: i64, settings: &SsoSettings, audit: &AuditEntry) -> StoreResult<()>;

    async fn begin_sso_attempt(&self, attempt: &SsoAttempt) -> StoreResult<()>;
    /// Consumes a live attempt of that browser: one statement, so a replayed callback gets `None`.
    async fn take_sso_attempt(&self, state_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<Option<SsoAttempt>>;

    async fn create_pending_sso(&self, pending: &PendingSso) -> StoreResult<()>;
    /// A live waiting identity of that browser, not consumed.
    async fn pending_sso(&self, id_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<Option<PendingSso>>;
    /// Ends a waiting identity once; false when it was used, expired or not this browser's.
    async fn finish_pending_sso(&self, id_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Ties a live waiting identity of that browser to the sign-in flow (of `user_id`) that must
    /// complete before the link is made; false when it is no longer live.
    async fn attach_pending_sso_to_flow(&self, id_hash: &str, browser_hash: &str, flow_hash: &str, user_id: i64, now: OffsetDateTime) -> StoreResult<bool>;
    /// Ends a live waiting identity of that browser once and links it to `user_id`, with the audit
    /// entry `audit_for` makes of it — one transaction. `None` when it was used, expired or not
    /// this browser's (nothing written).
    async fn link_pending_sso(&self, id_hash: &str, browser_hash: &str, user_id: i64, now: OffsetDateTime, audit_for: &AuditOf<'_>) -> StoreResult<Option<PendingSso>>;
    /// Ends, once, the waiting identity tied to a completed sign-in flow of `user_id` and links it,
    /// with its audit entry — one transaction, so a cut cannot use the identity up unlinked. Its
    /// own expiry no longer counts: it was live when tied to the flow, and the flow that just
    /// completed bounds it. Otherwise a second factor entered late in the flow is spent on a
    /// sign-in without the link it was entered for.
    async fn link_identity_of_flow(&self, flow_hash: &str, user_id: i64, now: OffsetDateTime, audit_for: &AuditOf<'_>) -> StoreResult<Option<PendingSso>>;

    /// Active accounts linked to the identity, in companies that enabled `provider`.
    async fn users_linked_to(&self, provider: Provider, subject: &str) -> StoreResult<Vec<User>>;
    /// Active accounts whose *verified* designated or additional email is `email_key`, in companies
    /// that enabled `provider`.
    async fn users_with_verified_email(&self, provider: Provider, email_key: &str) -> StoreResult<Vec<User>>;
    /// Stores (or keeps) the link, with its audit entry, in one transaction.
    async fn add_sso_link(&self, user_id: i64, provider: Provider, subject: &str, email: Option<&str>, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<()>;
    async fn sso_links_of_user(&self, user_id: i64) -> StoreResult<Vec<SsoLink>>;
    /// Removes one of the user's links; false when the user has no such link.
    async fn remove_sso_link(&self, user_id: i64, link_id: i64, audit: &AuditEntry) -> StoreResult<bool>;
    async fn touch_sso_link(&self, user_id: i64, provider: Provider, subject: &str, now: OffsetDateTime) -> StoreResult<()>;

    async fn remember_sso_choice(&self, provider: Provider, subject: &str, user_id: i64, now: OffsetDateTime) -> StoreResult<()>;
    async fn sso_choice(&self, provider: Provider, subject: &str) -> StoreResult<Option<i64>>;
}

fn pending_from_row(r: &sqlx::any::AnyRow) -> StoreResult<PendingSso> {
    Ok(PendingSso {
        id_hash: get(r, "id_hash")?,
        provider: known("sso_pending.provider", &get::<String>(r, "provider")?, Provider::parse)?,
        subject: get(r, "subject")?,
        email: get(r, "email")?,
        trusted_email: get(r, "trusted_email")?,
        browser_hash: get(r, "browser_hash")?,
        created_at: to_time(get(r, "created_at")?),
        expires_at: to_time(get(r, "expires_at")?),
    })
}

/// `c.sso_providers` holds `provider` as a whole item of its comma-separated list.
const PROVIDER_ENABLED: &str = "c.sso_enabled = 1 AND (',' || c.sso_providers || ',') LIKE ('%,' || $1 || ',%')";

impl SqlStore {
    /// Ends one waiting identity with `take` (an `UPDATE` of `sso_pending` that sets `used_at`)
    /// and stores its link with the audit entry `audit_for` makes — one transaction.
    async fn take_and_link(&self, take: &str, args: &[Arg<'_>], user_id: i64, now: OffsetDateTime, audit_for: &AuditOf<'_>) -> StoreResult<Option<PendingSso>> {
        let mut tx = self.begin().await?;
        let sql = format!("{take} RETURNING {PENDING_COLUMNS}");
        let row = bind(sqlx::query(&sql), args).fetch_optional(&mut *tx).await.map_err(map_err)?;
        let Some(pending) = row.as_ref().map(pending_from_row).transpose()? else { return Ok(None) };
        insert_link(&mut *tx, user_id, pending.provider, &pending.subject, pending.email.as_deref(), now, &audit_for(&pending)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(pending))
    }
}

const PENDING_COLUMNS: &str = "id_hash, provider, subject, email, trusted_email, browser_hash, created_at, expires_at";

/// Stores (or keeps) a link with its audit entry, inside the caller's transaction.
async fn insert_link(
    exec: &mut impl Exec,
    user_id: i64,
    provider: Provider,
    subject: &str,
    email: Option<&str>,
    now: OffsetDateTime,
    audit: &AuditEntry,
) -> StoreResult<()> {
    exec.run(
        "INSERT INTO sso_links (user_id, provider, subject, email, linked_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (provider, subject, user_id) DO UPDATE SET email = $4",
        &[Arg::Int(user_id), Arg::Text(provider.as_str()), Arg::Text(subject), Arg::OptText(email), Arg::Int(ts(now))],
    )
    .await?;
    insert_audit(exec, audit).await
}

#[async_trait]
impl SsoStore for SqlStore {
    async fn sso_settings(&self, company_id: i64) -> StoreResult<SsoSettings> {
        let row = sqlx::query("SELECT sso_enabled, sso_providers, sso_mfa_sufficient FROM companies WHERE id = $1")
            .bind(company_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        Ok(SsoSettings {
            enabled: get::<i64>(&row, "sso_enabled")? != 0,
            providers: known_list("companies.sso_providers", &get::<String>(&row, "sso_providers")?, Provider::parse)?,
            mfa_sufficient: known_list("companies.sso_mfa_sufficient", &get::<String>(&row, "sso_mfa_sufficient")?, Provider::parse)?,
        })
    }

    async fn set_sso_settings(&self, company_id: i64, s: &SsoSettings, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE companies SET sso_enabled = $1, sso_providers = $2, sso_mfa_sufficient = $3 WHERE id = $4")
            .bind(i64::from(s.enabled))
            .bind(list_text(s.providers.iter().map(|p| p.as_str())))
            .bind(list_text(s.mfa_sufficient.iter().map(|p| p.as_str())))
            .bind(company_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn begin_sso_attempt(&self, a: &SsoAttempt) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_attempts (state_hash, provider, browser_hash, nonce, pkce_verifier, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.state_hash.as_str())
        .bind(a.provider.as_str())
        .bind(a.browser_hash.as_str())
        .bind(a.nonce.as_str())
        .bind(a.pkce_verifier.as_str())
        .bind(ts(a.created_at))
        .bind(ts(a.expires_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn take_sso_attempt(&self, state_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<Option<SsoAttempt>> {
        let row = sqlx::query(
            "UPDATE sso_attempts SET used_at = $1 \
             WHERE state_hash = $2 AND browser_hash = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING state_hash, provider, browser_hash, nonce, pkce_verifier, created_at, expires_at",
        )
        .bind(ts(now))
        .bind(state_hash)
        .bind(browser_hash)
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(SsoAttempt {
                state_hash: get(&r, "state_hash")?,
                provider: known("sso_attempts.provider", &get::<String>(&r, "provider")?, Provider::parse)?,
                browser_hash: get(&r, "browser_hash")?,
                nonce: get(&r, "nonce")?,
                pkce_verifier: get(&r, "pkce_verifier")?,
                created_at: to_time(get(&r, "created_at")?),
                expires_at: to_time(get(&r, "expires_at")?),
            })
        })
        .transpose()
    }

    async fn create_pending_sso(&self, p: &PendingSso) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_pending (id_hash, provider, subject, email, trusted_email, browser_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(p.id_hash.as_str())
        .bind(p.provider.as_str())
        .bind(p.subject.as_str())
        .bind(p.email.as_deref())
        .bind(p.trusted_email.as_deref())
        .bind(p.browser_hash.as_str())
        .bind(ts(p.created_at))
        .bind(ts(p.expires_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn pending_sso(&self, id_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<Option<PendingSso>> {
        let row = sqlx::query(
            "SELECT id_hash, provider, subject, email, trusted_email, browser_hash, created_at, expires_at FROM sso_pending \
             WHERE id_hash = $1 AND browser_hash = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(id_hash)
        .bind(browser_hash)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(pending_from_row).transpose()
    }

    async fn finish_pending_sso(&self, id_hash: &str, browser_hash: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE sso_pending SET used_at = $1 WHERE id_hash = $2 AND browser_hash = $3 AND used_at IS NULL AND expires_at > $1")
            .bind(ts(now))
            .bind(id_hash)
            .bind(browser_hash)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn attach_pending_sso_to_flow(&self, id_hash: &str, browser_hash: &str, flow_hash: &str, user_id: i64, now: OffsetDateTime) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE sso_pending SET flow_hash = $1, user_id = $2 WHERE id_hash = $3 AND browser_hash = $4 AND used_at IS NULL AND expires_at > $5",
        )
        .bind(flow_hash)
        .bind(user_id)
        .bind(id_hash)
        .bind(browser_hash)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn link_pending_sso(&self, id_hash: &str, browser_hash: &str, user_id: i64, now: OffsetDateTime, audit_for: &AuditOf<'_>) -> StoreResult<Option<PendingSso>> {
        let take = "UPDATE sso_pending SET used_at = $1 WHERE id_hash = $2 AND browser_hash = $3 AND used_at IS NULL AND expires_at > $1";
        self.take_and_link(take, &[Arg::Int(ts(now)), Arg::Text(id_hash), Arg::Text(browser_hash)], user_id, now, audit_for).await
    }

    async fn link_identity_of_flow(&self, flow_hash: &str, user_id: i64, now: OffsetDateTime, audit_for: &AuditOf<'_>) -> StoreResult<Option<PendingSso>> {
        // Nearly every completed sign-in has none: on SQLite a read on the calling thread says so
        // without waiting for the one writer. An identity is tied to its flow before the flow can
        // be completed, so one that is there is seen; the take below stays the atomic one.
        if let Some(inline) = &self.inline {
            let waiting = "SELECT 1 AS n FROM sso_pending WHERE flow_hash = $1 AND user_id = $2 AND used_at IS NULL";
            if inline.optional(waiting, rusqlite::params![flow_hash, user_id], |r| get::<i64>(r, "n"))?.is_none() {
                return Ok(None);
            }
        }
        let take = "UPDATE sso_pending SET used_at = $1 WHERE flow_hash = $2 AND user_id = $3 AND used_at IS NULL";
        self.take_and_link(take, &[Arg::Int(ts(now)), Arg::Text(flow_hash), Arg::Int(user_id)], user_id, now, audit_for).await
    }

    async fn users_linked_to(&self, provider: Provider, subject: &str) -> StoreResult<Vec<User>> {
        let filter = format!(
            "{PROVIDER_ENABLED} AND u.state = 'active' AND u.id IN (SELECT user_id FROM sso_links WHERE provider = $1 AND subject = $2)"
        );
        let rows = sqlx::query(&format!("{} ORDER BY u.login_name", user_query(&filter)))
            .bind(provider.as_str())
            .bind(subject)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn users_with_verified_email(&self, provider: Provider, email_key: &str) -> StoreResult<Vec<User>> {
        let filter = format!(
            "{PROVIDER_ENABLED} AND u.state = 'active' AND ( \
               (u.designated_email_key = $2 AND u.designated_email_verified_at IS NOT NULL) \
               OR u.id IN (SELECT user_id FROM user_emails WHERE email_key = $2 AND verified_at IS NOT NULL))"
        );
        let rows = sqlx::query(&format!("{} ORDER BY u.login_name", user_query(&filter)))
            .bind(provider.as_str())
            .bind(email_key)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn add_sso_link(&self, user_id: i64, provider: Provider, subject: &str, email: Option<&str>, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_link(&mut *tx, user_id, provider, subject, email, now, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn sso_links_of_user(&self, user_id: i64) -> StoreResult<Vec<SsoLink>> {
        let rows = sqlx::query(
            "SELECT id, user_id, provider, subject, email, linked_at, last_used_at FROM sso_links WHERE user_id = $1 ORDER BY linked_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(SsoLink {
                    id: get(r, "id")?,
                    user_id: get(r, "user_id")?,
                    provider: known("sso_links.provider", &get::<String>(r, "provider")?, Provider::parse)?,
                    subject: get(r, "subject")?,
                    email: get(r, "email")?,
                    linked_at: to_time(get(r, "linked_at")?),
                    last_used_at: opt_time(r, "last_used_at")?,
                })
            })
            .collect()
    }

    async fn remove_sso_link(&self, user_id: i64, link_id: i64, audit: &AuditEntry) -> StoreResult<bool> {
        self.change_audited("DELETE FROM sso_links WHERE id = $1 AND user_id = $2", &[Arg::Int(link_id), Arg::Int(user_id)], audit).await
    }

    async fn touch_sso_link(&self, user_id: i64, provider: Provider, subject: &str, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sso_links SET last_used_at = $1 WHERE user_id = $2 AND provider = $3 AND subject = $4")
            .bind(ts(now))
            .bind(user_id)
            .bind(provider.as_str())
            .bind(subject)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn remember_sso_choice(&self, provider: Provider, subject: &str, user_id: i64, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_choices (provider, subject, user_id, chosen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, subject) DO UPDATE SET user_id = $3, chosen_at = $4",
        )
        .bind(provider.as_str())
        .bind(subject)
        .bind(user_id)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn sso_choice(&self, provider: Provider, subject: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT user_id FROM sso_choices WHERE provider = $1 AND subject = $2")
            .bind(provider.as_str())
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| get(&r, "user_id")).transpose()
    }
}

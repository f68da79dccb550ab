//! What two-factor authentication keeps: the company's policy, each user's methods (TOTP seeds
//! sealed), recovery codes, SMS/email codes, and sign-ins waiting for their second factor.
//!
//! Everything single-use is consumed by one conditional statement: a TOTP step only moves
//! forward, a recovery code or a one-time code is marked used only if it was not, a sign-in flow
//! completes once. Two nodes racing therefore cannot both succeed. The second factor that
//! completes a sign-in is spent in the same transaction as the flow, so a request that loses the
//! flow leaves its code unused.

use async_trait::async_trait;
use latchkey_core::flows::sign_in::FlowState;
use latchkey_core::two_factor::one_time_code::{Channel, CodePurpose};
use latchkey_core::two_factor::{Method, TwoFactorMode};
use time::OffsetDateTime;

use latchkey_core::secret::TokenHash;

use crate::records::{AuditEntry, NewSession};
use crate::exec::{finish_now, Arg, Exec, Lite};
use crate::sql::{get, insert_audit, insert_session, known, known_list, known_opt, list_text, map_err, opt_time, to_time, ts, Cells, SqlStore};
use crate::StoreResult;

/// The company's security rules (C6, and C3's tightening). `enabled` is the operator's pilot
/// switch; the rest is the office manager's. The database keeps the methods' API spellings
/// (`totp,sms,email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactorPolicy {
    pub enabled: bool,
    pub mode: TwoFactorMode,
    pub allowed_methods: Vec<Method>,
    pub default_method: Option<Method>,
    pub default_method_locked: bool,
    /// The company's minimum password length (the seed's 8 or more).
    pub password_min_length: i64,
}

/// An enabled method. For TOTP the seed is sealed; `totp_key_id` names the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMethod {
    pub method: Method,
    /// The phone number (SMS) or address (email) codes go to.
    pub detail: Option<String>,
    pub totp_sealed: Option<String>,
    pub totp_key_id: Option<String>,
    pub totp_last_step: Option<i64>,
    pub enabled_at: OffsetDateTime,
}

impl std::fmt::Debug for StoredMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMethod").field("method", &self.method).field("enabled_at", &self.enabled_at).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub code_hash: String,
    /// Where the code went; `None` only in a row without one (the column is nullable).
    pub target: Option<Channel>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFlow {
    pub user_id: i64,
    pub state: FlowState,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

/// What a second factor spends when it completes a sign-in flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactorSpend {
    /// An authenticator app step: spent only if later than the last accepted one.
    TotpStep(i64),
    /// An unused recovery code of the user, by hash; `audit` is written with its detail set to how
    /// many codes are left.
    RecoveryCode { hash: String, audit: AuditEntry },
    /// The live, unused, unexpired texted or emailed code of `purpose` with that hash.
    Code { purpose: CodePurpose, hash: String },
}

/// A second factor that confirms a change to the account's methods (enrolling by a sent code,
/// removing a method, new recovery codes, verifying the designated email). It is spent in the
/// change's own transaction: the change happens only if the proof was still unspent, and a request
/// cut off before the commit leaves both undone.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    pub factor: &'a FactorSpend,
    pub at: OffsetDateTime,
}

/// A confirmed method to enable, and what its confirmation writes beside it.
#[derive(Debug, Clone, Copy)]
pub struct Enabling<'a> {
    pub method: &'a StoredMethod,
    /// Become the user's recovery codes when this is the first method.
    pub first_recovery_codes: &'a [String],
    /// The sent code that confirmed it; `None` for the authenticator app, whose confirming step
    /// is kept in `method` (and cannot sign in right after).
    pub proof: Option<Proof<'a>>,
    /// The session restricted to enrolment that enabled it: a full one from now on, which
    /// completes the sign-in that required the method.
    pub promote_session: Option<&'a TokenHash>,
    /// The account's wrong-code count, cleared by the right code.
    pub wrong_code_key: Option<&'a str>,
    pub audit: &'a AuditEntry,
}

/// What a sign-in completed by its second factor writes beside the flow and the factor.
#[derive(Debug, Clone)]
pub struct SignInStart {
    /// The throttle key of the account's wrong codes, cleared by a right one.
    pub wrong_code_key: String,
    pub session: NewSession,
    pub audit: AuditEntry,
}

/// How completing a sign-in flow with a second factor ended. Unless `Completed`, nothing was
/// written: neither the flow nor the factor changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCompletion {
    /// `recovery_codes_left` when a recovery code was spent.
    Completed { recovery_codes_left: Option<i64> },
    /// The flow was completed by another request, expired, or is not this user's.
    FlowGone,
    /// The factor was spent already, or never was a live one.
    FactorSpent,
}

#[async_trait]
pub trait TwoFactorStore: Send + Sync {
    async fn two_factor_policy(&self, company_id: i64) -> StoreResult<TwoFactorPolicy>;
    async fn set_two_factor_policy(&self, company_id: i64, policy: &TwoFactorPolicy, audit: &AuditEntry) -> StoreResult<()>;

    async fn methods_of_user(&self, user_id: i64) -> StoreResult<Vec<StoredMethod>>;
    /// Keeps a TOTP secret shown to the user until a code confirms it (replaces an earlier one).
    async fn begin_totp_enrollment(&self, user_id: i64, sealed: &str, key_id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn totp_enrollment(&self, user_id: i64) -> StoreResult<Option<(String, String, OffsetDateTime)>>;
    /// Enables (or replaces) a method in one transaction. When it is the user's first method and
    /// `first_recovery_codes` is given, those code hashes become the user's recovery codes.
    /// Returns whether it was the first method.
    async fn enable_method(&self, user_id: i64, method: &StoredMethod, first_recovery_codes: &[String], audit: &AuditEntry) -> StoreResult<bool> {
        let enabling = Enabling { method, first_recovery_codes, proof: None, promote_session: None, wrong_code_key: None, audit };
        Ok(self.enable_confirmed_method(user_id, &enabling).await? == Some(true))
    }
    /// [`enable_method`](Self::enable_method) with all its confirmation writes: the proof spent,
    /// the restricted session promoted, the wrong-code count cleared — one transaction. `None`
    /// when the proof was spent already (nothing written); else whether it was the first method.
    async fn enable_confirmed_method(&self, user_id: i64, enabling: &Enabling<'_>) -> StoreResult<Option<bool>>;
    /// Accepts `step` only if it is later than the last accepted one: the atomic check-and-advance
    /// that makes a TOTP code single use on every node.
    async fn advance_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool>;
    /// Removes a method; when none is left, the recovery codes go too. Returns how many remain.
    async fn remove_method(&self, user_id: i64, method: Method, audit: &AuditEntry) -> StoreResult<i64> {
        Ok(self.remove_confirmed_method(user_id, method, None, audit).await?.unwrap_or(0))
    }
    /// [`remove_method`](Self::remove_method) once `proof` is spent, in the same transaction; a
    /// preference for the method goes with it. `None` when the proof was spent already.
    async fn remove_confirmed_method(&self, user_id: i64, method: Method, proof: Option<Proof<'_>>, audit: &AuditEntry) -> StoreResult<Option<i64>>;
    /// The office manager's reset: methods, pending enrolment, recovery codes and preference go.
    async fn reset_two_factor(&self, user_id: i64, audit: &AuditEntry) -> StoreResult<()>;
    async fn set_preferred_method(&self, user_id: i64, method: Option<Method>) -> StoreResult<()>;
    async fn preferred_method(&self, user_id: i64) -> StoreResult<Option<Method>>;

    /// Recovery codes are spent only by completing a sign-in: see `complete_sign_in_flow`.
    async fn replace_recovery_codes(&self, user_id: i64, hashes: &[String], now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<()> {
        self.replace_confirmed_recovery_codes(user_id, hashes, now, None, audit).await.map(|_| ())
    }
    /// [`replace_recovery_codes`](Self::replace_recovery_codes) once `proof` is spent, in the same
    /// transaction. `false` when the proof was spent already (the old codes stay).
    async fn replace_confirmed_recovery_codes(&self, user_id: i64, hashes: &[String], now: OffsetDateTime, proof: Option<Proof<'_>>, audit: &AuditEntry) -> StoreResult<bool>;
    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<i64>;

    /// Stores a new SMS/email code for `purpose`; the previous one of that purpose stops working.
    async fn issue_code(&self, user_id: i64, purpose: CodePurpose, code: &StoredCode) -> StoreResult<()>;
    async fn code(&self, user_id: i64, purpose: CodePurpose) -> StoreResult<Option<StoredCode>>;
    /// Marks the code used if it is still the live, unused, unexpired one with that hash.
    async fn consume_code(&self, user_id: i64, purpose: CodePurpose, hash: &str, now: OffsetDateTime) -> StoreResult<bool>;

    async fn create_sign_in_flow(&self, id_hash: &str, flow: &SignInFlow) -> StoreResult<()>;
    async fn sign_in_flow(&self, id_hash: &str) -> StoreResult<Option<SignInFlow>>;
    /// Completes a live flow of `user_id` once and spends `factor` — one transaction, both or
    /// neither: two requests racing on one flow with two right codes spend one code.
    async fn complete_sign_in_flow(&self, id_hash: &str, user_id: i64, factor: &FactorSpend, now: OffsetDateTime) -> StoreResult<FlowCompletion>;
    /// [`complete_sign_in_flow`](Self::complete_sign_in_flow), and in the same transaction what a
    /// completed sign-in writes: the wrong-code count cleared, the session, its audit entry. A
    /// crash cannot leave a spent code without its session, and SQLite takes its write lock once.
    async fn complete_sign_in(&self, id_hash: &str, user_id: i64, factor: &FactorSpend, then: &SignInStart) -> StoreResult<FlowCompletion>;

    /// Counts one send against `key` in the window starting at `window_start`; returns the count
    /// including this one. Used for the SMS and email send limits.
    async fn count_send(&self, key: &str, window_start: OffsetDateTime) -> StoreResult<i64>;
}

const CODES_LEFT: &str = "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL";

/// The company's rule from its columns, whatever the statement calls them: `cols` names, in order,
/// `two_factor_enabled`, `two_factor_mode`, `allowed_methods`, `default_method`,
/// `default_method_locked` and `password_min_length`.
pub(crate) fn policy_from_cells(r: &impl Cells, cols: [&str; 6]) -> StoreResult<TwoFactorPolicy> {
    Ok(TwoFactorPolicy {
        enabled: get::<i64>(r, cols[0])? != 0,
        mode: known("companies.two_factor_mode", &get::<String>(r, cols[1])?, TwoFactorMode::parse)?,
        allowed_methods: known_list("companies.allowed_methods", &get::<String>(r, cols[2])?, Method::parse)?,
        default_method: known_opt("companies.default_method", get(r, cols[3])?, Method::parse)?,
        default_method_locked: get::<i64>(r, cols[4])? != 0,
        password_min_length: get(r, cols[5])?,
    })
}

fn policy_from_row(r: &impl Cells) -> StoreResult<TwoFactorPolicy> {
    policy_from_cells(r, ["two_factor_enabled", "two_factor_mode", "allowed_methods", "default_method", "default_method_locked", "password_min_length"])
}

fn flow_from_row(r: &impl Cells) -> StoreResult<SignInFlow> {
    Ok(SignInFlow {
        user_id: get(r, "user_id")?,
        state: known("sign_in_flows.state", &get::<String>(r, "state")?, FlowState::parse)?,
        created_at: to_time(get(r, "created_at")?),
        expires_at: to_time(get(r, "expires_at")?),
        completed_at: opt_time(r, "completed_at")?,
    })
}

fn method_from_row(r: &impl Cells) -> StoreResult<StoredMethod> {
    Ok(StoredMethod {
        method: known("two_factor_methods.method", &get::<String>(r, "method")?, Method::parse)?,
        detail: get(r, "detail")?,
        totp_sealed: get(r, "totp_sealed")?,
        totp_key_id: get(r, "totp_key_id")?,
        totp_last_step: get(r, "totp_last_step")?,
        enabled_at: to_time(get(r, "enabled_at")?),
    })
}

/// The single-use statements, each one conditional `UPDATE` checked by the rows it changed; run
/// alone or inside the transaction that completes a sign-in flow.
async fn advance_step(exec: &mut impl Exec, user_id: i64, step: i64) -> StoreResult<bool> {
    let changed = exec
        .run(
            "UPDATE two_factor_methods SET totp_last_step = $1 \
             WHERE user_id = $2 AND method = 'totp' AND (totp_last_step IS NULL OR totp_last_step < $1)",
            &[Arg::Int(step), Arg::Int(user_id)],
        )
        .await?;
    Ok(changed == 1)
}

async fn spend_code(exec: &mut impl Exec, user_id: i64, purpose: CodePurpose, hash: &str, now: OffsetDateTime) -> StoreResult<bool> {
    let changed = exec
        .run(
            "UPDATE one_time_codes SET used_at = $1 \
             WHERE user_id = $2 AND purpose = $3 AND code_hash = $4 AND used_at IS NULL AND expires_at > $1",
            &[Arg::Int(ts(now)), Arg::Int(user_id), Arg::Text(purpose.as_str()), Arg::Text(hash)],
        )
        .await?;
    Ok(changed == 1)
}

/// Marks the code used and writes `audit` with how many are left; `None` when it was not unused.
async fn spend_recovery_code(exec: &mut impl Exec, user_id: i64, hash: &str, now: OffsetDateTime, audit: &AuditEntry) -> StoreResult<Option<i64>> {
    let changed = exec
        .run(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            &[Arg::Int(ts(now)), Arg::Int(user_id), Arg::Text(hash)],
        )
        .await?;
    if changed != 1 {
        return Ok(None);
    }
    let left = exec.count(CODES_LEFT, &[Arg::Int(user_id)]).await?;
    insert_audit(exec, &AuditEntry { detail: format!("{left} left"), ..audit.clone() }).await?;
    Ok(Some(left))
}

/// Spends `factor` inside the completion's transaction: `Completed` or `FactorSpent`.
async fn spend_factor(exec: &mut impl Exec, user_id: i64, factor: &FactorSpend, now: OffsetDateTime) -> StoreResult<FlowCompletion> {
    let outcome = |spent: bool| if spent { FlowCompletion::Completed { recovery_codes_left: None } } else { FlowCompletion::FactorSpent };
    Ok(match factor {
        FactorSpend::TotpStep(step) => outcome(advance_step(exec, user_id, *step).await?),
        FactorSpend::Code { purpose, hash } => outcome(spend_code(exec, user_id, *purpose, hash, now).await?),
        FactorSpend::RecoveryCode { hash, audit } => match spend_recovery_code(exec, user_id, hash, now, audit).await? {
            Some(left) => FlowCompletion::Completed { recovery_codes_left: Some(left) },
            None => FlowCompletion::FactorSpent,
        },
    })
}

/// Spends the proof of a change inside the change's transaction; `true` when there was none to
/// spend. A `false` is answered by returning before anything else is written: the caller's
/// transaction is dropped uncommitted.
pub(crate) async fn spend_proof(exec: &mut impl Exec, user_id: i64, proof: Option<Proof<'_>>) -> StoreResult<bool> {
    match proof {
        None => Ok(true),
        Some(p) => Ok(matches!(spend_factor(exec, user_id, p.factor, p.at).await?, FlowCompletion::Completed { .. })),
    }
}

#[async_trait]
impl TwoFactorStore for SqlStore {
    async fn two_factor_policy(&self, company_id: i64) -> StoreResult<TwoFactorPolicy> {
        const POLICY: &str = "SELECT two_factor_enabled, two_factor_mode, allowed_methods, default_method, default_method_locked, password_min_length \
             FROM companies WHERE id = $1";
        let policy = match &self.inline {
            Some(inline) => inline.optional(POLICY, [company_id], |r| policy_from_row(r))?,
            None => sqlx::query(POLICY).bind(company_id).fetch_optional(&self.pool).await.map_err(map_err)?.as_ref().map(policy_from_row).transpose()?,
        };
        policy.ok_or(crate::StoreError::NotFound)
    }

    async fn set_two_factor_policy(&self, company_id: i64, p: &TwoFactorPolicy, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE companies SET two_factor_enabled = $1, two_factor_mode = $2, allowed_methods = $3, default_method = $4, \
             default_method_locked = $5, password_min_length = $6 WHERE id = $7",
        )
        .bind(i64::from(p.enabled))
        .bind(p.mode.as_str())
        .bind(list_text(p.allowed_methods.iter().map(|m| m.as_str())))
        .bind(p.default_method.map(Method::as_str))
        .bind(i64::from(p.default_method_locked))
        .bind(p.password_min_length)
        .bind(company_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound);
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn methods_of_user(&self, user_id: i64) -> StoreResult<Vec<StoredMethod>> {
        const METHODS: &str = "SELECT method, detail, totp_sealed, totp_key_id, totp_last_step, enabled_at FROM two_factor_methods \
             WHERE user_id = $1 ORDER BY enabled_at, method";
        if let Some(inline) = &self.inline {
            let mut methods = Vec::new();
            inline.each(METHODS, [user_id], |r| {
                methods.push(method_from_row(r)?);
                Ok(())
            })?;
            return Ok(methods);
        }
        let rows = sqlx::query(METHODS).bind(user_id).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(method_from_row).collect()
    }

    async fn begin_totp_enrollment(&self, user_id: i64, sealed: &str, key_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO totp_enrollments (user_id, totp_sealed, totp_key_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET totp_sealed = $2, totp_key_id = $3, created_at = $4",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(key_id)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn totp_enrollment(&self, user_id: i64) -> StoreResult<Option<(String, String, OffsetDateTime)>> {
        let row = sqlx::query("SELECT totp_sealed, totp_key_id, created_at FROM totp_enrollments WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| Ok((get(&r, "totp_sealed")?, get(&r, "totp_key_id")?, to_time(get(&r, "created_at")?)))).transpose()
    }

    async fn enable_confirmed_method(&self, user_id: i64, e: &Enabling<'_>) -> StoreResult<Option<bool>> {
        let (m, first_recovery_codes, audit) = (e.method, e.first_recovery_codes, e.audit);
        let mut tx = self.begin().await?;
        // The proof first: a code spent by a racing request leaves nothing written.
        if !spend_proof(&mut *tx, user_id, e.proof).await? {
            return Ok(None);
        }
        // The account's row first: on PostgreSQL two first methods confirmed at once would each
        // count none and each write a set of recovery codes. With the row held, the second waits
        // and counts the first. (SQLite's `BEGIN IMMEDIATE` already serialises them.)
        sqlx::query("UPDATE users SET preferred_method = preferred_method WHERE id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        let before: i64 = get(
            &sqlx::query("SELECT COUNT(*) AS n FROM two_factor_methods WHERE user_id = $1").bind(user_id).fetch_one(&mut *tx).await.map_err(map_err)?,
            "n",
        )?;
        sqlx::query("DELETE FROM two_factor_methods WHERE user_id = $1 AND method = $2")
            .bind(user_id)
            .bind(m.method.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO two_factor_methods (user_id, method, detail, totp_sealed, totp_key_id, totp_last_step, enabled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user_id)
        .bind(m.method.as_str())
        .bind(m.detail.as_deref())
        .bind(m.totp_sealed.as_deref())
        .bind(m.totp_key_id.as_deref())
        .bind(m.totp_last_step)
        .bind(ts(m.enabled_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if m.method == Method::Totp {
            sqlx::query("DELETE FROM totp_enrollments WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        }
        let first = before == 0;
        if first && !first_recovery_codes.is_empty() {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
            for hash in first_recovery_codes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(hash.as_str())
                    .bind(ts(m.enabled_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
        }
        if let Some(session) = e.promote_session {
            sqlx::query("UPDATE sessions SET kind = 'full' WHERE id_hash = $1 AND user_id = $2 AND kind = 'restricted'")
                .bind(session.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        if let Some(key) = e.wrong_code_key {
            sqlx::query("DELETE FROM throttle WHERE key = $1").bind(key).execute(&mut *tx).await.map_err(map_err)?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(first))
    }

    async fn advance_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        advance_step(&mut *self.writer.acquire().await.map_err(map_err)?, user_id, step).await
    }

    async fn remove_confirmed_method(&self, user_id: i64, method: Method, proof: Option<Proof<'_>>, audit: &AuditEntry) -> StoreResult<Option<i64>> {
        let mut tx = self.begin().await?;
        if !spend_proof(&mut *tx, user_id, proof).await? {
            return Ok(None);
        }
        let r = sqlx::query("DELETE FROM two_factor_methods WHERE user_id = $1 AND method = $2")
            .bind(user_id)
            .bind(method.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound);
        }
        let left: i64 = get(
            &sqlx::query("SELECT COUNT(*) AS n FROM two_factor_methods WHERE user_id = $1").bind(user_id).fetch_one(&mut *tx).await.map_err(map_err)?,
            "n",
        )?;
        if left == 0 {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
            sqlx::query("UPDATE users SET preferred_method = NULL WHERE id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        } else {
            sqlx::query("UPDATE users SET preferred_method = NULL WHERE id = $1 AND preferred_method = $2")
                .bind(user_id)
                .bind(method.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(left))
    }

    async fn reset_two_factor(&self, user_id: i64, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM two_factor_methods WHERE user_id = $1",
            "DELETE FROM totp_enrollments WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM one_time_codes WHERE user_id = $1",
            "UPDATE users SET preferred_method = NULL WHERE id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_preferred_method(&self, user_id: i64, method: Option<Method>) -> StoreResult<()> {
        sqlx::query("UPDATE users SET preferred_method = $1 WHERE id = $2").bind(method.map(Method::as_str)).bind(user_id).execute(&self.writer).await.map_err(map_err)?;
        Ok(())
    }

    async fn preferred_method(&self, user_id: i64) -> StoreResult<Option<Method>> {
        let row = sqlx::query("SELECT preferred_method FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.pool).await.map_err(map_err)?;
        match row {
            Some(r) => known_opt("users.preferred_method", get(&r, "preferred_method")?, Method::parse),
            None => Ok(None),
        }
    }

    async fn replace_confirmed_recovery_codes(&self, user_id: i64, hashes: &[String], now: OffsetDateTime, proof: Option<Proof<'_>>, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if !spend_proof(&mut *tx, user_id, proof).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        for hash in hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                .bind(user_id)
                .bind(hash.as_str())
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<i64> {
        let row = sqlx::query(CODES_LEFT).bind(user_id).fetch_one(&self.pool).await.map_err(map_err)?;
        get(&row, "n")
    }

    async fn issue_code(&self, user_id: i64, purpose: CodePurpose, c: &StoredCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO one_time_codes (user_id, purpose, code_hash, target, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = $3, target = $4, created_at = $5, expires_at = $6, used_at = NULL",
        )
        .bind(user_id)
        .bind(purpose.as_str())
        .bind(c.code_hash.as_str())
        .bind(c.target.as_ref().map(Channel::target))
        .bind(ts(c.created_at))
        .bind(ts(c.expires_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn code(&self, user_id: i64, purpose: CodePurpose) -> StoreResult<Option<StoredCode>> {
        let row = sqlx::query("SELECT code_hash, target, created_at, expires_at, used_at FROM one_time_codes WHERE user_id = $1 AND purpose = $2")
            .bind(user_id)
            .bind(purpose.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(StoredCode {
                code_hash: get(&r, "code_hash")?,
                target: known_opt("one_time_codes.target", get(&r, "target")?, Channel::from_target)?,
                created_at: to_time(get(&r, "created_at")?),
                expires_at: to_time(get(&r, "expires_at")?),
                used_at: opt_time(&r, "used_at")?,
            })
        })
        .transpose()
    }

    async fn consume_code(&self, user_id: i64, purpose: CodePurpose, hash: &str, now: OffsetDateTime) -> StoreResult<bool> {
        spend_code(&mut *self.writer.acquire().await.map_err(map_err)?, user_id, purpose, hash, now).await
    }

    async fn create_sign_in_flow(&self, id_hash: &str, f: &SignInFlow) -> StoreResult<()> {
        sqlx::query("INSERT INTO sign_in_flows (id_hash, user_id, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id_hash)
            .bind(f.user_id)
            .bind(f.state.as_str())
            .bind(ts(f.created_at))
            .bind(ts(f.expires_at))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn sign_in_flow(&self, id_hash: &str) -> StoreResult<Option<SignInFlow>> {
        const FLOW: &str = "SELECT user_id, state, created_at, expires_at, completed_at FROM sign_in_flows WHERE id_hash = $1";
        if let Some(inline) = &self.inline {
            return inline.optional(FLOW, [id_hash], |r| flow_from_row(r));
        }
        let row = sqlx::query(FLOW).bind(id_hash).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(flow_from_row).transpose()
    }

    async fn complete_sign_in_flow(&self, id_hash: &str, user_id: i64, factor: &FactorSpend, now: OffsetDateTime) -> StoreResult<FlowCompletion> {
        self.complete_flow(id_hash, user_id, factor, now, None).await
    }

    async fn complete_sign_in(&self, id_hash: &str, user_id: i64, factor: &FactorSpend, then: &SignInStart) -> StoreResult<FlowCompletion> {
        self.complete_flow(id_hash, user_id, factor, then.session.created_at, Some(then)).await
    }

    async fn count_send(&self, key: &str, window_start: OffsetDateTime) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO send_counters (key, window_start, sent) VALUES ($1, $2, 1) \
             ON CONFLICT (key, window_start) DO UPDATE SET sent = send_counters.sent + 1 RETURNING sent",
        )
        .bind(key)
        .bind(ts(window_start))
        .fetch_one(&self.writer)
        .await
        .map_err(map_err)?;
        get(&row, "sent")
    }
}

impl SqlStore {
    async fn complete_flow(&self, id_hash: &str, user_id: i64, factor: &FactorSpend, now: OffsetDateTime, then: Option<&SignInStart>) -> StoreResult<FlowCompletion> {
        if let Some(inline) = &self.inline_writer {
            // In our one writer's turn (see `InlineWriter`), the transaction on this thread.
            return inline
                .transaction(&self.writer, |conn| {
                    let outcome = finish_now(complete_flow_in(&mut Lite(conn), id_hash, user_id, factor, now, then))?;
                    let commit = matches!(outcome, FlowCompletion::Completed { .. });
                    Ok((outcome, commit))
                })
                .await;
        }
        let mut tx = self.begin().await?;
        let outcome = complete_flow_in(&mut *tx, id_hash, user_id, factor, now, then).await?;
        // Dropping the transaction uncommitted rolls the flow's completion back.
        if matches!(outcome, FlowCompletion::Completed { .. }) {
            tx.commit().await.map_err(map_err)?;
        }
        Ok(outcome)
    }
}

/// The completion inside its transaction; the caller commits only `Completed`.
async fn complete_flow_in(
    exec: &mut impl Exec,
    id_hash: &str,
    user_id: i64,
    factor: &FactorSpend,
    now: OffsetDateTime,
    then: Option<&SignInStart>,
) -> StoreResult<FlowCompletion> {
    // The flow first: a request that loses it waits on the flow's row, finds it completed and
    // never touches its factor; one that loses the factor rolls its completion back. Every
    // request takes the flow before the factor, so two cannot wait on each other.
    let taken = exec
        .run(
            "UPDATE sign_in_flows SET completed_at = $1 WHERE id_hash = $2 AND user_id = $3 AND completed_at IS NULL AND expires_at > $1",
            &[Arg::Int(ts(now)), Arg::Text(id_hash), Arg::Int(user_id)],
        )
        .await?;
    if taken != 1 {
        return Ok(FlowCompletion::FlowGone);
    }
    let outcome = spend_factor(exec, user_id, factor, now).await?;
    if let (FlowCompletion::Completed { .. }, Some(then)) = (&outcome, then) {
        exec.run("DELETE FROM throttle WHERE key = $1", &[Arg::Text(&then.wrong_code_key)]).await?;
        insert_session(exec, &then.session, &then.audit).await?;
    }
    Ok(outcome)

}

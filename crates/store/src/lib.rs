//! Latchkey's persistence. One [`Store`] trait; SQLite (the embedded default, WAL) and PostgreSQL
//! (many nodes, one database) behind it, with the same SQL wherever the two agree.
//!
//! Every single-use thing is consumed by one conditional `UPDATE … RETURNING`, and every state
//! change is one transaction, so two nodes racing cannot both succeed and a crash leaves nothing
//! half-written. The conformance suite in `tests/` runs against both backends.

mod audit;
mod emails;
mod exec;
mod inline;
mod overview;
mod pg_reads;
mod records;
mod sql;
mod sso;
mod tokens;
mod two_factor;
mod users;

pub use audit::*;
pub use emails::*;
pub use overview::*;
pub use records::*;
pub use sql::{PoolSettings, SqlStore};
pub use sso::*;
pub use tokens::*;
pub use two_factor::*;
pub use users::*;

use async_trait::async_trait;
use latchkey_core::flows::email_link::LinkPurpose;
use latchkey_core::secret::TokenHash;
use latchkey_core::throttle::ThrottlePolicy;
use latchkey_core::{CompanyDomain, Email, LoginName, UserState};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; the string names what was taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or answered with an error of its own.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How verifying the designated email with a code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVerification {
    Verified,
    /// The designated email is no longer the address the code went to; the code stays unspent.
    EmailChanged,
    /// The code was spent already (a racing request).
    ProofSpent,
}

/// What a store's connections are doing at one moment, for `/metrics`: an operator sees a leak
/// (a count that never goes back to zero on an idle node) before users do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreLoad {
    /// Connections of the read pool (PostgreSQL: of the one pool) taken now.
    pub pool_in_use: usize,
    /// SQLite: the one writer connection taken now (0 or 1), by a write or kept by the inline
    /// writers' turn. 0 on PostgreSQL, whose writes share `pool_in_use`.
    pub writer_in_use: usize,
    /// SQLite: inline write transactions waiting for the writer's turn.
    pub writer_waiting: usize,
    /// Connections closed because they came back to a pool inside a transaction.
    pub discarded_in_transaction_total: u64,
}

/// Why a link could not be consumed: nothing was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsumeError {
    /// No valid link with that hash (unknown, used, replaced or expired: read the link to tell).
    #[error("link not usable")]
    LinkNotUsable,
    /// The link was valid but the account is not in the state the flow needs.
    #[error("account in the wrong state")]
    WrongAccountState,
}

#[async_trait]
pub trait Store: AccountStore + TwoFactorStore + SsoStore + EmailStore + ApiTokenStore + UserListStore + AuditStore + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// The connections' load now (no round trip).
    fn load(&self) -> StoreLoad;

    // Companies and accounts (C1).
    async fn create_company(&self, name: &str, domain: &CompanyDomain, now: OffsetDateTime) -> StoreResult<Company>;
    async fn company_by_domain(&self, domain: &str) -> StoreResult<Option<Company>>;
    async fn list_companies(&self) -> StoreResult<Vec<Company>>;
    /// Inserts the invited user and the welcome link in one transaction.
    async fn create_user(&self, new: &NewUser, welcome: &NewLink, audit: &AuditEntry) -> StoreResult<User>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    async fn user_by_login_name(&self, login_name: &LoginName) -> StoreResult<Option<User>>;
    /// Accounts whose designated email is `email` (any case), all companies, by login name.
    async fn users_by_designated_email(&self, email: &Email) -> StoreResult<Vec<User>>;
    async fn additional_emails(&self, user_id: i64) -> StoreResult<Vec<AdditionalEmail>>;

    // Emailed links (C2, C4).
    /// Stores a new link, marks every earlier unused link of that purpose replaced, and writes the
    /// audit entry — one transaction.
    async fn issue_link(&self, user_id: i64, link: &NewLink, audit: &AuditEntry) -> StoreResult<()>;
    async fn link_by_token(&self, token: &TokenHash) -> StoreResult<Option<StoredLink>>;
    /// Complete Setup: consume the welcome link, set password and PIN, mark the account active and
    /// its designated email verified (the link went there) — one transaction.
    async fn activate(
        &self,
        token: &TokenHash,
        password_hash: &str,
        pin_hash: &str,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> StoreResult<Result<User, ConsumeError>>;
    /// Consume the reset link, replace the password and end every session — one transaction.
    async fn reset_password(
        &self,
        token: &TokenHash,
        password_hash: &str,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> StoreResult<Result<User, ConsumeError>>;

    // Credentials of a signed-in user.
    /// Replaces the password and ends every other session of the user.
    async fn change_password(&self, user_id: i64, password_hash: &str, keep_session: &TokenHash, audit: &AuditEntry) -> StoreResult<()>;
    async fn change_pin(&self, user_id: i64, pin_hash: &str, audit: &AuditEntry) -> StoreResult<()>;
    /// Keeps a rehashed password (parameters raised since it was set); only if unchanged meanwhile.
    async fn upgrade_password_hash(&self, user_id: i64, old_hash: &str, new_hash: &str) -> StoreResult<()>;

    // Sessions (C5).
    async fn create_session(&self, session: &NewSession, audit: &AuditEntry) -> StoreResult<()>;
    async fn session_by_token(&self, token: &TokenHash) -> StoreResult<Option<Session>>;
    async fn touch_session(&self, token: &TokenHash, now: OffsetDateTime) -> StoreResult<()>;
    async fn sessions_of_user(&self, user_id: i64) -> StoreResult<Vec<Session>>;
    /// Ends one session of the user by its handle, with its audit entry, in one transaction; false
    /// when the user has no such session (nothing written).
    async fn delete_session_by_handle(&self, user_id: i64, handle: &str, audit: &AuditEntry) -> StoreResult<bool>;
    /// Ends a session without an audit entry: an expired one, or one a refused step must not leave.
    async fn delete_session(&self, token: &TokenHash) -> StoreResult<()>;
    /// Sign-out: ends the session and writes its audit entry in one transaction.
    async fn end_session(&self, token: &TokenHash, audit: &AuditEntry) -> StoreResult<()>;
    /// Ends every session of the user but `keep`, with the audit entry `audit_for` makes of how
    /// many ended, in one transaction; returns how many ended.
    async fn delete_other_sessions(&self, user_id: i64, keep: &TokenHash, audit_for: &(dyn Fn(u64) -> AuditEntry + Send + Sync + '_)) -> StoreResult<u64>;
    /// Removes sessions whose idle or absolute time is over (housekeeping, not correctness).
    async fn delete_expired_sessions(&self, idle_before: OffsetDateTime, created_before: OffsetDateTime) -> StoreResult<u64>;

    // Throttling, shared by every node.
    /// The latest lock among `keys`, when one is still running at `now`.
    async fn throttle_locked_until(&self, keys: &[String], now: OffsetDateTime) -> StoreResult<Option<OffsetDateTime>>;
    /// Counts one failure against `key` (atomically) and returns the lock it now carries.
    async fn throttle_fail(&self, key: &str, policy: &ThrottlePolicy, now: OffsetDateTime) -> StoreResult<Option<OffsetDateTime>>;
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;

    // Operator.
    async fn set_user_state(&self, user_id: i64, state: UserState, audit: &AuditEntry) -> StoreResult<()>;
    async fn link_purpose_count(&self, user_id: i64, purpose: LinkPurpose) -> StoreResult<i64>;

    // The designated email.
    /// Replaces the designated email; the new one is unverified until proven, and every unused
    /// welcome or reset link (they went to the old address) stops working. One transaction with
    /// its audit entry.
    async fn change_designated_email(&self, user_id: i64, email: &Email, audit: &AuditEntry) -> StoreResult<()>;
    /// Marks the designated email verified, only if it is still `email` (it may have been changed
    /// since the code was sent). Returns whether it was.
    async fn mark_email_verified(&self, user_id: i64, email: &str, now: OffsetDateTime) -> StoreResult<bool> {
        Ok(self.verify_designated_email(user_id, email, now, None, None).await? == EmailVerification::Verified)
    }
    /// [`mark_email_verified`](Self::mark_email_verified) once `proof` (the code sent to `email`) is
    /// spent, with its audit entry — one transaction: nothing is written unless it is `Verified`.
    async fn verify_designated_email(
        &self,
        user_id: i64,
        email: &str,
        now: OffsetDateTime,
        proof: Option<Proof<'_>>,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<EmailVerification>;
}

/// Opens the store a URL names: `sqlite://…` (or a bare path) or `postgres://…`.
pub async fn open(url: &str, max_connections: u32) -> StoreResult<std::sync::Arc<dyn Store>> {
    open_with(url, &PoolSettings::new(max_connections)).await
}

/// As [`open`], with the pool's limits for a slow or unreachable database.
pub async fn open_with(url: &str, settings: &PoolSettings) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(SqlStore::connect_with(url, settings).await?))
}

/// Helpers for tests that need a real database or a port (this crate's conformance suite, the
/// server's HTTP tests, the binary's tests): kept here, the one crate every test can reach. Not
/// used by the product.
#[doc(hidden)]
pub mod testing {
    use sqlx::Connection;

    /// A port nobody listens on now, for a test server.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
    }

    /// The PostgreSQL server tests use; `LATCHKEY_TEST_POSTGRES` overrides it.
    pub fn admin_url() -> String {
        std::env::var("LATCHKEY_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// Creates a database of its own for one test and returns its URL, so runs never collide.
    /// Where no PostgreSQL answers, prints why and returns `None`; with `CI=true` that is a
    /// failure, so a CI run can never pass by skipping PostgreSQL.
    pub async fn fresh_postgres_url(test: &str) -> Option<String> {
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("PostgreSQL at {admin} is not reachable ({e}); skipping the PostgreSQL run of {test}");
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}: with CI=true this is a failure");
                }
                eprintln!("{msg}");
                return None;
            }
        };
        let name = format!("lk_test_{}_{}", std::process::id(), rand_suffix());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin.clone());
        Some(format!("{base}/{name}"))
    }

    /// Every row of `api_tokens`, each column as text, read straight from the database at `url`:
    /// for tests that check what is stored (a token's hash, never its secret).
    pub async fn api_token_rows(url: &str) -> Vec<Vec<Option<String>>> {
        let store = crate::SqlStore::connect(url, 1).await.expect("open the test database");
        let rows = sqlx::query(
            "SELECT CAST(id AS TEXT) AS c0, name AS c1, token_hash AS c2, CAST(company_id AS TEXT) AS c3, \
             CAST(created_at AS TEXT) AS c4, CAST(last_used_at AS TEXT) AS c5, CAST(revoked_at AS TEXT) AS c6 FROM api_tokens ORDER BY id",
        )
        .fetch_all(&store.pool)
        .await
        .expect("read api_tokens");
        rows.iter().map(|r| (0..7).map(|i| sqlx::Row::try_get::<Option<String>, _>(r, i).expect("a text column")).collect()).collect()
    }

    /// `GET /me`'s two statements, for the benchmark to put to PostgreSQL directly.
    pub fn me_statements() -> (String, &'static str) {
        crate::overview::me_statements()
    }

    /// Unique within the process (a counter: two tests can start in the same clock tick) and
    /// across runs (the time).
    fn rand_suffix() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{SystemTime, UNIX_EPOCH};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("{}_{:x}", NEXT.fetch_add(1, Ordering::Relaxed), n & 0xffff_ffff_ffff)
    }
}

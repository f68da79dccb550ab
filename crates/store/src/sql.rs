//! The SQL behind [`Store`]: one implementation over sqlx's `Any` driver, so SQLite and
//! PostgreSQL run the very same statements; only migrations and connection settings differ.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::flows::email_link::{EmailLink, LinkPurpose};
use latchkey_core::secret::TokenHash;
use latchkey_core::throttle::ThrottlePolicy;
use latchkey_core::{CompanyDomain, Email, LoginName, Role, UserState};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};
use time::OffsetDateTime;

use crate::exec::{Arg, Exec};
use crate::inline::{Checkpointer, InlineReads, InlineWriter, BACKSTOP_CHECKPOINT_PAGES};
use crate::pg_reads::PgReads;
use crate::records::*;
use crate::{ConsumeError, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    /// Reads: many connections at once (SQLite's WAL lets them read beside the writer).
    pub(crate) pool: AnyPool,
    /// Writes and write transactions. On SQLite a pool of its own with one connection: SQLite
    /// takes one writer at a time anyway, and a second connection asking for the write lock
    /// waits in SQLite's busy handler, which polls with sleeps of up to 100 ms (the benchmark saw
    /// second-factor sign-ins at p99 180 ms and ~1,000/s). Waiting for the one connection in the
    /// pool's queue instead wakes the next writer the moment the last one commits. On
    /// PostgreSQL the same pool as reads.
    pub(crate) writer: AnyPool,
    /// SQLite: the hottest reads, on the calling thread ([`crate::inline`]). None on PostgreSQL,
    /// where a read is a network round trip whatever the driver.
    pub(crate) inline: Option<InlineReads>,
    /// SQLite: the sign-in's last transaction on the calling thread ([`crate::exec`]).
    pub(crate) inline_writer: Option<InlineWriter>,
    /// SQLite: the WAL's checkpoints, off the requests' path.
    _checkpointer: Option<Checkpointer>,
    /// PostgreSQL: the reads of nearly every signed-in request, outside the pool ([`crate::pg_reads`]).
    pub(crate) pg_reads: Option<PgReads>,
    backend: Backend,
    /// Connections closed because they came back to a pool inside a transaction.
    discarded: Arc<AtomicU64>,
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.company_id, c.name AS company_name, c.domain AS company_domain, \
    c.password_min_length, u.extension, u.login_name, u.designated_email, u.designated_email_verified_at, \
    u.role, u.state, u.password_hash, u.pin_hash, u.created_at, u.activated_at, u.last_sign_in_at";

pub(crate) fn user_query(filter: &str) -> String {
    format!("SELECT {USER_COLUMNS} FROM users u JOIN companies c ON c.id = u.company_id WHERE {filter}")
}

/// How a store's connections behave when the database is slow or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// A call that gets no connection within this (the pool is busy, or the database does not
    /// answer) fails with [`StoreError::Unavailable`]. A PostgreSQL connection handed back to the
    /// pool must answer a round trip within it too, or it is closed.
    pub acquire_timeout: Duration,
    /// PostgreSQL ends a transaction of ours that waits this long for its next statement, and with
    /// it the locks it holds: its client is gone (its request was cut off, or the network
    /// between them failed). Our transactions run their statements back to back.
    pub idle_transaction_timeout: Duration,
}

impl PoolSettings {
    pub fn new(max_connections: u32) -> Self {
        Self { max_connections, acquire_timeout: Duration::from_secs(5), idle_transaction_timeout: Duration::from_secs(15) }
    }
}

impl SqlStore {
    /// Runs one change (`sql` with `args`) and, if it changed a row, writes `audit` with it — one
    /// transaction. `false` when it changed nothing (and nothing is written).
    pub(crate) async fn change_audited(&self, sql: &str, args: &[Arg<'_>], audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if crate::exec::bind(sqlx::query(sql), args).execute(&mut *tx).await.map_err(map_err)?.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    /// `sqlite://path`, a bare file path, or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        Self::connect_with(url, &PoolSettings::new(max_connections)).await
    }

    pub async fn connect_with(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (url, backend, file) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Backend::Postgres, None)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let sep = if path.contains('?') { '&' } else { '?' };
            let file = path.split('?').next().unwrap_or(path).to_owned();
            (format!("sqlite://{path}{sep}mode=rwc"), Backend::Sqlite, Some(file))
        };
        let idle_transaction_ms = settings.idle_transaction_timeout.as_millis().max(1);
        let discarded = Arc::new(AtomicU64::new(0));
        let mut options = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers and one writer work at once, and lets the CLI write
                        // beside a running server; busy_timeout makes the other wait, not fail.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // Checkpoints run on the store's own thread (`inline::Checkpointer`).
                        conn.execute(format!("PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}").as_str()).await?;
                    } else {
                        conn.execute(format!("SET idle_in_transaction_session_timeout = {idle_transaction_ms}").as_str()).await?;
                    }
                    Ok(())
                })
            });
        if backend == Backend::Postgres {
            let limit = settings.acquire_timeout;
            let (released, checked) = (discarded.clone(), discarded.clone());
            options = options.after_release(move |conn, _meta| Box::pin(release_check(conn, limit, released.clone())));
            // Every connection was checked when it was handed back, so one idle for less than a
            // few seconds is taken without another round trip; sqlx's default pings on every
            // take, which made three round trips of each one-statement read.
            options = options.test_before_acquire(false).before_acquire(move |conn, meta| {
                let checked = checked.clone();
                Box::pin(async move {
                    if meta.idle_for < IDLE_BEFORE_RECHECK {
                        return Ok(true);
                    }
                    release_check(conn, limit, checked.clone()).await
                })
            });
            let pool = options.connect(&url).await.map_err(map_err)?;
            let pg_reads = Some(PgReads::new(&url, PG_READ_CONNECTIONS, limit));
            return Ok(Self { writer: pool.clone(), pool, inline: None, inline_writer: None, _checkpointer: None, pg_reads, backend, discarded });
        }
        // A connection to a local file does not go stale while idle: no ping (a round trip to
        // its worker thread) each time one is taken from the pool.
        let released = discarded.clone();
        options = options.test_before_acquire(false).after_release(move |conn, _meta| Box::pin(release_outside_a_transaction(conn, released.clone())));
        // The writer first: it creates the file and sets WAL before any reader opens it.
        let writer = options.clone().max_connections(1).connect(&url).await.map_err(map_err)?;
        let pool = options.connect(&url).await.map_err(map_err)?;
        let readers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2;
        let inline = file.as_ref().map(|f| InlineReads::open(std::path::Path::new(f), readers)).transpose()?;
        let inline_writer = file.as_ref().map(|f| InlineWriter::open(std::path::Path::new(f))).transpose()?;
        let checkpointer = file.as_ref().map(|f| Checkpointer::start(std::path::Path::new(f))).transpose()?;
        Ok(Self { pool, writer, inline, inline_writer, _checkpointer: checkpointer, pg_reads: None, backend, discarded })
    }

    /// A transaction that may write. SQLite's default (deferred) transaction takes the write lock
    /// only at its first write, and when another writer committed since its first read it fails
    /// at once with "database is locked" (waiting could not help it: its snapshot is stale), so
    /// two requests that read then write at the same time got 503. `BEGIN IMMEDIATE` takes the
    /// write lock first, so the second waits its turn (`busy_timeout`). PostgreSQL's row locks
    /// and conditional updates need no such thing.
    /// Connections taken from the pools now, and who waits for the writer, for `/metrics`.
    pub fn load(&self) -> crate::StoreLoad {
        let in_use = |pool: &AnyPool| (pool.size() as usize).saturating_sub(pool.num_idle());
        let separate_writer = self.backend == Backend::Sqlite;
        crate::StoreLoad {
            pool_in_use: in_use(&self.pool),
            writer_in_use: if separate_writer { in_use(&self.writer) } else { 0 },
            writer_waiting: self.inline_writer.as_ref().map_or(0, InlineWriter::waiting),
            discarded_in_transaction_total: self.discarded.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        // Begun in a task of its own, which a cut-off request cannot stop halfway: sqlx 0.8 counts
        // a transaction (and so rolls it back on drop) only once BEGIN has answered, so a request
        // dropped while BEGIN was in flight handed its connection back to the pool inside a
        // transaction nobody would end (sqlx#4385). The task always finishes: with the
        // `Transaction` built, whose drop queues the rollback when nobody is left to take it.
        let (writer, backend) = (self.writer.clone(), self.backend);
        let begun = tokio::spawn(async move {
            match backend {
                Backend::Sqlite => writer.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => writer.begin().await,
            }
        });
        match begun.await {
            Ok(tx) => tx.map_err(map_err),
            Err(e) => Err(StoreError::Backend(format!("beginning a transaction: {e}"))),
        }
    }
}

/// Connections of a node for `pg_reads`, beside the pool's `max_connections`.
const PG_READ_CONNECTIONS: usize = 8;

/// A PostgreSQL connection idle for this long is checked again before it is used.
const IDLE_BEFORE_RECHECK: Duration = Duration::from_secs(5);

/// Before a PostgreSQL connection goes back to the pool, one round trip within `limit`, else it is
/// closed. sqlx's own check after this one waits without a limit: a connection handed back while
/// the database stopped answering (a query cut off by the request timeout, a release during a
/// network partition) would wait there until the kernel gives up on the socket (~15 minutes),
/// holding its slot all that time, and a pool full of them keeps the node down after the
/// database is back.
///
/// It also closes a connection still inside a transaction ([`keep_unless_in_a_transaction`]).
async fn release_check(conn: &mut sqlx::AnyConnection, limit: Duration, discarded: Arc<AtomicU64>) -> Result<bool, sqlx::Error> {
    match tokio::time::timeout(limit, conn.ping()).await {
        Ok(answered) => answered.map(|()| keep_unless_in_a_transaction(conn, &discarded)),
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the database did not answer the release check"))),
    }
}

/// A connection handed back to the pool inside a transaction is closed, never pooled: the next
/// caller would fail to begin its own (`begin_with` at a non-zero depth) or, worse, write inside
/// a transaction nobody commits. On SQLite, where every write goes through one writer
/// connection, one such connection stopped every write of the node until it was restarted.
///
/// How it happens: a request dropped at an `.await` inside sqlx's `begin_with` after the
/// database began the transaction but before sqlx built the `Transaction` that would roll it
/// back on drop (sqlx 0.8's SQLite driver awaits its worker's answer, then the connection's lock,
/// after `BEGIN`). A `Transaction` dropped the ordinary way only queues its rollback, which the
/// ping below runs first. Closing rolls back whatever is still open.
async fn release_outside_a_transaction(conn: &mut sqlx::AnyConnection, discarded: Arc<AtomicU64>) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() {
        conn.ping().await?;
    }
    Ok(keep_unless_in_a_transaction(conn, &discarded))
}

fn keep_unless_in_a_transaction(conn: &sqlx::AnyConnection, discarded: &AtomicU64) -> bool {
    !conn.is_in_transaction() || discard_in_a_transaction(discarded)
}

/// Counts (in the store's `discarded`) and logs a connection about to be closed for coming back
/// inside a transaction; false.
fn discard_in_a_transaction(discarded: &AtomicU64) -> bool {
    discarded.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("a database connection came back inside a transaction (its request was cut off); closed, which rolls it back");
    false
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let msg = db.message();
            let what = if msg.contains("domain") {
                "company domain"
            } else if msg.contains("login_name") || msg.contains("extension") {
                "extension"
            } else {
                "record"
            };
            StoreError::Conflict(what)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(crate) fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn to_time(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn opt_time(row: &impl Cells, col: &str) -> StoreResult<Option<OffsetDateTime>> {
    Ok(row.cell::<Option<i64>>(col)?.map(to_time))
}

pub(crate) fn get<T: Cell>(row: &impl Cells, col: &str) -> StoreResult<T> {
    row.cell(col)
}

/// A text column holding one of core's spellings (a method, a provider, a code's purpose…), read
/// back as core's type. The store writes only `as_str` spellings, so any other value is a corrupt
/// row: an error naming the column and the value, never a panic and never a silent default.
pub(crate) fn known<T>(column: &str, value: &str, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<T> {
    parse(value).ok_or_else(|| StoreError::Backend(format!("{column} holds {value:?}, which is not a known value")))
}

/// [`known`] for a nullable column.
pub(crate) fn known_opt<T>(column: &str, value: Option<String>, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<Option<T>> {
    value.map(|v| known(column, &v, parse)).transpose()
}

/// [`known`] for each item of a comma-separated list column (`totp,sms`); blanks are skipped.
pub(crate) fn known_list<T>(column: &str, csv: &str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<Vec<T>> {
    csv.split(',').map(str::trim).filter(|item| !item.is_empty()).map(|item| known(column, item, &parse)).collect()
}

/// A list column's text from core's spellings: what [`known_list`] reads back.
pub(crate) fn list_text<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(",")
}

/// A value every driver reads: sqlx's `Any` (most statements), sqlx's PostgreSQL
/// ([`crate::pg_reads`]) and rusqlite (the reads SQLite answers on the calling thread,
/// [`crate::inline`]). Our columns are integers and text, nullable or not.
pub(crate) trait Cell:
    for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + rusqlite::types::FromSql
{
}
impl<T> Cell for T where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + rusqlite::types::FromSql
{
}

/// A row of either driver, read by column name, so one function maps a record from both.
pub(crate) trait Cells {
    fn cell<T: Cell>(&self, col: &str) -> StoreResult<T>;
}

impl Cells for AnyRow {
    fn cell<T: Cell>(&self, col: &str) -> StoreResult<T> {
        self.try_get(col).map_err(map_err)
    }
}

impl Cells for sqlx::postgres::PgRow {
    fn cell<T: Cell>(&self, col: &str) -> StoreResult<T> {
        self.try_get(col).map_err(map_err)
    }
}

impl Cells for rusqlite::Row<'_> {
    fn cell<T: Cell>(&self, col: &str) -> StoreResult<T> {
        self.get(col).map_err(crate::inline::map_err)
    }
}

pub(crate) fn user_from_row(row: &impl Cells) -> StoreResult<User> {
    let role: String = get(row, "role")?;
    let state: String = get(row, "state")?;
    Ok(User {
        id: get(row, "id")?,
        company_id: get(row, "company_id")?,
        company_name: get(row, "company_name")?,
        company_domain: get(row, "company_domain")?,
        company_password_min_length: get(row, "password_min_length")?,
        extension: get(row, "extension")?,
        login_name: get(row, "login_name")?,
        designated_email: get(row, "designated_email")?,
        designated_email_verified_at: opt_time(row, "designated_email_verified_at")?,
        role: Role::from_str(&role).map_err(|_| StoreError::Backend(format!("unknown role {role}")))?,
        state: UserState::from_str(&state).map_err(|_| StoreError::Backend(format!("unknown state {state}")))?,
        password_hash: get(row, "password_hash")?,
        pin_hash: get(row, "pin_hash")?,
        created_at: to_time(get(row, "created_at")?),
        activated_at: opt_time(row, "activated_at")?,
        last_sign_in_at: opt_time(row, "last_sign_in_at")?,
    })
}

fn company_from_row(row: &AnyRow) -> StoreResult<Company> {
    Ok(Company {
        id: get(row, "id")?,
        name: get(row, "name")?,
        domain: get(row, "domain")?,
        password_min_length: get(row, "password_min_length")?,
        created_at: to_time(get(row, "created_at")?),
    })
}

fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        handle: get(row, "handle")?,
        user_id: get(row, "user_id")?,
        restricted: get::<String>(row, "kind")? == "restricted",
        created_at: to_time(get(row, "created_at")?),
        last_seen_at: to_time(get(row, "last_seen_at")?),
        client_ip: get(row, "client_ip")?,
        user_agent: get(row, "user_agent")?,
    })
}

const AUDIT_INSERT: &str = "INSERT INTO audit_events \
    (company_id, actor_user_id, actor_token_id, target_user_id, kind, detail, client_ip, user_agent, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) async fn insert_audit(exec: &mut impl Exec, a: &AuditEntry) -> StoreResult<()> {
    let args = [
        Arg::OptInt(a.company_id),
        Arg::OptInt(a.actor_user_id),
        Arg::OptInt(a.actor_token_id),
        Arg::OptInt(a.target_user_id),
        Arg::Text(a.kind),
        Arg::Text(&a.detail),
        Arg::OptText(a.client_ip.as_deref()),
        Arg::OptText(a.user_agent.as_deref()),
        Arg::Int(ts(a.at)),
    ];
    exec.run(AUDIT_INSERT, &args).await?;
    Ok(())
}

/// Marks every unused link of `purpose` for the user replaced: sending a new one kills the old.
const REPLACE_LINKS: &str = "UPDATE email_links SET replaced_at = $1 \
    WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL AND replaced_at IS NULL";

/// Welcome and reset links carry no address of their own: they went to the designated email of
/// the moment. When it changes they must die, or the old mailbox keeps a way in.
const REPLACE_DESIGNATED_LINKS: &str = "UPDATE email_links SET replaced_at = $1 \
    WHERE user_id = $2 AND email IS NULL AND used_at IS NULL AND replaced_at IS NULL";

const INSERT_LINK: &str = "INSERT INTO email_links (token_hash, user_id, purpose, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5)";

/// Stores a new welcome or reset link of the user, inside the caller's transaction.
async fn insert_link(exec: &mut impl Exec, user_id: i64, link: &NewLink) -> StoreResult<()> {
    let args = [
        Arg::Text(link.token_hash.as_str()),
        Arg::Int(user_id),
        Arg::Text(link.purpose().as_str()),
        Arg::Int(ts(link.link.created_at)),
        Arg::Int(ts(link.link.expires_at)),
    ];
    exec.run(INSERT_LINK, &args).await?;
    Ok(())
}

/// The single-use step: only a valid link of that purpose matches, and only once. A link sent to
/// an additional email works only while that very address is still on the account.
const CONSUME_LINK: &str = "UPDATE email_links SET used_at = $1 \
    WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND replaced_at IS NULL AND expires_at > $1 \
    AND (email IS NULL OR EXISTS (SELECT 1 FROM user_emails e WHERE e.id = email_links.user_email_id AND e.email = email_links.email)) \
    RETURNING user_id";

/// A credential a signed-in user replaces, and what else goes with it.
enum Credential<'a> {
    /// A new password also ends every session of the user but this one.
    Password { keep_session: &'a TokenHash },
    Pin,
}

impl SqlStore {
    /// The one row of `sql`, a read whose only parameter is the hash of a link's or a session's
    /// token; `None` when no row has it.
    pub(crate) async fn row_by_token(&self, sql: &str, token: &TokenHash) -> StoreResult<Option<AnyRow>> {
        sqlx::query(sql).bind(token.as_str()).fetch_optional(&self.pool).await.map_err(map_err)
    }

    /// Replaces the user's password or PIN hash with `hash` and writes `audit`, in one transaction.
    async fn replace_credential(&self, user_id: i64, credential: Credential<'_>, hash: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let update = match credential {
            Credential::Password { .. } => "UPDATE users SET password_hash = $1 WHERE id = $2",
            Credential::Pin => "UPDATE users SET pin_hash = $1 WHERE id = $2",
        };
        tx.run(update, &[Arg::Text(hash), Arg::Int(user_id)]).await?;
        if let Credential::Password { keep_session } = credential {
            tx.run("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2", &[Arg::Int(user_id), Arg::Text(keep_session.as_str())]).await?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn consume_and<F>(
        &self,
        token: &TokenHash,
        purpose: LinkPurpose,
        now: OffsetDateTime,
        audit: &AuditEntry,
        apply: F,
    ) -> StoreResult<Result<User, ConsumeError>>
    where
        F: FnOnce(i64) -> (String, Vec<Option<String>>),
    {
        let mut tx = self.begin().await?;
        let row = sqlx::query(CONSUME_LINK)
            .bind(ts(now))
            .bind(token.as_str())
            .bind(purpose.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            return Ok(Err(ConsumeError::LinkNotUsable));
        };
        let user_id: i64 = get(&row, "user_id")?;
        let (sql, binds) = apply(user_id);
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let changed = q.bind(ts(now)).bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        if changed.rows_affected() != 1 {
            // Dropping the transaction rolls back the consumed link too: nothing half-written.
            return Ok(Err(ConsumeError::WrongAccountState));
        }
        if purpose == LinkPurpose::PasswordReset {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        }
        let audit = AuditEntry { target_user_id: Some(user_id), actor_user_id: Some(user_id), ..audit.clone() };
        insert_audit(&mut *tx, &audit).await?;
        let user = sqlx::query(&user_query("u.id = $1"))
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)
            .and_then(|r| user_from_row(&r))?;
        tx.commit().await.map_err(map_err)?;
        Ok(Ok(user))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&self.writer).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    fn load(&self) -> crate::StoreLoad {
        SqlStore::load(self)
    }

    async fn create_company(&self, name: &str, domain: &CompanyDomain, now: OffsetDateTime) -> StoreResult<Company> {
        let row = sqlx::query(
            "INSERT INTO companies (name, domain, password_min_length, created_at) VALUES ($1, $2, 8, $3) \
             RETURNING id, name, domain, password_min_length, created_at",
        )
        .bind(name)
        .bind(domain.as_str())
        .bind(ts(now))
        .fetch_one(&self.writer)
        .await
        .map_err(map_err)?;
        company_from_row(&row)
    }

    async fn company_by_domain(&self, domain: &str) -> StoreResult<Option<Company>> {
        let row = sqlx::query("SELECT id, name, domain, password_min_length, created_at FROM companies WHERE domain = $1")
            .bind(domain.trim().to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| company_from_row(&r)).transpose()
    }

    async fn list_companies(&self) -> StoreResult<Vec<Company>> {
        let rows = sqlx::query("SELECT id, name, domain, password_min_length, created_at FROM companies ORDER BY domain")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(company_from_row).collect()
    }

    async fn create_user(&self, new: &NewUser, welcome: &NewLink, audit: &AuditEntry) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (company_id, extension, login_name, designated_email, designated_email_key, role, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'invited', $7) RETURNING id",
        )
        .bind(new.company_id)
        .bind(new.extension.as_str())
        .bind(new.login_name.as_str())
        .bind(new.designated_email.as_str())
        .bind(new.designated_email.key())
        .bind(new.role.as_str())
        .bind(ts(new.created_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let id: i64 = get(&row, "id")?;
        insert_link(&mut *tx, id, welcome).await?;
        insert_audit(&mut *tx, &AuditEntry { target_user_id: Some(id), ..audit.clone() }).await?;
        let user = sqlx::query(&user_query("u.id = $1")).bind(id).fetch_one(&mut *tx).await.map_err(map_err)?;
        let user = user_from_row(&user)?;
        tx.commit().await.map_err(map_err)?;
        Ok(user)
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        if let Some(inline) = &self.inline {
            return inline.optional(&user_query("u.id = $1"), [id], |r| user_from_row(r));
        }
        let row = sqlx::query(&user_query("u.id = $1")).bind(id).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn user_by_login_name(&self, login_name: &LoginName) -> StoreResult<Option<User>> {
        let row = sqlx::query(&user_query("u.login_name = $1"))
            .bind(login_name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn users_by_designated_email(&self, email: &Email) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!("{} ORDER BY u.login_name", user_query("u.designated_email_key = $1")))
            .bind(email.key())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn additional_emails(&self, user_id: i64) -> StoreResult<Vec<AdditionalEmail>> {
        let rows = sqlx::query("SELECT email, verified_at FROM user_emails WHERE user_id = $1 ORDER BY email_key")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok(AdditionalEmail { email: get(r, "email")?, verified_at: opt_time(r, "verified_at")? }))
            .collect()
    }

    async fn issue_link(&self, user_id: i64, link: &NewLink, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(REPLACE_LINKS)
            .bind(ts(link.link.created_at))
            .bind(user_id)
            .bind(link.purpose().as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_link(&mut *tx, user_id, link).await?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn link_by_token(&self, token: &TokenHash) -> StoreResult<Option<StoredLink>> {
        let sql = "SELECT user_id, purpose, created_at, expires_at, used_at, replaced_at, email FROM email_links WHERE token_hash = $1";
        let Some(row) = self.row_by_token(sql, token).await? else { return Ok(None) };
        let purpose: String = get(&row, "purpose")?;
        let purpose = LinkPurpose::parse(&purpose).ok_or_else(|| StoreError::Backend(format!("unknown link purpose {purpose}")))?;
        Ok(Some(StoredLink {
            user_id: get(&row, "user_id")?,
            sent_to: get(&row, "email")?,
            link: EmailLink {
                purpose,
                created_at: to_time(get(&row, "created_at")?),
                expires_at: to_time(get(&row, "expires_at")?),
                used_at: opt_time(&row, "used_at")?,
                replaced_at: opt_time(&row, "replaced_at")?,
            },
        }))
    }

    async fn activate(
        &self,
        token: &TokenHash,
        password_hash: &str,
        pin_hash: &str,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> StoreResult<Result<User, ConsumeError>> {
        let (pw, pin) = (password_hash.to_owned(), pin_hash.to_owned());
        self.consume_and(token, LinkPurpose::Welcome, now, audit, move |_| {
            (
                "UPDATE users SET password_hash = $1, pin_hash = $2, state = 'active', activated_at = $3, \
                 designated_email_verified_at = $3 WHERE id = $4 AND state = 'invited'"
                    .to_owned(),
                vec![Some(pw), Some(pin)],
            )
        })
        .await
    }

    async fn reset_password(
        &self,
        token: &TokenHash,
        password_hash: &str,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> StoreResult<Result<User, ConsumeError>> {
        let pw = password_hash.to_owned();
        // The reset link went to the designated email and was opened: that verifies it, too.
        self.consume_and(token, LinkPurpose::PasswordReset, now, audit, move |_| {
            (
                "UPDATE users SET password_hash = $1, \
                 designated_email_verified_at = COALESCE(designated_email_verified_at, $2) \
                 WHERE id = $3 AND state = 'active'"
                    .to_owned(),
                vec![Some(pw)],
            )
        })
        .await
    }

    async fn change_password(&self, user_id: i64, password_hash: &str, keep_session: &TokenHash, audit: &AuditEntry) -> StoreResult<()> {
        self.replace_credential(user_id, Credential::Password { keep_session }, password_hash, audit).await
    }

    async fn change_pin(&self, user_id: i64, pin_hash: &str, audit: &AuditEntry) -> StoreResult<()> {
        self.replace_credential(user_id, Credential::Pin, pin_hash, audit).await
    }

    async fn upgrade_password_hash(&self, user_id: i64, old_hash: &str, new_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
            .bind(new_hash)
            .bind(user_id)
            .bind(old_hash)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn create_session(&self, s: &NewSession, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_session(&mut *tx, s, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn session_by_token(&self, token: &TokenHash) -> StoreResult<Option<Session>> {
        let sql = "SELECT handle, user_id, kind, created_at, last_seen_at, client_ip, user_agent FROM sessions WHERE id_hash = $1";
        let row = self.row_by_token(sql, token).await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    async fn touch_session(&self, token: &TokenHash, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(ts(now))
            .bind(token.as_str())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn sessions_of_user(&self, user_id: i64) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(
            "SELECT handle, user_id, kind, created_at, last_seen_at, client_ip, user_agent FROM sessions \
             WHERE user_id = $1 ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn delete_session_by_handle(&self, user_id: i64, handle: &str, audit: &AuditEntry) -> StoreResult<bool> {
        self.change_audited("DELETE FROM sessions WHERE user_id = $1 AND handle = $2", &[Arg::Int(user_id), Arg::Text(handle)], audit).await
    }

    async fn delete_session(&self, token: &TokenHash) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(token.as_str()).execute(&self.writer).await.map_err(map_err)?;
        Ok(())
    }

    async fn end_session(&self, token: &TokenHash, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(token.as_str()).execute(&mut *tx).await.map_err(map_err)?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn delete_other_sessions(&self, user_id: i64, keep: &TokenHash, audit_for: &(dyn Fn(u64) -> AuditEntry + Send + Sync + '_)) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_audit(&mut *tx, &audit_for(r.rows_affected())).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn delete_expired_sessions(&self, idle_before: OffsetDateTime, created_before: OffsetDateTime) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE last_seen_at <= $1 OR created_at <= $2")
            .bind(ts(idle_before))
            .bind(ts(created_before))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn throttle_locked_until(&self, keys: &[String], now: OffsetDateTime) -> StoreResult<Option<OffsetDateTime>> {
        const LOCKED: &str = "SELECT locked_until FROM throttle WHERE key = $1 AND locked_until > $2";
        let mut latest: Option<i64> = None;
        if let Some(inline) = &self.inline {
            for key in keys {
                let until = inline.optional(LOCKED, rusqlite::params![key, ts(now)], |r| get::<Option<i64>>(r, "locked_until"))?;
                latest = latest.max(until.flatten());
            }
            return Ok(latest.map(to_time));
        }
        for key in keys {
            let row = sqlx::query(LOCKED)
                .bind(key.as_str())
                .bind(ts(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            if let Some(row) = row {
                let until: Option<i64> = get(&row, "locked_until")?;
                latest = latest.max(until);
            }
        }
        Ok(latest.map(to_time))
    }

    async fn throttle_fail(&self, key: &str, policy: &ThrottlePolicy, now: OffsetDateTime) -> StoreResult<Option<OffsetDateTime>> {
        // One statement: a fresh window starts when the old one is over; the lock is set when the
        // count reaches the limit. Concurrent failures on any node all count.
        let window_open_after = ts(now - policy.window);
        let row = sqlx::query(
            "INSERT INTO throttle (key, window_start, failures, locked_until) VALUES ($1, $2, 1, CASE WHEN 1 >= $4 THEN $5 ELSE NULL END) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN throttle.window_start <= $3 THEN 1 ELSE throttle.failures + 1 END, \
               window_start = CASE WHEN throttle.window_start <= $3 THEN $2 ELSE throttle.window_start END, \
               locked_until = CASE \
                 WHEN (CASE WHEN throttle.window_start <= $3 THEN 1 ELSE throttle.failures + 1 END) >= $4 THEN $5 \
                 ELSE throttle.locked_until END \
             RETURNING locked_until",
        )
        .bind(key)
        .bind(ts(now))
        .bind(window_open_after)
        .bind(i64::from(policy.max_failures))
        .bind(ts(now + policy.lockout))
        .fetch_one(&self.writer)
        .await
        .map_err(map_err)?;
        let until: Option<i64> = get(&row, "locked_until")?;
        Ok(until.map(to_time).filter(|u| *u > now))
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle WHERE key = $1").bind(key).execute(&self.writer).await.map_err(map_err)?;
        Ok(())
    }

    async fn set_user_state(&self, user_id: i64, state: UserState, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_user(&mut *tx, "UPDATE users SET state = $1 WHERE id = $2", &[Arg::Text(state.as_str()), Arg::Int(user_id)]).await?;
        if state == UserState::Disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        }
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn link_purpose_count(&self, user_id: i64, purpose: LinkPurpose) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM email_links WHERE user_id = $1 AND purpose = $2")
            .bind(user_id)
            .bind(purpose.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        get(&row, "n")
    }

    async fn change_designated_email(&self, user_id: i64, email: &Email, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let sql = "UPDATE users SET designated_email = $1, designated_email_key = $2, designated_email_verified_at = NULL WHERE id = $3";
        update_user(&mut *tx, sql, &[Arg::Text(email.as_str()), Arg::Text(&email.key()), Arg::Int(user_id)]).await?;
        sqlx::query(REPLACE_DESIGNATED_LINKS).bind(ts(audit.at)).bind(user_id).execute(&mut *tx).await.map_err(map_err)?;
        insert_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn verify_designated_email(
        &self,
        user_id: i64,
        email: &str,
        now: OffsetDateTime,
        proof: Option<crate::Proof<'_>>,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<crate::EmailVerification> {
        let mut tx = self.begin().await?;
        // The code proves the address it went to: if the office manager changed the designated
        // email meanwhile, the new one is not verified by it (and the code is not spent).
        let r = sqlx::query("UPDATE users SET designated_email_verified_at = $1 WHERE id = $2 AND designated_email = $3")
            .bind(ts(now))
            .bind(user_id)
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() != 1 {
            return Ok(crate::EmailVerification::EmailChanged);
        }
        if !crate::two_factor::spend_proof(&mut *tx, user_id, proof).await? {
            return Ok(crate::EmailVerification::ProofSpent);
        }
        if let Some(audit) = audit {
            insert_audit(&mut *tx, audit).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(crate::EmailVerification::Verified)
    }
}

/// Runs `sql`, an UPDATE of the user's row, inside the caller's transaction; `NotFound` when there
/// is no such user.
async fn update_user(exec: &mut impl Exec, sql: &str, args: &[Arg<'_>]) -> StoreResult<()> {
    match exec.run(sql, args).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// A new session, the account's last sign-in time and the sign-in's audit entry, inside the
/// caller's transaction.
pub(crate) async fn insert_session(exec: &mut impl Exec, s: &NewSession, audit: &AuditEntry) -> StoreResult<()> {
    let created = ts(s.created_at);
    exec.run(
        "INSERT INTO sessions (id_hash, handle, user_id, created_at, last_seen_at, client_ip, user_agent, kind) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
        &[
            Arg::Text(s.token_hash.as_str()),
            Arg::Text(&s.handle),
            Arg::Int(s.user_id),
            Arg::Int(created),
            Arg::OptText(s.client_ip.as_deref()),
            Arg::OptText(s.user_agent.as_deref()),
            Arg::Text(if s.restricted { "restricted" } else { "full" }),
        ],
    )
    .await?;
    exec.run("UPDATE users SET last_sign_in_at = $1 WHERE id = $2", &[Arg::Int(created), Arg::Int(s.user_id)]).await?;
    insert_audit(exec, audit).await
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    use super::*;

    /// `name::sqlite` and `name::postgres`: the test `run(backend)` on each store.
    macro_rules! on_both_stores {
        ($name:ident, $run:ident) => {
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$run(super::Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$run(super::Backend::Postgres).await;
                }
            }
        };
    }

    /// Polls `work` once; whether it finished (its output is dropped at once).
    async fn poll_once<T>(work: &mut Pin<Box<impl Future<Output = T>>>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await
    }

    /// A store with one table `t`, and its URL: SQLite in `dir`, or a fresh PostgreSQL database
    /// (`None` where PostgreSQL cannot be reached; with CI=true that fails instead).
    async fn store(dir: &tempfile::TempDir, backend: Backend) -> Option<(SqlStore, String)> {
        let url = match backend {
            Backend::Sqlite => dir.path().join("cut.db").display().to_string(),
            Backend::Postgres => crate::testing::fresh_postgres_url("cut_off").await?,
        };
        let store = SqlStore::connect(&url, 1).await.unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER)").execute(&store.writer).await.unwrap();
        Some((store, url))
    }

    /// Every connection is back in its pool outside any transaction, and the store writes again:
    /// a write outside a transaction is seen at once by another connection (a connection left
    /// inside a transaction would hide it until that transaction ended, and undo it with a
    /// rollback), and a write transaction begins and commits.
    async fn assert_clean_and_writes_again(store: &SqlStore, url: &str, after: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.load().writer_in_use + store.load().pool_in_use != 0 {
            assert!(std::time::Instant::now() < deadline, "after {after}: a connection never went back to the pool");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if store.backend == Backend::Postgres {
            let mut observer = sqlx::PgConnection::connect(url).await.unwrap();
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            )
            .fetch_one(&mut observer)
            .await
            .unwrap();
            assert_eq!(open, 0, "after {after}: a pooled connection sits idle in a transaction");
        }
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&store.pool).await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&store.writer).await.unwrap();
        let seen = match store.backend {
            Backend::Postgres => {
                let mut observer = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM t").fetch_one(&mut observer).await.unwrap()
            }
            Backend::Sqlite => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM t").fetch_one(&store.pool).await.unwrap(),
        };
        assert_eq!(seen, before + 1, "after {after}: a write outside a transaction is not seen by another connection");
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin())
            .await
            .unwrap_or_else(|_| panic!("after {after}: no writer within 5 s"))
            .unwrap_or_else(|e| panic!("after {after}: the writer refuses to begin: {e}"));
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    // A request cut off at any point of beginning its write transaction leaves SQLite's one
    // writer connection usable. Cut off after `BEGIN IMMEDIATE` ran but before sqlx built the
    // transaction's guard, the connection went back to the pool inside a transaction, and every
    // later write of the node failed ("begin_with at non-zero transaction depth").
    on_both_stores!(a_write_cut_off_while_it_begins_leaves_the_writer_usable, cut_off_while_it_begins);

    async fn cut_off_while_it_begins(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, url)) = store(&dir, backend).await else { return };
        for polls in (1..=8).cycle().take(40) {
            // Each pause lets the database or SQLite's worker thread run a step (the connection,
            // BEGIN, its answer, the lock); the future is dropped right after its last poll, with
            // that poll's step in flight: cut off after 1, 2, … of them.
            let mut begin = Box::pin(store.begin());
            for poll in 1..=polls {
                if poll_once(&mut begin).await {
                    break;
                }
                if poll < polls {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            drop(begin);
            assert_clean_and_writes_again(&store, &url, &format!("a begin cut off after {polls} polls")).await;
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&store.pool).await.unwrap();
        assert_eq!(rows, 80, "each round wrote twice");
        assert_eq!(store.load().discarded_in_transaction_total, 0, "every cut-off begin ended its own transaction; none was left for the release check");
    }

    // The pools' release checks on their own: a connection handed back inside a transaction
    // (its `Transaction` forgotten, so no rollback was queued) is closed.
    on_both_stores!(a_connection_handed_back_inside_a_transaction_is_closed, released_inside_a_transaction);

    async fn released_inside_a_transaction(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, url)) = store(&dir, backend).await else { return };
        let mut conn = store.writer.acquire().await.unwrap();
        let tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        std::mem::forget(tx);
        sqlx::query("INSERT INTO t (v) VALUES (3)").execute(&mut *conn).await.unwrap();
        drop(conn);
        assert_clean_and_writes_again(&store, &url, "a connection handed back in a counted transaction").await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE v = 3").fetch_one(&store.pool).await.unwrap();
        assert_eq!(left, 0, "the unfinished transaction's insert was rolled back");
    }

    // A request cut off inside its write transaction writes nothing, and the writer goes on.
    on_both_stores!(a_write_cut_off_mid_transaction_writes_nothing_and_leaves_the_writer_usable, cut_off_mid_transaction);

    async fn cut_off_mid_transaction(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, url)) = store(&dir, backend).await else { return };
        let mut work = Box::pin(async {
            let mut tx = store.begin().await?;
            sqlx::query("INSERT INTO t (v) VALUES (2)").execute(&mut *tx).await.map_err(map_err)?;
            std::future::pending::<()>().await;
            tx.commit().await.map_err(map_err)
        });
        // Polled until it waits on forever, after its insert (a few worker round trips).
        for _ in 0..20 {
            assert!(!poll_once(&mut work).await, "the transaction never finishes");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.load().writer_in_use + store.load().pool_in_use, 1, "the transaction holds a connection");
        drop(work);
        assert_clean_and_writes_again(&store, &url, "a transaction cut off after its insert").await;
        let cut: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE v = 2").fetch_one(&store.pool).await.unwrap();
        assert_eq!(cut, 0, "the cut-off transaction's insert was rolled back");
    }
}

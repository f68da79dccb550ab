//! SQLite statements run on the calling thread, for what nearly every request does: the reads of
//! the session with its account, the account's overview, the sign-in flow waiting for its second
//! factor and what checking that factor reads, and the transaction that completes the sign-in.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own and hands every statement to it
//! and the rows back over channels. For a read that SQLite answers from its page cache in a few
//! microseconds, those two thread hand-offs were the cost: a profile of `GET /api/v1/me` under load
//! spent about half the machine in futex waits and wake-ups around sqlx's channels, under 1 % in
//! SQLite itself. Here the statement runs where the request already is, on one of a few read-only
//! connections of the same database file (WAL lets them read beside the writer and see every
//! commit at once).
//!
//! Besides the reads: [`InlineWriter`], the same for one transaction (a sign-in's last step,
//! `crate::exec`), and [`Checkpointer`], which keeps WAL checkpoints off every request's path.
//! Every other write stays on sqlx's one writer connection.
//!
//! A read blocks its runtime thread for as long as SQLite takes: microseconds for these indexed
//! lookups of a database in the page cache. `busy_timeout` is short because a WAL reader waits
//! only in rare recovery cases.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Params, Row};

use crate::{StoreError, StoreResult};

pub(crate) struct InlineReads {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl InlineReads {
    /// `count` read-only connections to the database file at `path` (which must exist: the
    /// writer creates it).
    pub(crate) fn open(path: &Path, count: usize) -> StoreResult<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connections = (0..count.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
                conn.busy_timeout(Duration::from_millis(250)).map_err(map_err)?;
                conn.set_prepared_statement_cache_capacity(32);
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Self { connections, next: AtomicUsize::new(0) })
    }

    /// Runs `read` on a free connection, or waits for the next one in turn.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let n = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(conn) = self.connections[(start + i) % n].try_lock() {
                return read(&conn);
            }
        }
        // A poisoned lock only means a read panicked while holding it; the connection is fine.
        let conn = self.connections[start % n].lock().unwrap_or_else(|p| p.into_inner());
        read(&conn)
    }

    /// The first row of `sql`, mapped; `None` when there is none.
    pub(crate) fn optional<T>(&self, sql: &str, params: impl Params, map: impl FnOnce(&Row<'_>) -> StoreResult<T>) -> StoreResult<Option<T>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(map_err)?;
            let mut rows = statement.query(params).map_err(map_err)?;
            match rows.next().map_err(map_err)? {
                Some(row) => map(row).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every row of `sql`, each given to `each` in order.
    pub(crate) fn each(&self, sql: &str, params: impl Params, mut each: impl FnMut(&Row<'_>) -> StoreResult<()>) -> StoreResult<()> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(sql).map_err(map_err)?;
            let mut rows = statement.query(params).map_err(map_err)?;
            while let Some(row) = rows.next().map_err(map_err)? {
                each(row)?;
            }
            Ok(())
        })
    }
}

/// SQLite's write connection for the transactions [`crate::exec`] runs on the calling thread. It
/// writes only while its caller holds the turn of the store's one sqlx writer connection, so our
/// writes never meet in SQLite's busy handler; `busy_timeout` is for another process (the CLI).
///
/// Inline transactions that queue behind each other pass the turn along without handing the sqlx
/// connection back: sqlx pings every connection handed back, a round trip to its worker thread
/// that the next writer would wait for. After [`MAX_STREAK`] the turn is handed back anyway, so a
/// write through sqlx waits for at most that many.
pub(crate) struct InlineWriter {
    connection: Mutex<Connection>,
    lane: Arc<Lane>,
}

/// Whose turn it is among the inline writers, and how many wait for it.
#[derive(Default)]
struct Lane {
    turn: tokio::sync::Mutex<Turn>,
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Turn {
    held: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    streak: u32,
}

const MAX_STREAK: u32 = 32;

/// An inline writer waiting for the turn. One that stops waiting (its request was cut off) while
/// the turn's connection is kept for it, and is the last to wait, hands the connection back to
/// sqlx; else sqlx's writes would wait until the next inline transaction, which may never come.
struct Waiting {
    lane: Arc<Lane>,
    served: bool,
}

impl Waiting {
    fn enter(lane: &Arc<Lane>) -> Self {
        lane.waiting.fetch_add(1, Ordering::SeqCst);
        Self { lane: lane.clone(), served: false }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let last = self.lane.waiting.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && !self.served {
            let lane = self.lane.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let mut turn = lane.turn.lock().await;
                    if lane.waiting.load(Ordering::SeqCst) == 0 {
                        turn.held = None;
                    }
                });
            }
        }
    }
}

impl InlineWriter {
    pub(crate) fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(map_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
        // As sqlx's connections are set (`SqlStore::connect_with`): all are per connection.
        conn.execute_batch(&format!("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES};"))
            .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self { connection: Mutex::new(conn), lane: Arc::new(Lane::default()) })
    }

    /// Inline transactions waiting for the writer's turn now.
    pub(crate) fn waiting(&self) -> usize {
        self.lane.waiting.load(Ordering::SeqCst)
    }

    /// Runs `work` in a transaction that holds the write lock from its start (`BEGIN IMMEDIATE`,
    /// as `SqlStore::begin`), during the turn of `writer` (the store's one sqlx writer), and
    /// commits it when `work` says so; otherwise, or on an error, it is rolled back.
    pub(crate) async fn transaction<T>(&self, writer: &sqlx::AnyPool, work: impl FnOnce(&Connection) -> StoreResult<(T, bool)>) -> StoreResult<T> {
        let mut waiting = Waiting::enter(&self.lane);
        let mut turn = self.lane.turn.lock().await;
        waiting.served = true;
        drop(waiting);
        if turn.held.is_none() {
            turn.held = Some(writer.acquire().await.map_err(crate::sql::map_err)?);
            turn.streak = 0;
        }
        let result = self.run(work);
        turn.streak += 1;
        if self.lane.waiting.load(Ordering::SeqCst) == 0 || turn.streak >= MAX_STREAK {
            turn.held = None;
        }
        result
    }

    fn run<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<(T, bool)>) -> StoreResult<T> {
        let mut conn = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        let (value, commit) = work(&tx)?;
        if commit {
            tx.commit().map_err(map_err)?;
        }
        Ok(value)
    }
}

/// WAL pages after which a committing connection checkpoints by itself: a backstop only (128 MiB),
/// for when the [`Checkpointer`] lags. SQLite's default of 1,000 made every few hundredth commit
/// copy the WAL into the database and sync both files while holding the one writer's turn: a
/// pause of milliseconds for every writer, and about a quarter of the second-factor sign-ins
/// the benchmark could do.
pub(crate) const BACKSTOP_CHECKPOINT_PAGES: u32 = 32_768;

/// Checkpoints the WAL on a thread of its own, ten times a second, off every request's path. A
/// passive checkpoint waits for no reader or writer; it copies what it can, and the WAL starts
/// over from its beginning once all of it was copied. The thread stops when this is dropped.
/// Often enough that the WAL stays small under a write load (every commit appends each page it
/// changed, ~30 KiB for a sign-in, so 5,000 sign-ins a second add ~150 MB a second); a checkpoint
/// with nothing to copy costs next to nothing.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(map_err)?;
        // The WAL file is cut back to this after a checkpoint let it start over.
        conn.execute_batch("PRAGMA journal_size_limit = 67108864;").map_err(map_err)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("latchkey-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self { _stop: stop })
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::CannotOpen) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inline writer whose request is cut off while it waits, with the turn's connection kept
    /// for it, hands that connection back: sqlx's writes get it at once.
    #[tokio::test]
    async fn a_writer_that_stops_waiting_hands_the_kept_connection_back() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(2)).connect(&url).await.unwrap();
        let writer = Arc::new(InlineWriter::open(&path).unwrap());

        // The turn is held, and its connection kept, as by a transaction that saw someone waiting.
        let mut turn = writer.lane.turn.lock().await;
        turn.held = Some(pool.acquire().await.unwrap());
        let waiter = {
            let (writer, pool) = (writer.clone(), pool.clone());
            tokio::spawn(async move { writer.transaction(&pool, |_| Ok(((), false))).await })
        };
        while writer.lane.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        drop(turn);

        let taken = tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await;
        assert!(taken.is_ok(), "the kept connection went back to the pool");
        assert_eq!(writer.lane.waiting.load(Ordering::SeqCst), 0);
    }

    /// The writer's own checkpoints are off here, as they are nearly off in the store: only the
    /// checkpoint thread can move the committed pages into the database file.
    #[test]
    fn the_checkpoint_thread_moves_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v TEXT);").unwrap();
        for _ in 0..200 {
            writer.execute("INSERT INTO t (v) VALUES (?1)", [&"x".repeat(1000)]).unwrap();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let _checkpointer = Checkpointer::start(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint within 10 s: the file stayed at {before} bytes");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rows: i64 = Connection::open(&path).unwrap().query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 200);
    }
}

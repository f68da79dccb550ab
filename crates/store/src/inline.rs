//! SQLite reads answered on the calling thread, for the statements nearly every request makes
//! (the session with its account, the account's overview, the sign-in flow waiting for its second
//! factor).
//!
//! Why: sqlx runs each SQLite connection on a thread of its own and hands every statement to it
//! and the rows back over channels. For a read that SQLite answers from its page cache in a few
//! microseconds, those two thread hand-offs were the cost: a profile of `GET /api/v1/me` under load
//! spent about half the machine in futex waits and wake-ups around sqlx's channels, under 1 % in
//! SQLite itself. Here the statement runs where the request already is, on one of a few read-only
//! connections of the same database file (WAL lets them read beside the writer and see every
//! commit at once).
//!
//! Only reads come here; every write, and every read inside a write transaction, stays on sqlx.
//! A read blocks its runtime thread for as long as SQLite takes: microseconds for these indexed
//! lookups of a database in the page cache. `busy_timeout` is short because a WAL reader waits
//! only in rare recovery cases.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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

//! PostgreSQL reads for what nearly every signed-in request asks (the session with its account,
//! the account's overview), on a few connections of their own instead of sqlx's pool.
//!
//! Why: through the pool each one-statement read cost three round trips (the statement, our
//! time-limited check of the connection handed back, and sqlx's own ping on the way back, which
//! sqlx 0.8 cannot turn off), and the `Any` driver converted every row. The benchmark saw `/me` at
//! 6,000/s while PostgreSQL answered 150,000 round trips a second on the same machine.
//!
//! What keeps a lost database from hanging a node here, as the pool's settings do elsewhere: a
//! connection is opened, and each statement runs, within `limit`; a connection that fails or runs
//! out of time is dropped and the next read opens a new one. A connection idle for a while that
//! fails at once (the server restarted) is replaced and the read tried once more: reads change
//! nothing, so a second try is safe; one that timed out is not tried again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Connection;
use tokio::sync::Mutex;

use crate::exec::{bind, Arg};
use crate::sql::map_err;
use crate::{StoreError, StoreResult};

pub(crate) struct PgReads {
    url: String,
    limit: Duration,
    slots: Vec<Mutex<Option<Slot>>>,
    next: AtomicUsize,
}

struct Slot {
    conn: PgConnection,
    last_used: Instant,
}

/// A connection idle longer than this may have been closed under it without our knowing.
const IDLE_BEFORE_RETRY: Duration = Duration::from_secs(5);

impl PgReads {
    /// No connection is opened until the first read.
    pub(crate) fn new(url: &str, count: usize, limit: Duration) -> Self {
        Self { url: url.to_owned(), limit, slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(), next: AtomicUsize::new(0) }
    }

    /// The rows of `sql`, each given to `each` in order.
    pub(crate) async fn each(&self, sql: &str, args: &[Arg<'_>], mut each: impl FnMut(&PgRow) -> StoreResult<()>) -> StoreResult<()> {
        for row in self.fetch(sql, args).await? {
            each(&row)?;
        }
        Ok(())
    }

    /// The first row of `sql`, mapped; `None` when there is none.
    pub(crate) async fn optional<T>(&self, sql: &str, args: &[Arg<'_>], map: impl FnOnce(&PgRow) -> StoreResult<T>) -> StoreResult<Option<T>> {
        self.fetch(sql, args).await?.first().map(map).transpose()
    }

    async fn fetch(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<PgRow>> {
        let mut slot = self.free_slot().await;
        let idle_long = slot.as_ref().is_some_and(|s| s.last_used.elapsed() >= IDLE_BEFORE_RETRY);
        let started = Instant::now();
        match self.fetch_on(&mut slot, sql, args).await {
            // Only a connection that failed at once (closed under it) is worth a second try; one
            // that ran out of time met a database that does not answer, and a second wait would
            // take the request past its own time limit.
            Err(StoreError::Unavailable(_)) if idle_long && started.elapsed() < self.limit / 2 => self.fetch_on(&mut slot, sql, args).await,
            result => result,
        }
    }

    /// A slot nobody is using, or the next one in turn to wait for.
    async fn free_slot(&self) -> tokio::sync::MutexGuard<'_, Option<Slot>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(slot) = self.slots[(start + i) % n].try_lock() {
                return slot;
            }
        }
        self.slots[start % n].lock().await
    }

    /// Runs the statement on the slot's connection, opening one first if it has none; a failure
    /// or a timeout leaves the slot empty.
    async fn fetch_on(&self, slot: &mut Option<Slot>, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<PgRow>> {
        let mut current = match slot.take() {
            Some(s) => s,
            None => {
                let conn = within(self.limit, PgConnection::connect(&self.url)).await?;
                Slot { conn, last_used: Instant::now() }
            }
        };
        let rows = within(self.limit, bind(sqlx::query(sql), args).fetch_all(&mut current.conn)).await?;
        current.last_used = Instant::now();
        *slot = Some(current);
        Ok(rows)
    }
}

async fn within<T>(limit: Duration, work: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> StoreResult<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable("the database did not answer in time".into())),
    }
}

//! The statements of a sign-in's last step (spend the second factor, complete the flow, open the
//! session, write the audit), written once for two ways of running them: on sqlx's connection
//! (PostgreSQL, and SQLite's other writes) and on SQLite's inline writer (rusqlite, on the calling
//! thread, [`crate::inline::InlineWriter`]).
//!
//! Why the second way: a transaction of seven statements through sqlx's SQLite worker thread is
//! fourteen thread hand-offs, all while holding the one write lock. That capped second-factor
//! sign-ins at ~1,700/s on two cores; the statements themselves take microseconds.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::sql::map_err;
use crate::{StoreError, StoreResult};

/// A value bound to a statement: our columns are integers and text, nullable or not.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
}

/// A connection inside a write transaction.
pub(crate) trait Exec {
    /// Runs a statement; the rows it changed.
    fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = StoreResult<u64>>;
    /// Runs a query whose one row has an integer column `n`.
    fn count(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = StoreResult<i64>>;
}

/// Binds `args` to a statement of any sqlx driver (the `Any` one here, PostgreSQL's in
/// `crate::pg_reads`).
pub(crate) fn bind<'q, DB>(mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>, args: &[Arg<'q>]) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
        };
    }
    q
}

impl Exec for sqlx::AnyConnection {
    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sqlx::query(sql), args).execute(&mut *self).await.map_err(map_err)?.rows_affected())
    }

    async fn count(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<i64> {
        let row = bind(sqlx::query(sql), args).fetch_one(&mut *self).await.map_err(map_err)?;
        crate::sql::get(&row, "n")
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
        }
    }
}

/// SQLite's inline writer inside its transaction. Its statements never wait for anything but
/// SQLite itself, so the futures of [`Exec`] are ready when first polled ([`finish_now`]).
pub(crate) struct Lite<'c>(pub &'c rusqlite::Connection);

impl Exec for Lite<'_> {
    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let mut statement = self.0.prepare_cached(sql).map_err(crate::inline::map_err)?;
        Ok(statement.execute(rusqlite::params_from_iter(args)).map_err(crate::inline::map_err)? as u64)
    }

    async fn count(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<i64> {
        let mut statement = self.0.prepare_cached(sql).map_err(crate::inline::map_err)?;
        statement.query_row(rusqlite::params_from_iter(args), |r| r.get::<_, i64>("n")).map_err(crate::inline::map_err)
    }
}

/// Runs a future that cannot wait (it only awaits [`Lite`]'s statements) to its end on this
/// thread. Should one ever wait, that is an error, never a hang or a panic.
pub(crate) fn finish_now<T>(work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut work = pin!(work);
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Backend("an inline SQLite statement waited".into())),
    }
}

//! The audit log (C8): events are appended in the transaction of the change they record, read
//! back newest first with filters and keyset paging (`before` an id, so a page never skips or
//! repeats an event while new ones arrive), and deleted only by the retention purge.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::records::{AuditEntry, AuditRecord};
use crate::sql::{get, insert_audit, map_err, to_time, ts, SqlStore};
use crate::StoreResult;

/// Which events of one company to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub company_id: i64,
    /// Event kinds to keep; empty keeps every kind.
    pub kinds: Vec<String>,
    /// Events this user did or that were done to them.
    pub user_id: Option<i64>,
    /// Events at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Events strictly before this time.
    pub until: Option<OffsetDateTime>,
    /// Events with a smaller id: the `next` of the previous page.
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl AuditQuery {
    /// The newest `limit` events of the company, unfiltered.
    pub fn of_company(company_id: i64, limit: i64) -> Self {
        Self { company_id, kinds: Vec::new(), user_id: None, from: None, until: None, before_id: None, limit }
    }
}

/// An event with the names a reader needs: who acted and to whom, as login names, and the API
/// token that acted, by its name. A name is `None` when the event has no such party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditView {
    pub record: AuditRecord,
    pub actor_login_name: Option<String>,
    pub target_login_name: Option<String>,
    pub actor_token_name: Option<String>,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// An event that goes with no other write (a failed sign-in, a sign-out).
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first, by id.
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditView>>;
    /// Retention: deletes every event older than `before` (all companies); returns how many.
    async fn purge_audit_before(&self, before: OffsetDateTime) -> StoreResult<u64>;

    async fn audit_of_company(&self, company_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let views = self.query_audit(&AuditQuery::of_company(company_id, limit)).await?;
        Ok(views.into_iter().map(|v| v.record).collect())
    }
}

const AUDIT_SELECT: &str = "SELECT e.id, e.company_id, e.actor_user_id, e.actor_token_id, e.target_user_id, e.kind, e.detail, \
    e.client_ip, e.user_agent, e.created_at, a.login_name AS actor_login_name, t.login_name AS target_login_name, \
    k.name AS actor_token_name \
    FROM audit_events e \
    LEFT JOIN users a ON a.id = e.actor_user_id \
    LEFT JOIN users t ON t.id = e.target_user_id \
    LEFT JOIN api_tokens k ON k.id = e.actor_token_id";

enum Param {
    Int(i64),
    Text(String),
}

/// The values of a statement built clause by clause, numbered in the order they are added.
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    /// Keeps `value` and returns its placeholder.
    fn add(&mut self, value: Param) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }
}

/// The statement and its values for `q`; only filters that are set become clauses.
fn audit_statement(q: &AuditQuery) -> (String, Params) {
    let mut p = Params::default();
    let mut clauses = vec![format!("e.company_id = {}", p.add(Param::Int(q.company_id)))];
    if !q.kinds.is_empty() {
        let kinds: Vec<String> = q.kinds.iter().map(|k| p.add(Param::Text(k.clone()))).collect();
        clauses.push(format!("e.kind IN ({})", kinds.join(", ")));
    }
    if let Some(user) = q.user_id {
        let user = p.add(Param::Int(user));
        clauses.push(format!("(e.actor_user_id = {user} OR e.target_user_id = {user})"));
    }
    if let Some(from) = q.from {
        clauses.push(format!("e.created_at >= {}", p.add(Param::Int(ts(from)))));
    }
    if let Some(until) = q.until {
        clauses.push(format!("e.created_at < {}", p.add(Param::Int(ts(until)))));
    }
    if let Some(before) = q.before_id {
        clauses.push(format!("e.id < {}", p.add(Param::Int(before))));
    }
    let limit = p.add(Param::Int(q.limit.max(0)));
    (format!("{AUDIT_SELECT} WHERE {} ORDER BY e.id DESC LIMIT {limit}", clauses.join(" AND ")), p)
}

fn view_from_row(r: &AnyRow) -> StoreResult<AuditView> {
    Ok(AuditView {
        record: AuditRecord {
            id: get(r, "id")?,
            company_id: get(r, "company_id")?,
            actor_user_id: get(r, "actor_user_id")?,
            actor_token_id: get(r, "actor_token_id")?,
            target_user_id: get(r, "target_user_id")?,
            kind: get(r, "kind")?,
            detail: get(r, "detail")?,
            client_ip: get(r, "client_ip")?,
            user_agent: get(r, "user_agent")?,
            created_at: to_time(get(r, "created_at")?),
        },
        actor_login_name: get(r, "actor_login_name")?,
        target_login_name: get(r, "target_login_name")?,
        actor_token_name: get(r, "actor_token_name")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        insert_audit(&mut *self.writer.acquire().await.map_err(map_err)?, entry).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditView>> {
        let (sql, params) = audit_statement(q);
        let mut query = sqlx::query(&sql);
        for value in params.0 {
            query = match value {
                Param::Int(i) => query.bind(i),
                Param::Text(s) => query.bind(s),
            };
        }
        let rows = query.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(view_from_row).collect()
    }

    async fn purge_audit_before(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM audit_events WHERE created_at < $1").bind(ts(before)).execute(&self.writer).await.map_err(map_err)?;
        Ok(r.rows_affected())
    }
}

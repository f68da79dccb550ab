//! The office manager's users list (C8): a page of a company's accounts, found by part of an
//! extension, login name or email, and what the list shows beside each account (two-factor
//! methods, SSO providers, additional emails), read in bulk for that page: one query each.

use async_trait::async_trait;
use latchkey_core::flows::sso::Provider;
use latchkey_core::two_factor::Method;

use crate::records::{AdditionalEmail, User};
use crate::sql::{get, known, map_err, opt_time, user_from_row, user_query, SqlStore};
use crate::StoreResult;

#[async_trait]
pub trait UserListStore: Send + Sync {
    /// A page of the company's accounts in extension order (99 before 100). `search` matches part
    /// of the extension, the login name, the designated email or an additional email, in any case.
    async fn company_users(&self, company_id: i64, search: Option<&str>, limit: i64, offset: i64) -> StoreResult<Vec<User>>;
    /// `(user_id, method)` for every enabled method of those accounts of the company.
    async fn methods_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, Method)>>;
    /// `(user_id, provider)` once for every provider those accounts of the company are linked to.
    async fn sso_providers_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, Provider)>>;
    /// `(user_id, email)` for every additional email of those accounts of the company, by address.
    async fn additional_emails_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, AdditionalEmail)>>;
}

/// Everything the search compares is stored lower-case (login names, email keys, digits), so one
/// lower-cased pattern finds it in any case on both databases.
const SEARCH: &str = "u.company_id = $1 AND ($2 = '' OR u.extension LIKE $3 ESCAPE '\\' OR u.login_name LIKE $3 ESCAPE '\\' \
    OR u.designated_email_key LIKE $3 ESCAPE '\\' \
    OR EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = u.id AND e.email_key LIKE $3 ESCAPE '\\'))";

/// `%part%` with the pattern characters in `part` taken literally.
fn contains_pattern(part: &str) -> String {
    let mut pattern = String::with_capacity(part.len() + 2);
    pattern.push('%');
    for c in part.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `$2, $3, …` for the ids after the company id; the page is small, so the list is too.
fn id_placeholders(n: usize) -> String {
    (2..n + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl SqlStore {
    /// Runs `select` (with `$1` the company, then the ids) and reads each row with `read`.
    async fn per_user<T>(
        &self,
        select: &str,
        company_id: i64,
        user_ids: &[i64],
        read: impl Fn(&sqlx::any::AnyRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = select.replace("{ids}", &id_placeholders(user_ids.len()));
        let mut q = sqlx::query(&sql).bind(company_id);
        for id in user_ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(read).collect()
    }
}

/// `(user_id, value)` where `column` holds one of core's spellings; `named` is how an error names it.
fn user_and<T>(row: &sqlx::any::AnyRow, column: &str, named: &str, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<(i64, T)> {
    Ok((get(row, "user_id")?, known(named, &get::<String>(row, column)?, parse)?))
}

#[async_trait]
impl UserListStore for SqlStore {
    async fn company_users(&self, company_id: i64, search: Option<&str>, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        let search = search.map(str::trim).unwrap_or_default();
        let sql = format!("{} ORDER BY LENGTH(u.extension), u.extension LIMIT $4 OFFSET $5", user_query(SEARCH));
        let rows = sqlx::query(&sql)
            .bind(company_id)
            .bind(search)
            .bind(contains_pattern(search))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn methods_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, Method)>> {
        let select = "SELECT m.user_id, m.method FROM two_factor_methods m JOIN users u ON u.id = m.user_id \
            WHERE u.company_id = $1 AND m.user_id IN ({ids}) ORDER BY m.user_id, m.method";
        self.per_user(select, company_id, user_ids, |r| user_and(r, "method", "two_factor_methods.method", Method::parse)).await
    }

    async fn sso_providers_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, Provider)>> {
        let select = "SELECT DISTINCT l.user_id, l.provider FROM sso_links l JOIN users u ON u.id = l.user_id \
            WHERE u.company_id = $1 AND l.user_id IN ({ids}) ORDER BY l.user_id, l.provider";
        self.per_user(select, company_id, user_ids, |r| user_and(r, "provider", "sso_links.provider", Provider::parse)).await
    }

    async fn additional_emails_of_users(&self, company_id: i64, user_ids: &[i64]) -> StoreResult<Vec<(i64, AdditionalEmail)>> {
        let select = "SELECT e.user_id, e.email, e.verified_at FROM user_emails e JOIN users u ON u.id = e.user_id \
            WHERE u.company_id = $1 AND e.user_id IN ({ids}) ORDER BY e.user_id, e.email_key";
        self.per_user(select, company_id, user_ids, |r| {
            Ok((get(r, "user_id")?, AdditionalEmail { email: get(r, "email")?, verified_at: opt_time(r, "verified_at")? }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_takes_pattern_characters_literally() {
        assert_eq!(contains_pattern("Front.Desk"), "%front.desk%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(id_placeholders(3), "$2, $3, $4");
    }
}

//! What a signed-in request reads most: the session with its account, and the account's own
//! overview (`GET /me`, Account Security). Each is one statement, because every statement is a
//! round trip through the pool (three on PostgreSQL, whose connections are checked on release),
//! and these two run on nearly every request.

use async_trait::async_trait;
use latchkey_core::flows::sso::Provider;
use latchkey_core::secret::TokenHash;
use latchkey_core::two_factor::Method;
use time::OffsetDateTime;

use crate::exec::Arg;
use crate::records::{AdditionalEmail, Session, User};
use crate::sql::{get, known, known_opt, map_err, opt_time, to_time, user_from_row, Cells, SqlStore, USER_COLUMNS};
use crate::sso::SsoLink;
use crate::two_factor::{policy_from_cells, TwoFactorPolicy};
use crate::StoreResult;

/// An enabled second factor as the account's owner sees it: never its sealed seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSummary {
    pub method: Method,
    pub detail: Option<String>,
    pub enabled_at: OffsetDateTime,
}

/// Everything Account Security shows about one account besides the account row itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOverview {
    /// Ordered by address.
    pub additional_emails: Vec<AdditionalEmail>,
    /// Ordered by when each was enabled.
    pub methods: Vec<MethodSummary>,
    pub recovery_codes_left: i64,
    pub company_two_factor: TwoFactorPolicy,
    pub preferred_method: Option<Method>,
    /// Ordered by when each was linked.
    pub sso_links: Vec<SsoLink>,
}

#[async_trait]
pub trait AccountStore {
    /// The session a cookie names, with its account, whatever their states: the caller judges
    /// expiry and the account's state.
    async fn session_with_user(&self, token: &TokenHash) -> StoreResult<Option<(Session, User)>>;
    /// `NotFound` when the account is gone.
    async fn account_overview(&self, user_id: i64) -> StoreResult<AccountOverview>;
}

/// One row per item, tagged by `kind`, with two text and three number columns whose meaning
/// depends on the kind. The same statement runs on SQLite and PostgreSQL: `CAST(NULL AS …)`
/// gives every column one type in every branch.
const OVERVIEW: &str = "\
    SELECT 'account' AS kind, u.preferred_method AS t1, c.two_factor_mode AS t2, c.allowed_methods AS t3, c.default_method AS t4, \
           c.two_factor_enabled AS n1, c.default_method_locked AS n2, c.password_min_length AS n3 \
      FROM users u JOIN companies c ON c.id = u.company_id WHERE u.id = $1 \
    UNION ALL SELECT 'email', email, email_key, CAST(NULL AS TEXT), CAST(NULL AS TEXT), verified_at, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) \
      FROM user_emails WHERE user_id = $1 \
    UNION ALL SELECT 'method', method, detail, CAST(NULL AS TEXT), CAST(NULL AS TEXT), enabled_at, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) \
      FROM two_factor_methods WHERE user_id = $1 \
    UNION ALL SELECT 'codes', CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS TEXT), COUNT(*), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) \
      FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL \
    UNION ALL SELECT 'sso', provider, subject, email, CAST(NULL AS TEXT), linked_at, last_used_at, id \
      FROM sso_links WHERE user_id = $1";

const SESSION_WITH_USER: &str =
    "SELECT s.handle AS s_handle, s.kind AS s_kind, s.created_at AS s_created_at, \
    s.last_seen_at AS s_last_seen_at, s.client_ip AS s_client_ip, s.user_agent AS s_user_agent";

/// The session a cookie's hash names, with its account and company.
pub(crate) fn session_with_user_sql() -> String {
    format!(
        "{SESSION_WITH_USER}, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
         JOIN companies c ON c.id = u.company_id WHERE s.id_hash = $1"
    )
}

/// `GET /me`'s two statements: the session with its account (bound to the session's hash), and
/// the account's overview (bound to the account's id, column `id` of the first).
pub(crate) fn me_statements() -> (String, &'static str) {
    (session_with_user_sql(), OVERVIEW)
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn session_with_user(&self, token: &TokenHash) -> StoreResult<Option<(Session, User)>> {
        let sql = session_with_user_sql();
        if let Some(inline) = &self.inline {
            return inline.optional(&sql, [token.as_str()], |row| session_and_user(row));
        }
        if let Some(pg) = &self.pg_reads {
            return pg.optional(&sql, &[Arg::Text(token.as_str())], session_and_user).await;
        }
        let row = self.row_by_token(&sql, token).await?;
        row.as_ref().map(session_and_user).transpose()
    }

    async fn account_overview(&self, user_id: i64) -> StoreResult<AccountOverview> {
        let mut overview = OverviewRows::default();
        if let Some(inline) = &self.inline {
            inline.each(OVERVIEW, [user_id], |r| overview.add(r, user_id))?;
        } else if let Some(pg) = &self.pg_reads {
            pg.each(OVERVIEW, &[Arg::Int(user_id)], |r| overview.add(r, user_id)).await?;
        } else {
            for r in sqlx::query(OVERVIEW).bind(user_id).fetch_all(&self.pool).await.map_err(map_err)? {
                overview.add(&r, user_id)?;
            }
        }
        overview.finish()
    }
}

fn session_and_user(row: &impl Cells) -> StoreResult<(Session, User)> {
    let user = user_from_row(row)?;
    let session = Session {
        handle: get(row, "s_handle")?,
        user_id: user.id,
        restricted: get::<String>(row, "s_kind")? == "restricted",
        created_at: to_time(get(row, "s_created_at")?),
        last_seen_at: to_time(get(row, "s_last_seen_at")?),
        client_ip: get(row, "s_client_ip")?,
        user_agent: get(row, "s_user_agent")?,
    };
    Ok((session, user))
}

/// The overview's rows, gathered by kind as they come.
#[derive(Default)]
struct OverviewRows {
    account: Option<(Option<Method>, TwoFactorPolicy)>,
    /// With the address's key, to order by.
    emails: Vec<(String, AdditionalEmail)>,
    methods: Vec<MethodSummary>,
    codes_left: i64,
    links: Vec<SsoLink>,
}

impl OverviewRows {
    fn add(&mut self, r: &impl Cells, user_id: i64) -> StoreResult<()> {
        match get::<String>(r, "kind")?.as_str() {
            "account" => self.account = Some(account_row(r)?),
            "email" => self.emails.push((get(r, "t2")?, AdditionalEmail { email: get(r, "t1")?, verified_at: opt_time(r, "n1")? })),
            "method" => self.methods.push(MethodSummary {
                method: known("two_factor_methods.method", &get::<String>(r, "t1")?, Method::parse)?,
                detail: get(r, "t2")?,
                enabled_at: to_time(get(r, "n1")?),
            }),
            "codes" => self.codes_left = get(r, "n1")?,
            _ => self.links.push(SsoLink {
                id: get(r, "n3")?,
                user_id,
                provider: known("sso_links.provider", &get::<String>(r, "t1")?, Provider::parse)?,
                subject: get(r, "t2")?,
                email: get(r, "t3")?,
                linked_at: to_time(get(r, "n1")?),
                last_used_at: opt_time(r, "n2")?,
            }),
        }
        Ok(())
    }

    fn finish(mut self) -> StoreResult<AccountOverview> {
        let (preferred_method, company_two_factor) = self.account.ok_or(crate::StoreError::NotFound)?;
        self.emails.sort_by(|a, b| a.0.cmp(&b.0));
        // As `methods_of_user` orders them: by the method's stored spelling within a second.
        self.methods.sort_by(|a, b| (a.enabled_at, a.method.as_str()).cmp(&(b.enabled_at, b.method.as_str())));
        self.links.sort_by_key(|l| (l.linked_at, l.id));
        Ok(AccountOverview {
            additional_emails: self.emails.into_iter().map(|(_, e)| e).collect(),
            methods: self.methods,
            recovery_codes_left: self.codes_left,
            company_two_factor,
            preferred_method,
            sso_links: self.links,
        })
    }
}

fn account_row(r: &impl Cells) -> StoreResult<(Option<Method>, TwoFactorPolicy)> {
    let policy = policy_from_cells(r, ["n1", "t2", "t3", "t4", "n2", "n3"])?;
    Ok((known_opt("users.preferred_method", get(r, "t1")?, Method::parse)?, policy))
}

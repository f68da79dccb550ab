//! Reading the audit log (C8): the kinds of event and their names for people, the filters an
//! office manager or a script gives (checked all at once), pages of events with the names of who
//! acted and on whom, and the retention purge.

use latchkey_core::{CompanyDomain, Extension, FieldErrors, LoginName};
use latchkey_store::{AuditQuery, AuditView, Company, StoreResult};
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime, Time};

use super::{AppError, Latchkey};

/// Every kind of event Latchkey writes, with the name the console and the CSV give it. The API
/// refuses a filter on any other kind; a test keeps this list in step with the code.
pub const AUDIT_KINDS: &[(&str, &str)] = &[
    ("sign_in", "Signed in"),
    ("designated_email_changed", "Designated email changed"),
    ("api_token_created", "API token created"),
    ("api_token_revoked", "API token revoked"),
    ("sign_in_failed", "Sign-in failed"),
    ("second_factor_failed", "Wrong two-factor code"),
    ("sign_out", "Signed out"),
    ("session_revoked", "Session signed out"),
    ("other_sessions_revoked", "Other sessions signed out"),
    ("account_activated", "Account activated"),
    ("password_changed", "Password changed"),
    ("password_reset_requested", "Password reset requested"),
    ("password_reset", "Password reset"),
    ("pin_changed", "Voicemail PIN changed"),
    ("two_factor_enrolled", "Two-factor method added"),
    ("two_factor_removed", "Two-factor method removed"),
    ("two_factor_reset", "Two-factor authentication reset"),
    ("recovery_code_used", "Recovery code used"),
    ("recovery_codes_regenerated", "New recovery codes"),
    ("code_sent", "Verification code sent"),
    ("email_verified", "Designated email verified"),
    ("sso_linked", "Single sign-on linked"),
    ("sso_unlinked", "Single sign-on unlinked"),
    ("policy_changed", "Security policy changed"),
    ("sso_policy_changed", "Single sign-on MFA setting changed"),
    ("two_factor_feature_changed", "Two-factor pilot switched"),
    ("sso_feature_changed", "Single sign-on pilot switched"),
    ("user_created", "User created"),
    ("user_disabled", "User disabled"),
    ("user_enabled", "User enabled"),
    ("welcome_resent", "Welcome email resent"),
    ("additional_email_added", "Additional email added"),
    ("additional_email_removed", "Additional email removed"),
    ("additional_email_confirmed", "Additional email confirmed"),
];

/// The name of a kind for people; an unknown kind (from a newer node) shows as itself.
pub fn audit_label(kind: &str) -> &str {
    AUDIT_KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, label)| label)
}

/// A page of events when none is asked for, and the most one page may hold.
pub const AUDIT_PAGE_DEFAULT: i64 = 50;
pub const AUDIT_PAGE_MAX: i64 = 200;

/// The filters as they arrive in a query string, for the API and the console alike. Empty values
/// count as absent (a filter form sends every field).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditParams {
    /// Kinds, comma-separated.
    pub kind: Option<String>,
    /// The extension of a user who acted or was acted on.
    pub user: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC). `since` is the name in the first API contract.
    #[serde(alias = "since")]
    pub from: Option<String>,
    /// Last day, included.
    pub until: Option<String>,
    /// The `next` of the previous page.
    pub before: Option<String>,
    pub limit: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl AuditParams {
    /// The filters only (no paging), as given, for links that keep them.
    pub fn filter_pairs(&self) -> Vec<(&'static str, &str)> {
        [("kind", &self.kind), ("user", &self.user), ("from", &self.from), ("until", &self.until)]
            .into_iter()
            .filter_map(|(name, v)| present(v).map(|v| (name, v)))
            .collect()
    }

    /// The one kind asked for, when exactly one is (the console's select shows it).
    pub fn single_kind(&self) -> Option<&str> {
        present(&self.kind).filter(|k| !k.contains(','))
    }
}

/// One event as people read it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: i64,
    pub at: OffsetDateTime,
    pub kind: String,
    /// A login name, `operator`, or `API token <name>`.
    pub actor: String,
    /// The login name of the account the event is about.
    pub target: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

impl AuditEvent {
    pub fn label(&self) -> &str {
        audit_label(&self.kind)
    }
}

impl From<AuditView> for AuditEvent {
    fn from(v: AuditView) -> Self {
        let r = v.record;
        // Every change is made by a user, a token, or the operator at the CLI (who has neither).
        let actor = match (r.actor_token_id, r.actor_user_id) {
            (Some(id), _) => format!("API token {}", v.actor_token_name.unwrap_or_else(|| format!("#{id}"))),
            (None, Some(id)) => v.actor_login_name.unwrap_or_else(|| format!("user #{id}")),
            (None, None) => "operator".to_owned(),
        };
        AuditEvent {
            id: r.id,
            at: r.created_at,
            kind: r.kind,
            actor,
            target: v.target_login_name,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            detail: r.detail,
        }
    }
}

/// A page of events, newest first; `next` is the `before` of the following page, if any.
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<i64>,
}

fn parse_kinds(raw: Option<&str>, errors: &mut FieldErrors) -> Vec<String> {
    let kinds: Vec<String> = raw.unwrap_or("").split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
    for k in kinds.iter().filter(|k| !AUDIT_KINDS.iter().any(|(known, _)| known == k)) {
        errors.add("kind", format!("There is no event kind “{}”.", k.chars().take(40).collect::<String>()));
    }
    kinds
}

fn parse_day(raw: Option<&str>, field: &str, errors: &mut FieldErrors) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = Date::parse(raw?, &format).ok();
    if day.is_none() {
        errors.add(field, "Enter a date as YYYY-MM-DD.");
    }
    day
}

fn parse_number(raw: Option<&str>, field: &str, range: std::ops::RangeInclusive<i64>, message: &str, errors: &mut FieldErrors) -> Option<i64> {
    let n = raw?.parse::<i64>().ok().filter(|n| range.contains(n));
    if n.is_none() {
        errors.add(field, message);
    }
    n
}

fn midnight(day: Date) -> OffsetDateTime {
    day.with_time(Time::MIDNIGHT).assume_utc()
}

impl Latchkey {
    /// The store query for `params` on `company`. Every bad filter is named at once (422); the
    /// `until` day is included, so the query stops at the midnight after it.
    pub async fn audit_query(&self, company: &Company, params: &AuditParams) -> Result<AuditQuery, AppError> {
        let mut errors = FieldErrors::new();
        let kinds = parse_kinds(present(&params.kind), &mut errors);
        let from = parse_day(present(&params.from), "from", &mut errors);
        let until = parse_day(present(&params.until), "until", &mut errors);
        if let (Some(f), Some(u)) = (from, until) {
            if u < f {
                errors.add("until", "The last day cannot come before the first.");
            }
        }
        let before_id = parse_number(present(&params.before), "before", 1..=i64::MAX, "Use the `next` value of the previous page.", &mut errors);
        let limit_message = format!("Ask for 1 to {AUDIT_PAGE_MAX} events.");
        let limit = parse_number(present(&params.limit), "limit", 1..=AUDIT_PAGE_MAX, &limit_message, &mut errors);
        let user_id = match present(&params.user) {
            Some(extension) => self.audit_user(company, extension, &mut errors).await?,
            None => None,
        };
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        Ok(AuditQuery {
            company_id: company.id,
            kinds,
            user_id,
            from: from.map(midnight),
            until: until.map(|u| midnight(u) + Duration::days(1)),
            before_id,
            limit: limit.unwrap_or(AUDIT_PAGE_DEFAULT),
        })
    }

    /// The id of the company's user with `extension`; a field error when there is none.
    async fn audit_user(&self, company: &Company, extension: &str, errors: &mut FieldErrors) -> Result<Option<i64>, AppError> {
        let Ok(ext) = Extension::parse(extension) else {
            errors.add("user", "Enter the user's extension number.");
            return Ok(None);
        };
        let domain = CompanyDomain::parse(&company.domain).map_err(|_| AppError::internal())?;
        let user = self.store.user_by_login_name(&LoginName::new(&ext, &domain)).await?;
        if user.is_none() {
            errors.add("user", format!("No user of {} has extension {}.", company.name, ext));
        }
        Ok(user.map(|u| u.id))
    }

    /// One page of `query`; one more event is read to know whether another page follows.
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<AuditPage, AppError> {
        let limit = query.limit;
        let mut views = self.store.query_audit(&AuditQuery { limit: limit + 1, ..query.clone() }).await?;
        let more = views.len() as i64 > limit;
        views.truncate(limit.max(0) as usize);
        let events: Vec<AuditEvent> = views.into_iter().map(AuditEvent::from).collect();
        let next = if more { events.last().map(|e| e.id) } else { None };
        Ok(AuditPage { events, next })
    }

    /// Housekeeping: deletes the events older than `audit.retention_days` (0 keeps them all).
    pub async fn purge_expired_audit(&self) -> StoreResult<u64> {
        match self.config.audit.retention_days {
            0 => Ok(0),
            days => self.store.purge_audit_before(self.now() - Duration::days(i64::from(days))).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds the code writes: the string that opens every call of `audit(` in this crate's source.
    fn written_kinds() -> Vec<String> {
        let mut kinds = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    kinds.extend(text.split("audit(\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned));
                }
            }
        }
        kinds
    }

    #[test]
    fn every_kind_the_code_writes_has_a_label() {
        let written = written_kinds();
        assert!(written.len() > 20 && written.iter().any(|k| k == "sign_in_failed"), "the scan finds the audit calls: {written:?}");
        let missing: Vec<&String> = written.iter().filter(|k| !AUDIT_KINDS.iter().any(|(known, _)| known == k)).collect();
        assert!(missing.is_empty(), "add these to AUDIT_KINDS: {missing:?}");
    }

    #[test]
    fn kinds_are_listed_once_and_labelled() {
        for (i, (kind, label)) in AUDIT_KINDS.iter().enumerate() {
            assert!(!label.is_empty() && AUDIT_KINDS[i + 1..].iter().all(|(k, _)| k != kind), "{kind}");
        }
        assert_eq!(audit_label("sign_in_failed"), "Sign-in failed");
        assert_eq!(audit_label("from_a_newer_node"), "from_a_newer_node");
    }
}

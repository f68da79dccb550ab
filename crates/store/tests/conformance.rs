//! One behaviour, two stores: every test here runs against SQLite and against PostgreSQL.

use std::sync::Arc;

use latchkey_core::flows::email_link::{EmailLink, LinkPurpose};
use latchkey_core::flows::sign_in::FlowState;
use latchkey_core::flows::sso::Provider;
use latchkey_core::two_factor::one_time_code::{Channel, CodePurpose};
use latchkey_core::two_factor::{Method, TwoFactorMode, E164};
use latchkey_core::secret::{random_handle, Token};
use latchkey_core::throttle::ThrottlePolicy;
use latchkey_core::{CompanyDomain, Email, Extension, LoginName, Role, UserState};
use latchkey_store::*;
use time::{Duration, OffsetDateTime};

struct Fixture {
    store: Arc<dyn Store>,
    /// For the few tests that must go around the store (to try what it would never do).
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let store = open(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    Fixture { store, url, _dir: Some(dir) }
}

async fn postgres(test: &str) -> Option<Fixture> {
    let url = testing::fresh_postgres_url(test).await?;
    let store = open(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    Some(Fixture { store, url, _dir: None })
}

macro_rules! conformance {
    // Tests that also get the database URL: `async fn(Arc<dyn Store>, &str)`.
    (raw: $($name:ident),* $(,)?) => {
        mod raw_on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
                let f = super::sqlite().await;
                super::$name(f.store.clone(), &f.url).await
            } )*
        }
        mod raw_on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
                if let Some(f) = super::postgres(stringify!($name)).await { super::$name(f.store.clone(), &f.url).await }
            } )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::sqlite().await.store).await } )*
        }
        mod on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
                if let Some(f) = super::postgres(stringify!($name)).await { super::$name(f.store).await }
            } )*
        }
    };
}

conformance!(
    company_domains_are_unique_whatever_the_case,
    users_are_found_by_login_name_and_shared_designated_email,
    an_extension_is_taken_once_per_company,
    activation_consumes_the_welcome_link_once_in_one_transaction,
    a_new_link_replaces_the_old_one,
    expired_links_cannot_be_consumed,
    activation_of_a_disabled_account_writes_nothing,
    a_password_reset_ends_every_session,
    twenty_racing_activations_succeed_once,
    sessions_are_listed_and_revoked_per_user,
    failures_lock_after_the_limit_and_the_window_restarts,
    racing_failures_all_count,
    two_factor_policy_round_trips,
    the_first_method_brings_recovery_codes_and_the_last_takes_them,
    twenty_racing_uses_of_one_totp_step_succeed_once,
    twenty_racing_uses_of_one_recovery_code_succeed_once,
    one_time_codes_work_once_expire_and_are_replaced,
    a_sign_in_flow_completes_once,
    recovery_codes_racing_on_one_flow_spend_only_the_winners,
    totp_steps_racing_on_one_flow_spend_only_the_winners,
    an_sms_and_an_email_code_racing_on_one_flow_spend_one,
    send_counts_are_atomic,
    an_office_manager_reset_clears_every_factor,
    a_changed_designated_email_is_unverified_until_its_code_comes_back,
    sso_candidates_are_verified_active_accounts_of_companies_with_the_provider,
    sso_links_are_kept_per_identity_and_account,
    an_sso_attempt_is_taken_once_by_its_own_browser,
    a_waiting_sso_identity_finishes_once,
    a_waiting_sso_identity_tied_to_a_flow_is_taken_once_while_the_flow_lives,
    a_waiting_sso_identity_is_linked_once_in_its_browser,
    a_change_and_the_code_that_confirms_it_are_written_together,
    an_additional_email_is_added_once_and_verified_by_its_link_once,
    removing_an_additional_email_kills_its_confirmation_link,
    an_expired_confirmation_link_verifies_nothing,
    twenty_racing_confirmations_succeed_once,
    racing_transactions_that_read_then_write_all_succeed,
    company_emails_are_every_address_of_that_company,
    api_tokens_are_created_used_and_revoked_with_their_audit_entries,
    the_users_list_finds_part_of_an_extension_login_name_or_any_email,
    the_users_list_pages_in_extension_order_within_one_company,
    what_the_users_list_shows_is_read_for_a_page_of_accounts,
    a_new_designated_email_kills_the_links_sent_to_the_old_one,
    each_audit_filter_narrows_the_log_of_one_company,
    audit_pages_hold_every_event_once,
    the_audit_purge_removes_only_older_events,
    the_account_overview_reads_what_each_part_reads,
    a_session_is_read_with_its_account,
    a_completed_sign_in_writes_its_session_with_the_flow,
    first_methods_racing_write_one_set_of_recovery_codes,
);

conformance!(raw: audit_events_cannot_be_rewritten, a_row_holding_an_unknown_spelling_is_an_error_naming_it);

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

fn audit(kind: &'static str) -> AuditEntry {
    AuditEntry { company_id: None, actor_user_id: None, actor_token_id: None, target_user_id: None, kind, detail: String::new(), client_ip: None, user_agent: None, at: t0() }
}

async fn company(store: &dyn Store, domain: &str) -> Company {
    store.create_company("Organization Inc.", &CompanyDomain::parse(domain).unwrap(), t0()).await.unwrap()
}

/// Creates an invited user and returns it with its welcome token.
async fn invite(store: &dyn Store, company: &Company, ext: &str, email: &str) -> (User, Token) {
    let ext = Extension::parse(ext).unwrap();
    let domain = CompanyDomain::parse(&company.domain).unwrap();
    let new = NewUser {
        company_id: company.id,
        login_name: LoginName::new(&ext, &domain),
        extension: ext,
        designated_email: Email::parse(email).unwrap(),
        role: Role::User,
        created_at: t0(),
    };
    let token = Token::generate();
    let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::Welcome, t0()) };
    (store.create_user(&new, &link, &audit("user_created")).await.unwrap(), token)
}

async fn active_user(store: &dyn Store, company: &Company, ext: &str) -> User {
    let (u, token) = invite(store, company, ext, "someone@example.com").await;
    store.activate(&token.hash(), "pw-hash", "pin-hash", t0(), &audit("account_activated")).await.unwrap().unwrap();
    store.user_by_id(u.id).await.unwrap().unwrap()
}

async fn company_domains_are_unique_whatever_the_case(store: Arc<dyn Store>) {
    company(&*store, "organization.com").await;
    let again = store.create_company("Other", &CompanyDomain::parse("ORGANIZATION.com").unwrap(), t0()).await;
    assert!(matches!(again, Err(StoreError::Conflict("company domain"))), "{again:?}");
    assert_eq!(store.company_by_domain("Organization.COM").await.unwrap().unwrap().name, "Organization Inc.");
    assert_eq!(store.list_companies().await.unwrap().len(), 1);
}

async fn users_are_found_by_login_name_and_shared_designated_email(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let other = company(&*store, "other.org").await;
    let (a, _) = invite(&*store, &c, "101", "Front.Desk@example.com").await;
    let (b, _) = invite(&*store, &other, "102", "front.desk@EXAMPLE.com").await;
    assert_eq!(a.state, UserState::Invited);
    assert_eq!(a.login_name, "101@organization.com");
    let found = store.user_by_login_name(&LoginName::parse("101@ORGANIZATION.COM").unwrap()).await.unwrap().unwrap();
    assert_eq!(found.id, a.id);
    assert_eq!(found.company_name, "Organization Inc.");
    let shared = store.users_by_designated_email(&Email::parse("FRONT.DESK@example.com").unwrap()).await.unwrap();
    assert_eq!(shared.iter().map(|u| u.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    assert!(store.users_by_designated_email(&Email::parse("nobody@example.com").unwrap()).await.unwrap().is_empty());
}

async fn an_extension_is_taken_once_per_company(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    invite(&*store, &c, "101", "a@example.com").await;
    let ext = Extension::parse("101").unwrap();
    let new = NewUser {
        company_id: c.id,
        login_name: LoginName::new(&ext, &CompanyDomain::parse(&c.domain).unwrap()),
        extension: ext,
        designated_email: Email::parse("b@example.com").unwrap(),
        role: Role::User,
        created_at: t0(),
    };
    let link = NewLink { token_hash: Token::generate().hash(), link: EmailLink::issue(LinkPurpose::Welcome, t0()) };
    let r = store.create_user(&new, &link, &audit("user_created")).await;
    assert!(matches!(r, Err(StoreError::Conflict("extension"))), "{r:?}");
    // The refused insert wrote nothing: still one user, one link.
    assert_eq!(store.users_by_designated_email(&Email::parse("b@example.com").unwrap()).await.unwrap().len(), 0);
    assert!(store.link_by_token(&link.token_hash).await.unwrap().is_none());
}

async fn activation_consumes_the_welcome_link_once_in_one_transaction(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (u, token) = invite(&*store, &c, "101", "a@example.com").await;
    let at = t0() + Duration::hours(1);
    let audit_entry = AuditEntry { company_id: Some(c.id), ..audit("account_activated") };
    let user = store.activate(&token.hash(), "pw", "pin", at, &audit_entry).await.unwrap().unwrap();
    assert_eq!(user.state, UserState::Active);
    assert_eq!(user.password_hash.as_deref(), Some("pw"));
    assert_eq!(user.pin_hash.as_deref(), Some("pin"));
    assert_eq!(user.designated_email_verified_at, Some(at));
    let again = store.activate(&token.hash(), "pw2", "pin2", at, &audit("account_activated")).await.unwrap();
    assert_eq!(again, Err(ConsumeError::LinkNotUsable));
    assert_eq!(store.link_by_token(&token.hash()).await.unwrap().unwrap().link.used_at, Some(at));
    let events = store.audit_of_company(c.id, 10).await.unwrap();
    assert_eq!(events[0].kind, "account_activated");
    assert_eq!(events[0].target_user_id, Some(u.id));
}

async fn a_new_link_replaces_the_old_one(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (u, old) = invite(&*store, &c, "101", "a@example.com").await;
    let new = Token::generate();
    let later = t0() + Duration::minutes(5);
    store.issue_link(u.id, &NewLink { token_hash: new.hash(), link: EmailLink::issue(LinkPurpose::Welcome, later) }, &AuditEntry { company_id: Some(c.id), ..audit("welcome_resent") }).await.unwrap();
    assert_eq!(store.link_by_token(&old.hash()).await.unwrap().unwrap().link.replaced_at, Some(later));
    assert_eq!(store.activate(&old.hash(), "pw", "pin", later, &audit("a")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    assert!(store.activate(&new.hash(), "pw", "pin", later, &audit("a")).await.unwrap().is_ok());
    assert_eq!(store.link_purpose_count(u.id, LinkPurpose::Welcome).await.unwrap(), 2);
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "welcome_resent", "written with the link");
}

async fn expired_links_cannot_be_consumed(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (_, token) = invite(&*store, &c, "101", "a@example.com").await;
    let expired = t0() + Duration::hours(24);
    assert_eq!(store.activate(&token.hash(), "pw", "pin", expired, &audit("a")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    let ok = t0() + Duration::hours(24) - Duration::seconds(1);
    assert!(store.activate(&token.hash(), "pw", "pin", ok, &audit("a")).await.unwrap().is_ok());
}

async fn activation_of_a_disabled_account_writes_nothing(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (u, token) = invite(&*store, &c, "101", "a@example.com").await;
    store.set_user_state(u.id, UserState::Disabled, &audit("user_disabled")).await.unwrap();
    let r = store.activate(&token.hash(), "pw", "pin", t0(), &audit("account_activated")).await.unwrap();
    assert_eq!(r, Err(ConsumeError::WrongAccountState));
    // The link was not consumed and the account not touched: the transaction rolled back.
    assert_eq!(store.link_by_token(&token.hash()).await.unwrap().unwrap().link.used_at, None);
    let u = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!((u.state, u.password_hash), (UserState::Disabled, None));
}

async fn a_password_reset_ends_every_session(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    for _ in 0..3 {
        let s = NewSession { token_hash: Token::generate().hash(), handle: random_handle(), user_id: u.id, restricted: false, created_at: t0(), client_ip: None, user_agent: None };
        store.create_session(&s, &audit("sign_in")).await.unwrap();
    }
    assert_eq!(store.sessions_of_user(u.id).await.unwrap().len(), 3);
    let reset = Token::generate();
    store.issue_link(u.id, &NewLink { token_hash: reset.hash(), link: EmailLink::issue(LinkPurpose::PasswordReset, t0()) }, &audit("password_reset_requested")).await.unwrap();
    // A welcome link is not a reset link, and the other way round.
    assert_eq!(store.activate(&reset.hash(), "x", "y", t0(), &audit("a")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    let user = store.reset_password(&reset.hash(), "new-pw", t0(), &audit("password_reset")).await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("new-pw"));
    assert!(store.sessions_of_user(u.id).await.unwrap().is_empty());
    assert_eq!(store.reset_password(&reset.hash(), "again", t0(), &audit("password_reset")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
}

async fn twenty_racing_activations_succeed_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (_, token) = invite(&*store, &c, "101", "a@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let hash = token.hash();
        tasks.push(tokio::spawn(async move {
            store.activate(&hash, &format!("pw{i}"), "pin", t0(), &audit("account_activated")).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Ok(_)) => wins += 1,
            Ok(Err(ConsumeError::LinkNotUsable)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn sessions_are_listed_and_revoked_per_user(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let alice = active_user(&*store, &c, "101").await;
    let bob = active_user(&*store, &c, "102").await;
    let mine = Token::generate();
    let other = Token::generate();
    let bobs = Token::generate();
    for (tok, user) in [(&mine, &alice), (&other, &alice), (&bobs, &bob)] {
        let s = NewSession { token_hash: tok.hash(), handle: random_handle(), user_id: user.id, restricted: tok == &other, created_at: t0(), client_ip: Some("10.0.0.1".into()), user_agent: Some("test".into()) };
        store.create_session(&s, &audit("sign_in")).await.unwrap();
    }
    let s = store.session_by_token(&mine.hash()).await.unwrap().unwrap();
    assert_eq!((s.user_id, s.restricted), (alice.id, false));
    assert!(store.session_by_token(&other.hash()).await.unwrap().unwrap().restricted);
    let (method, enabled, other_hash) = (totp_method(t0()), audit("2fa_enabled"), other.hash());
    let enrolling = Enabling { method: &method, first_recovery_codes: &[], proof: None, promote_session: Some(&other_hash), wrong_code_key: None, audit: &enabled };
    assert_eq!(store.enable_confirmed_method(bob.id, &enrolling).await.unwrap(), Some(true));
    assert!(store.session_by_token(&other.hash()).await.unwrap().unwrap().restricted, "only the enrolling user's own session is promoted");
    assert_eq!(store.enable_confirmed_method(alice.id, &enrolling).await.unwrap(), Some(true));
    assert!(!store.session_by_token(&other.hash()).await.unwrap().unwrap().restricted, "enrolment turns it into a full session");
    store.touch_session(&mine.hash(), t0() + Duration::minutes(3)).await.unwrap();
    assert_eq!(store.session_by_token(&mine.hash()).await.unwrap().unwrap().last_seen_at, t0() + Duration::minutes(3));
    let bob_handle = store.session_by_token(&bobs.hash()).await.unwrap().unwrap().handle;
    let revoked = AuditEntry { company_id: Some(c.id), ..audit("session_revoked") };
    assert!(!store.delete_session_by_handle(alice.id, &bob_handle, &revoked).await.unwrap(), "one user cannot end another's session");
    assert!(store.audit_of_company(c.id, 10).await.unwrap().iter().all(|a| a.kind != "session_revoked"), "no audit entry for nothing");
    let others = |n: u64| AuditEntry { company_id: Some(c.id), detail: format!("{n} session(s)"), ..audit("other_sessions_revoked") };
    assert_eq!(store.delete_other_sessions(alice.id, &mine.hash(), &others).await.unwrap(), 1);
    let last = &store.audit_of_company(c.id, 1).await.unwrap()[0];
    assert_eq!((last.kind.as_str(), last.detail.as_str()), ("other_sessions_revoked", "1 session(s)"), "written with the revoke");
    assert!(store.session_by_token(&other.hash()).await.unwrap().is_none());
    assert!(store.session_by_token(&bobs.hash()).await.unwrap().is_some());
    assert_eq!(store.delete_expired_sessions(t0() + Duration::minutes(1), t0() - Duration::days(1)).await.unwrap(), 1, "bob idle");
    store.end_session(&mine.hash(), &AuditEntry { company_id: Some(c.id), ..audit("sign_out") }).await.unwrap();
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "sign_out", "the sign-out is audited with it");
    assert!(store.sessions_of_user(alice.id).await.unwrap().is_empty());
    assert!(store.user_by_id(alice.id).await.unwrap().unwrap().last_sign_in_at.is_some());
}

async fn failures_lock_after_the_limit_and_the_window_restarts(store: Arc<dyn Store>) {
    let p = ThrottlePolicy { max_failures: 3, window: Duration::minutes(15), lockout: Duration::minutes(10) };
    let key = "sign_in:user:1".to_owned();
    let now = t0();
    assert_eq!(store.throttle_fail(&key, &p, now).await.unwrap(), None);
    assert_eq!(store.throttle_fail(&key, &p, now + Duration::minutes(1)).await.unwrap(), None);
    assert_eq!(store.throttle_locked_until(std::slice::from_ref(&key), now).await.unwrap(), None);
    let lock = store.throttle_fail(&key, &p, now + Duration::minutes(2)).await.unwrap();
    assert_eq!(lock, Some(now + Duration::minutes(12)));
    let other = "sign_in:client:10.0.0.1".to_owned();
    assert_eq!(store.throttle_locked_until(&[other.clone(), key.clone()], now + Duration::minutes(5)).await.unwrap(), lock);
    assert_eq!(store.throttle_locked_until(std::slice::from_ref(&key), now + Duration::minutes(12)).await.unwrap(), None);
    // A new window after the old one is over: counting starts again.
    assert_eq!(store.throttle_fail(&key, &p, now + Duration::minutes(30)).await.unwrap(), None);
    store.throttle_clear(&key).await.unwrap();
    assert_eq!(store.throttle_fail(&key, &p, now + Duration::minutes(31)).await.unwrap(), None);
}

async fn racing_failures_all_count(store: Arc<dyn Store>) {
    let p = ThrottlePolicy { max_failures: 10, window: Duration::minutes(15), lockout: Duration::minutes(15) };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.throttle_fail("race", &p, t0()).await.unwrap() }));
    }
    let locks: Vec<_> = futures_join(tasks).await;
    assert_eq!(locks.iter().filter(|l| l.is_some()).count(), 1, "exactly the tenth failure locks");
    assert!(store.throttle_locked_until(&["race".into()], t0()).await.unwrap().is_some());
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn totp_method(at: OffsetDateTime) -> StoredMethod {
    StoredMethod { method: Method::Totp, detail: None, totp_sealed: Some("sealed".into()), totp_key_id: Some("k1".into()), totp_last_step: None, enabled_at: at }
}

fn codes(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}-hash-{i}")).collect()
}

async fn two_factor_policy_round_trips(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let default = store.two_factor_policy(c.id).await.unwrap();
    assert!(!default.enabled, "2FA is a pilot feature, off until the operator turns it on");
    let p = TwoFactorPolicy {
        enabled: true,
        mode: TwoFactorMode::Required,
        allowed_methods: vec![Method::Totp, Method::Email],
        default_method: Some(Method::Email),
        default_method_locked: true,
        password_min_length: 12,
    };
    store.set_two_factor_policy(c.id, &p, &AuditEntry { company_id: Some(c.id), ..audit("policy_changed") }).await.unwrap();
    assert_eq!(store.two_factor_policy(c.id).await.unwrap(), p);
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "policy_changed");
}

async fn the_first_method_brings_recovery_codes_and_the_last_takes_them(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store.begin_totp_enrollment(u.id, "pending", "k1", t0()).await.unwrap();
    assert!(store.totp_enrollment(u.id).await.unwrap().is_some());
    assert!(store.enable_method(u.id, &totp_method(t0()), &codes("a"), &audit("2fa_enabled")).await.unwrap());
    assert!(store.totp_enrollment(u.id).await.unwrap().is_none(), "confirming ends the pending enrolment");
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 10);
    let sms = StoredMethod { method: Method::Sms, detail: Some("+15145550100".into()), totp_sealed: None, totp_key_id: None, totp_last_step: None, enabled_at: t0() };
    assert!(!store.enable_method(u.id, &sms, &codes("b"), &audit("2fa_enabled")).await.unwrap(), "not the first method");
    sign_in_flow(&*store, &u, "f1", t0()).await;
    assert_eq!(store.complete_sign_in_flow("f1", u.id, &recovery(&u, "b-hash-0"), t0()).await.unwrap(), FlowCompletion::FactorSpent, "the second method brought no new codes");
    assert_eq!(store.methods_of_user(u.id).await.unwrap().iter().map(|m| m.method.as_str()).collect::<Vec<_>>(), vec!["sms", "totp"]);
    assert_eq!(store.remove_method(u.id, Method::Sms, &audit("2fa_disabled")).await.unwrap(), 1);
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 10);
    assert_eq!(store.remove_method(u.id, Method::Totp, &audit("2fa_disabled")).await.unwrap(), 0);
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 0, "no method, no recovery codes");
    assert!(matches!(store.remove_method(u.id, Method::Totp, &audit("2fa_disabled")).await, Err(StoreError::NotFound)));
}

async fn twenty_racing_uses_of_one_totp_step_succeed_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store.enable_method(u.id, &totp_method(t0()), &[], &audit("2fa_enabled")).await.unwrap();
    let tasks: Vec<_> = (0..20).map(|_| { let s = store.clone(); tokio::spawn(async move { s.advance_totp_step(u.id, 1000).await.unwrap() }) }).collect();
    assert_eq!(futures_join(tasks).await.into_iter().filter(|ok| *ok).count(), 1);
    assert!(!store.advance_totp_step(u.id, 999).await.unwrap(), "an earlier step after a later one is a replay");
    assert!(store.advance_totp_step(u.id, 1001).await.unwrap());
}

async fn twenty_racing_uses_of_one_recovery_code_succeed_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store.enable_method(u.id, &totp_method(t0()), &codes("r"), &audit("2fa_enabled")).await.unwrap();
    let flows: Vec<String> = (0..20).map(|i| format!("flow-{i}")).collect();
    for f in &flows {
        sign_in_flow(&*store, &u, f, t0()).await;
    }
    let outcomes = race(&store, flows.iter().map(|f| (f.clone(), u.id, recovery(&u, "r-hash-3"))).collect()).await;
    assert_eq!(count(&outcomes, FlowCompletion::Completed { recovery_codes_left: Some(9) }), 1);
    assert_eq!(count(&outcomes, FlowCompletion::FactorSpent), 19);
    let mut completed = 0;
    for f in &flows {
        completed += usize::from(store.sign_in_flow(f).await.unwrap().unwrap().completed_at.is_some());
    }
    assert_eq!(completed, 1, "a flow whose code lost stays open for another code");
    assert_eq!(recovery_events(&*store, &c, &u).await, vec!["9 left".to_owned()], "written with the winning use only");
    store.replace_recovery_codes(u.id, &codes("n"), t0(), &audit("recovery_codes_regenerated")).await.unwrap();
    let open = &flows[outcomes.iter().position(|o| *o == FlowCompletion::FactorSpent).unwrap()];
    assert_eq!(store.complete_sign_in_flow(open, u.id, &recovery(&u, "r-hash-4"), t0()).await.unwrap(), FlowCompletion::FactorSpent, "the old set is gone");
    assert_eq!(store.complete_sign_in_flow(open, u.id, &recovery(&u, "n-hash-4"), t0()).await.unwrap(), FlowCompletion::Completed { recovery_codes_left: Some(9) });
}

async fn one_time_codes_work_once_expire_and_are_replaced(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let code = |hash: &str, at: OffsetDateTime| StoredCode { code_hash: hash.into(), target: Some(Channel::Sms(E164::parse("+15145550100").unwrap())), created_at: at, expires_at: at + Duration::minutes(10), used_at: None };
    store.issue_code(u.id, CodePurpose::SignInSms, &code("h1", t0())).await.unwrap();
    assert!(!store.consume_code(u.id, CodePurpose::SignInSms, "wrong", t0()).await.unwrap());
    assert!(!store.consume_code(u.id, CodePurpose::SignInEmail, "h1", t0()).await.unwrap(), "codes are per purpose");
    assert!(store.consume_code(u.id, CodePurpose::SignInSms, "h1", t0()).await.unwrap());
    assert!(!store.consume_code(u.id, CodePurpose::SignInSms, "h1", t0()).await.unwrap(), "once");
    store.issue_code(u.id, CodePurpose::SignInSms, &code("h2", t0())).await.unwrap();
    store.issue_code(u.id, CodePurpose::SignInSms, &code("h3", t0())).await.unwrap();
    assert!(!store.consume_code(u.id, CodePurpose::SignInSms, "h2", t0()).await.unwrap(), "a new code replaces the old");
    let live = store.code(u.id, CodePurpose::SignInSms).await.unwrap().unwrap();
    assert_eq!((live.code_hash.as_str(), live.target), ("h3", Some(Channel::Sms(E164::parse("+15145550100").unwrap()))), "read back as sent");
    assert!(!store.consume_code(u.id, CodePurpose::SignInSms, "h3", t0() + Duration::minutes(10)).await.unwrap(), "expired after 10 minutes");
    assert!(store.consume_code(u.id, CodePurpose::SignInSms, "h3", t0() + Duration::minutes(9)).await.unwrap());
}

async fn a_sign_in_flow_completes_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let other = active_user(&*store, &c, "102").await;
    store.enable_method(u.id, &totp_method(t0()), &[], &audit("2fa_enabled")).await.unwrap();
    sign_in_flow(&*store, &u, "f1", t0()).await;
    sign_in_flow(&*store, &u, "f2", t0()).await;
    assert_eq!(store.sign_in_flow("f1").await.unwrap().unwrap().state, FlowState::SecondFactor);
    let done = FlowCompletion::Completed { recovery_codes_left: None };
    assert_eq!(store.complete_sign_in_flow("f1", other.id, &FactorSpend::TotpStep(1000), t0()).await.unwrap(), FlowCompletion::FlowGone, "another user's flow");
    assert_eq!(store.complete_sign_in_flow("f1", u.id, &FactorSpend::TotpStep(1000), t0()).await.unwrap(), done);
    assert_eq!(store.complete_sign_in_flow("f1", u.id, &FactorSpend::TotpStep(1001), t0()).await.unwrap(), FlowCompletion::FlowGone, "once");
    assert_eq!(store.complete_sign_in_flow("f2", u.id, &FactorSpend::TotpStep(1001), t0() + Duration::minutes(10)).await.unwrap(), FlowCompletion::FlowGone, "expired flows do not complete");
    assert_eq!(store.complete_sign_in_flow("nope", u.id, &FactorSpend::TotpStep(1001), t0()).await.unwrap(), FlowCompletion::FlowGone);
    assert_eq!(store.complete_sign_in_flow("f2", u.id, &FactorSpend::TotpStep(1000), t0()).await.unwrap(), FlowCompletion::FactorSpent, "a spent step");
    assert_eq!(store.complete_sign_in_flow("f2", u.id, &FactorSpend::TotpStep(1001), t0()).await.unwrap(), done, "refused steps were not spent");
}

/// A live sign-in flow of `user`, named by `id`, waiting for its second factor until 10 minutes
/// after `at`.
async fn sign_in_flow(store: &dyn Store, user: &User, id: &str, at: OffsetDateTime) {
    let flow = SignInFlow { user_id: user.id, state: FlowState::SecondFactor, created_at: at, expires_at: at + Duration::minutes(10), completed_at: None };
    store.create_sign_in_flow(id, &flow).await.unwrap();
}

fn recovery(user: &User, hash: &str) -> FactorSpend {
    let audit = AuditEntry { company_id: Some(user.company_id), target_user_id: Some(user.id), ..audit("recovery_code_used") };
    FactorSpend::RecoveryCode { hash: hash.into(), audit }
}

/// The details of the user's `recovery_code_used` events.
async fn recovery_events(store: &dyn Store, company: &Company, user: &User) -> Vec<String> {
    let events = store.audit_of_company(company.id, 1000).await.unwrap();
    events.into_iter().filter(|e| e.kind == "recovery_code_used" && e.target_user_id == Some(user.id)).map(|e| e.detail).collect()
}

/// Completes each `(flow, user, factor)` at once, from its own task; the outcomes in that order.
async fn race(store: &Arc<dyn Store>, attempts: Vec<(String, i64, FactorSpend)>) -> Vec<FlowCompletion> {
    let tasks = attempts
        .into_iter()
        .map(|(flow, user_id, factor)| {
            let s = store.clone();
            tokio::spawn(async move { s.complete_sign_in_flow(&flow, user_id, &factor, t0()).await.unwrap() })
        })
        .collect();
    futures_join(tasks).await
}

fn count(outcomes: &[FlowCompletion], wanted: FlowCompletion) -> usize {
    outcomes.iter().filter(|o| **o == wanted).count()
}

/// Different right recovery codes of one user on one flow: one completes it, and only its code is
/// spent and audited; the losers' codes stay unused. Two racers, then twenty.
async fn recovery_codes_racing_on_one_flow_spend_only_the_winners(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    for (ext, racers) in [("101", 2), ("102", 20)] {
        let u = active_user(&*store, &c, ext).await;
        let hashes: Vec<String> = (0..racers).map(|i| format!("{ext}-hash-{i}")).collect();
        store.enable_method(u.id, &totp_method(t0()), &hashes, &audit("2fa_enabled")).await.unwrap();
        sign_in_flow(&*store, &u, ext, t0()).await;
        let outcomes = race(&store, hashes.iter().map(|h| (ext.to_owned(), u.id, recovery(&u, h))).collect()).await;
        let left = racers - 1;
        assert_eq!(count(&outcomes, FlowCompletion::Completed { recovery_codes_left: Some(left) }), 1, "{outcomes:?}");
        assert_eq!(count(&outcomes, FlowCompletion::FlowGone), racers as usize - 1, "{outcomes:?}");
        assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), left, "only the winner's code is spent");
        assert_eq!(recovery_events(&*store, &c, &u).await, vec![format!("{left} left")], "only the winner's use is audited");
    }
}

/// Different authenticator steps on one flow: one completes it, and the last spent step is the
/// winner's, not a loser's later one. Three rounds, twenty racers each.
async fn totp_steps_racing_on_one_flow_spend_only_the_winners(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store.enable_method(u.id, &totp_method(t0()), &[], &audit("2fa_enabled")).await.unwrap();
    for round in 0..3 {
        let flow = format!("flow-{round}");
        sign_in_flow(&*store, &u, &flow, t0()).await;
        let steps: Vec<i64> = (0..20).map(|i| 1000 + 100 * round + i).collect();
        let outcomes = race(&store, steps.iter().map(|s| (flow.clone(), u.id, FactorSpend::TotpStep(*s))).collect()).await;
        let won: Vec<i64> = steps.iter().zip(&outcomes).filter(|(_, o)| matches!(o, FlowCompletion::Completed { .. })).map(|(s, _)| *s).collect();
        assert_eq!(won.len(), 1, "{outcomes:?}");
        let last = store.methods_of_user(u.id).await.unwrap()[0].totp_last_step;
        assert_eq!(last, Some(won[0]), "the losers' steps were not spent");
    }
}

/// A texted and an emailed sign-in code on one flow: one completes it; the other code stays live.
async fn an_sms_and_an_email_code_racing_on_one_flow_spend_one(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let purposes = [CodePurpose::SignInSms, CodePurpose::SignInEmail];
    for purpose in purposes {
        let code = StoredCode { code_hash: format!("{}-hash", purpose.as_str()), target: None, created_at: t0(), expires_at: t0() + Duration::minutes(10), used_at: None };
        store.issue_code(u.id, purpose, &code).await.unwrap();
    }
    sign_in_flow(&*store, &u, "f1", t0()).await;
    let spend = |p: &CodePurpose| FactorSpend::Code { purpose: *p, hash: format!("{}-hash", p.as_str()) };
    let outcomes = race(&store, purposes.iter().map(|p| ("f1".to_owned(), u.id, spend(p))).collect()).await;
    assert_eq!(count(&outcomes, FlowCompletion::Completed { recovery_codes_left: None }), 1, "{outcomes:?}");
    let loser = purposes[outcomes.iter().position(|o| *o == FlowCompletion::FlowGone).expect("one lost the flow")];
    assert!(store.code(u.id, loser).await.unwrap().unwrap().used_at.is_none(), "the losing code is unused");
    assert!(store.consume_code(u.id, loser, &format!("{}-hash", loser.as_str()), t0()).await.unwrap());
}

/// A change confirmed by a code spends the code in its own transaction: with the code spent
/// already (a racing request), nothing of the change is written; with it live, both happen.
async fn a_change_and_the_code_that_confirms_it_are_written_together(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let issue = |purpose: CodePurpose, hash: &str| {
        let code = StoredCode { code_hash: hash.into(), target: None, created_at: t0(), expires_at: t0() + Duration::minutes(10), used_at: None };
        let store = store.clone();
        async move { store.issue_code(u.id, purpose, &code).await.unwrap() }
    };
    let code = |purpose: CodePurpose, hash: &str| FactorSpend::Code { purpose, hash: hash.into() };
    let proof = |factor| Proof { factor, at: t0() };

    // Enrolling SMS by its code; the wrong-code count goes with it.
    issue(CodePurpose::EnrollSms, "sms-1").await;
    let policy = ThrottlePolicy { max_failures: 1, window: Duration::minutes(15), lockout: Duration::minutes(15) };
    store.throttle_fail("2fa:u", &policy, t0()).await.unwrap();
    assert!(store.throttle_locked_until(&["2fa:u".into()], t0()).await.unwrap().is_some());
    let sms = StoredMethod { method: Method::Sms, detail: Some("+15145550100".into()), ..totp_method(t0()) };
    let sms_code = code(CodePurpose::EnrollSms, "sms-1");
    let enabling = Enabling { method: &sms, first_recovery_codes: &codes("r"), proof: Some(proof(&sms_code)), promote_session: None, wrong_code_key: Some("2fa:u"), audit: &audit("2fa_enabled") };
    assert_eq!(store.enable_confirmed_method(u.id, &enabling).await.unwrap(), Some(true));
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 10, "the first method brought its codes");
    assert!(store.code(u.id, CodePurpose::EnrollSms).await.unwrap().unwrap().used_at.is_some());
    assert_eq!(store.throttle_locked_until(&["2fa:u".into()], t0()).await.unwrap(), None);
    store.remove_method(u.id, Method::Sms, &audit("2fa_disabled")).await.unwrap();
    assert_eq!(store.enable_confirmed_method(u.id, &enabling).await.unwrap(), None, "a spent code enables nothing");
    assert!(store.methods_of_user(u.id).await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 0);

    // Removing a method, and new recovery codes, by the verification code.
    store.enable_method(u.id, &totp_method(t0()), &codes("r"), &audit("2fa_enabled")).await.unwrap();
    store.enable_method(u.id, &sms, &[], &audit("2fa_enabled")).await.unwrap();
    store.set_preferred_method(u.id, Some(Method::Sms)).await.unwrap();
    issue(CodePurpose::Verification, "v-1").await;
    let verification = code(CodePurpose::Verification, "v-1");
    assert_eq!(store.remove_confirmed_method(u.id, Method::Sms, Some(proof(&verification)), &audit("2fa_disabled")).await.unwrap(), Some(1));
    assert_eq!(store.preferred_method(u.id).await.unwrap(), None, "a preference for the method goes with it");
    store.enable_method(u.id, &sms, &[], &audit("2fa_enabled")).await.unwrap();
    assert_eq!(store.remove_confirmed_method(u.id, Method::Sms, Some(proof(&verification)), &audit("2fa_disabled")).await.unwrap(), None, "spent");
    assert_eq!(store.methods_of_user(u.id).await.unwrap().len(), 2, "nothing removed");
    assert!(!store.replace_confirmed_recovery_codes(u.id, &codes("n"), t0(), Some(proof(&verification)), &audit("recovery_codes_regenerated")).await.unwrap());
    sign_in_flow(&*store, &u, "f1", t0()).await;
    assert_eq!(store.complete_sign_in_flow("f1", u.id, &recovery(&u, "r-hash-0"), t0()).await.unwrap(), FlowCompletion::Completed { recovery_codes_left: Some(9) }, "the old set stayed");
    // An authenticator step as the proof: spent once.
    assert!(store.replace_confirmed_recovery_codes(u.id, &codes("n"), t0(), Some(proof(&FactorSpend::TotpStep(500))), &audit("recovery_codes_regenerated")).await.unwrap());
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 10);
    assert!(!store.replace_confirmed_recovery_codes(u.id, &codes("m"), t0(), Some(proof(&FactorSpend::TotpStep(500))), &audit("recovery_codes_regenerated")).await.unwrap());

    // The designated email's verification: the address must still be the one the code went to.
    let entry = AuditEntry { company_id: Some(c.id), ..audit("designated_email_changed") };
    store.change_designated_email(u.id, &Email::parse("new@example.com").unwrap(), &entry).await.unwrap();
    issue(CodePurpose::VerifyEmail, "e-1").await;
    let email_code = code(CodePurpose::VerifyEmail, "e-1");
    let verified = AuditEntry { company_id: Some(c.id), ..audit("email_verified") };
    let verify = |address: &'static str| {
        let (store, email_code, verified) = (store.clone(), email_code.clone(), verified.clone());
        async move { store.verify_designated_email(u.id, address, t0(), Some(Proof { factor: &email_code, at: t0() }), Some(&verified)).await.unwrap() }
    };
    assert_eq!(verify("old@example.com").await, EmailVerification::EmailChanged);
    assert!(store.code(u.id, CodePurpose::VerifyEmail).await.unwrap().unwrap().used_at.is_none(), "the code stays unspent");
    assert_eq!(verify("new@example.com").await, EmailVerification::Verified);
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "email_verified", "audited with it");
    store.change_designated_email(u.id, &Email::parse("newer@example.com").unwrap(), &entry).await.unwrap();
    assert_eq!(verify("newer@example.com").await, EmailVerification::ProofSpent);
    assert!(store.user_by_id(u.id).await.unwrap().unwrap().designated_email_verified_at.is_none());
}

async fn send_counts_are_atomic(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..10).map(|_| { let s = store.clone(); tokio::spawn(async move { s.count_send("sms:number:+15145550100", t0()).await.unwrap() }) }).collect();
    let mut counts = futures_join(tasks).await;
    counts.sort();
    assert_eq!(counts, (1..=10).collect::<Vec<i64>>());
    assert_eq!(store.count_send("sms:number:+15145550100", t0() + Duration::hours(1)).await.unwrap(), 1, "a new window counts afresh");
}

async fn an_office_manager_reset_clears_every_factor(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store.enable_method(u.id, &totp_method(t0()), &codes("r"), &audit("2fa_enabled")).await.unwrap();
    store.set_preferred_method(u.id, Some(Method::Totp)).await.unwrap();
    assert_eq!(store.preferred_method(u.id).await.unwrap(), Some(Method::Totp));
    store.begin_totp_enrollment(u.id, "pending", "k1", t0()).await.unwrap();
    store.reset_two_factor(u.id, &AuditEntry { company_id: Some(c.id), ..audit("2fa_reset") }).await.unwrap();
    assert!(store.methods_of_user(u.id).await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left(u.id).await.unwrap(), 0);
    assert!(store.totp_enrollment(u.id).await.unwrap().is_none());
    assert_eq!(store.preferred_method(u.id).await.unwrap(), None);
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "2fa_reset");
}

async fn a_changed_designated_email_is_unverified_until_its_code_comes_back(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    assert!(u.designated_email_verified_at.is_some(), "activation verified it");
    let entry = AuditEntry { company_id: Some(c.id), ..audit("designated_email_changed") };
    store.change_designated_email(u.id, &Email::parse("new@example.com").unwrap(), &entry).await.unwrap();
    let changed = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!((changed.designated_email.as_str(), changed.designated_email_verified_at), ("new@example.com", None));
    let found = store.users_by_designated_email(&Email::parse("NEW@example.com").unwrap()).await.unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![u.id], "found by the new address, any case");
    assert_eq!(store.audit_of_company(c.id, 10).await.unwrap()[0].kind, "designated_email_changed");
    // A code sent to the old address proves nothing about the new one.
    assert!(!store.mark_email_verified(u.id, &u.designated_email, t0()).await.unwrap());
    assert!(store.user_by_id(u.id).await.unwrap().unwrap().designated_email_verified_at.is_none());
    assert!(store.mark_email_verified(u.id, "new@example.com", t0()).await.unwrap());
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap().designated_email_verified_at, Some(t0()));
    let missing = store.change_designated_email(999_999, &Email::parse("x@example.com").unwrap(), &entry).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn sso_company(store: &dyn Store, domain: &str, providers: &[Provider]) -> Company {
    let c = company(store, domain).await;
    let settings = SsoSettings { enabled: true, providers: providers.to_vec(), mfa_sufficient: vec![] };
    store.set_sso_settings(c.id, &settings, &AuditEntry { company_id: Some(c.id), ..audit("sso_settings_changed") }).await.unwrap();
    c
}

async fn active_with_email(store: &dyn Store, company: &Company, ext: &str, email: &str) -> User {
    let (u, token) = invite(store, company, ext, email).await;
    store.activate(&token.hash(), "pw-hash", "pin-hash", t0(), &audit("account_activated")).await.unwrap().unwrap();
    u
}

async fn sso_candidates_are_verified_active_accounts_of_companies_with_the_provider(store: Arc<dyn Store>) {
    let google = sso_company(&*store, "a.com", &[Provider::Google, Provider::Microsoft]).await;
    assert_eq!(store.sso_settings(google.id).await.unwrap().providers, vec![Provider::Google, Provider::Microsoft]);
    let ms_only = sso_company(&*store, "b.com", &[Provider::Microsoft]).await;
    let off = company(&*store, "c.com").await;
    assert_eq!(store.sso_settings(off.id).await.unwrap(), SsoSettings::default());
    let a1 = active_with_email(&*store, &google, "101", "Alice@Example.com").await;
    active_with_email(&*store, &ms_only, "101", "alice@example.com").await;
    active_with_email(&*store, &off, "101", "alice@example.com").await;
    // Invited: the welcome link was never used, so the address is not verified.
    invite(&*store, &google, "102", "alice@example.com").await;
    let disabled = active_with_email(&*store, &google, "103", "alice@example.com").await;
    store.set_user_state(disabled.id, UserState::Disabled, &audit("user_disabled")).await.unwrap();

    let key = Email::parse("ALICE@example.com").unwrap().key();
    let found = store.users_with_verified_email(Provider::Google, &key).await.unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![a1.id]);
    assert_eq!(store.users_with_verified_email(Provider::Microsoft, &key).await.unwrap().len(), 2, "a.com and b.com enable Microsoft");
    // The pilot switch off hides the company even with providers listed.
    let settings = SsoSettings { enabled: false, providers: vec![Provider::Google], mfa_sufficient: vec![] };
    store.set_sso_settings(google.id, &settings, &audit("sso_settings_changed")).await.unwrap();
    assert!(store.users_with_verified_email(Provider::Google, &key).await.unwrap().is_empty());
    let missing = store.set_sso_settings(999_999, &settings, &audit("x")).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn sso_links_are_kept_per_identity_and_account(store: Arc<dyn Store>) {
    let c = sso_company(&*store, "a.com", &[Provider::Google]).await;
    let u1 = active_with_email(&*store, &c, "101", "shared@example.com").await;
    let u2 = active_with_email(&*store, &c, "102", "shared@example.com").await;
    let linked = |user: i64| AuditEntry { company_id: Some(c.id), target_user_id: Some(user), ..audit("sso_linked") };
    store.add_sso_link(u1.id, Provider::Google, "sub-1", Some("shared@example.com"), t0(), &linked(u1.id)).await.unwrap();
    store.add_sso_link(u1.id, Provider::Google, "sub-1", Some("new@example.com"), t0(), &linked(u1.id)).await.unwrap();
    store.add_sso_link(u2.id, Provider::Google, "sub-1", None, t0(), &linked(u2.id)).await.unwrap();
    let ids = |v: Vec<User>| v.iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(store.users_linked_to(Provider::Google, "sub-1").await.unwrap()), vec![u1.id, u2.id]);
    assert!(store.users_linked_to(Provider::Microsoft, "sub-1").await.unwrap().is_empty());
    let links = store.sso_links_of_user(u1.id).await.unwrap();
    assert_eq!(links.len(), 1, "linking again keeps one link");
    assert_eq!(links[0].email.as_deref(), Some("new@example.com"));
    assert_eq!(links[0].last_used_at, None);
    store.touch_sso_link(u1.id, Provider::Google, "sub-1", t0() + Duration::hours(1)).await.unwrap();
    assert_eq!(store.sso_links_of_user(u1.id).await.unwrap()[0].last_used_at, Some(t0() + Duration::hours(1)));

    assert!(!store.remove_sso_link(u2.id, links[0].id, &audit("sso_unlinked")).await.unwrap(), "only the owner removes a link");
    assert!(store.remove_sso_link(u1.id, links[0].id, &audit("sso_unlinked")).await.unwrap());
    assert_eq!(ids(store.users_linked_to(Provider::Google, "sub-1").await.unwrap()), vec![u2.id]);
    let kinds: Vec<String> = store.audit_of_company(c.id, 10).await.unwrap().iter().map(|a| a.kind.to_owned()).collect();
    assert!(kinds.contains(&"sso_linked".to_owned()));

    assert_eq!(store.sso_choice(Provider::Google, "sub-1").await.unwrap(), None);
    store.remember_sso_choice(Provider::Google, "sub-1", u1.id, t0()).await.unwrap();
    store.remember_sso_choice(Provider::Google, "sub-1", u2.id, t0()).await.unwrap();
    assert_eq!(store.sso_choice(Provider::Google, "sub-1").await.unwrap(), Some(u2.id), "the latest choice is remembered");
}

async fn an_sso_attempt_is_taken_once_by_its_own_browser(store: Arc<dyn Store>) {
    let attempt = SsoAttempt {
        state_hash: "state-hash".into(),
        provider: Provider::Google,
        browser_hash: "browser-a".into(),
        nonce: "nonce".into(),
        pkce_verifier: "verifier".into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    };
    store.begin_sso_attempt(&attempt).await.unwrap();
    assert_eq!(store.take_sso_attempt("state-hash", "browser-b", t0()).await.unwrap(), None, "another browser's callback");
    assert_eq!(store.take_sso_attempt("state-hash", "browser-a", t0() + Duration::minutes(10)).await.unwrap(), None, "expired");
    assert_eq!(store.take_sso_attempt("state-hash", "browser-a", t0()).await.unwrap(), Some(attempt));
    assert_eq!(store.take_sso_attempt("state-hash", "browser-a", t0()).await.unwrap(), None, "once");
}

/// A Microsoft identity waiting in `browser-a` for ten minutes from `t0`.
fn waiting_identity() -> PendingSso {
    PendingSso {
        id_hash: "pending-hash".into(),
        provider: Provider::Microsoft,
        subject: "sub".into(),
        email: Some("a@example.com".into()),
        trusted_email: None,
        browser_hash: "browser-a".into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    }
}

async fn a_waiting_sso_identity_finishes_once(store: Arc<dyn Store>) {
    let pending = waiting_identity();
    store.create_pending_sso(&pending).await.unwrap();
    assert_eq!(store.pending_sso("pending-hash", "browser-a", t0()).await.unwrap(), Some(pending.clone()));
    assert_eq!(store.pending_sso("pending-hash", "browser-b", t0()).await.unwrap(), None);
    assert!(!store.finish_pending_sso("pending-hash", "browser-b", t0()).await.unwrap());
    assert!(store.finish_pending_sso("pending-hash", "browser-a", t0()).await.unwrap());
    assert!(!store.finish_pending_sso("pending-hash", "browser-a", t0()).await.unwrap(), "once");
    assert_eq!(store.pending_sso("pending-hash", "browser-a", t0()).await.unwrap(), None);
}

/// Tied to a live flow in time, the identity is taken when the flow completes, even after its
/// own ten minutes: the flow bounds it from then on.
async fn a_waiting_sso_identity_tied_to_a_flow_is_taken_once_while_the_flow_lives(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let pending = |id: &str| PendingSso {
        id_hash: id.into(),
        provider: Provider::Google,
        subject: "sub".into(),
        email: None,
        trusted_email: None,
        browser_hash: "browser-a".into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    };
    store.create_pending_sso(&pending("tied")).await.unwrap();
    store.create_pending_sso(&pending("late")).await.unwrap();
    assert!(store.attach_pending_sso_to_flow("tied", "browser-a", "flow-1", u.id, t0() + Duration::minutes(6)).await.unwrap());
    assert!(!store.attach_pending_sso_to_flow("late", "browser-a", "flow-2", u.id, t0() + Duration::minutes(10)).await.unwrap(), "too late to tie");
    let after = t0() + Duration::minutes(12);
    let linked = |p: &PendingSso| AuditEntry { detail: format!("{} {}", p.provider.as_str(), p.subject), ..audit("sso_linked") };
    assert_eq!(store.link_identity_of_flow("flow-2", u.id, after, &linked).await.unwrap(), None);
    assert_eq!(store.link_identity_of_flow("flow-1", u.id + 1, after, &linked).await.unwrap(), None, "another user's");
    assert!(store.sso_links_of_user(u.id).await.unwrap().is_empty());
    assert_eq!(store.link_identity_of_flow("flow-1", u.id, after, &linked).await.unwrap(), Some(pending("tied")), "the flow, not its own expiry, bounds it");
    let links = store.sso_links_of_user(u.id).await.unwrap();
    assert_eq!((links.len(), links[0].provider, links[0].subject.as_str()), (1, Provider::Google, "sub"), "taken and linked together");
    assert_eq!(store.link_identity_of_flow("flow-1", u.id, after, &linked).await.unwrap(), None, "once");
}

/// Linking from the link page ends the waiting identity and stores the link in one transaction:
/// once, in the browser that started it, while it lives.
async fn a_waiting_sso_identity_is_linked_once_in_its_browser(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let pending = waiting_identity();
    store.create_pending_sso(&pending).await.unwrap();
    let linked = |_: &PendingSso| audit("sso_linked");
    assert_eq!(store.link_pending_sso("pending-hash", "browser-b", u.id, t0(), &linked).await.unwrap(), None, "another browser's");
    assert_eq!(store.link_pending_sso("pending-hash", "browser-a", u.id, t0() + Duration::minutes(10), &linked).await.unwrap(), None, "expired");
    assert!(store.sso_links_of_user(u.id).await.unwrap().is_empty(), "nothing written for a refused link");
    assert_eq!(store.link_pending_sso("pending-hash", "browser-a", u.id, t0(), &linked).await.unwrap(), Some(pending.clone()));
    assert_eq!(store.sso_links_of_user(u.id).await.unwrap()[0].email.as_deref(), Some("a@example.com"));
    assert_eq!(store.link_pending_sso("pending-hash", "browser-a", u.id, t0(), &linked).await.unwrap(), None, "once");
    assert_eq!(store.pending_sso("pending-hash", "browser-a", t0()).await.unwrap(), None);
}

fn confirmation_link(at: OffsetDateTime) -> (Token, NewLink) {
    let token = Token::generate();
    let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::EmailConfirmation, at) };
    (token, link)
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

async fn add_email(store: &dyn Store, user: &User, address: &str) -> Token {
    let (token, link) = confirmation_link(t0());
    let entry = AuditEntry { company_id: Some(user.company_id), target_user_id: Some(user.id), ..audit("additional_email_added") };
    store.add_additional_email(user.id, &email(address), &link, &entry).await.unwrap();
    token
}

async fn an_additional_email_is_added_once_and_verified_by_its_link_once(store: Arc<dyn Store>) {
    let c = sso_company(&*store, "organization.com", &[Provider::Google]).await;
    let u = active_with_email(&*store, &c, "101", "boss@example.com").await;
    let token = add_email(&*store, &u, "Assistant@Example.com").await;
    let listed = store.additional_emails(u.id).await.unwrap();
    assert_eq!(listed, vec![AdditionalEmail { email: "Assistant@Example.com".into(), verified_at: None }]);
    let link = store.link_by_token(&token.hash()).await.unwrap().unwrap();
    assert_eq!((link.user_id, link.sent_to.as_deref(), link.link.purpose), (u.id, Some("Assistant@Example.com"), LinkPurpose::EmailConfirmation));
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "additional_email_added", "written with the email");
    let key = email("assistant@example.com").key();
    assert!(store.users_with_verified_email(Provider::Google, &key).await.unwrap().is_empty(), "unverified: goes to linking");

    // The same address again, in any case, or the designated email: refused, nothing written.
    let events = store.audit_of_company(c.id, 100).await.unwrap().len();
    for again in ["assistant@example.com", "BOSS@example.com"] {
        let (dup, link) = confirmation_link(t0());
        let r = store.add_additional_email(u.id, &email(again), &link, &audit("additional_email_added")).await;
        assert!(matches!(r, Err(StoreError::Conflict("email"))), "{again}: {r:?}");
        assert!(store.link_by_token(&dup.hash()).await.unwrap().is_none(), "{again}: no link left behind");
    }
    assert_eq!(store.audit_of_company(c.id, 100).await.unwrap().len(), events);
    assert_eq!(store.additional_emails(u.id).await.unwrap().len(), 1);
    let missing = store.add_additional_email(999_999, &email("x@example.com"), &confirmation_link(t0()).1, &audit("x")).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    // A welcome link is not a confirmation link, and the other way round.
    assert_eq!(store.activate(&token.hash(), "pw", "pin", t0(), &audit("a")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    let at = t0() + Duration::hours(2);
    let confirmed = store.confirm_additional_email(&token.hash(), at, &AuditEntry { company_id: Some(c.id), ..audit("additional_email_confirmed") }).await.unwrap();
    assert_eq!(confirmed.map(|user| user.id), Ok(u.id));
    assert_eq!(store.additional_emails(u.id).await.unwrap()[0].verified_at, Some(at));
    assert_eq!(store.confirm_additional_email(&token.hash(), at, &audit("x")).await.unwrap(), Err(ConsumeError::LinkNotUsable), "once");
    assert_eq!(store.link_by_token(&token.hash()).await.unwrap().unwrap().link.used_at, Some(at));
    let found = store.users_with_verified_email(Provider::Google, &key).await.unwrap();
    assert_eq!(found.iter().map(|x| x.id).collect::<Vec<_>>(), vec![u.id], "verified: signs in by SSO");
    let event = &store.audit_of_company(c.id, 1).await.unwrap()[0];
    assert_eq!((event.kind.as_str(), event.target_user_id), ("additional_email_confirmed", Some(u.id)));
}

async fn removing_an_additional_email_kills_its_confirmation_link(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_with_email(&*store, &c, "101", "boss@example.com").await;
    let other = active_with_email(&*store, &c, "102", "other@example.com").await;
    let old = add_email(&*store, &u, "assistant@example.com").await;
    let kept = add_email(&*store, &u, "desk@example.com").await;
    add_email(&*store, &other, "assistant@example.com").await;

    let at = t0() + Duration::minutes(5);
    let entry = AuditEntry { company_id: Some(c.id), at, ..audit("additional_email_removed") };
    assert!(!store.remove_additional_email(u.id, &email("nobody@example.com"), &entry).await.unwrap());
    assert!(store.remove_additional_email(u.id, &email("ASSISTANT@example.com"), &entry).await.unwrap());
    assert_eq!(store.link_by_token(&old.hash()).await.unwrap().unwrap().link.replaced_at, Some(at));
    assert_eq!(store.audit_of_company(c.id, 1).await.unwrap()[0].kind, "additional_email_removed");
    let left: Vec<String> = store.additional_emails(u.id).await.unwrap().into_iter().map(|e| e.email).collect();
    assert_eq!(left, vec!["desk@example.com"]);
    assert_eq!(store.additional_emails(other.id).await.unwrap().len(), 1, "another account's address stays");

    // Added again, the address gets a new link; the old one stays dead.
    let new = add_email(&*store, &u, "assistant@example.com").await;
    assert_eq!(store.confirm_additional_email(&old.hash(), at, &audit("x")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    assert!(store.additional_emails(u.id).await.unwrap().iter().all(|e| e.verified_at.is_none()));
    assert!(store.confirm_additional_email(&new.hash(), at, &audit("x")).await.unwrap().is_ok());
    assert!(store.confirm_additional_email(&kept.hash(), at, &audit("x")).await.unwrap().is_ok(), "other addresses' links live on");
    assert!(!store.remove_additional_email(u.id, &email("boss@example.com"), &entry).await.unwrap(), "the designated email is not removed here");
}

async fn an_expired_confirmation_link_verifies_nothing(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_with_email(&*store, &c, "101", "boss@example.com").await;
    let token = add_email(&*store, &u, "assistant@example.com").await;
    let expired = t0() + Duration::hours(24);
    assert_eq!(store.confirm_additional_email(&token.hash(), expired, &audit("x")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    assert_eq!(store.additional_emails(u.id).await.unwrap()[0].verified_at, None);
    assert!(store.confirm_additional_email(&token.hash(), expired - Duration::seconds(1), &audit("x")).await.unwrap().is_ok());
}

async fn twenty_racing_confirmations_succeed_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_with_email(&*store, &c, "101", "boss@example.com").await;
    let token = add_email(&*store, &u, "assistant@example.com").await;
    let tasks = (0..20)
        .map(|_| {
            let (store, hash) = (store.clone(), token.hash());
            let entry = AuditEntry { company_id: Some(c.id), ..audit("additional_email_confirmed") };
            tokio::spawn(async move { store.confirm_additional_email(&hash, t0(), &entry).await })
        })
        .collect();
    let wins = futures_join(tasks).await.into_iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(wins, 1);
    let events = store.audit_of_company(c.id, 100).await.unwrap();
    assert_eq!(events.iter().filter(|a| a.kind == "additional_email_confirmed").count(), 1, "the losers wrote nothing");
}

/// Found by the API fuzzing (tests/fuzz): two office managers adding emails at once got
/// `503 store_unavailable` on SQLite. A transaction that reads before it writes must wait for the
/// other writer, not fail: on SQLite a deferred transaction cannot take the write lock after
/// another one committed since its read (SQLITE_BUSY at once, whatever `busy_timeout` says).
async fn racing_transactions_that_read_then_write_all_succeed(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_with_email(&*store, &c, "101", "boss@example.com").await;
    let tasks = (0..20)
        .map(|i| {
            let (store, u) = (store.clone(), u.clone());
            tokio::spawn(async move {
                let (_, link) = confirmation_link(t0());
                let entry = AuditEntry { company_id: Some(u.company_id), target_user_id: Some(u.id), ..audit("additional_email_added") };
                store.add_additional_email(u.id, &email(&format!("desk{i}@example.com")), &link, &entry).await
            })
        })
        .collect();
    let failed: Vec<_> = futures_join(tasks).await.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "{} of 20 failed: {failed:?}", failed.len());
    assert_eq!(store.additional_emails(u.id).await.unwrap().len(), 20);
}

async fn company_emails_are_every_address_of_that_company(store: Arc<dyn Store>) {
    use latchkey_core::email_review::{AccountEmail, EmailSlot};
    let c = company(&*store, "organization.com").await;
    let elsewhere = company(&*store, "other.org").await;
    let boss = active_with_email(&*store, &c, "101", "Boss@Example.com").await;
    invite(&*store, &c, "102", "front@example.com").await;
    active_with_email(&*store, &elsewhere, "101", "boss@example.com").await;
    let token = add_email(&*store, &boss, "assistant@example.com").await;
    store.confirm_additional_email(&token.hash(), t0(), &audit("x")).await.unwrap().unwrap();
    add_email(&*store, &boss, "voicemail@example.com").await;

    let rows: Vec<(String, String, String, EmailSlot, bool)> = store
        .company_emails(c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r: AccountEmail| (r.login_name, r.email, r.email_key, r.slot, r.verified))
        .collect();
    let row = |login: &str, email: &str, slot, verified| (login.to_owned(), email.to_owned(), email.to_lowercase(), slot, verified);
    assert_eq!(
        rows,
        vec![
            row("101@organization.com", "assistant@example.com", EmailSlot::Additional, true),
            row("101@organization.com", "Boss@Example.com", EmailSlot::Designated, true),
            row("102@organization.com", "front@example.com", EmailSlot::Designated, false),
            row("101@organization.com", "voicemail@example.com", EmailSlot::Additional, false),
        ]
    );
    let all = store.company_emails(c.id).await.unwrap();
    assert!(all.iter().all(|r| r.role == Role::User && r.login_name.starts_with(&format!("{}@", r.extension))), "{all:?}");
    assert_eq!(store.company_emails(elsewhere.id).await.unwrap().len(), 1, "each company reads its own");
}

async fn api_tokens_are_created_used_and_revoked_with_their_audit_entries(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let hash = Token::generate().hash();
    let created = |t: &ApiToken| AuditEntry { company_id: t.company_id, detail: format!("token {}", t.id), ..audit("api_token_created") };
    let token = store.create_api_token("deploy bot", &hash, Some(c.id), t0(), &created).await.unwrap();
    assert_eq!((token.company_domain.as_deref(), token.last_used_at, token.revoked_at), (Some("organization.com"), None, None));
    let events = store.audit_of_company(c.id, 10).await.unwrap();
    assert_eq!((events[0].kind.as_str(), events[0].detail.clone()), ("api_token_created", format!("token {}", token.id)), "written with the token");

    let used = store.use_api_token(&hash, t0() + Duration::minutes(1)).await.unwrap().expect("a live token works");
    assert_eq!(used.last_used_at, Some(t0() + Duration::minutes(1)));
    assert!(store.use_api_token(&Token::generate().hash(), t0()).await.unwrap().is_none(), "an unknown hash is no token");

    let revoked = AuditEntry { company_id: Some(c.id), ..audit("api_token_revoked") };
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let (store, revoked) = (store.clone(), revoked.clone());
            tokio::spawn(async move { store.revoke_api_token(token.id, t0(), &revoked).await.unwrap() })
        })
        .collect();
    assert_eq!(futures_join(racers).await.into_iter().filter(|r| *r).count(), 1, "revoked once");
    let kinds: Vec<String> = store.audit_of_company(c.id, 10).await.unwrap().into_iter().map(|a| a.kind).collect();
    assert_eq!(kinds, ["api_token_revoked", "api_token_created"], "one revocation entry, none for the refused revocations");
    assert!(store.use_api_token(&hash, t0()).await.unwrap().is_none(), "a revoked token is refused");
    assert!(!store.revoke_api_token(9999, t0(), &revoked).await.unwrap(), "an unknown id");
    let listed = store.list_api_tokens().await.unwrap();
    assert_eq!((listed.len(), listed[0].revoked_at), (1, Some(t0())), "kept, marked revoked, for the audit log to name");
}

fn ids(users: &[User]) -> Vec<i64> {
    users.iter().map(|u| u.id).collect()
}

async fn the_users_list_finds_part_of_an_extension_login_name_or_any_email(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let other = company(&*store, "other.org").await;
    let (front, _) = invite(&*store, &c, "101", "Front.Desk@Example.com").await;
    let boss = active_with_email(&*store, &c, "205", "boss@example.com").await;
    let (odd, _) = invite(&*store, &c, "310", "50%_off@example.com").await;
    invite(&*store, &other, "101", "front.desk@example.com").await;
    add_email(&*store, &boss, "Assistant@Example.com").await;
    let find = |q: &'static str| {
        let store = store.clone();
        async move { ids(&store.company_users(c.id, Some(q), 50, 0).await.unwrap()) }
    };
    assert_eq!(find("FRONT.desk").await, vec![front.id], "designated email, any case, this company only");
    assert_eq!(find("assistant@").await, vec![boss.id], "an additional email");
    assert_eq!(find("20").await, vec![boss.id], "part of an extension");
    assert_eq!(find("310@organization").await, vec![odd.id], "a login name");
    assert_eq!(find("ORGANIZATION.COM").await, vec![front.id, boss.id, odd.id]);
    assert_eq!(find("50%_").await, vec![odd.id], "% and _ are taken literally");
    assert_eq!(find("%").await, vec![odd.id]);
    assert_eq!(find("_").await, vec![odd.id]);
    assert!(find("nobody").await.is_empty());
    assert_eq!(ids(&store.company_users(c.id, None, 50, 0).await.unwrap()), vec![front.id, boss.id, odd.id]);
    assert_eq!(ids(&store.company_users(c.id, Some("  "), 50, 0).await.unwrap()).len(), 3, "a blank search is no search");
}

async fn the_users_list_pages_in_extension_order_within_one_company(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let other = company(&*store, "other.org").await;
    for ext in ["1000", "99", "100", "5", "101"] {
        invite(&*store, &c, ext, "someone@example.com").await;
    }
    invite(&*store, &other, "1", "someone@example.com").await;
    let page = |limit: i64, offset: i64| {
        let store = store.clone();
        async move { store.company_users(c.id, None, limit, offset).await.unwrap().into_iter().map(|u| u.extension).collect::<Vec<_>>() }
    };
    assert_eq!(page(10, 0).await, vec!["5", "99", "100", "101", "1000"], "numeric order, not text order");
    assert_eq!(page(2, 0).await, vec!["5", "99"]);
    assert_eq!(page(2, 2).await, vec!["100", "101"]);
    assert_eq!(page(2, 4).await, vec!["1000"]);
    assert!(page(2, 6).await.is_empty());
}

async fn what_the_users_list_shows_is_read_for_a_page_of_accounts(store: Arc<dyn Store>) {
    let c = sso_company(&*store, "organization.com", &[Provider::Google, Provider::Microsoft]).await;
    let other = company(&*store, "other.org").await;
    let a = active_with_email(&*store, &c, "101", "a@example.com").await;
    let b = active_with_email(&*store, &c, "102", "b@example.com").await;
    let (quiet, _) = invite(&*store, &c, "103", "c@example.com").await;
    let stranger = active_with_email(&*store, &other, "101", "s@example.com").await;
    for (u, methods) in [(&a, vec![Method::Totp, Method::Email]), (&b, vec![Method::Sms]), (&stranger, vec![Method::Totp])] {
        for (i, m) in methods.into_iter().enumerate() {
            let method = StoredMethod { method: m, detail: None, ..totp_method(t0()) };
            let first = if i == 0 { codes(m.as_str()) } else { Vec::new() };
            store.enable_method(u.id, &method, &first, &audit("2fa_enabled")).await.unwrap();
        }
    }
    use Provider::{Google, Microsoft};
    for (u, provider, subject) in [(&a, Google, "g-1"), (&a, Google, "g-2"), (&a, Microsoft, "m-1"), (&b, Microsoft, "m-2"), (&stranger, Google, "g-3")] {
        store.add_sso_link(u.id, provider, subject, None, t0(), &audit("sso_linked")).await.unwrap();
    }
    add_email(&*store, &a, "z-desk@example.com").await;
    let desk = add_email(&*store, &a, "Assistant@example.com").await;
    store.confirm_additional_email(&desk.hash(), t0(), &audit("additional_email_confirmed")).await.unwrap().unwrap();
    add_email(&*store, &stranger, "x@example.com").await;

    let page = [a.id, b.id, quiet.id, stranger.id];
    let methods = store.methods_of_users(c.id, &page).await.unwrap();
    assert_eq!(methods, [(a.id, Method::Email), (a.id, Method::Totp), (b.id, Method::Sms)], "another company's account is never read");
    let providers = store.sso_providers_of_users(c.id, &page).await.unwrap();
    assert_eq!(providers, [(a.id, Google), (a.id, Microsoft), (b.id, Microsoft)], "each provider once");
    let emails = store.additional_emails_of_users(c.id, &page).await.unwrap();
    assert_eq!(
        emails,
        vec![
            (a.id, AdditionalEmail { email: "Assistant@example.com".into(), verified_at: Some(t0()) }),
            (a.id, AdditionalEmail { email: "z-desk@example.com".into(), verified_at: None }),
        ]
    );
    assert_eq!(store.methods_of_users(c.id, &[b.id]).await.unwrap(), [(b.id, Method::Sms)], "only the accounts asked for");
    assert!(store.methods_of_users(c.id, &[]).await.unwrap().is_empty());
    assert!(store.sso_providers_of_users(c.id, &[]).await.unwrap().is_empty());
    assert!(store.additional_emails_of_users(c.id, &[]).await.unwrap().is_empty());
}

async fn a_new_designated_email_kills_the_links_sent_to_the_old_one(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let (invited, welcome) = invite(&*store, &c, "101", "old@example.com").await;
    let active = active_user(&*store, &c, "102").await;
    let reset = Token::generate();
    let link = NewLink { token_hash: reset.hash(), link: EmailLink::issue(LinkPurpose::PasswordReset, t0()) };
    store.issue_link(active.id, &link, &audit("password_reset_requested")).await.unwrap();
    let confirmation = add_email(&*store, &active, "desk@example.com").await;
    let later = AuditEntry { at: t0() + Duration::minutes(5), ..audit("designated_email_changed") };
    for u in [&invited, &active] {
        store.change_designated_email(u.id, &email("new@example.com"), &later).await.unwrap();
    }
    for token in [&welcome, &reset] {
        let stored = store.link_by_token(&token.hash()).await.unwrap().unwrap();
        assert_eq!((stored.link.replaced_at, stored.link.used_at), (Some(later.at), None), "{:?}", stored.link.purpose);
    }
    assert_eq!(store.activate(&welcome.hash(), "pw", "pin", later.at, &audit("a")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    assert_eq!(store.reset_password(&reset.hash(), "pw", later.at, &audit("r")).await.unwrap(), Err(ConsumeError::LinkNotUsable));
    // A confirmation link belongs to its additional email, which did not change.
    assert_eq!(store.link_by_token(&confirmation.hash()).await.unwrap().unwrap().link.replaced_at, None);
}

/// An event of `company` at `t0() + minutes`, by `actor` to `target`.
async fn event(store: &dyn Store, company: &Company, kind: &'static str, actor: Option<i64>, target: Option<i64>, minutes: i64) -> i64 {
    let at = t0() + Duration::minutes(minutes);
    let entry = AuditEntry { company_id: Some(company.id), actor_user_id: actor, target_user_id: target, at, ..audit(kind) };
    store.append_audit(&entry).await.unwrap();
    store.query_audit(&AuditQuery::of_company(company.id, 1)).await.unwrap()[0].record.id
}

async fn audit_ids(store: &dyn Store, q: AuditQuery) -> Vec<i64> {
    store.query_audit(&q).await.unwrap().iter().map(|v| v.record.id).collect()
}

async fn each_audit_filter_narrows_the_log_of_one_company(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let other = company(&*store, "other.org").await;
    let (alice, bob) = (active_user(&*store, &c, "101").await, active_user(&*store, &c, "102").await);
    // The token's own creation event is kept out of the company's log here (company None).
    let token = store.create_api_token("provisioning", &Token::generate().hash(), Some(c.id), t0(), &|_: &ApiToken| audit("api_token_created")).await.unwrap();
    let failed = event(&*store, &c, "sign_in_failed", Some(alice.id), Some(alice.id), 0).await;
    let signed_in = event(&*store, &c, "sign_in", Some(alice.id), Some(alice.id), 10).await;
    let reset = event(&*store, &c, "two_factor_reset", Some(bob.id), Some(alice.id), 20).await;
    store.append_audit(&AuditEntry { company_id: Some(c.id), actor_token_id: Some(token.id), target_user_id: Some(bob.id), at: t0() + Duration::minutes(30), ..audit("user_created") }).await.unwrap();
    let created = audit_ids(&*store, AuditQuery::of_company(c.id, 1)).await[0];
    event(&*store, &other, "sign_in", None, None, 40).await;
    let all = AuditQuery::of_company(c.id, 100);

    assert_eq!(audit_ids(&*store, all.clone()).await, vec![created, reset, signed_in, failed], "newest first, this company only");
    let kinds = |k: &[&str]| AuditQuery { kinds: k.iter().map(|s| s.to_string()).collect(), ..all.clone() };
    assert_eq!(audit_ids(&*store, kinds(&["sign_in"])).await, vec![signed_in]);
    assert_eq!(audit_ids(&*store, kinds(&["sign_in", "sign_in_failed"])).await, vec![signed_in, failed]);
    assert_eq!(audit_ids(&*store, kinds(&["pin_changed"])).await, Vec::<i64>::new());
    let user = |id| AuditQuery { user_id: Some(id), ..all.clone() };
    assert_eq!(audit_ids(&*store, user(bob.id)).await, vec![created, reset], "bob acted in one and was the target of the other");
    assert_eq!(audit_ids(&*store, user(alice.id)).await, vec![reset, signed_in, failed]);
    let at = |m| Some(t0() + Duration::minutes(m));
    assert_eq!(audit_ids(&*store, AuditQuery { from: at(10), ..all.clone() }).await, vec![created, reset, signed_in], "from is inclusive");
    assert_eq!(audit_ids(&*store, AuditQuery { until: at(20), ..all.clone() }).await, vec![signed_in, failed], "until is exclusive");
    assert_eq!(audit_ids(&*store, AuditQuery { from: at(5), until: at(25), user_id: Some(alice.id), ..all.clone() }).await, vec![reset, signed_in]);
    assert_eq!(audit_ids(&*store, AuditQuery { before_id: Some(reset), ..all.clone() }).await, vec![signed_in, failed]);

    let views = store.query_audit(&all).await.unwrap();
    let names = |v: &AuditView| (v.actor_login_name.clone(), v.target_login_name.clone(), v.actor_token_name.clone());
    let login = |u: &User| Some(u.login_name.clone());
    assert_eq!(names(&views[0]), (None, login(&bob), Some("provisioning".into())), "the token that acted, by name");
    assert_eq!(names(&views[1]), (login(&bob), login(&alice), None));
    assert_eq!(views[0].record.actor_token_id, Some(token.id));
    assert_eq!(views[1].record.created_at, t0() + Duration::minutes(20));
}

async fn audit_pages_hold_every_event_once(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    for i in 0..23 {
        let kind = if i % 3 == 0 { "sign_in_failed" } else { "sign_in" };
        event(&*store, &c, kind, Some(u.id), Some(u.id), i).await;
    }
    for kinds in [vec![], vec!["sign_in".to_owned()]] {
        let first = AuditQuery { kinds: kinds.clone(), ..AuditQuery::of_company(c.id, 5) };
        let every = audit_ids(&*store, AuditQuery { limit: 1000, ..first.clone() }).await;
        let (mut paged, mut before): (Vec<i64>, _) = (Vec::new(), None);
        loop {
            let page = audit_ids(&*store, AuditQuery { before_id: before, ..first.clone() }).await;
            // An event written between two pages is newer than every page: it never shifts them.
            event(&*store, &c, "sign_in", Some(u.id), Some(u.id), 100).await;
            paged.extend(&page);
            match page.last() {
                Some(last) if page.len() == 5 => before = Some(*last),
                _ => break,
            }
        }
        assert_eq!(paged, every, "pages of {kinds:?}: no gap, no repeat, newest first");
    }
}

async fn the_audit_purge_removes_only_older_events(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let other = company(&*store, "other.org").await;
    event(&*store, &c, "sign_in", None, None, -2).await;
    event(&*store, &other, "sign_in", None, None, -1).await;
    let kept = vec![event(&*store, &c, "sign_in", None, None, 1).await, event(&*store, &c, "sign_in", None, None, 0).await];
    let kept_elsewhere = event(&*store, &other, "sign_in", None, None, 0).await;
    assert_eq!(store.purge_audit_before(t0()).await.unwrap(), 2, "one old event in each company");
    let mut left = audit_ids(&*store, AuditQuery::of_company(c.id, 10)).await;
    left.sort();
    assert_eq!(left, kept, "an event at the cut-off itself stays");
    assert_eq!(audit_ids(&*store, AuditQuery::of_company(other.id, 10)).await, vec![kept_elsewhere]);
    assert_eq!(store.purge_audit_before(t0()).await.unwrap(), 0);
}

async fn audit_events_cannot_be_rewritten(store: Arc<dyn Store>, url: &str) {
    use sqlx::Connection;
    let c = company(&*store, "organization.com").await;
    let id = event(&*store, &c, "sign_in_failed", None, None, 0).await;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for rewrite in ["UPDATE audit_events SET kind = 'sign_in' WHERE id = $1", "UPDATE audit_events SET created_at = 0 WHERE id = $1"] {
        let refused = sqlx::query(rewrite).bind(id).execute(&mut conn).await;
        let message = refused.expect_err("the trigger refuses every UPDATE").to_string();
        assert!(message.contains("append-only"), "{message}");
    }
    let event = &store.query_audit(&AuditQuery::of_company(c.id, 1)).await.unwrap()[0].record;
    assert_eq!((event.kind.as_str(), event.created_at), ("sign_in_failed", t0()), "the event is as it was written");
}

/// Asserts `$read` failed as a corrupt row: a backend error naming the column and the value.
macro_rules! assert_corrupt {
    ($read:expr, $column:expr, $value:expr) => {{
        let read = $read;
        match &read {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains($column) && message.contains($value), "{message}: names {} and {}", $column, $value)
            }
            other => panic!("{} should be a corrupt row, got {other:?}", stringify!($read)),
        }
    }};
}

/// The store writes only core's spellings. A row holding anything else (written around the
/// store) is a corrupt row: every read of it fails naming the column and the value, and it is
/// never read as some other method, provider or state. A provider list still matches only whole
/// names.
async fn a_row_holding_an_unknown_spelling_is_an_error_naming_it(store: Arc<dyn Store>, url: &str) {
    use sqlx::Connection;
    let c = sso_company(&*store, "a.com", &[Provider::Google]).await;
    let u = active_with_email(&*store, &c, "101", "alice@example.com").await;
    store.enable_method(u.id, &totp_method(t0()), &codes("r"), &audit("2fa_enabled")).await.unwrap();
    store.set_preferred_method(u.id, Some(Method::Totp)).await.unwrap();
    store.add_sso_link(u.id, Provider::Google, "g-1", None, t0(), &audit("sso_linked")).await.unwrap();
    sign_in_flow(&*store, &u, "f1", t0()).await;
    let code = StoredCode { code_hash: "h".into(), target: Some(Channel::Email("alice@example.com".into())), created_at: t0(), expires_at: t0() + Duration::minutes(10), used_at: None };
    store.issue_code(u.id, CodePurpose::SignInEmail, &code).await.unwrap();
    let pending = PendingSso {
        id_hash: "pending".into(),
        provider: Provider::Google,
        subject: "g-2".into(),
        email: None,
        trusted_email: None,
        browser_hash: "browser".into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    };
    store.create_pending_sso(&pending).await.unwrap();
    let attempt = SsoAttempt {
        state_hash: "state".into(),
        provider: Provider::Google,
        browser_hash: "browser".into(),
        nonce: "nonce".into(),
        pkce_verifier: "verifier".into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
    };
    store.begin_sso_attempt(&attempt).await.unwrap();
    let key = email("alice@example.com").key();
    assert_eq!(store.users_with_verified_email(Provider::Google, &key).await.unwrap().len(), 1);

    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for (table, set) in [
        ("two_factor_methods", "method = 'fax'"),
        ("users", "preferred_method = 'pigeon'"),
        ("sso_links", "provider = 'okta'"),
        ("sign_in_flows", "state = 'enroll'"),
        ("one_time_codes", "target = 'fax:123'"),
        ("sso_pending", "provider = 'okta'"),
        ("sso_attempts", "provider = 'okta'"),
    ] {
        sqlx::query(&format!("UPDATE {table} SET {set}")).execute(&mut conn).await.unwrap();
    }
    sqlx::query("UPDATE companies SET two_factor_mode = 'sometimes' WHERE id = $1").bind(c.id).execute(&mut conn).await.unwrap();

    assert_corrupt!(store.methods_of_user(u.id).await, "two_factor_methods.method", "fax");
    assert_corrupt!(store.methods_of_users(c.id, &[u.id]).await, "two_factor_methods.method", "fax");
    assert_corrupt!(store.preferred_method(u.id).await, "users.preferred_method", "pigeon");
    assert_corrupt!(store.sso_links_of_user(u.id).await, "sso_links.provider", "okta");
    assert_corrupt!(store.sso_providers_of_users(c.id, &[u.id]).await, "sso_links.provider", "okta");
    assert_corrupt!(store.sign_in_flow("f1").await, "sign_in_flows.state", "enroll");
    assert_corrupt!(store.code(u.id, CodePurpose::SignInEmail).await, "one_time_codes.target", "fax:123");
    assert_corrupt!(store.pending_sso("pending", "browser", t0()).await, "sso_pending.provider", "okta");
    assert_corrupt!(store.take_sso_attempt("state", "browser", t0()).await, "sso_attempts.provider", "okta");
    assert_corrupt!(store.two_factor_policy(c.id).await, "companies.two_factor_mode", "sometimes");
    assert_corrupt!(store.account_overview(u.id).await, "companies.two_factor_mode", "sometimes");

    sqlx::query("UPDATE companies SET two_factor_mode = 'optional', allowed_methods = 'totp,fax', sso_providers = 'xgoogle,googlex' WHERE id = $1")
        .bind(c.id)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_corrupt!(store.two_factor_policy(c.id).await, "companies.allowed_methods", "fax");
    assert_corrupt!(store.sso_settings(c.id).await, "companies.sso_providers", "xgoogle");
    assert!(store.users_with_verified_email(Provider::Google, &key).await.unwrap().is_empty(), "a provider name matches whole");
    assert!(store.users_linked_to(Provider::Google, "g-1").await.unwrap().is_empty(), "a provider name matches whole");
}

fn new_session(user: &User, token: &Token, at: OffsetDateTime) -> NewSession {
    NewSession {
        token_hash: token.hash(),
        handle: random_handle(),
        user_id: user.id,
        restricted: false,
        created_at: at,
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("test".into()),
    }
}

/// The one-statement overview must say exactly what the separate reads say, on both stores.
async fn the_account_overview_reads_what_each_part_reads(store: Arc<dyn Store>) {
    let c = sso_company(&*store, "a.com", &[Provider::Google, Provider::Microsoft]).await;
    let u = active_user(&*store, &c, "101").await;
    let bare = store.account_overview(u.id).await.unwrap();
    assert!(
        bare.additional_emails.is_empty() && bare.methods.is_empty() && bare.sso_links.is_empty()
    );
    assert_eq!((bare.recovery_codes_left, bare.preferred_method), (0, None));

    let token = add_email(&*store, &u, "zed@example.com").await;
    add_email(&*store, &u, "Amy@example.com").await;
    store
        .confirm_additional_email(&token.hash(), t0(), &audit("additional_email_verified"))
        .await
        .unwrap()
        .unwrap();
    store
        .enable_method(u.id, &totp_method(t0()), &codes("r"), &audit("2fa_enabled"))
        .await
        .unwrap();
    let sms = StoredMethod {
        method: Method::Sms,
        detail: Some("+447700900123".into()),
        totp_sealed: None,
        totp_key_id: None,
        totp_last_step: None,
        enabled_at: t0() - Duration::days(1),
    };
    store
        .enable_method(u.id, &sms, &[], &audit("2fa_enabled"))
        .await
        .unwrap();
    sign_in_flow(&*store, &u, "f1", t0()).await;
    store
        .complete_sign_in_flow("f1", u.id, &recovery(&u, "r-hash-3"), t0())
        .await
        .unwrap();
    store.set_preferred_method(u.id, Some(Method::Sms)).await.unwrap();
    for (provider, subject) in [(Provider::Microsoft, "m-1"), (Provider::Google, "g-1")] {
        store
            .add_sso_link(
                u.id,
                provider,
                subject,
                Some("u@a.com"),
                t0(),
                &audit("sso_linked"),
            )
            .await
            .unwrap();
    }
    // Another account's things are not this one's.
    let other = active_user(&*store, &c, "102").await;
    add_email(&*store, &other, "other@example.com").await;
    store
        .enable_method(
            other.id,
            &totp_method(t0()),
            &codes("o"),
            &audit("2fa_enabled"),
        )
        .await
        .unwrap();

    let o = store.account_overview(u.id).await.unwrap();
    assert_eq!(
        o.additional_emails,
        store.additional_emails(u.id).await.unwrap()
    );
    assert_eq!(
        o.additional_emails
            .iter()
            .map(|e| (e.email.as_str(), e.verified_at.is_some()))
            .collect::<Vec<_>>(),
        [("Amy@example.com", false), ("zed@example.com", true)]
    );
    let methods: Vec<MethodSummary> = store
        .methods_of_user(u.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| MethodSummary {
            method: m.method,
            detail: m.detail,
            enabled_at: m.enabled_at,
        })
        .collect();
    assert_eq!(o.methods, methods);
    assert_eq!(
        o.methods
            .iter()
            .map(|m| m.method.as_str())
            .collect::<Vec<_>>(),
        ["sms", "totp"],
        "in the order they were enabled"
    );
    assert_eq!(
        o.recovery_codes_left,
        store.recovery_codes_left(u.id).await.unwrap()
    );
    assert_eq!(o.recovery_codes_left, 9);
    assert_eq!(
        o.company_two_factor,
        store.two_factor_policy(c.id).await.unwrap()
    );
    assert_eq!(o.preferred_method, Some(Method::Sms));
    assert_eq!(o.sso_links, store.sso_links_of_user(u.id).await.unwrap());
    assert_eq!(o.sso_links.len(), 2);
    assert!(matches!(
        store.account_overview(other.id + 1000).await,
        Err(StoreError::NotFound)
    ));
}

async fn a_session_is_read_with_its_account(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    let token = Token::generate();
    store
        .create_session(&new_session(&u, &token, t0()), &audit("sign_in"))
        .await
        .unwrap();
    let (session, user) = store
        .session_with_user(&token.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        session,
        store
            .session_by_token(&token.hash())
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(user.id, u.id);
    assert_eq!(
        (user.company_domain.as_str(), user.state),
        ("organization.com", UserState::Active)
    );
    assert!(store
        .session_with_user(&Token::generate().hash())
        .await
        .unwrap()
        .is_none());
    // Disabling an account ends its sessions.
    store
        .set_user_state(u.id, UserState::Disabled, &audit("user_disabled"))
        .await
        .unwrap();
    assert!(store
        .session_with_user(&token.hash())
        .await
        .unwrap()
        .is_none());
}

/// The right code, the flow, the wrong-code count, the session and its audit entry: all or none.
async fn a_completed_sign_in_writes_its_session_with_the_flow(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let u = active_user(&*store, &c, "101").await;
    store
        .enable_method(u.id, &totp_method(t0()), &[], &audit("2fa_enabled"))
        .await
        .unwrap();
    let p = ThrottlePolicy {
        max_failures: 5,
        window: Duration::minutes(15),
        lockout: Duration::minutes(10),
    };
    let key = format!("second_factor:user:{}", u.id);
    store.throttle_fail(&key, &p, t0()).await.unwrap();
    sign_in_flow(&*store, &u, "f1", t0()).await;
    sign_in_flow(&*store, &u, "f2", t0()).await;
    let start = |token: &Token| SignInStart {
        wrong_code_key: key.clone(),
        session: new_session(&u, token, t0()),
        audit: AuditEntry {
            company_id: Some(c.id),
            target_user_id: Some(u.id),
            ..audit("sign_in")
        },
    };
    let signed_in_events = |store: Arc<dyn Store>| async move {
        store
            .audit_of_company(c.id, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "sign_in")
            .count()
    };

    let first = Token::generate();
    let done = store
        .complete_sign_in("f1", u.id, &FactorSpend::TotpStep(1000), &start(&first))
        .await
        .unwrap();
    assert_eq!(
        done,
        FlowCompletion::Completed {
            recovery_codes_left: None
        }
    );
    assert!(store
        .session_by_token(&first.hash())
        .await
        .unwrap()
        .is_some());
    assert_eq!(signed_in_events(store.clone()).await, 1);
    assert!(store
        .user_by_id(u.id)
        .await
        .unwrap()
        .unwrap()
        .last_sign_in_at
        .is_some());
    // The wrong code counted before is forgotten: four more do not lock.
    for _ in 0..4 {
        assert_eq!(store.throttle_fail(&key, &p, t0()).await.unwrap(), None);
    }

    // A spent step on the second flow: no session, no audit, the flow still open.
    let second = Token::generate();
    let spent = store
        .complete_sign_in("f2", u.id, &FactorSpend::TotpStep(1000), &start(&second))
        .await
        .unwrap();
    assert_eq!(spent, FlowCompletion::FactorSpent);
    assert!(store
        .session_by_token(&second.hash())
        .await
        .unwrap()
        .is_none());
    assert_eq!(signed_in_events(store.clone()).await, 1);
    assert!(store
        .sign_in_flow("f2")
        .await
        .unwrap()
        .unwrap()
        .completed_at
        .is_none());
    // And a completed flow writes nothing either.
    let third = Token::generate();
    assert_eq!(
        store
            .complete_sign_in("f1", u.id, &FactorSpend::TotpStep(1001), &start(&third))
            .await
            .unwrap(),
        FlowCompletion::FlowGone
    );
    assert!(store
        .session_by_token(&third.hash())
        .await
        .unwrap()
        .is_none());
}

/// Two first methods confirmed at once (an app on one node, a phone on the other, or the same
/// confirmation twice): one is the first, and one set of recovery codes is kept.
async fn first_methods_racing_write_one_set_of_recovery_codes(store: Arc<dyn Store>) {
    let c = company(&*store, "organization.com").await;
    let user_id = active_user(&*store, &c, "101").await.id;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let method = StoredMethod {
            method: Method::ALL[i % 3],
            ..totp_method(t0())
        };
        let set = codes(&format!("set{i}"));
        tasks.push(tokio::spawn(async move {
            store.enable_method(user_id, &method, &set, &audit("2fa_enabled")).await.unwrap()
        }));
    }
    let firsts = futures_join(tasks).await.into_iter().filter(|first| *first).count();
    assert_eq!(firsts, 1, "one confirmation is the first");
    assert_eq!(store.recovery_codes_left(user_id).await.unwrap(), 10, "one set of codes");
    assert_eq!(store.methods_of_user(user_id).await.unwrap().len(), 3);
}

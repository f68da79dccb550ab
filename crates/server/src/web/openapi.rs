//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json` (nothing is downloaded at build or run time).
//!
//! Like `web/mod.rs` it names every route module: it assembles them, and no route module imports it.

use std::collections::BTreeMap;

use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::console::{audit, email_review, policy, users_api};
use super::my_account::{password, sessions};
use super::sso::{account_chooser, linked_sign_ins, linking, trip};
use super::two_factor::{authenticator_app, email_code, recovery_codes, removal, text_message};
use super::{complete_setup, confirm_email, my_account, operator, password_reset, sign_in, sso, two_factor};

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey API", description = "Account security for the business phone-system portal: activation, recovery, sign-in, sessions."),
    paths(
        sign_in::csrf, complete_setup::activation_open, complete_setup::activation_complete, password_reset::password_forgot,
        password_reset::reset_open, password_reset::reset_complete, password_reset::login_name_forgot, sign_in::sign_in,
        sign_in::sign_in_verify, sign_in::sign_out, authenticator_app::totp_start, authenticator_app::totp_confirm,
        policy::policy_get, policy::policy_put, my_account::preferred_put, users_api::two_factor_reset, my_account::me, sessions::sessions,
        sessions::revoke_session, sessions::revoke_other_sessions, password::change_password, password::change_pin, users_api::create_user,
        users_api::resend_welcome, linked_sign_ins::sso_links, linked_sign_ins::sso_link_remove,
        sign_in::sign_in_send, email_code::email_verification_start, email_code::email_verification_confirm,
        text_message::sms_start, text_message::sms_confirm, email_code::email_start, email_code::email_confirm,
        two_factor::verification_code, removal::remove_method, authenticator_app::remove_totp, text_message::remove_sms,
        email_code::remove_email, recovery_codes::recovery_codes,
        trip::start, trip::callback, sso::waiting, account_chooser::choose, linking::link,
        users_api::emails_list, users_api::email_add, users_api::email_remove, confirm_email::email_confirmation_open,
        confirm_email::email_confirmation_confirm, policy::sso_get, policy::sso_put, email_review::email_review,
        operator::companies_list, operator::company_create, operator::features_get, operator::features_put, operator::tokens_list, operator::token_revoke,
        users_api::users_list, users_api::user_get, users_api::user_disable, users_api::user_enable, users_api::designated_email_put,
        audit::audit_list, audit::audit_csv,
    ),
    modifiers(&ApiTokenScheme, &CommonResponses),
    tags((name = "activation"), (name = "recovery"), (name = "session"), (name = "me"), (name = "two-factor"), (name = "office manager"), (name = "single sign-on"), (name = "operator"))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Names the `Authorization: Bearer lk_…` scheme in the OpenAPI document as `api_token`.
pub struct ApiTokenScheme;

impl utoipa::Modify for ApiTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("lk_…").description(Some("An API token made with `latchkey token create`.")).build();
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("api_token", SecurityScheme::Http(scheme));
    }
}

/// The answers any operation can give besides its own, added here so that no handler's annotation
/// can leave one out: a path parameter may not be text (400, `ApiPath`); a JSON body can be
/// malformed (400), too large (413), of another content type (415) or of the wrong shape (422) —
/// `ApiJson`'s rejections; a session's change needs its CSRF token and a session restricted to
/// two-factor enrolment reaches only the enrolment calls (403, `web::kit`'s session extractors); and any request
/// can meet an overloaded hashing pool or an unreachable store (503, with `Retry-After`). An
/// operation that documents one of these statuses itself keeps its own description.
struct CommonResponses;

const PATH_ERRORS: [(&str, &str); 1] = [("400", "bad_request: a path parameter is not UTF-8 text")];

const BODY_ERRORS: [(&str, &str); 4] = [
    ("400", "malformed_json: the body is not JSON"),
    ("413", "body_too_large: the body is over the server's limit"),
    ("415", "unsupported_media_type: the body is not sent as application/json"),
    ("422", "invalid_body: wrong types, unknown, duplicated or missing fields"),
];

const CSRF: (&str, &str) = ("403", "csrf_failed: a change through a session without its X-CSRF-Token");

const RESTRICTED: (&str, &str) = ("403", "enrollment_required: the session is restricted to two-factor enrolment");

const UNAVAILABLE: (&str, &str) = ("503", "busy or store_unavailable: try again after Retry-After seconds");

/// Where a session is a caller: the signed-in account's own calls, the company and operator calls
/// (an office manager's session, or an API token).
fn session_may_call(path: &str) -> bool {
    ["/api/v1/me", "/api/v1/sign-out", "/api/v1/companies", "/api/v1/tokens"].iter().any(|p| path.starts_with(p))
}

/// What a session restricted to enrolment may still call (`Enrolling` rather than `SignedIn`).
const ENROLMENT_CALLS: [&str; 8] = [
    "/api/v1/me/2fa/totp",
    "/api/v1/me/2fa/totp/confirm",
    "/api/v1/me/2fa/sms",
    "/api/v1/me/2fa/sms/confirm",
    "/api/v1/me/2fa/email",
    "/api/v1/me/2fa/email/confirm",
    "/api/v1/me/email-verification",
    "/api/v1/me/email-verification/confirm",
];

fn common_answers(path: &str, method: &str, operation: &Operation) -> BTreeMap<&'static str, Vec<&'static str>> {
    let has_path_parameters = operation.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let session = session_may_call(path);
    let enrolment = method == "post" && ENROLMENT_CALLS.contains(&path);
    let mut answers = Vec::new();
    if has_path_parameters {
        answers.extend(PATH_ERRORS);
    }
    if operation.request_body.is_some() {
        answers.extend(BODY_ERRORS);
    }
    if session && method != "get" {
        answers.push(CSRF);
    }
    if session && !enrolment {
        answers.push(RESTRICTED);
    }
    answers.push(UNAVAILABLE);
    let mut by_status: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (status, reason) in answers {
        by_status.entry(status).or_default().push(reason);
    }
    by_status
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [("get", &mut item.get), ("put", &mut item.put), ("post", &mut item.post), ("delete", &mut item.delete), ("patch", &mut item.patch)];
            for (method, operation) in operations.into_iter().filter_map(|(m, o)| o.as_mut().map(|o| (m, o))) {
                for (status, reasons) in common_answers(path, method, operation) {
                    add_error_response(operation, status, &reasons.join("; "));
                }
            }
        }
    }
}

fn add_error_response(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", body).build().into()
    });
}

//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json` (nothing is downloaded at build or run time).

use std::collections::BTreeMap;

use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::operator_api::ApiTokenScheme;
use super::{api, operator_api, sso_admin_api, sso_api, two_factor_api};

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey API", description = "Account security for the business phone-system portal: activation, recovery, sign-in, sessions."),
    paths(
        api::csrf, api::activation_open, api::activation_complete, api::password_forgot, api::reset_open, api::reset_complete,
        api::login_name_forgot, api::sign_in, api::sign_in_verify, api::sign_out, api::totp_start, api::totp_confirm,
        api::policy_get, api::policy_put, api::preferred_put, api::two_factor_reset, api::me, api::sessions, api::revoke_session,
        api::revoke_other_sessions, api::change_password, api::change_pin, api::create_user, api::resend_welcome, api::sso_links, api::sso_link_remove,
        two_factor_api::sign_in_send, two_factor_api::email_verification_start, two_factor_api::email_verification_confirm,
        two_factor_api::sms_start, two_factor_api::sms_confirm, two_factor_api::email_start, two_factor_api::email_confirm,
        two_factor_api::verification_code, two_factor_api::remove_method, two_factor_api::remove_totp, two_factor_api::remove_sms,
        two_factor_api::remove_email, two_factor_api::recovery_codes,
        sso_api::start, sso_api::callback, sso_api::waiting, sso_api::choose, sso_api::link,
        sso_admin_api::emails_list, sso_admin_api::email_add, sso_admin_api::email_remove, sso_admin_api::email_confirmation_open,
        sso_admin_api::email_confirmation_confirm, sso_admin_api::sso_get, sso_admin_api::sso_put, sso_admin_api::email_review,
        operator_api::companies_list, operator_api::company_create, operator_api::features_get, operator_api::features_put, operator_api::tokens_list, operator_api::token_revoke,
        super::users_api::users_list, super::users_api::user_get, super::users_api::user_disable, super::users_api::user_enable, super::users_api::designated_email_put,
        super::audit_api::audit_list, super::audit_api::audit_csv,
    ),
    modifiers(&ApiTokenScheme, &CommonResponses),
    tags((name = "activation"), (name = "recovery"), (name = "session"), (name = "me"), (name = "two-factor"), (name = "office manager"), (name = "single sign-on"), (name = "operator"))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The answers any operation can give besides its own, added here so that no handler's annotation
/// can leave one out: a path parameter may not be text (400, `ApiPath`); a JSON body can be
/// malformed (400), too large (413), of another content type (415) or of the wrong shape (422) —
/// `ApiJson`'s rejections; a session's change needs its CSRF token and a session restricted to
/// two-factor enrolment reaches only the enrolment calls (403, `web::session`); and any request
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

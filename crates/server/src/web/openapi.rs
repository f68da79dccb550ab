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
/// `ApiJson`'s rejections; and any request can meet an overloaded hashing pool or an unreachable
/// store (503, with `Retry-After`). An operation that documents one of these itself keeps its own.
struct CommonResponses;

const PATH_ERRORS: [(&str, &str); 1] = [("400", "bad_request: a path parameter is not UTF-8 text")];

const BODY_ERRORS: [(&str, &str); 4] = [
    ("400", "malformed_json: the body is not JSON"),
    ("413", "body_too_large: the body is over the server's limit"),
    ("415", "unsupported_media_type: the body is not sent as application/json"),
    ("422", "invalid_body: wrong types, unknown, duplicated or missing fields"),
];

const UNAVAILABLE: [(&str, &str); 1] = [("503", "busy or store_unavailable: try again after Retry-After seconds")];

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let has_path_parameters =
                    operation.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let mut common: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                let groups = [(has_path_parameters, &PATH_ERRORS[..]), (operation.request_body.is_some(), &BODY_ERRORS[..]), (true, &UNAVAILABLE[..])];
                for (status, reason) in groups.into_iter().filter(|(applies, _)| *applies).flat_map(|(_, answers)| answers) {
                    common.entry(status).or_default().push(reason);
                }
                for (status, reasons) in common {
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

//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json` (nothing is downloaded at build or run time).

use axum::Json;
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
        two_factor_api::verification_code, two_factor_api::remove_method, two_factor_api::recovery_codes,
        sso_api::start, sso_api::callback, sso_api::waiting, sso_api::choose, sso_api::link,
        sso_admin_api::emails_list, sso_admin_api::email_add, sso_admin_api::email_remove, sso_admin_api::email_confirmation_open,
        sso_admin_api::email_confirmation_confirm, sso_admin_api::sso_get, sso_admin_api::sso_put, sso_admin_api::email_review,
        operator_api::companies_list, operator_api::company_create, operator_api::features_get, operator_api::features_put, operator_api::tokens_list, operator_api::token_revoke,
        super::users_api::users_list, super::users_api::user_get, super::users_api::user_disable, super::users_api::user_enable, super::users_api::designated_email_put,
        super::audit_api::audit_list, super::audit_api::audit_csv,
    ),
    modifiers(&ApiTokenScheme),
    tags((name = "activation"), (name = "recovery"), (name = "session"), (name = "me"), (name = "two-factor"), (name = "office manager"), (name = "single sign-on"), (name = "operator"))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

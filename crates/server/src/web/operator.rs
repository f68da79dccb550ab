//! The operator's JSON API (C10): companies, the pilot switches of each, and the API tokens.
//! Only an operator-scope token gets in (a company's token and a signed-in office manager get 403);
//! tokens are listed and revoked here but made only at the CLI, so a token cannot mint tokens.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_store::{ApiToken, Company};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{rfc3339, Actor, AppError, PilotFeatures};
use crate::web::kit::{Admin, ApiJson, ApiPath, Client, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/companies", get(companies_list).post(company_create))
        .route("/api/v1/companies/{domain}/features", get(features_get).put(features_put))
        .route("/api/v1/tokens", get(tokens_list))
        .route("/api/v1/tokens/{id}", delete(token_revoke))
}

/// The caller of an operator endpoint: an operator-scope API token. As an extractor it answers
/// 401/403 before the body is read, so a stranger learns nothing from a body's validation.
pub struct Operator(Admin);

impl FromRequestParts<Arc<Web>> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let admin = Admin::from_request_parts(parts, web).await?;
        admin.operator()?;
        Ok(Operator(admin))
    }
}

impl Operator {
    fn actor(&self) -> Actor {
        self.0.actor()
    }
}

/// The operator's pilot switches of a company.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesBody {
    /// Two-factor authentication offered to the company (its office managers then set the policy).
    two_factor: bool,
    sso: SsoFeatureBody,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoFeatureBody {
    enabled: bool,
    /// Exactly the providers offered: `google`, `microsoft`.
    providers: Vec<String>,
}

fn features_body(f: PilotFeatures) -> FeaturesBody {
    FeaturesBody { two_factor: f.two_factor, sso: SsoFeatureBody { enabled: f.sso_enabled, providers: f.sso_providers.iter().map(|p| p.as_str().to_owned()).collect() } }
}

#[derive(Serialize, ToSchema)]
pub struct CompanyBody {
    domain: String,
    name: String,
    /// RFC 3339.
    created_at: String,
    password_min_length: i64,
    features: FeaturesBody,
}

async fn company_body(web: &Web, c: Company) -> Result<CompanyBody, AppError> {
    let features = features_body(web.app.pilot_features(&c).await?);
    Ok(CompanyBody { domain: c.domain, name: c.name, created_at: rfc3339(c.created_at), password_min_length: c.password_min_length, features })
}

/// Every company with its pilot switches (operator token).
#[utoipa::path(get, path = "/api/v1/companies", tag = "operator", security(("api_token" = [])),
    responses((status = 200, body = [CompanyBody]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn companies_list(State(web): WebState, _operator: Operator) -> Result<Json<Vec<CompanyBody>>, AppError> {
    let mut list = Vec::new();
    for c in web.app.store.list_companies().await? {
        list.push(company_body(&web, c).await?);
    }
    Ok(Json(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompanyBody {
    name: String,
    /// Used in login names (`101@organization.com`); stored in lower case.
    domain: String,
}

/// Creates a company; its office managers are then created with `POST /api/v1/companies/{domain}/users`.
#[utoipa::path(post, path = "/api/v1/companies", tag = "operator", request_body = NewCompanyBody, security(("api_token" = [])),
    responses((status = 201, body = CompanyBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "the domain exists", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn company_create(State(web): WebState, _operator: Operator, ApiJson(b): ApiJson<NewCompanyBody>) -> Result<(StatusCode, Json<CompanyBody>), AppError> {
    let company = web.app.create_company(&b.name, &b.domain).await?;
    Ok((StatusCode::CREATED, Json(company_body(&web, company).await?)))
}

/// The company's pilot switches (whoever may read the company: its office managers and
/// supervisors, its token, an operator token).
#[utoipa::path(get, path = "/api/v1/companies/{domain}/features", tag = "operator", params(("domain" = String, Path,)), security(("api_token" = [])),
    responses((status = 200, body = FeaturesBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn features_get(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<FeaturesBody>, AppError> {
    let company = admin.read(&web, &domain).await?;
    Ok(Json(features_body(web.app.pilot_features(&company).await?)))
}

/// Sets the pilot switches as a whole (operator token). 422 `unknown_provider` writes nothing.
#[utoipa::path(put, path = "/api/v1/companies/{domain}/features", tag = "operator", request_body = FeaturesBody, params(("domain" = String, Path,)),
    security(("api_token" = [])),
    responses((status = 200, body = FeaturesBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_body or unknown_provider", body = ErrorBody)))]
pub async fn features_put(
    State(web): WebState,
    Client(ctx): Client,
    operator: Operator,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<FeaturesBody>,
) -> Result<Json<FeaturesBody>, AppError> {
    let set = web.app.set_pilot_features(&domain, b.two_factor, b.sso.enabled, &b.sso.providers, operator.actor(), &ctx).await?;
    Ok(Json(features_body(set)))
}

/// An API token as listed: never its secret or hash.
#[derive(Serialize, ToSchema)]
pub struct ApiTokenBody {
    id: i64,
    name: String,
    /// `operator` (every company) or `company`.
    scope: &'static str,
    /// The company's domain, for a company token.
    company: Option<String>,
    /// RFC 3339.
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

fn token_body(t: ApiToken) -> ApiTokenBody {
    ApiTokenBody {
        id: t.id,
        name: t.name,
        scope: if t.company_id.is_some() { "company" } else { "operator" },
        company: t.company_domain,
        created_at: rfc3339(t.created_at),
        last_used_at: t.last_used_at.map(rfc3339),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

/// Every API token, live and revoked (operator token). Tokens are made with `latchkey token create`.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "operator", security(("api_token" = [])),
    responses((status = 200, body = [ApiTokenBody]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn tokens_list(State(web): WebState, _operator: Operator) -> Result<Json<Vec<ApiTokenBody>>, AppError> {
    Ok(Json(web.app.api_tokens().await?.into_iter().map(token_body).collect()))
}

/// Revokes a token (operator token); from then on it gets 401. Revoking a revoked token changes nothing.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "operator", params(("id" = i64, Path,)), security(("api_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "token_not_found", body = ErrorBody)))]
pub async fn token_revoke(State(web): WebState, Client(ctx): Client, operator: Operator, ApiPath(id): ApiPath<String>) -> Result<StatusCode, AppError> {
    // A path that is no number names no token: 404 like an unknown id, not axum's plain-text 400.
    let id: i64 = id.parse().map_err(|_| AppError::not_found())?;
    web.app.revoke_api_token(id, operator.actor(), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

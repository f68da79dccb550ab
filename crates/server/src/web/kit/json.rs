//! The JSON API's extractors: a body and a path parameter whose rejections speak our error format
//! (`ErrorBody`) instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::app::AppError;

/// `Json` whose rejections speak our error format: 400 malformed, 415 not JSON, 413 too large,
/// 422 wrong types or fields.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
                    _ => "malformed_json",
                };
                let message = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.".to_owned(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "Send a JSON body with Content-Type: application/json.".to_owned(),
                    _ => rejection.body_text(),
                };
                Err(AppError::rejected(status, code, message))
            }
        }
    }
}

/// `Path` whose rejection speaks our error format: a path segment that is not UTF-8 once
/// percent-decoded (`/api/v1/activation/%FF`) is 400 `bad_request` in JSON, not axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(_) => Err(AppError::bad_request("The address is not valid: a part of it could not be read as text.")),
        }
    }
}

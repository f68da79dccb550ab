//! Bodies declared larger than `body_limit_bytes` are refused before any handler runs, in a way
//! the client can read: the part it is still sending is read and dropped (up to a bound) and the
//! answer says `Connection: close`. Answering 413 while the client is still writing would
//! otherwise reset the connection under it, and a kept-alive connection the server then closes
//! breaks the client's next request.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::app::{AppError, ErrorKind};

/// The most of a refused body that is read to give the client its answer; beyond that the
/// connection is simply closed (a client sending megabytes gets no courtesy).
const DRAIN_AT_MOST: u64 = 1024 * 1024;

pub async fn refuse_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 && req.uri().path().starts_with("/api/") => too_large(req.into_body(), length).await,
        _ => next.run(req).await,
    }
}

async fn too_large(body: Body, length: u64) -> Response {
    if length <= DRAIN_AT_MOST {
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
    }
    let mut resp = AppError::new(ErrorKind::TooLarge, "body_too_large", "The request body is too large.").into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

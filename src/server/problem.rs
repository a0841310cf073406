//! `Error` → `application/problem+json` (RFC 9457). The only place an error becomes a
//! response. Bodies carry the public detail only; the cause travels to the log in a
//! response extension.

use crate::error::{Error, ErrorKind};
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};

/// The logged cause of an error response.
#[derive(Clone, Debug)]
pub struct ErrorCause(pub String);

pub fn error_response(e: &Error, not_found_cache_control: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": e.detail,
    });
    let body = body.to_string();
    let mut r = Response::new(Body::from(body.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let cc = if e.kind == ErrorKind::NotFound {
        HeaderValue::from_str(not_found_cache_control)
            .unwrap_or(HeaderValue::from_static("no-store"))
    } else {
        HeaderValue::from_static("no-store")
    };
    h.insert(header::CACHE_CONTROL, cc);
    if let Some(s) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if e.kind == ErrorKind::Unauthorized {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    let cause = match &e.cause {
        Some(c) => format!("{}: {c}", e.detail),
        None => e.detail.clone(),
    };
    r.extensions_mut().insert(ErrorCause(cause));
    r
}

/// Lets handlers return `Result<_, Error>`. Without access to the config this uses
/// `no-store` for 404s too; delivery calls `error_response` itself to use
/// `cache_control.not_found`.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> Response<Body> {
        error_response(&self, "no-store")
    }
}

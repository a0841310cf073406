//! The metadata API (SPEC §6) under `/api/v1`: JSON in, JSON out, errors as problem+json
//! through the one `error_response`. One file per resource; the record and original
//! lifecycle itself is `crate::library`, the access rules `crate::auth::access`.
//!
//! Writes need an authenticated caller (401 for guests) and pass the per-client write
//! rate limit; see `extract` for the order of the checks.

mod admin;
mod extract;
mod images;
pub mod openapi;
mod session;
mod shares;
mod upload;
mod uploads;
mod views;

pub use images::{MAX_PAGE, check_filename, normalize_tag};
pub use views::key_path;

use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Response, header};
use axum::routing::{delete, get, post};
use std::sync::Arc;

/// JSON request bodies are small.
const MAX_JSON_BYTES: u64 = 64 * 1024;

type ApiResult = Result<Response<Body>, Error>;

/// The `/api/v1` routes; the server adds them next to delivery.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/images", get(images::list).post(uploads::upload))
        .route("/api/v1/images/register", post(uploads::register))
        .route("/api/v1/uploads", post(uploads::presign))
        .route(
            "/api/v1/images/{id}",
            get(images::get).patch(images::patch).delete(images::delete),
        )
        .route(
            "/api/v1/images/{id}/shares",
            get(shares::list).post(shares::create),
        )
        .route("/api/v1/shares/{share_id}", delete(shares::revoke))
        .route("/api/v1/session", post(session::create))
        .route("/api/v1/cache/purge", post(admin::purge))
        .route("/api/v1/openapi.json", get(admin::openapi_json))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(no_store))
        // Bodies are read with our own caps (uploads: `limits.max_upload_bytes`).
        .layer(DefaultBodyLimit::disable())
}

/// API answers depend on who asks: never stored by shared caches. One layer for every
/// `/api/v1` response, errors and fallbacks included.
async fn no_store(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn method_not_allowed() -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "method not allowed on this API route",
    )
}

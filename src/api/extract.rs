//! Extractors of the API: who is calling (with the authentication and write-rate checks
//! each route needs, in the order SPEC §3 gives), JSON bodies and query strings. Every
//! rejection is our problem+json `Error`, never axum's plain-text one.

use super::MAX_JSON_BYTES;
use crate::auth::Principal;
use crate::auth::access;
use crate::auth::ratelimit::ClientKey;
use crate::error::{Error, ErrorKind};
use crate::metadata::ImageRecord;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::BodyExt as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is calling, and under which key the rate limiter counts them. Anyone, guests
/// included; invalid credentials are refused here (401/403).
pub(crate) struct Caller {
    pub principal: Principal,
    pub client: ClientKey,
}

impl Caller {
    fn require_auth(&self) -> Result<(), Error> {
        match self.principal {
            Principal::Admin | Principal::User { .. } => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Unauthorized,
                "authentication required (Bearer token or X-Api-Key)",
            )),
        }
    }

    /// 403 unless the caller owns `r` or is an admin.
    pub fn require_owner(&self, r: &ImageRecord) -> Result<(), Error> {
        if access::may_change(&self.principal, r.owner.as_deref()) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Forbidden,
                "only the image's owner or an admin may do this",
            ))
        }
    }

    /// Whether this caller sees the record's GPS position (SPEC §10): its owner or an admin.
    pub fn sees_gps(&self, r: &ImageRecord) -> bool {
        access::may_change(&self.principal, r.owner.as_deref())
    }

    /// One more API write for this caller (429 beyond `rate_limit.writes_per_s`).
    pub fn count_write(&self, state: &AppState) -> Result<(), Error> {
        state.rate_limits.check_write(&self.client)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // Signed URLs grant delivery only: no signed target here.
        let principal = state
            .auth
            .principal(&parts.headers, None, peer, crate::unix_now())
            .await?;
        let client = match &principal {
            Principal::User { id, .. } => ClientKey::User(id.clone()),
            Principal::Admin => ClientKey::Admin,
            _ => state
                .rate_limits
                .ip_key(state.auth.viewer_ip(&parts.headers, peer)),
        };
        Ok(Caller { principal, client })
    }
}

/// A signed-in caller (user or admin); guests get 401.
pub(crate) struct SignedIn(pub Caller);

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let c = Caller::from_request_parts(parts, state).await?;
        c.require_auth()?;
        Ok(SignedIn(c))
    }
}

/// A signed-in caller making a write, counted against the write rate limit (429).
pub(crate) struct Writer(pub Caller);

impl FromRequestParts<Arc<AppState>> for Writer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        let SignedIn(c) = SignedIn::from_request_parts(parts, state).await?;
        c.count_write(state)?;
        Ok(Writer(c))
    }
}

/// A small JSON body (≤ 64 KiB) as `T`: 415 for another content type, 413 beyond the cap,
/// 400 naming the field that does not fit.
pub(crate) struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Error> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.is_empty() && !ct.starts_with("application/json") {
            return Err(Error::new(
                ErrorKind::UnsupportedMediaType,
                "send a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes = collect_capped(req.into_body(), MAX_JSON_BYTES).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// The query string as `T` (unknown names refused where `T` denies them): 400.
pub(crate) struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| Error::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// Collects a body up to `cap` bytes (413 as soon as it passes).
pub(crate) async fn collect_capped(mut body: Body, cap: u64) -> Result<bytes::Bytes, Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::bad_request("could not read the request body").with_cause(e))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > cap {
                return Err(too_large(cap));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

pub(crate) fn too_large(cap: u64) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("request body is larger than the limit of {cap} bytes"),
    )
}

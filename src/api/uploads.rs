//! New originals: uploads through the API (body checked, then stored with its record),
//! registration of objects already in storage, and presigned PUTs for the S3 backend
//! (SPEC §6). Who may register what is the data-loss finding of the security review:
//! see `register`.

use super::ApiResult;
use super::extract::{Caller, JsonBody, QueryParams, Writer};
use super::images::check_filename;
use super::upload;
use super::views::{self, PresignView, RecordView};
use crate::auth::Principal;
use crate::auth::access::{AccessConfig, level_of};
use crate::error::{Error, ErrorKind};
use crate::metadata::{self, ImageRecord, Level, RecordState, Reservation};
use crate::state::AppState;
use crate::storage::key;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;

/// Presigned PUT URLs are valid this long.
const PRESIGN_TTL_S: u64 = 900;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadParams {
    level: Option<String>,
    filename: Option<String>,
    owner: Option<String>,
}

/// The owner and key prefix of a new object at `level` for this caller. Users upload as
/// themselves; an admin (API key, no identity) names the owner for protected/private.
fn new_key_prefix(
    state: &AppState,
    c: &Caller,
    level: Level,
    owner_param: Option<&str>,
) -> Result<(String, Option<String>), Error> {
    let owner = match (&c.principal, owner_param) {
        (Principal::User { id, .. }, None) => Some(id.clone()),
        (Principal::User { id, .. }, Some(o)) if o == id => Some(id.clone()),
        (Principal::User { .. }, Some(_)) => {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "only an admin may upload for another owner",
            ));
        }
        (Principal::Admin, o) => o.map(str::to_owned),
        _ => {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "authentication required",
            ));
        }
    };
    if owner.is_none() && matches!(level, Level::Protected | Level::Private) {
        return Err(Error::bad_request(
            "`owner` is required for protected and private uploads by an admin",
        ));
    }
    let prefix = level_prefix(&state.config.access, level, owner.as_deref())?;
    Ok((prefix, owner))
}

/// The key prefix of `level` for `owner`: `public/`, or `protected/<owner>/` and
/// `private/<owner>/` (per `[access]`). Uploads and level changes build keys with it.
pub(super) fn level_prefix(
    a: &AccessConfig,
    level: Level,
    owner: Option<&str>,
) -> Result<String, Error> {
    match level {
        Level::Public => Ok(a.public_prefix.clone()),
        Level::Protected | Level::Private => {
            let Some(o) = owner else {
                return Err(Error::bad_request(
                    "an image without an owner cannot be protected or private",
                ));
            };
            if o.is_empty() || o.contains('/') || o == "." || o == ".." || o.len() > 256 {
                return Err(Error::bad_request("invalid owner identity for a key"));
            }
            let p = if level == Level::Protected {
                &a.protected_prefix
            } else {
                &a.private_prefix
            };
            Ok(format!("{p}{o}/"))
        }
        Level::Other => Err(Error::bad_request(
            "invalid `level`: public, protected or private",
        )),
    }
}

pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    Writer(c): Writer,
    QueryParams(p): QueryParams<UploadParams>,
    req: Request,
) -> ApiResult {
    let level = match p.level.as_deref() {
        None | Some("") => Level::Public,
        Some(l) => Level::parse(l)
            .filter(|l| *l != Level::Other)
            .ok_or_else(|| Error::bad_request("invalid `level`: public, protected or private"))?,
    };
    if let Some(f) = &p.filename {
        check_filename(f)?;
    }
    let (prefix, owner) = new_key_prefix(&state, &c, level, p.owner.as_deref())?;
    let body = upload::read_upload(req, state.config.limits.max_upload_bytes).await?;
    let filename = p.filename.or(body.filename);
    if let Some(f) = &filename {
        check_filename(f)?;
    }
    let checked = upload::validate(&state, body.bytes).await?;
    let id = metadata::new_id();
    let key = format!("{prefix}{id}.{}", checked.ext);
    key::validate(&key)?;
    let now = metadata::now_micros();
    let rec = ImageRecord {
        id,
        key,
        level,
        owner,
        filename,
        content_type: checked.content_type.to_string(),
        bytes: checked.bytes.len() as i64,
        width: i64::from(checked.width),
        height: i64::from(checked.height),
        sha256: checked.sha256.clone(),
        tags: Vec::new(),
        description: None,
        state: RecordState::Pending,
        created_at: now,
        updated_at: now,
        facts: Some(checked.facts),
        moderation: state.config.ingest.initial_moderation(),
        rejected_reason: None,
    };
    // In its own task: a request cut off by `server.api_timeout_s` (or a client gone)
    // must not stop the pending → stored → ready sequence half-way.
    let owned = state.clone();
    let rec = tokio::spawn(async move { owned.library().store(rec, checked.bytes).await })
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "storing the upload failed").with_cause(e)
        })??;
    let mut resp = views::json(
        StatusCode::CREATED,
        &RecordView::new(&rec, &views::urls(&state), c.sees_gps(&rec)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/images/{}", rec.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    key: String,
    filename: Option<String>,
}

pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    Writer(c): Writer,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult {
    key::validate(&body.key)?;
    if body
        .key
        .starts_with(state.config.cache.shared.prefix.as_str())
    {
        return Err(Error::bad_request(
            "keys under the shared variant prefix are not originals",
        ));
    }
    if let Some(f) = &body.filename {
        check_filename(f)?;
    }
    let (level, key_identity) = level_of(&body.key, &state.config.access);
    let owner = match level {
        Level::Protected | Level::Private => Some(
            key_identity
                .ok_or_else(|| {
                    Error::bad_request(
                        "a protected or private key needs an identity segment: <prefix><identity>/<name>",
                    )
                })?
                .to_string(),
        ),
        // The uploader it was reserved for; none when an admin records an object that
        // arrived outside the API (admins then manage it).
        Level::Public | Level::Other => None,
    };
    let reservation = state.metadata.get_reservation(&body.key).await?;
    let reserved_for_caller = reservation
        .as_ref()
        .is_some_and(|r| r.identity.as_deref() == c.principal.identity());
    if reserved_for_caller && reservation.as_ref().is_some_and(|r| r.used_at.is_some()) {
        return Err(Error::new(
            ErrorKind::Conflict,
            "this upload was registered already",
        ));
    }
    let allowed = match &c.principal {
        Principal::Admin => true,
        // Under the caller's own prefix; anywhere else only with the caller's unused
        // reservation: an unrecorded public object is never claimed by the first asker.
        Principal::User { id, .. } => {
            matches!(level, Level::Protected | Level::Private)
                && owner.as_deref() == Some(id.as_str())
                || reserved_for_caller
        }
        _ => false,
    };
    if !allowed {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "only the owner of the key's prefix, the caller the key was reserved for, or an admin may register it",
        ));
    }
    let owner = owner.or_else(|| {
        reservation
            .as_ref()
            .filter(|_| reserved_for_caller)
            .and_then(|r| r.identity.clone())
    });
    let obj = match state
        .storage
        .get(&body.key, state.config.limits.max_upload_bytes)
        .await
    {
        Ok(o) => o,
        Err(crate::storage::StorageError::NotFound) => {
            return Err(Error::new(ErrorKind::NotFound, "no object at this key"));
        }
        Err(e) => {
            let e = Error::from(e);
            // An oversized presigned upload ends here: it is removed, not left behind.
            if e.kind == ErrorKind::PayloadTooLarge && reservation.is_some() {
                state.library().discard_reserved_upload(&body.key).await;
            }
            return Err(e);
        }
    };
    let checked = match upload::validate(&state, obj.body).await {
        Ok(c) => c,
        Err(e) => {
            if reservation.is_some() && matches!(e.status(), 415 | 422) {
                state.library().discard_reserved_upload(&body.key).await;
            }
            return Err(e);
        }
    };
    // Single use: a second registration of the same reserved key (or a race) loses here.
    if reservation.is_some()
        && !state
            .metadata
            .use_reservation(&body.key, metadata::now_micros())
            .await?
    {
        return Err(Error::new(
            ErrorKind::Conflict,
            "this upload was registered already",
        ));
    }
    let now = metadata::now_micros();
    let rec = ImageRecord {
        id: metadata::new_id(),
        key: body.key,
        level,
        owner,
        filename: body.filename,
        content_type: checked.content_type.to_string(),
        bytes: checked.bytes.len() as i64,
        width: i64::from(checked.width),
        height: i64::from(checked.height),
        sha256: checked.sha256,
        tags: Vec::new(),
        description: None,
        state: RecordState::Ready,
        created_at: now,
        updated_at: now,
        facts: Some(checked.facts),
        moderation: state.config.ingest.initial_moderation(),
        rejected_reason: None,
    };
    state.metadata.insert(&rec).await?;
    Ok(views::json(
        StatusCode::CREATED,
        &RecordView::new(&rec, &views::urls(&state), c.sees_gps(&rec)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PresignBody {
    level: Option<String>,
    content_type: String,
    owner: Option<String>,
}

pub(super) async fn presign(
    State(state): State<Arc<AppState>>,
    Writer(c): Writer,
    JsonBody(body): JsonBody<PresignBody>,
) -> ApiResult {
    let level = match body.level.as_deref() {
        None | Some("") => Level::Public,
        Some(l) => Level::parse(l)
            .filter(|l| *l != Level::Other)
            .ok_or_else(|| Error::bad_request("invalid `level`: public, protected or private"))?,
    };
    let ext = upload::ext_for_content_type(&body.content_type).ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedMediaType,
            "content_type must be image/jpeg, image/png, image/webp or image/gif",
        )
    })?;
    let (prefix, owner) = new_key_prefix(&state, &c, level, body.owner.as_deref())?;
    let key = format!("{prefix}{}.{ext}", metadata::new_id());
    key::validate(&key)?;
    let ttl = std::time::Duration::from_secs(PRESIGN_TTL_S);
    let presigned = state
        .storage
        .presign_put(&key, &body.content_type, ttl)
        .await?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotImplemented,
                "presigned uploads need the S3 storage backend; upload through POST /api/v1/images instead",
            )
        })?;
    // Only the caller may register what arrives at this key (an admin's reservation
    // names the owner it uploads for, if any).
    let now = metadata::now_micros();
    state
        .metadata
        .reserve_upload(&Reservation {
            key: key.clone(),
            identity: match &c.principal {
                Principal::User { id, .. } => Some(id.clone()),
                _ => owner,
            },
            created_at: now,
            expires_at: now + PRESIGN_TTL_S as i64 * 1_000_000,
            used_at: None,
        })
        .await?;
    let headers = presigned
        .headers
        .iter()
        .map(|(k, v)| (canonical_header_name(k), v.clone()))
        .collect();
    Ok(views::json(
        StatusCode::OK,
        &PresignView {
            key: &key,
            url: &presigned.url,
            method: "PUT",
            headers,
            max_bytes: state.config.limits.max_upload_bytes,
            expires_at: metadata::rfc3339_secs((crate::unix_now() + PRESIGN_TTL_S) as i64),
            register: "/api/v1/images/register",
        },
    ))
}

/// `content-type` → `Content-Type`, as clients usually spell headers.
fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

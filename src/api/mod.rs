//! The metadata API (SPEC §6) under `/api/v1`: upload, register, presigned uploads, list,
//! get, patch, delete, share links, cache purge, OpenAPI document. JSON in, JSON out;
//! errors are problem+json through the one `error_response`.
//!
//! Who may do what (SPEC §3): reading a record needs read access to its key (a record the
//! caller may not read is a 404, as if it did not exist); changing or sharing it needs to
//! be its owner or an admin (403 for other readers); writes need an authenticated caller
//! (401 for guests) and pass the per-client write rate limit.

pub mod openapi;
mod upload;

use crate::auth::ratelimit::ClientKey;
use crate::auth::{self, Principal};
use crate::error::{Error, ErrorKind};
use crate::metadata::{
    self, ImageRecord, Level, ListQuery, Patch, RecordState, Reservation, Share, Visibility,
};
use crate::server::AppState;
use crate::storage::key;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt as _;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// JSON request bodies are small.
const MAX_JSON_BYTES: u64 = 64 * 1024;
/// Presigned PUT URLs are valid this long.
const PRESIGN_TTL_S: u64 = 900;
/// Largest `limit` of a list page.
pub const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 50;

/// The `/api/v1` routes; the server adds them next to delivery.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/images", get(list_images).post(upload_image))
        .route("/api/v1/images/register", post(register_image))
        .route("/api/v1/uploads", post(presign_upload))
        .route(
            "/api/v1/images/{id}",
            get(get_image).patch(patch_image).delete(delete_image),
        )
        .route(
            "/api/v1/images/{id}/shares",
            get(list_shares).post(create_share),
        )
        .route("/api/v1/shares/{share_id}", delete(revoke_share))
        .route("/api/v1/cache/purge", post(purge_cache))
        .route("/api/v1/openapi.json", get(openapi_json))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(no_store))
        // Bodies are read with our own caps (uploads: `limits.max_upload_bytes`).
        .layer(DefaultBodyLimit::disable())
}

type ApiResult = Result<Response<Body>, Error>;

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

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let body = v.to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// Who is calling, and under which name the rate limiter counts them.
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

    fn may_change(&self, r: &ImageRecord) -> bool {
        match &self.principal {
            Principal::Admin => true,
            Principal::User { id, .. } => r.owner.as_deref() == Some(id.as_str()),
            _ => false,
        }
    }

    fn require_owner(&self, r: &ImageRecord) -> Result<(), Error> {
        self.require_auth()?;
        if self.may_change(r) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Forbidden,
                "only the image's owner or an admin may do this",
            ))
        }
    }
}

async fn caller(state: &AppState, req: &Parts) -> Result<Caller, Error> {
    let peer = req
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // Signed URLs grant delivery only: no signed target here.
    let principal = state
        .auth
        .principal(&req.headers, None, peer, crate::unix_now())
        .await?;
    let client = match &principal {
        Principal::User { id, .. } => ClientKey::User(id.clone()),
        Principal::Admin => ClientKey::Admin,
        _ => state
            .rate_limits
            .ip_key(state.auth.viewer_ip(&req.headers, peer)),
    };
    Ok(Caller { principal, client })
}

fn check_write(state: &AppState, c: &Caller) -> Result<(), Error> {
    state.rate_limits.check_write(&c.client)
}

/// Reads a small JSON body (≤ 64 KiB) into `T`, 400 with the reason otherwise.
async fn read_json<T: serde::de::DeserializeOwned>(parts: &Parts, body: Body) -> Result<T, Error> {
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.is_empty() && !ct.starts_with("application/json") {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "send a JSON body (Content-Type: application/json)",
        ));
    }
    let bytes = upload::read_capped(body, MAX_JSON_BYTES).await?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de)
        .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
}

/// Query-string parameters of this request as `T`.
fn read_query<T: serde::de::DeserializeOwned>(req: &Parts) -> Result<T, Error> {
    axum::extract::Query::<T>::try_from_uri(&req.uri)
        .map(|q| q.0)
        .map_err(|e| Error::bad_request(format!("invalid query: {}", e.body_text())))
}

/// Characters escaped in a key's path segments when building URLs.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'+')
    .add(b'&');

/// `/{key}` with each segment percent-encoded.
pub fn key_path(key: &str) -> String {
    let mut out = String::new();
    for seg in key.split('/') {
        out.push('/');
        out.extend(utf8_percent_encode(seg, PATH));
    }
    out
}

/// The delivery URL of a key: on the first `cloudfront.public_base_urls` when set, else a
/// path relative to this server.
fn delivery_url(state: &AppState, key: &str) -> String {
    let base = state
        .config
        .auth
        .public_base_urls
        .first()
        .map(String::as_str)
        .unwrap_or("");
    format!("{base}{}", key_path(key))
}

pub fn record_json(state: &AppState, r: &ImageRecord) -> Value {
    json!({
        "id": r.id,
        "key": r.key,
        "level": r.level.as_str(),
        "owner": r.owner,
        "filename": r.filename,
        "content_type": r.content_type,
        "bytes": r.bytes,
        "width": r.width,
        "height": r.height,
        "sha256": r.sha256,
        "tags": r.tags,
        "description": r.description,
        "created_at": metadata::rfc3339_micros(r.created_at),
        "updated_at": metadata::rfc3339_micros(r.updated_at),
        "url": delivery_url(state, &r.key),
    })
}

/// Level of a key and the identity in it (protected/private), per `[access]`.
pub fn level_of<'k>(key: &'k str, a: &crate::config::AccessConfig) -> (Level, Option<&'k str>) {
    let identity = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty())
    };
    if key.starts_with(&a.public_prefix) {
        (Level::Public, None)
    } else if key.starts_with(&a.protected_prefix) {
        (Level::Protected, identity(&a.protected_prefix))
    } else if key.starts_with(&a.private_prefix) {
        (Level::Private, identity(&a.private_prefix))
    } else {
        (Level::Other, None)
    }
}

/// What the caller may list (SPEC §3 read column), for the database to filter on.
fn visibility(p: &Principal, a: &crate::config::AccessConfig) -> Visibility {
    use crate::config::OtherAccess;
    match p {
        Principal::Admin => Visibility {
            all: true,
            ..Default::default()
        },
        Principal::User { id, .. } => {
            let mut levels = vec![Level::Public, Level::Protected];
            if a.other != OtherAccess::None {
                levels.push(Level::Other);
            }
            Visibility {
                all: false,
                levels,
                private_of: Some(id.clone()),
            }
        }
        _ => {
            let mut levels = vec![Level::Public];
            if a.other == OtherAccess::Public {
                levels.push(Level::Other);
            }
            Visibility {
                all: false,
                levels,
                private_of: None,
            }
        }
    }
}

/// A ready record the caller may read; 404 otherwise (existence is not revealed).
/// The caller and a record they own (or administer): signed in, may read it (else 404),
/// owner or admin (else 403). The preamble of every per-image write.
async fn owned_record(
    state: &AppState,
    req: &Parts,
    id: &str,
) -> Result<(Caller, ImageRecord), Error> {
    let c = caller(state, req).await?;
    c.require_auth()?;
    let rec = load_readable(state, &c, id).await?;
    c.require_owner(&rec)?;
    Ok((c, rec))
}

async fn load_readable(state: &AppState, c: &Caller, id: &str) -> Result<ImageRecord, Error> {
    let r = state.metadata.get(id).await?;
    match r {
        Some(r)
            if r.state == RecordState::Ready
                && auth::can_read(&c.principal, &r.key, &state.config.access) =>
        {
            Ok(r)
        }
        _ => Err(Error::not_found()),
    }
}

// ---- list / get / patch / delete ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    owner: Option<String>,
    level: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn encode_cursor(r: &ImageRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", r.created_at, r.id))
}

fn decode_cursor(s: &str) -> Result<(i64, String), Error> {
    let bad = || Error::bad_request("invalid `cursor`: pass `next_cursor` from a previous page");
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}

async fn list_images(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let (req, _body) = req.into_parts();
    let c = caller(&state, &req).await?;
    let p: ListParams = read_query(&req)?;
    let owner = match p.owner.as_deref() {
        None | Some("") => None,
        Some("me") => match &c.principal {
            Principal::User { id, .. } => Some(id.clone()),
            Principal::Admin => {
                return Err(Error::bad_request(
                    "`owner=me` needs a user identity; an API key has none",
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Unauthorized,
                    "`owner=me` needs authentication",
                ));
            }
        },
        Some(id) => Some(id.to_string()),
    };
    let level = match p.level.as_deref() {
        None | Some("") => None,
        Some(l) => Some(Level::parse(l).ok_or_else(|| {
            Error::bad_request("invalid `level`: public, protected, private or other")
        })?),
    };
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!("invalid `limit`: an integer 1..={MAX_PAGE}"))
            })?,
    };
    let tag = match p.tag.as_deref() {
        None | Some("") => None,
        Some(t) => Some(normalize_tag(t)?),
    };
    let before = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(s) => Some(decode_cursor(s)?),
    };
    let q = ListQuery {
        visible: visibility(&c.principal, &state.config.access),
        owner,
        level,
        tag,
        limit: limit + 1,
        before,
    };
    let mut items = state.metadata.list(&q).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(encode_cursor)
    } else {
        None
    };
    let items: Vec<Value> = items.iter().map(|r| record_json(&state, r)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next}),
    ))
}

async fn get_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, _body) = req.into_parts();
    let c = caller(&state, &req).await?;
    let r = load_readable(&state, &c, &id).await?;
    Ok(json_response(StatusCode::OK, &record_json(&state, &r)))
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "double_option")]
    filename: Option<Option<String>>,
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<String>>,
}

/// Tags: 1–64 characters of letters, digits, `-`, `_`, `.`, `:`; stored lowercase.
pub fn normalize_tag(t: &str) -> Result<String, Error> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        return Err(Error::bad_request(format!(
            "invalid tag `{}`: 1-64 letters, digits, `-`, `_`, `.` or `:`",
            t.chars().take(64).collect::<String>()
        )));
    }
    Ok(t.to_lowercase())
}

fn normalize_tags(tags: &[String]) -> Result<Vec<String>, Error> {
    if tags.len() > 32 {
        return Err(Error::bad_request("at most 32 tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = normalize_tag(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn check_filename(f: &str) -> Result<(), Error> {
    if f.is_empty() || f.chars().count() > 255 || f.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid `filename`: 1-255 characters, no control characters",
        ));
    }
    Ok(())
}

async fn patch_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, body) = req.into_parts();
    let (c, _) = owned_record(&state, &req, &id).await?;
    check_write(&state, &c)?;
    let body: PatchBody = read_json(&req, body).await?;
    if let Some(Some(f)) = &body.filename {
        check_filename(f)?;
    }
    if let Some(Some(d)) = &body.description
        && d.chars().count() > 4000
    {
        return Err(Error::bad_request(
            "invalid `description`: at most 4000 characters",
        ));
    }
    let patch = Patch {
        filename: body.filename,
        tags: body.tags.as_deref().map(normalize_tags).transpose()?,
        description: body.description,
    };
    let updated = state
        .metadata
        .update(&id, &patch, metadata::now_micros())
        .await?
        .ok_or_else(Error::not_found)?;
    Ok(json_response(
        StatusCode::OK,
        &record_json(&state, &updated),
    ))
}

async fn delete_image(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, _body) = req.into_parts();
    let (c, rec) = owned_record(&state, &req, &id).await?;
    check_write(&state, &c)?;
    delete_record_and_original(&state, &rec).await?;
    Ok(no_content())
}

/// Record hidden (`deleting`) → original deleted → record and shares deleted → cached
/// variants dropped. If the original cannot be deleted, the record is shown again and the
/// call fails; if the last step fails, the hidden record is removed by the next sweep.
pub async fn delete_record_and_original(state: &AppState, rec: &ImageRecord) -> Result<(), Error> {
    if !state
        .metadata
        .set_state(
            &rec.id,
            RecordState::Ready,
            RecordState::Deleting,
            metadata::now_micros(),
        )
        .await?
    {
        return Err(Error::not_found());
    }
    if let Err(e) = state.storage.delete(&rec.key).await {
        if let Err(e2) = state
            .metadata
            .set_state(
                &rec.id,
                RecordState::Deleting,
                RecordState::Ready,
                metadata::now_micros(),
            )
            .await
        {
            tracing::error!(id = %rec.id, error = %e2, "could not restore a record after a failed delete; the sweep will retry");
        }
        return Err(e.into());
    }
    state.caches.purge_key(&rec.key).await;
    if let Err(e) = state.metadata.delete(&rec.id).await {
        tracing::error!(id = %rec.id, error = %e, "original deleted but its record is left hidden; the sweep removes it");
    }
    Ok(())
}

/// Start-up sweep: records left `pending` (an upload that died between database and
/// storage) or `deleting` for over `older_than_s`: their original (if any) and the record
/// are removed.
pub async fn sweep(state: &AppState, older_than_s: i64) {
    let cutoff = metadata::now_micros() - older_than_s * 1_000_000;
    let stale = match state.metadata.stale(cutoff).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "metadata sweep failed");
            return;
        }
    };
    for r in stale {
        match state.storage.delete(&r.key).await {
            Ok(()) => {
                state.caches.purge_key(&r.key).await;
                match state.metadata.delete(&r.id).await {
                    Ok(()) => {
                        tracing::info!(id = %r.id, state = r.state.as_str(), "swept an unfinished record")
                    }
                    Err(e) => tracing::warn!(id = %r.id, error = %e, "sweep: record not deleted"),
                }
            }
            Err(e) => tracing::warn!(id = %r.id, error = %e, "sweep: original not deleted"),
        }
    }
}

// ---- upload / register / presign ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
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
    let a = &state.config.access;
    let prefix = match level {
        Level::Public => a.public_prefix.clone(),
        Level::Protected | Level::Private => {
            let Some(o) = &owner else {
                return Err(Error::bad_request(
                    "`owner` is required for protected and private uploads by an admin",
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
            format!("{p}{o}/")
        }
        Level::Other => {
            return Err(Error::bad_request(
                "invalid `level`: public, protected or private",
            ));
        }
    };
    Ok((prefix, owner))
}

async fn upload_image(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let c = caller(&state, &req).await?;
    c.require_auth()?;
    check_write(&state, &c)?;
    let p: UploadParams = read_query(&req)?;
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
    let body = upload::read_upload(
        Request::from_parts(req, body),
        state.config.limits.max_upload_bytes,
    )
    .await?;
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
    };
    let rec = upload::store(&state, rec, checked.bytes).await?;
    let mut resp = json_response(StatusCode::CREATED, &record_json(&state, &rec));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/images/{}", rec.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    key: String,
    filename: Option<String>,
}

async fn register_image(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let c = caller(&state, &req).await?;
    c.require_auth()?;
    check_write(&state, &c)?;
    let body: RegisterBody = read_json(&req, body).await?;
    key::validate(&body.key)?;
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
                discard_reserved_upload(&state, &body.key).await;
            }
            return Err(e);
        }
    };
    let checked = match upload::validate(&state, obj.body).await {
        Ok(c) => c,
        Err(e) => {
            if reservation.is_some() && matches!(e.status(), 415 | 422) {
                discard_reserved_upload(&state, &body.key).await;
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
    };
    state.metadata.insert(&rec).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &record_json(&state, &rec),
    ))
}

/// A presigned upload that failed validation at `register`: the object goes and the
/// reservation is spent, so nothing unrecorded stays in the bucket.
async fn discard_reserved_upload(state: &AppState, key: &str) {
    if let Err(e) = state.storage.delete(key).await {
        tracing::warn!(error = %e, "register: could not delete a refused upload; the reservation sweep will");
        return;
    }
    if let Err(e) = state
        .metadata
        .use_reservation(key, metadata::now_micros())
        .await
    {
        tracing::warn!(error = %e, "register: could not spend a refused upload's reservation");
    }
}

/// Reservations whose upload URL expired over this long ago are swept: an object at a
/// reserved key without a record (never registered, or recreated after its record was
/// deleted) is deleted then. The grace lets a client register an upload it finished just
/// before its URL expired.
pub const RESERVATION_GRACE_S: i64 = 3600;

/// Sweeps expired upload reservations (see [`RESERVATION_GRACE_S`]) as of `now` (µs).
pub async fn sweep_reservations(state: &AppState, now: i64) {
    let before = now - RESERVATION_GRACE_S * 1_000_000;
    let expired = match state.metadata.expired_reservations(before).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reservation sweep failed");
            return;
        }
    };
    for r in expired {
        match state.metadata.key_recorded(&r.key).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(e) = state.storage.delete(&r.key).await {
                    tracing::warn!(error = %e, "reservation sweep: object not deleted");
                    continue;
                }
                state.caches.purge_key(&r.key).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reservation sweep failed");
                return;
            }
        }
        if let Err(e) = state.metadata.delete_reservation(&r.key).await {
            tracing::warn!(error = %e, "reservation sweep: reservation not deleted");
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresignBody {
    level: Option<String>,
    content_type: String,
    owner: Option<String>,
}

async fn presign_upload(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let c = caller(&state, &req).await?;
    c.require_auth()?;
    check_write(&state, &c)?;
    let body: PresignBody = read_json(&req, body).await?;
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
    let headers: serde_json::Map<String, Value> = presigned
        .headers
        .iter()
        .map(|(k, v)| (canonical_header_name(k), Value::String(v.clone())))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "key": key,
            "url": presigned.url,
            "method": "PUT",
            "headers": headers,
            "max_bytes": state.config.limits.max_upload_bytes,
            "expires_at": metadata::rfc3339_secs((crate::unix_now() + PRESIGN_TTL_S) as i64),
            "register": "/api/v1/images/register",
        }),
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

// ---- shares ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    expires_in: u64,
    params: Option<String>,
}

/// The unsigned share URL: delivery URL + transform params + `share=<id>`.
fn share_unsigned_url(state: &AppState, key: &str, params: Option<&str>, id: &str) -> String {
    let base = delivery_url(state, key);
    match params {
        Some(p) if !p.is_empty() => format!("{base}?{p}&share={id}"),
        _ => format!("{base}?share={id}"),
    }
}

fn share_json(state: &AppState, s: &Share) -> Value {
    let url = state.signer.as_ref().map(|signer| {
        signer.sign_canned(
            &share_unsigned_url(state, &s.key, s.params.as_deref(), &s.id),
            s.expires_at as u64,
        )
    });
    json!({
        "id": s.id,
        "image_id": s.image_id,
        "url": url,
        "params": s.params,
        "created_at": metadata::rfc3339_micros(s.created_at),
        "expires_at": metadata::rfc3339_secs(s.expires_at),
        "revoked": s.revoked_at.is_some(),
        "revoked_at": s.revoked_at.map(metadata::rfc3339_micros),
    })
}

const RESERVED_PARAMS: [&str; 6] = [
    "share",
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

async fn create_share(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, body) = req.into_parts();
    let (c, rec) = owned_record(&state, &req, &id).await?;
    check_write(&state, &c)?;
    let body: ShareBody = read_json(&req, body).await?;
    let Some(signer) = &state.signer else {
        return Err(Error::new(
            ErrorKind::ServiceUnavailable,
            "share links are not configured: set cloudfront.signing_key_file, cloudfront.signing_key_pair_id and cloudfront.public_base_urls",
        ));
    };
    let max = state.config.shares_max_ttl_s;
    if body.expires_in == 0 || body.expires_in > max {
        return Err(Error::bad_request(format!(
            "invalid `expires_in`: 1..={max} seconds (shares.max_ttl_s)"
        )));
    }
    let params = match body.params.as_deref().map(|p| p.trim_start_matches('?')) {
        None | Some("") => None,
        Some(p) => {
            for pair in p.split('&') {
                let name = pair.split_once('=').map(|(n, _)| n).unwrap_or(pair);
                if RESERVED_PARAMS.contains(&name) {
                    return Err(Error::bad_request(format!(
                        "invalid `params`: `{name}` is set by the share itself"
                    )));
                }
            }
            crate::params::parse(Some(p), &state.parse)?;
            Some(p.to_string())
        }
    };
    let now = crate::unix_now();
    let share = Share {
        id: metadata::new_id(),
        image_id: rec.id.clone(),
        key: rec.key.clone(),
        params,
        created_by: c.principal.identity().map(str::to_owned),
        created_at: metadata::now_micros(),
        expires_at: (now + body.expires_in) as i64,
        revoked_at: None,
    };
    state.metadata.insert_share(&share).await?;
    let url = signer.sign_canned(
        &share_unsigned_url(&state, &share.key, share.params.as_deref(), &share.id),
        share.expires_at as u64,
    );
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "id": share.id,
            "url": url,
            "expires_at": metadata::rfc3339_secs(share.expires_at),
        }),
    ))
}

async fn list_shares(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, _body) = req.into_parts();
    let (_, rec) = owned_record(&state, &req, &id).await?;
    let shares = state.metadata.list_shares(&rec.id).await?;
    let items: Vec<Value> = shares.iter().map(|s| share_json(&state, s)).collect();
    Ok(json_response(StatusCode::OK, &json!({"items": items})))
}

async fn revoke_share(
    State(state): State<Arc<AppState>>,
    Path(share_id): Path<String>,
    req: Request,
) -> ApiResult {
    let (req, _body) = req.into_parts();
    let c = caller(&state, &req).await?;
    c.require_auth()?;
    let share = state
        .metadata
        .get_share(&share_id)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no such share"))?;
    let rec = load_readable(&state, &c, &share.image_id)
        .await
        .map_err(|_| Error::new(ErrorKind::NotFound, "no such share"))?;
    c.require_owner(&rec)?;
    check_write(&state, &c)?;
    state
        .metadata
        .revoke_share(&share.id, metadata::now_micros())
        .await?;
    Ok(no_content())
}

// ---- cache purge, OpenAPI -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    key: Option<String>,
    prefix: Option<String>,
}

async fn purge_cache(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let (req, body) = req.into_parts();
    let c = caller(&state, &req).await?;
    c.require_auth()?;
    if !c.principal.is_admin() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "only an admin may purge the cache",
        ));
    }
    check_write(&state, &c)?;
    let body: PurgeBody = read_json(&req, body).await?;
    match (body.key, body.prefix) {
        (Some(k), None) => {
            key::validate(&k)?;
            state.caches.purge_key(&k).await;
            Ok(json_response(
                StatusCode::OK,
                &json!({"purged": {"key": k}}),
            ))
        }
        (None, Some(p)) if !p.is_empty() => {
            state.caches.purge_prefix(&p).await;
            Ok(json_response(
                StatusCode::OK,
                &json!({"purged": {"prefix": p}}),
            ))
        }
        _ => Err(Error::bad_request(
            "give exactly one of `key` or a non-empty `prefix`",
        )),
    }
}

async fn openapi_json() -> Response<Body> {
    json_response(StatusCode::OK, &openapi::document())
}

/// Collects a body up to `cap` bytes (413 beyond).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn levels_from_keys() {
        let a = Config::defaults().access;
        assert_eq!(level_of("public/x.png", &a), (Level::Public, None));
        assert_eq!(
            level_of("protected/alice/x.png", &a),
            (Level::Protected, Some("alice"))
        );
        assert_eq!(
            level_of("private/bob/a/b.png", &a),
            (Level::Private, Some("bob"))
        );
        assert_eq!(level_of("private/x.png", &a), (Level::Private, None));
        assert_eq!(level_of("other/x.png", &a), (Level::Other, None));
    }

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let r = ImageRecord {
            id: "abc".into(),
            key: "public/abc.png".into(),
            level: Level::Public,
            owner: None,
            filename: None,
            content_type: "image/png".into(),
            bytes: 1,
            width: 1,
            height: 1,
            sha256: String::new(),
            tags: vec![],
            description: None,
            state: RecordState::Ready,
            created_at: 1_795_806_318_123_456,
            updated_at: 0,
        };
        let c = encode_cursor(&r);
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_795_806_318_123_456, "abc".into())
        );
        for bad in ["", "!!", "bm9wZQ", "eC5hYmM"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_paths_are_encoded() {
        assert_eq!(key_path("public/a b+c?.png"), "/public/a%20b%2Bc%3F.png");
        assert_eq!(key_path("public/café.png"), "/public/caf%C3%A9.png");
    }

    #[test]
    fn tags() {
        assert_eq!(normalize_tag("Beach-2026").unwrap(), "beach-2026");
        for bad in ["", "a b", "a,b", "a%", &"x".repeat(65)] {
            assert!(normalize_tag(bad).is_err(), "{bad}");
        }
        let t = normalize_tags(&["A".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(t, ["a", "b"]);
    }
}

//! The image route, top to bottom: key → principal → access → params → original (cached,
//! size-capped) → format decision → variant identity → 304? → variant cache or render on the
//! bounded pool → headers. Cheap checks come before expensive ones.
//!
//! Without parameters the original is served (SPEC §10): stored bytes, or a copy without
//! metadata streamed from them; with `fm=json`, its facts.

use crate::auth::ratelimit::ClientKey;
use crate::auth::{self, Principal, access};
use crate::cache::{Derived, Original, OriginalEvents, OriginalPolicy, VariantId};
use crate::error::{Error, ErrorKind};
use crate::headers::{Audience, ETag, ResponseHeads};
use crate::metadata::Moderation;
use crate::originals::{Layout, MetadataPolicy, StripError, Stripped};
use crate::params;
use crate::state::AppState;
use crate::storage::key;
use crate::telemetry::{Metrics, Tier};
use crate::variants;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, Uri, header};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use crate::headers::CacheOutcome;

pub async fn handle(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, Error> {
    let head_only = head_only(method)?;
    let key = key::from_path(uri.path())?;
    if key.starts_with(state.config.cache.shared.prefix.as_str()) {
        // The shared variant store (SPEC §12) holds no originals.
        return Err(Error::not_found());
    }
    let now = crate::unix_now();
    let principal = state
        .auth
        .principal(headers, Some((uri.path(), uri.query())), peer, now)
        .await?;
    check_read(state, &principal, &key)?;
    let flagged = check_moderation(state, &principal, &key).await?;
    if state.config.delivery_strict
        && !matches!(
            principal,
            Principal::Admin | Principal::Signed(_) | Principal::EdgeVerified
        )
    {
        params::check_strict(uri.query(), &state.parse)?;
    }
    let parsed = params::parse(uri.query(), &state.parse)?;
    let audience = audience(state, &principal, &key, parsed.share.as_deref(), now).await?;
    // What its owner reads of a flagged image is for them only, never a shared cache.
    let audience = if flagged { Audience::Private } else { audience };
    let original = fetch_original(state, &key).await?;
    let asked = Asked {
        principal: &principal,
        key: &key,
        headers,
        audience,
        head_only,
    };
    if parsed.facts {
        return serve_facts(state, &asked, &original).await;
    }
    let Some(pending) = parsed.transform else {
        return serve_original(state, &asked, &original).await;
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (transform, negotiated) = variants::output(state, &original, &pending, accept)?;
    let id = params::variant_id(&key, &original.meta.etag, &transform);
    let heads = response_heads(
        state,
        &original,
        ETag::strong_hex(&id),
        audience,
        negotiated,
    );
    if heads.is_not_modified(headers) {
        return Ok(heads.not_modified());
    }
    // Only needed on a miss: built lazily so hits don't allocate it.
    let client = || match principal.identity() {
        Some(id) => ClientKey::User(id.to_owned()),
        None => state
            .rate_limits
            .ip_key(state.auth.viewer_ip(headers, peer)),
    };
    let (variant, outcome) =
        variants::variant(state, id, &original, transform, &key, client).await?;
    Ok(heads.ok(variant.content_type, &variant.body, head_only, outcome))
}

/// GET or HEAD only; `true` for HEAD (headers and length, no body).
fn head_only(method: &Method) -> Result<bool, Error> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            "only GET and HEAD are allowed here",
        ));
    }
    Ok(method == Method::HEAD)
}

fn check_read(state: &AppState, principal: &Principal, key: &str) -> Result<(), Error> {
    if !auth::can_read(principal, key, &state.config.access) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "not allowed to read this image",
        ));
    }
    Ok(())
}

/// SPEC §12: while moderation is on, a flagged image is read only by its owner and
/// admins; guests, other users, signed URLs and share links get 403. One record lookup
/// per request, so only when moderation is on. True when the image is flagged (and the
/// caller may read it).
async fn check_moderation(
    state: &AppState,
    principal: &Principal,
    key: &str,
) -> Result<bool, Error> {
    if !state.config.ingest.moderation {
        return Ok(false);
    }
    let Some(rec) = state.metadata.get_by_key(key).await? else {
        return Ok(false);
    };
    if rec.moderation != Some(Moderation::Flagged) {
        return Ok(false);
    }
    if !access::may_change(principal, rec.owner.as_deref()) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "not allowed to read this image",
        ));
    }
    Ok(true)
}

/// Who could read this answer, which decides how it may be cached. A share link is
/// honoured only while its share exists, unrevoked, for this key; checked on every
/// request, cache hits included.
async fn audience(
    state: &AppState,
    principal: &Principal,
    key: &str,
    share: Option<&str>,
    now: u64,
) -> Result<Audience, Error> {
    let share_max_age = state.config.cache_control.share_max_age;
    let public = || auth::can_read(&Principal::Guest, key, &state.config.access);
    Ok(match (principal, share) {
        (Principal::Signed(grant), share) => {
            if let Some(id) = share {
                check_share(state, id, key).await?;
            }
            let left = grant.expires.saturating_sub(now);
            // A revocable share must not outlive its revocation in caches for long.
            let secs_left = if share.is_some() {
                left.min(share_max_age)
            } else {
                left
            };
            Audience::Signed { secs_left }
        }
        (Principal::EdgeVerified, share) => {
            if let Some(id) = share {
                check_share(state, id, key).await?;
            }
            Audience::Signed {
                secs_left: share_max_age,
            }
        }
        // A public image's share link behind CloudFront's default behavior, which keeps
        // the signature away from the origin (it is not in that behavior's cache key):
        // the image is public anyway, so the share itself is what is checked, and the
        // answer is cached no longer than a revocation may take to show.
        (_, Some(id)) if public() => {
            let expires = check_share(state, id, key).await?;
            let left = u64::try_from(expires).unwrap_or(0).saturating_sub(now);
            Audience::Signed {
                secs_left: left.min(share_max_age),
            }
        }
        (_, Some(_)) => {
            return Err(Error::bad_request(
                "invalid parameter `share`: only valid inside a signed URL",
            ));
        }
        _ if public() => Audience::Public,
        _ => Audience::Private,
    })
}

/// The original from the cache tier, revalidated with storage after `cache.source_ttl_s`,
/// or on every request while this instance may have missed another's change (SPEC §14).
async fn fetch_original(state: &AppState, key: &str) -> Result<Arc<Original>, Error> {
    let revalidate_after = if state.cluster.degraded() {
        std::time::Duration::ZERO
    } else {
        state.config.cache.source_ttl
    };
    let policy = OriginalPolicy {
        max_bytes: state.config.limits.max_source_bytes,
        revalidate_after,
    };
    let storage = state.storage.as_ref();
    (state.caches)
        .original(storage, key, policy, &state.metrics)
        .await
}

impl OriginalEvents for Metrics {
    fn hit(&self) {
        self.cache_hit(Tier::Original);
    }

    fn miss(&self) {
        self.cache_miss(Tier::Original);
    }

    fn storage(&self, seconds: f64, fetched: bool) {
        self.storage_fetch(seconds, fetched);
    }
}

/// The heads of a 200 or 304 for this original or a variant of it.
fn response_heads(
    state: &AppState,
    original: &Original,
    etag: ETag,
    audience: Audience,
    vary_accept: bool,
) -> ResponseHeads {
    ResponseHeads {
        etag,
        modified: original.meta.last_modified,
        last_modified: original.last_modified.clone(),
        cache_control: state.cache_controls.value(audience),
        vary_accept,
    }
}

/// Who asked for which original, and how the answer may be cached.
struct Asked<'a> {
    principal: &'a Principal,
    key: &'a str,
    headers: &'a HeaderMap,
    audience: Audience,
    head_only: bool,
}

/// No parameters (SPEC §10): the stored bytes for callers allowed them (the owner and
/// admins under `originals.metadata = owner`, everyone under `keep`), for everyone else
/// a copy without EXIF/XMP/IPTC/comments, streamed from the stored bytes under its own
/// ETag. A file with nothing to remove is served as stored, to everyone, under the
/// storage ETag. Only image types are served, so the origin never hands out HTML or
/// scripts from its domain.
///
/// A format whose metadata cannot be removed yet (HEIC/AVIF with Exif or XMP items) or a
/// file too broken to walk is refused to callers who must get a stripped copy: 415 / 422,
/// never the stored bytes.
async fn serve_original(
    state: &AppState,
    asked: &Asked<'_>,
    original: &Arc<Original>,
) -> Result<Response<Body>, Error> {
    let content_type = crate::media::ImageType::sniff(&original.body)
        .map(crate::media::ImageType::content_type)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedMediaType,
                "original is not an image format we serve",
            )
        })?;
    let stored = |audience| {
        let etag = ETag::strong(&original.meta.etag);
        let heads = response_heads(state, original, etag, audience, false);
        if heads.is_not_modified(asked.headers) {
            return heads.not_modified();
        }
        heads.ok(
            content_type,
            &original.body,
            asked.head_only,
            CacheOutcome::Original,
        )
    };
    let policy = state.config.originals_metadata;
    if policy == MetadataPolicy::Keep {
        return Ok(stored(asked.audience));
    }
    let (id, stripped) = stripped(state, asked.key, original).await;
    if let Ok(Stripped::Unchanged) = &stripped.value {
        return Ok(stored(asked.audience));
    }
    if policy == MetadataPolicy::Owner && sees_everything(state, asked.principal, asked.key).await {
        // What others get differs: this answer is for this caller only.
        return Ok(stored(Audience::Private));
    }
    let layout = match &stripped.value {
        Ok(Stripped::Layout(l)) => l,
        Ok(Stripped::Unsupported(label)) => {
            return Err(Error::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "metadata cannot be removed from {label} originals yet; ask for a converted copy (e.g. `?fm=jpeg`)"
                ),
            ));
        }
        Err(e) => return Err(e.clone().into()),
        Ok(Stripped::Unchanged) => unreachable!("answered above"),
    };
    let heads = response_heads(
        state,
        original,
        ETag::strong_hex(&id),
        asked.audience,
        false,
    );
    if heads.is_not_modified(asked.headers) {
        return Ok(heads.not_modified());
    }
    let body = if asked.head_only {
        Body::empty()
    } else {
        Body::new(LayoutBody::new(original.body.clone(), stripped.clone()))
    };
    let outcome = CacheOutcome::Original;
    Ok(heads.ok_with(content_type, body, layout.len() as u64, outcome))
}

/// The stripped layout of this version of the original, from its tier or walked here.
/// The walk reads container headers and, for JPEG, looks at each 0xFF of the
/// entropy-coded data for EOI (about a millisecond for 4 MB): light and linear like the
/// header probe made when an original is fetched, so it runs inline rather than in the
/// transform queue, and originals are still served while renders wait. Returns its id
/// too, which is also its ETag.
async fn stripped(
    state: &AppState,
    key: &str,
    original: &Arc<Original>,
) -> (VariantId, Arc<Derived<Result<Stripped, StripError>>>) {
    let id = crate::cache::version_id("stripped-v1", key, &original.meta.etag);
    let tier = &state.caches.stripped;
    if let Some(hit) = tier.get(&id).await {
        state.metrics.cache_hit(Tier::Stripped);
        return (id, hit);
    }
    state.metrics.cache_miss(Tier::Stripped);
    let entry = tier
        .get_with(id, async {
            Arc::new(Derived {
                value: crate::originals::strip(&original.body),
                key: key.into(),
            })
        })
        .await;
    (id, entry)
}

/// The owner of the key or an admin (SPEC §10: who gets the stored metadata, GPS
/// included). The owner of a protected or private key is the identity in it; of any
/// other key, the owner in its record. Signed URLs and shares never count, whoever made
/// them. A failed record lookup counts as "no": that caller gets the stripped copy.
async fn sees_everything(state: &AppState, principal: &Principal, key: &str) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::User { .. } => match access::owns_by_key(principal, key, &state.config.access) {
            Some(owns) => owns,
            None => match state.metadata.get_by_key(key).await {
                Ok(rec) => access::may_change(principal, rec.and_then(|r| r.owner).as_deref()),
                Err(e) => {
                    tracing::warn!(error = %e, "owner lookup failed; serving without metadata");
                    false
                }
            },
        },
        _ => false,
    }
}

/// A stripped copy as a response body: the pieces of its layout, slices of the
/// original's bytes, one frame each; the exact length is known up front.
struct LayoutBody {
    original: Bytes,
    stripped: Arc<Derived<Result<Stripped, StripError>>>,
    next: usize,
    left: u64,
}

impl LayoutBody {
    fn new(original: Bytes, stripped: Arc<Derived<Result<Stripped, StripError>>>) -> Self {
        let left = Self::layout_of(&stripped).map_or(0, |l| l.len() as u64);
        LayoutBody {
            original,
            stripped,
            next: 0,
            left,
        }
    }

    fn layout_of(s: &Derived<Result<Stripped, StripError>>) -> Option<&Layout> {
        match &s.value {
            Ok(Stripped::Layout(l)) => Some(l),
            _ => None,
        }
    }
}

impl HttpBody for LayoutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let chunk =
            Self::layout_of(&this.stripped).and_then(|l| l.chunk(this.next, &this.original));
        let Some(chunk) = chunk else {
            return Poll::Ready(None);
        };
        this.next += 1;
        this.left = this.left.saturating_sub(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// `?fm=json` (SPEC §10): the facts of the original, with `gps` only for its owner and
/// admins, under the image's access rules; the ETag is the hash of the body.
async fn serve_facts(
    state: &AppState,
    asked: &Asked<'_>,
    original: &Arc<Original>,
) -> Result<Response<Body>, Error> {
    // Not an image we decode: the same status as any transform of it.
    original.probe.clone()?;
    let facts = state.library().facts(asked.key, original).await?;
    let show_gps =
        facts.value.gps.is_some() && sees_everything(state, asked.principal, asked.key).await;
    let body = Bytes::from(serde_json::to_vec(&facts.value.view(show_gps)).unwrap_or_default());
    let digest = sha2_of(&body);
    // A position is for this caller only.
    let audience = if show_gps {
        Audience::Private
    } else {
        asked.audience
    };
    let heads = response_heads(
        state,
        original,
        ETag::strong_hex(&digest[..16]),
        audience,
        false,
    );
    if heads.is_not_modified(asked.headers) {
        return Ok(heads.not_modified());
    }
    Ok(heads.ok(
        "application/json",
        &body,
        asked.head_only,
        CacheOutcome::Original,
    ))
}

fn sha2_of(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

/// Delivery side of shares: a signed request carrying `share=<id>` is served only while
/// that share exists, is neither revoked nor expired, and is for this key. Returns when it
/// expires (Unix seconds).
async fn check_share(state: &AppState, share_id: &str, key: &str) -> Result<i64, Error> {
    let refuse = |why: &str| {
        Error::new(ErrorKind::Forbidden, "this share link is not valid").with_cause(why.to_string())
    };
    let share = state.metadata.get_share(share_id).await?;
    let Some(s) = share else {
        return Err(refuse("unknown share id"));
    };
    if s.revoked_at.is_some() {
        return Err(refuse("share revoked"));
    }
    if s.expires_at <= crate::unix_now() as i64 {
        return Err(refuse("share expired"));
    }
    if s.key != key {
        return Err(refuse("share is for another key"));
    }
    Ok(s.expires_at)
}

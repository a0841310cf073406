//! The image route, top to bottom: key → principal → access → params → original (cached,
//! size-capped) → format decision → variant identity → 304? → variant cache or render on the
//! bounded pool → headers. Cheap checks come before expensive ones.

use crate::auth::ratelimit::ClientKey;
use crate::auth::{self, Principal};
use crate::cache::{Original, OriginalEvents, OriginalPolicy, Variant, VariantId};
use crate::error::{Error, ErrorKind};
use crate::headers::{Audience, ETag, ResponseHeads};
use crate::media::OutputFormat;
use crate::params::{self, PendingTransform, SourceTraits, Transform};
use crate::pipeline::{self, RenderOptions};
use crate::state::AppState;
use crate::storage::key;
use crate::telemetry::{Metrics, Tier};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, Uri, header};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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
    let now = crate::unix_now();
    let principal = state
        .auth
        .principal(headers, Some((uri.path(), uri.query())), peer, now)
        .await?;
    check_read(state, &principal, &key)?;
    let parsed = params::parse(uri.query(), &state.parse)?;
    let audience = audience(state, &principal, &key, parsed.share.as_deref(), now).await?;
    let original = fetch_original(state, &key).await?;
    let Some(pending) = parsed.transform else {
        return serve_original(state, &original, headers, audience, head_only);
    };
    let (transform, negotiated) = output(state, &original, &pending, headers)?;
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
    let (variant, outcome) = variant(state, id, &original, transform, &key, client).await?;
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

/// The original from the cache tier, revalidated with storage after `cache.source_ttl_s`.
async fn fetch_original(state: &AppState, key: &str) -> Result<Arc<Original>, Error> {
    let policy = OriginalPolicy {
        max_bytes: state.config.limits.max_source_bytes,
        revalidate_after: state.config.cache.source_ttl,
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

/// The transform resolved for this source and `Accept`, checked against the source and
/// output pixel caps before a worker is taken; and whether its format was negotiated
/// (`Vary: Accept`). `fm=auto` falls back from AVIF (the tighter cap) to what else the
/// client accepts.
fn output(
    state: &AppState,
    original: &Original,
    pending: &PendingTransform,
    headers: &HeaderMap,
) -> Result<(Transform, bool), Error> {
    let info = original.probe.clone()?;
    // Also checked inside the pipeline; here it refuses before taking a worker slot.
    let max_pixels = state.config.limits.max_source_pixels;
    pipeline::check_source_pixels(info.width, info.height, max_pixels)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let traits = SourceTraits {
        format: info.format,
        has_alpha: info.has_alpha,
        animated: info.animated(),
    };
    let (transform, negotiated) = params::resolve(pending, traits, accept, &state.parse);
    let limits = render_limits(state);
    match pipeline::check_output(&original.body, &transform, &limits) {
        Ok(()) => Ok((transform, negotiated)),
        Err(e) if !(negotiated && transform.format == OutputFormat::Avif) => Err(e.into()),
        Err(_) => {
            let (transform, _) =
                params::resolve_without_avif(pending, traits, accept, &state.parse);
            pipeline::check_output(&original.body, &transform, &limits)?;
            Ok((transform, negotiated))
        }
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

/// The variant from the cache, or rendered on the worker pool once the client's miss
/// budget allows it.
async fn variant(
    state: &Arc<AppState>,
    id: VariantId,
    original: &Arc<Original>,
    transform: Transform,
    key: &str,
    client: impl FnOnce() -> ClientKey,
) -> Result<(Arc<Variant>, CacheOutcome), Error> {
    if let Some(v) = state.caches.variants.get(&id).await {
        state.metrics.cache_hit(Tier::Variant);
        return Ok((v, CacheOutcome::Hit));
    }
    state.metrics.cache_miss(Tier::Variant);
    if let Err(e) = state.rate_limits.check_miss(&client()) {
        state.metrics.rejected("rate_limited");
        return Err(e);
    }
    let render = render_variant(state.clone(), original.clone(), transform, key.to_owned());
    // The render and its cache insert run detached from this request: a request that
    // times out (or whose client leaves) drops only its wait, so the work already
    // admitted still lands in the cache and a retry is a hit instead of a second render.
    // Identical concurrent misses still render once: each waiter's task joins the same
    // `try_get_with`. Admission (503 when the queue is full) is still answered at once,
    // through the task.
    let variants = state.caches.variants.clone();
    let task = tokio::spawn(async move { variants.try_get_with(id, render).await });
    let v = task
        .await
        .map_err(|e| Error::internal(format!("render task failed: {e}")))?
        .map_err(|e| (*e).clone())?;
    Ok((v, CacheOutcome::Miss))
}

/// No parameters: the stored bytes, untouched, under the storage ETag. Only image types
/// are served, so the origin never hands out HTML or scripts from its domain.
fn serve_original(
    state: &AppState,
    original: &Original,
    req: &HeaderMap,
    audience: Audience,
    head_only: bool,
) -> Result<Response<Body>, Error> {
    let content_type = crate::media::ImageType::sniff(&original.body)
        .map(crate::media::ImageType::content_type)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedMediaType,
                "original is not an image format we serve",
            )
        })?;
    let etag = ETag::strong(&original.meta.etag);
    let heads = response_heads(state, original, etag, audience, false);
    if heads.is_not_modified(req) {
        return Ok(heads.not_modified());
    }
    Ok(heads.ok(
        content_type,
        &original.body,
        head_only,
        CacheOutcome::Original,
    ))
}

/// The server's render settings, without a watermark.
fn render_limits(state: &AppState) -> RenderOptions<'static> {
    let l = &state.config.limits;
    RenderOptions {
        max_output: (l.max_width, l.max_height),
        max_source_pixels: l.max_source_pixels,
        max_output_pixels: l.max_output_pixels,
        max_avif_output_pixels: l.max_avif_output_pixels,
        max_animation_frames: l.max_animation_frames,
        max_animation_pixels: l.max_animation_pixels,
        avif: state.config.format.avif_settings,
        watermark: None,
    }
}

/// Renders on the worker pool; the result goes into the variant cache.
async fn render_variant(
    state: Arc<AppState>,
    original: Arc<Original>,
    t: Transform,
    key: String,
) -> Result<Arc<Variant>, Error> {
    let watermark =
        match &t.watermark {
            Some(name) => {
                Some(state.watermarks.get(name).cloned().ok_or_else(|| {
                    Error::bad_request("invalid parameter `wm`: unknown watermark")
                })?)
            }
            None => None,
        };
    let limits = render_limits(&state);
    let queued_at = Instant::now();
    let metrics_state = state.clone();
    let key_for_render = key.clone();
    state.metrics.queue_depth(state.workers.queue_depth() + 1);
    let result = state
        .workers
        .run(move || {
            let m = &metrics_state.metrics;
            m.render_started(queued_at.elapsed().as_secs_f64());
            let started = Instant::now();
            let opts = RenderOptions {
                watermark: watermark.as_deref(),
                ..limits
            };
            let kept = metrics_state
                .caches
                .decoded
                .of(&key_for_render, &original.meta.etag);
            let out = pipeline::render_with(&original.body, &t, &opts, Some(&kept));
            // Animated renders and early refusals do not use the tier.
            if kept.decoded() {
                m.cache_miss(Tier::Decoded);
            } else if kept.consulted() {
                m.cache_hit(Tier::Decoded);
            }
            m.render_finished(started.elapsed().as_secs_f64());
            out
        })
        .await;
    state.metrics.queue_depth(state.workers.queue_depth());
    let rendered = match result {
        Ok(r) => r?,
        Err(e) => {
            if e.kind == ErrorKind::ServiceUnavailable {
                state.metrics.rejected("queue_full");
            }
            return Err(e);
        }
    };
    Ok(Arc::new(Variant {
        content_type: rendered.format.content_type(),
        body: bytes::Bytes::from(rendered.bytes),
        key: key.into(),
    }))
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

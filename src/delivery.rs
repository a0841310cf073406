//! The image route, top to bottom: key → principal → access → params → original (cached,
//! size-capped) → format decision → variant identity → 304? → variant cache or render on the
//! bounded pool → headers. Cheap checks come before expensive ones.

use crate::auth::ratelimit::ClientKey;
use crate::auth::{self, Principal};
use crate::cache::{Original, Variant};
use crate::error::{Error, ErrorKind};
use crate::headers::{self, Audience};
use crate::params::{self, OutputFormat, SourceTraits, Transform};
use crate::pipeline::{self, RenderOptions};
use crate::state::AppState;
use crate::storage::{StorageError, key};
use crate::telemetry::{Stage, StageLabels, Tier, TierLabels};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// How a delivery response was produced; read by the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Original,
    NotModified,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Original => "original",
            CacheOutcome::NotModified => "not-modified",
        }
    }
}

pub async fn handle(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, Error> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::new(
            ErrorKind::MethodNotAllowed,
            "only GET and HEAD are allowed here",
        ));
    }
    let key = key::from_path(uri.path())?;
    let now = crate::unix_now();
    let principal = state
        .auth
        .principal(headers, Some((uri.path(), uri.query())), peer, now)
        .await?;
    if !auth::can_read(&principal, &key, &state.config.access) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "not allowed to read this image",
        ));
    }
    let parsed = params::parse(uri.query(), &state.parse)?;
    // A share link is honoured only while its share exists, unrevoked, for this key;
    // checked on every request, cache hits included.
    if let Some(share) = &parsed.share
        && matches!(principal, Principal::Signed(_) | Principal::EdgeVerified)
    {
        check_share(state, share, &key).await?;
    }
    let share_max_age = state.config.cache_control.share_max_age;
    let audience = match &principal {
        Principal::Signed(grant) => {
            let left = grant.expires.saturating_sub(now);
            // A revocable share must not outlive its revocation in caches for long.
            let secs_left = if parsed.share.is_some() {
                left.min(share_max_age)
            } else {
                left
            };
            Audience::Signed { secs_left }
        }
        Principal::EdgeVerified => Audience::Signed {
            secs_left: share_max_age,
        },
        // A public image's share link behind CloudFront's default behavior, which keeps
        // the signature away from the origin (it is not in that behavior's cache key):
        // the image is public anyway, so the share itself is what is checked, and the
        // answer is cached no longer than a revocation may take to show.
        _ if parsed.share.is_some()
            && auth::can_read(&Principal::Guest, &key, &state.config.access) =>
        {
            let share = parsed.share.as_deref().unwrap_or_default();
            let expires = check_share(state, share, &key).await?;
            let left = u64::try_from(expires).unwrap_or(0).saturating_sub(now);
            Audience::Signed {
                secs_left: left.min(share_max_age),
            }
        }
        _ if parsed.share.is_some() => {
            return Err(Error::bad_request(
                "invalid parameter `share`: only valid inside a signed URL",
            ));
        }
        _ if auth::can_read(&Principal::Guest, &key, &state.config.access) => Audience::Public,
        _ => Audience::Private,
    };
    // Only needed on a miss: built lazily so hits don't allocate it.
    let client = || match principal.identity() {
        Some(id) => ClientKey::User(id.to_owned()),
        None => state
            .rate_limits
            .ip_key(state.auth.viewer_ip(headers, peer)),
    };
    let original = fetch_original(state, &key).await?;
    let head_only = method == Method::HEAD;

    let Some(pending) = parsed.transform else {
        return serve_original(state, &original, headers, audience, head_only);
    };

    let info = original.probe.clone()?;
    // Also checked inside the pipeline; here it refuses before taking a worker slot.
    let pixels = info.width as u64 * info.height as u64;
    if pixels > state.config.limits.max_source_pixels {
        return Err(pipeline::PipelineError::TooManyPixels {
            width: info.width,
            height: info.height,
            limit: state.config.limits.max_source_pixels,
        }
        .into());
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let traits = SourceTraits {
        format: info.format,
        has_alpha: info.has_alpha,
    };
    let (mut transform, negotiated) = params::resolve(&pending, traits, accept, &state.parse);
    // Output size caps, from the header and the plan, before a worker is taken. `fm=auto`
    // falls back from AVIF (the tighter cap) to what else the client accepts.
    let limits = render_limits(state);
    if let Err(e) = pipeline::check_output(&original.body, &transform, &limits) {
        if !(negotiated && transform.format == OutputFormat::Avif) {
            return Err(e.into());
        }
        transform = params::resolve_without_avif(&pending, traits, accept, &state.parse).0;
        pipeline::check_output(&original.body, &transform, &limits)?;
    }
    let id = params::variant_id(&key, &original.meta.etag, &transform);
    let etag = headers::strong_etag(&hex::encode(id));
    let common = ResponseHeads::new(
        state,
        &etag,
        original.meta.last_modified,
        audience,
        negotiated,
    );
    if let Some(r) = common.not_modified_for(headers) {
        return Ok(r);
    }

    let tier = TierLabels {
        tier: Tier::Variant,
    };
    let (variant, outcome) = match state.caches.variants.get(&id).await {
        Some(v) => {
            state.metrics.cache_hits.get_or_create(&tier).inc();
            (v, CacheOutcome::Hit)
        }
        None => {
            state.metrics.cache_misses.get_or_create(&tier).inc();
            if let Err(e) = state.rate_limits.check_miss(&client()) {
                state
                    .metrics
                    .rejected
                    .get_or_create(&crate::telemetry::ReasonLabels {
                        reason: "rate_limited",
                    })
                    .inc();
                return Err(e);
            }
            let render = render_variant(state.clone(), original.clone(), transform, key.clone());
            // The render and its cache insert run detached from this request: a request
            // that times out (or whose client leaves) drops only its wait, so the work
            // already admitted still lands in the cache and a retry is a hit instead of a
            // second render. Identical concurrent misses still render once: each waiter's
            // task joins the same `try_get_with`. Admission (503 when the queue is full)
            // is still answered at once, through the task.
            let variants = state.caches.variants.clone();
            let task = tokio::spawn(async move { variants.try_get_with(id, render).await });
            let v = task
                .await
                .map_err(|e| Error::internal(format!("render task failed: {e}")))?
                .map_err(|e| (*e).clone())?;
            (v, CacheOutcome::Miss)
        }
    };
    let mut resp = common.ok(variant.content_type, variant.body.len());
    if !head_only {
        *resp.body_mut() = Body::from(variant.body.clone());
    }
    Ok(with_outcome(resp, outcome))
}

fn is_not_modified(headers: &HeaderMap, etag: &str, last_modified: std::time::SystemTime) -> bool {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let ims = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok());
    headers::is_not_modified(inm, ims, etag, last_modified)
}

fn with_outcome(mut r: Response<Body>, o: CacheOutcome) -> Response<Body> {
    r.extensions_mut().insert(o);
    r
}

/// Values shared by the 200 and 304 answers of one resource.
struct ResponseHeads<'a> {
    etag: &'a str,
    last_modified: std::time::SystemTime,
    cache_control: String,
    vary_accept: bool,
}

impl<'a> ResponseHeads<'a> {
    fn new(
        state: &AppState,
        etag: &'a str,
        last_modified: std::time::SystemTime,
        audience: Audience,
        vary_accept: bool,
    ) -> Self {
        let cc = &state.config.cache_control;
        ResponseHeads {
            etag,
            last_modified,
            cache_control: headers::cache_control(audience, &cc.public, &cc.private),
            vary_accept,
        }
    }

    /// The 304 answer when the request's conditionals match, without touching the body.
    fn not_modified_for(&self, req: &HeaderMap) -> Option<Response<Body>> {
        is_not_modified(req, self.etag, self.last_modified)
            .then(|| with_outcome(self.not_modified(), CacheOutcome::NotModified))
    }

    fn apply(&self, h: &mut HeaderMap) {
        let set = |h: &mut HeaderMap, name, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(name, v);
            }
        };
        set(h, header::ETAG, self.etag);
        set(
            h,
            header::LAST_MODIFIED,
            &headers::http_date(self.last_modified),
        );
        set(h, header::CACHE_CONTROL, &self.cache_control);
        if self.vary_accept {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
    }

    fn not_modified(&self) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        self.apply(r.headers_mut());
        r
    }

    fn ok(&self, content_type: &'static str, len: usize) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        let h = r.headers_mut();
        self.apply(h);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    }
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
    let content_type = sniff_image_type(&original.body).ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedMediaType,
            "original is not an image format we serve",
        )
    })?;
    let etag = headers::strong_etag(&original.meta.etag);
    let heads = ResponseHeads::new(state, &etag, original.meta.last_modified, audience, false);
    if let Some(r) = heads.not_modified_for(req) {
        return Ok(r);
    }
    let mut r = heads.ok(content_type, original.body.len());
    if !head_only {
        *r.body_mut() = Body::from(original.body.clone());
    }
    Ok(with_outcome(r, CacheOutcome::Original))
}

/// Content type from magic bytes, for the image types we pass through.
pub fn sniff_image_type(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" && matches!(&b[8..12], b"avif" | b"avis") {
        Some("image/avif")
    } else {
        None
    }
}

/// The original from the cache, revalidated with storage after `cache.source_ttl_s`;
/// concurrent misses fetch once.
async fn fetch_original(state: &Arc<AppState>, key: &str) -> Result<Arc<Original>, Error> {
    let tier = TierLabels {
        tier: Tier::Original,
    };
    let cache = &state.caches.originals;
    let max = state.config.limits.max_source_bytes;
    if let Some(o) = cache.get(key).await {
        if o.checked_at.elapsed() < state.config.cache.source_ttl {
            state.metrics.cache_hits.get_or_create(&tier).inc();
            return Ok(o);
        }
        let started = Instant::now();
        let fresh = state.storage.get_if_changed(key, &o.meta.etag, max).await;
        state
            .metrics
            .storage_fetch_seconds
            .observe(started.elapsed().as_secs_f64());
        let next = match fresh {
            Ok(None) => Arc::new(Original {
                meta: o.meta.clone(),
                body: o.body.clone(),
                probe: o.probe.clone(),
                checked_at: Instant::now(),
            }),
            Ok(Some(obj)) => {
                state.metrics.storage_fetches.inc();
                Arc::new(make_original(obj))
            }
            Err(StorageError::NotFound) => {
                state.caches.purge_key(key).await;
                return Err(Error::not_found());
            }
            Err(e) => {
                // Storage hiccup: keep serving the copy we have rather than fail.
                tracing::warn!(error = %e, "revalidating an original failed; serving the cached copy");
                return Ok(o);
            }
        };
        cache.insert(key.into(), next.clone()).await;
        return Ok(next);
    }
    state.metrics.cache_misses.get_or_create(&tier).inc();
    let storage = state.storage.clone();
    let metrics_state = state.clone();
    let owned_key = key.to_string();
    cache
        .try_get_with(key.into(), async move {
            let started = Instant::now();
            let obj = storage.get(&owned_key, max).await;
            metrics_state
                .metrics
                .storage_fetch_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics_state.metrics.storage_fetches.inc();
            obj.map(|o| Arc::new(make_original(o))).map_err(Error::from)
        })
        .await
        .map_err(|e| (*e).clone())
}

fn make_original(obj: crate::storage::Object) -> Original {
    let probe = pipeline::probe(&obj.body).map_err(Error::from);
    Original {
        meta: obj.meta,
        body: obj.body,
        probe,
        checked_at: Instant::now(),
    }
}

/// The server's render settings, without a watermark.
fn render_limits(state: &AppState) -> RenderOptions<'static> {
    let l = &state.config.limits;
    RenderOptions {
        max_output: (l.max_width, l.max_height),
        max_source_pixels: l.max_source_pixels,
        max_output_pixels: l.max_output_pixels,
        max_avif_output_pixels: l.max_avif_output_pixels,
        avif_speed: state.config.format.avif_speed,
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
    state
        .metrics
        .queue_depth
        .set(state.workers.queue_depth() as i64 + 1);
    let result = state
        .workers
        .run(move || {
            let m = &metrics_state.metrics;
            m.transform_seconds
                .get_or_create(&StageLabels {
                    stage: Stage::Queue,
                })
                .observe(queued_at.elapsed().as_secs_f64());
            m.transforms_running.inc();
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
            let tier = TierLabels {
                tier: Tier::Decoded,
            };
            if kept.decoded() {
                m.cache_misses.get_or_create(&tier).inc();
            } else {
                m.cache_hits.get_or_create(&tier).inc();
            }
            m.transforms_running.dec();
            m.renders.inc();
            m.transform_seconds
                .get_or_create(&StageLabels {
                    stage: Stage::Render,
                })
                .observe(started.elapsed().as_secs_f64());
            out
        })
        .await;
    state
        .metrics
        .queue_depth
        .set(state.workers.queue_depth() as i64);
    let rendered = match result {
        Ok(r) => r?,
        Err(e) => {
            if e.kind == ErrorKind::ServiceUnavailable {
                state
                    .metrics
                    .rejected
                    .get_or_create(&crate::telemetry::ReasonLabels {
                        reason: "queue_full",
                    })
                    .inc();
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

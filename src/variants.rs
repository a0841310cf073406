//! A variant of an original, wherever it comes from: the in-memory tier, the shared
//! store in the bucket (SPEC §12), or a render on the bounded worker pool. Used by
//! delivery (per request) and by ingest (eager presets, review thumbnails).

use crate::auth::ratelimit::ClientKey;
use crate::cache::{Original, Variant, VariantId};
use crate::error::{Error, ErrorKind};
use crate::headers::CacheOutcome;
use crate::media::OutputFormat;
use crate::params::{self, PendingTransform, SourceTraits, Transform};
use crate::pipeline::{self, RenderOptions};
use crate::shared::WriteOutcome;
use crate::state::AppState;
use crate::telemetry::Tier;
use std::sync::Arc;
use std::time::Instant;

/// The transform resolved for this source and `Accept`, checked against the source and
/// output pixel caps before a worker is taken; and whether its format was negotiated
/// (`Vary: Accept`). `fm=auto` falls back from AVIF (the tighter cap) to what else the
/// client accepts.
pub fn output(
    state: &AppState,
    original: &Original,
    pending: &PendingTransform,
    accept: Option<&str>,
) -> Result<(Transform, bool), Error> {
    let info = original.probe.clone()?;
    // Also checked inside the pipeline; here it refuses before taking a worker slot.
    let max_pixels = state.config.limits.max_source_pixels;
    pipeline::check_source_pixels(info.width, info.height, max_pixels)?;
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

/// The variant from the cache, else from the shared store, else rendered on the worker
/// pool once the client's miss budget allows it (then offered to the shared store).
pub async fn variant(
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
    let render = shared_or_render(
        state.clone(),
        id,
        original.clone(),
        transform,
        key.to_owned(),
    );
    // The render and its cache insert run detached from this request: a request that
    // times out (or whose client leaves) drops only its wait, so the work already
    // admitted still lands in the cache and a retry is a hit instead of a second render.
    // Identical concurrent misses still render once: each waiter's task joins the same
    // `try_get_with`. Admission (503 when the queue is full) is still answered at once,
    // through the task.
    let variants = state.caches.variants.clone();
    // Whether this waiter's own task rendered or read the shared store; a waiter that
    // joined another's flight reports a miss.
    let task = tokio::spawn(async move {
        let outcome = std::sync::Mutex::new(CacheOutcome::Miss);
        let v = variants
            .try_get_with(id, async {
                let (v, o) = render.await?;
                *outcome.lock().unwrap_or_else(|p| p.into_inner()) = o;
                Ok::<_, Error>(v)
            })
            .await?;
        let o = *outcome.lock().unwrap_or_else(|p| p.into_inner());
        Ok::<_, Arc<Error>>((v, o))
    });
    let (v, outcome) = task
        .await
        .map_err(|e| Error::internal(format!("render task failed: {e}")))?
        .map_err(|e| (*e).clone())?;
    Ok((v, outcome))
}

/// A variant from the shared store, or rendered and offered to it (SPEC §12). Inside the
/// single flight: concurrent misses read or render once.
async fn shared_or_render(
    state: Arc<AppState>,
    id: VariantId,
    original: Arc<Original>,
    transform: Transform,
    key: String,
) -> Result<(Arc<Variant>, CacheOutcome), Error> {
    if state.shared.enabled() {
        if let Some((body, content_type)) = state.shared.get(&key, &id).await {
            state.metrics.cache_hit(Tier::Shared);
            let v = Variant {
                body,
                content_type,
                key: key.into(),
            };
            return Ok((Arc::new(v), CacheOutcome::Shared));
        }
        state.metrics.cache_miss(Tier::Shared);
    }
    let v = render_variant(state.clone(), original, transform, key).await?;
    if !state.shared.offer(&id, &v) {
        state.metrics.shared_write(WriteOutcome::Dropped.as_str());
    }
    Ok((v, CacheOutcome::Miss))
}

/// Renders a variant into the shared store now, unless it is there already (ingest's
/// eager presets); true when it was rendered here.
pub async fn prerender(
    state: &Arc<AppState>,
    key: &str,
    original: &Arc<Original>,
    transform: Transform,
) -> Result<bool, Error> {
    let id = params::variant_id(key, &original.meta.etag, &transform);
    if state.shared.contains(key, &id).await {
        return Ok(false);
    }
    let v = render_variant(state.clone(), original.clone(), transform, key.to_owned()).await?;
    state.shared.put(&id, &v).await?;
    state.metrics.shared_write(WriteOutcome::Stored.as_str());
    Ok(true)
}

/// The server's render settings, without a watermark.
pub fn render_limits(state: &AppState) -> RenderOptions<'static> {
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
pub async fn render_variant(
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

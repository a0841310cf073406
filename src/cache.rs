//! In-memory tiers, weighed by bytes: rendered variants, originals, decoded originals, and
//! two small ones per original version: its stripped layout and its facts (SPEC §10).
//! Concurrent identical misses are computed once (moka's `try_get_with` coalesces them).
//! Entries are immutable; a hit is a refcount bump on `Bytes` or the pixels' `Arc`.

use crate::error::Error;
use crate::facts::Facts;
use crate::originals::{StripError, Stripped};
use crate::pipeline::{self, DecodedSource, DecodedSources, PipelineError, SourceInfo};
use crate::storage::{Object, ObjectMeta, Storage, StorageError};
use axum::http::HeaderValue;
use bytes::Bytes;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One rendered image. Its ETag is not stored: it is the variant id, known before lookup.
pub struct Variant {
    pub body: Bytes,
    pub content_type: &'static str,
    /// Object key of the original, for purges by key or prefix.
    pub key: Arc<str>,
}

/// A fetched original plus what its header says.
pub struct Original {
    pub meta: ObjectMeta,
    pub body: Bytes,
    /// `Err` for bytes that are not an image we decode; served raw, refused for transforms.
    pub probe: Result<SourceInfo, Error>,
    /// When storage last confirmed this copy is current.
    pub checked_at: Instant,
    /// `meta.last_modified` as an HTTP date, formatted once for every response.
    pub last_modified: Option<HeaderValue>,
    /// Fetched while a purge ran: it may predate the change that purged it, so storage is
    /// asked again on the next request.
    unconfirmed: bool,
}

impl From<Object> for Original {
    fn from(obj: Object) -> Self {
        Original::new(obj)
    }
}

impl Original {
    fn new(obj: Object) -> Self {
        let probe = pipeline::probe(&obj.body).map_err(Error::from);
        let last_modified =
            HeaderValue::try_from(httpdate::fmt_http_date(obj.meta.last_modified)).ok();
        Original {
            meta: obj.meta,
            body: obj.body,
            probe,
            checked_at: Instant::now(),
            last_modified,
            unconfirmed: false,
        }
    }

    /// The same copy, confirmed current now.
    fn confirmed(&self) -> Self {
        Original {
            meta: self.meta.clone(),
            body: self.body.clone(),
            probe: self.probe.clone(),
            checked_at: Instant::now(),
            last_modified: self.last_modified.clone(),
            unconfirmed: false,
        }
    }
}

/// How originals are fetched: the size cap, and how long a cached copy is served before
/// storage is asked whether it changed.
#[derive(Clone, Copy, Debug)]
pub struct OriginalPolicy {
    pub max_bytes: u64,
    pub revalidate_after: Duration,
}

/// What fetching an original reports, for metrics (this module knows no metric names).
pub trait OriginalEvents: Sync {
    /// Served from the cache without asking storage.
    fn hit(&self);
    fn miss(&self);
    /// A storage round trip of `seconds`; `fetched` when it brought the bytes.
    fn storage(&self, seconds: f64, fetched: bool);
}

pub type VariantId = [u8; 16];

/// An id for something derived from one version of an original (`what` names it and its
/// version): the cache key of the small tiers, and (hex) the strong ETag of what is served
/// from them.
pub fn version_id(what: &str, key: &str, etag: &str) -> VariantId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [what, key, etag] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Something small derived from one original version, with its key for purges.
pub struct Derived<T> {
    pub value: T,
    pub key: Arc<str>,
}

/// Budget of each small tier: a stripped layout is a few hundred bytes, facts about 500.
const SMALL_TIER_BYTES: u64 = 16 << 20;

#[derive(Clone)]
pub struct Caches {
    pub variants: moka::future::Cache<VariantId, Arc<Variant>>,
    pub originals: moka::future::Cache<Arc<str>, Arc<Original>>,
    pub decoded: Decoded,
    /// What a request without parameters sends to callers who get no metadata: ranges of
    /// the original's bytes, so a hit copies nothing (`version_id("stripped-v1", ..)`).
    /// A file whose structure cannot be walked is kept as such (`Err`).
    pub stripped: moka::future::Cache<VariantId, Arc<Derived<Result<Stripped, StripError>>>>,
    /// Facts of originals, from their record or computed (`version_id("facts-v1", ..)`).
    pub facts: moka::future::Cache<VariantId, Arc<Derived<Facts>>>,
    /// Counts purges, so a fetch that overlapped one knows its copy may be stale.
    purges: Arc<std::sync::atomic::AtomicU64>,
}

/// Which decode of which original: a new version (ETag) is another entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DecodedKey {
    key: Arc<str>,
    etag: Arc<str>,
    scale: u32,
}

/// Decoded originals (pixels after colour conversion, at the JPEG shrink-on-load scale a
/// render chose). A page asks for several widths of one image (`srcset`); each new width
/// then costs a resample and an encode instead of a full decode. Cloning shares the tier
/// (for work moved to the worker pool).
#[derive(Clone)]
pub struct Decoded {
    cache: moka::sync::Cache<DecodedKey, Arc<DecodedSource>>,
    /// Larger decodes bypass the tier: one would evict everything else.
    max_entry: u64,
}

impl Decoded {
    pub fn new(bytes: u64) -> Self {
        Decoded {
            cache: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &DecodedKey, v: &Arc<DecodedSource>| {
                    weight(v.pixel_bytes() + k.key.len() + k.etag.len())
                })
                .build(),
            max_entry: bytes / 4,
        }
    }

    /// The decodes of one version of one original.
    pub fn of<'a>(&'a self, key: &str, etag: &str) -> DecodedOf<'a> {
        DecodedOf {
            tier: self,
            key: key.into(),
            etag: etag.into(),
            decoded: Cell::new(false),
            consulted: Cell::new(false),
        }
    }

    fn purge(&self, matches: &impl Fn(&str) -> bool) {
        let keys: Vec<_> = self
            .cache
            .iter()
            .filter(|(k, _)| matches(&k.key))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.cache.invalidate(&*k);
        }
    }

    /// Bytes held, with pending inserts and evictions settled.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// [`Decoded`] narrowed to one original version, as the pipeline sees it.
pub struct DecodedOf<'a> {
    tier: &'a Decoded,
    key: Arc<str>,
    etag: Arc<str>,
    decoded: Cell<bool>,
    consulted: Cell<bool>,
}

impl DecodedOf<'_> {
    /// Whether the render had to decode (a miss) rather than start from kept pixels.
    pub fn decoded(&self) -> bool {
        self.decoded.get()
    }

    /// Whether the render asked for a decode at all.
    pub fn consulted(&self) -> bool {
        self.consulted.get()
    }

    fn key(&self, scale: u32) -> DecodedKey {
        DecodedKey {
            key: self.key.clone(),
            etag: self.etag.clone(),
            scale,
        }
    }
}

impl DecodedSources for DecodedOf<'_> {
    fn get_or_decode(
        &self,
        scale: u32,
        estimate: u64,
        decode: &mut dyn FnMut() -> Result<DecodedSource, PipelineError>,
    ) -> Result<Arc<DecodedSource>, PipelineError> {
        self.consulted.set(true);
        let mut decode = || {
            self.decoded.set(true);
            decode().map(Arc::new)
        };
        if estimate > self.tier.max_entry {
            return decode();
        }
        let cache = &self.tier.cache;
        if let Some(hit) = cache.get(&self.key(scale)) {
            return Ok(hit);
        }
        // A finer decode serves as well: more to resample, nothing to decode.
        let mut finer = scale;
        while finer > 1 {
            finer /= 2;
            if let Some(hit) = cache.get(&self.key(finer)) {
                return Ok(hit);
            }
        }
        cache
            .try_get_with(self.key(scale), decode)
            .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone()))
    }
}

fn weight(len: usize) -> u32 {
    // Small fixed overhead per entry so millions of tiny entries still count.
    u32::try_from(len.saturating_add(256)).unwrap_or(u32::MAX)
}

impl Caches {
    pub fn new(variant_bytes: u64, source_bytes: u64, decoded_bytes: u64) -> Self {
        Caches {
            variants: moka::future::Cache::builder()
                .max_capacity(variant_bytes)
                .weigher(|_k, v: &Arc<Variant>| weight(v.body.len()))
                .build(),
            originals: moka::future::Cache::builder()
                .max_capacity(source_bytes)
                .weigher(|k: &Arc<str>, v: &Arc<Original>| weight(v.body.len() + k.len()))
                .build(),
            decoded: Decoded::new(decoded_bytes),
            stripped: moka::future::Cache::builder()
                .max_capacity(SMALL_TIER_BYTES)
                .weigher(|_k, v: &Arc<Derived<Result<Stripped, StripError>>>| {
                    let layout = match &v.value {
                        Ok(Stripped::Layout(l)) => l.footprint(),
                        _ => 0,
                    };
                    weight(layout + v.key.len())
                })
                .build(),
            facts: moka::future::Cache::builder()
                .max_capacity(SMALL_TIER_BYTES)
                .weigher(|_k, v: &Arc<Derived<Facts>>| weight(512 + v.key.len()))
                .build(),
            purges: Default::default(),
        }
    }

    /// The original from the cache, revalidated with storage after
    /// `policy.revalidate_after`; concurrent misses fetch once. A storage error while
    /// revalidating serves the cached copy; an original gone from storage is purged.
    pub async fn original(
        &self,
        storage: &dyn Storage,
        key: &str,
        policy: OriginalPolicy,
        events: &dyn OriginalEvents,
    ) -> Result<Arc<Original>, Error> {
        let purges_before = self.purges.load(Ordering::Acquire);
        let Some(cached) = self.originals.get(key).await else {
            events.miss();
            return self
                .originals
                .try_get_with(key.into(), async {
                    let started = Instant::now();
                    let obj = storage.get(key, policy.max_bytes).await;
                    events.storage(started.elapsed().as_secs_f64(), true);
                    obj.map(|o| Arc::new(self.settle(Original::new(o), purges_before)))
                        .map_err(Error::from)
                })
                .await
                .map_err(|e| (*e).clone());
        };
        if !cached.unconfirmed && cached.checked_at.elapsed() < policy.revalidate_after {
            events.hit();
            return Ok(cached);
        }
        let started = Instant::now();
        let fresh = storage
            .get_if_changed(key, &cached.meta.etag, policy.max_bytes)
            .await;
        events.storage(
            started.elapsed().as_secs_f64(),
            matches!(fresh, Ok(Some(_))),
        );
        let next = match fresh {
            Ok(None) => Arc::new(self.settle(cached.confirmed(), purges_before)),
            Ok(Some(obj)) => Arc::new(self.settle(Original::new(obj), purges_before)),
            Err(StorageError::NotFound) => {
                self.purge_key(key).await;
                return Err(Error::not_found());
            }
            Err(e) => {
                // Storage hiccup: keep serving the copy we have rather than fail.
                tracing::warn!(error = %e, "revalidating an original failed; serving the cached copy");
                return Ok(cached);
            }
        };
        self.originals.insert(key.into(), next.clone()).await;
        Ok(next)
    }

    /// A copy fetched while a purge ran may be older than the change behind the purge.
    fn settle(&self, mut fetched: Original, purges_before: u64) -> Original {
        if self.purges.load(Ordering::Acquire) != purges_before {
            fetched.unconfirmed = true;
        }
        fetched
    }

    /// Drops every cached original (not what is derived from them: that is keyed by the
    /// original's version and reached only through a confirmed original). For an instance
    /// that may have missed other instances' changes (SPEC §14).
    pub fn drop_originals(&self) {
        self.purges.fetch_add(1, Ordering::AcqRel);
        self.originals.invalidate_all();
    }

    /// Drops every cached variant, original and decode of `key`.
    pub async fn purge_key(&self, key: &str) {
        self.purge(|k| k == key).await;
    }

    /// Drops every cached variant, original and decode whose key starts with `prefix`.
    pub async fn purge_prefix(&self, prefix: &str) {
        self.purge(|k| k.starts_with(prefix)).await;
    }

    /// Removes matching entries now, not lazily (moka's `invalidate_entries_if` only hides
    /// them until housekeeping gets to them): a purge frees its memory at once, and the
    /// next request cannot find a stale copy. A scan of every entry; purges are rare.
    async fn purge(&self, matches: impl Fn(&str) -> bool) {
        self.purges.fetch_add(1, Ordering::AcqRel);
        let variants: Vec<_> = self
            .variants
            .iter()
            .filter(|(_, v)| matches(&v.key))
            .map(|(id, _)| id)
            .collect();
        for id in variants {
            self.variants.invalidate(&*id).await;
        }
        let originals: Vec<_> = self
            .originals
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in originals {
            self.originals.invalidate(&*k).await;
        }
        let stripped: Vec<_> = self
            .stripped
            .iter()
            .filter(|(_, v)| matches(&v.key))
            .map(|(id, _)| id)
            .collect();
        for id in stripped {
            self.stripped.invalidate(&*id).await;
        }
        let facts: Vec<_> = self
            .facts
            .iter()
            .filter(|(_, v)| matches(&v.key))
            .map(|(id, _)| id)
            .collect();
        for id in facts {
            self.facts.invalidate(&*id).await;
        }
        self.decoded.purge(&matches);
    }
}

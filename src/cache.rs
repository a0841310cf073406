//! In-memory tiers, weighed by bytes: rendered variants and originals. Concurrent identical
//! misses are computed once (moka's `try_get_with` coalesces them). Entries are immutable;
//! a hit is a refcount bump on `Bytes`.

use crate::error::Error;
use crate::pipeline::SourceInfo;
use crate::storage::ObjectMeta;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

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
}

pub type VariantId = [u8; 16];

pub struct Caches {
    pub variants: moka::future::Cache<VariantId, Arc<Variant>>,
    pub originals: moka::future::Cache<Arc<str>, Arc<Original>>,
}

fn weight(len: usize) -> u32 {
    // Small fixed overhead per entry so millions of tiny entries still count.
    u32::try_from(len.saturating_add(256)).unwrap_or(u32::MAX)
}

impl Caches {
    pub fn new(variant_bytes: u64, source_bytes: u64) -> Self {
        Caches {
            variants: moka::future::Cache::builder()
                .max_capacity(variant_bytes)
                .weigher(|_k, v: &Arc<Variant>| weight(v.body.len()))
                .support_invalidation_closures()
                .build(),
            originals: moka::future::Cache::builder()
                .max_capacity(source_bytes)
                .weigher(|k: &Arc<str>, v: &Arc<Original>| weight(v.body.len() + k.len()))
                .support_invalidation_closures()
                .build(),
        }
    }

    /// Drops every cached variant and original of `key`.
    pub async fn purge_key(&self, key: &str) {
        self.originals.invalidate(key).await;
        let key: Arc<str> = key.into();
        let _ = self
            .variants
            .invalidate_entries_if(move |_, v| *v.key == *key);
    }

    /// Drops every cached variant and original whose key starts with `prefix`.
    pub fn purge_prefix(&self, prefix: &str) {
        let p1: Arc<str> = prefix.into();
        let p2 = p1.clone();
        let _ = self
            .variants
            .invalidate_entries_if(move |_, v| v.key.starts_with(&*p1));
        let _ = self
            .originals
            .invalidate_entries_if(move |k, _| k.starts_with(&*p2));
    }
}

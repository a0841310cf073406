//! The shared variant store (SPEC §12, `[cache.shared]`): rendered variants kept in the
//! storage bucket under a reserved prefix, so every instance (and a restarted one) reads a
//! variant another rendered instead of rendering it again.
//!
//! An entry's key is `<prefix><original key>/<variant id hex>`. The variant id is the hash
//! of the original's key, its storage ETag and the canonical transform (the same id that
//! is the in-memory key and the response ETag), so a replaced original (new ETag) never
//! finds the old variants; they stay until the image is deleted or purged, or the bucket's
//! lifecycle rule expires them. Keeping the original key readable in the entry key makes
//! "every entry of this image" one listing.
//!
//! Writes happen off the response path: a bounded queue to one writer task; when S3 is
//! slow and the queue is full, a write is dropped (the caller counts it), never waited for.

use crate::cache::{Variant, VariantId};
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Variants waiting to be written; past this they are dropped.
const WRITE_QUEUE: usize = 256;

/// Writes running at once (S3 PUTs are latency-bound).
const WRITERS: usize = 4;

/// A variant larger than this is not kept in the shared store (nor read back from it).
const MAX_ENTRY_BYTES: u64 = 32 << 20;

/// One queued write.
pub struct PendingWrite {
    key: String,
    body: Bytes,
    content_type: &'static str,
}

/// The shared store; with `prefix = None` (backend off) every call is a no-op.
pub struct SharedVariants {
    storage: Arc<dyn Storage>,
    prefix: Option<String>,
    queue: Option<mpsc::Sender<PendingWrite>>,
}

/// What happened to an offered write, for metrics (this module knows no metric names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Stored,
    /// The queue was full.
    Dropped,
    Failed,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Stored => "stored",
            WriteOutcome::Dropped => "dropped",
            WriteOutcome::Failed => "failed",
        }
    }
}

impl SharedVariants {
    /// The store and the receiving end of its write queue (for [`run_writer`]); `prefix`
    /// `None` turns it off.
    pub fn new(
        storage: Arc<dyn Storage>,
        prefix: Option<String>,
    ) -> (Self, Option<mpsc::Receiver<PendingWrite>>) {
        let (queue, rx) = match prefix {
            Some(_) => {
                let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        (
            SharedVariants {
                storage,
                prefix,
                queue,
            },
            rx,
        )
    }

    pub fn enabled(&self) -> bool {
        self.prefix.is_some()
    }

    /// The entry key of variant `id` of the original at `key`.
    pub fn entry_key(&self, key: &str, id: &VariantId) -> Option<String> {
        let p = self.prefix.as_deref()?;
        Some(format!("{p}{key}/{}", hex::encode(id)))
    }

    /// The variant, when another instance (or ingest) stored it. Errors count as a miss
    /// (logged): the caller renders.
    pub async fn get(&self, key: &str, id: &VariantId) -> Option<(Bytes, &'static str)> {
        let entry = self.entry_key(key, id)?;
        match self.storage.get(&entry, MAX_ENTRY_BYTES).await {
            Ok(obj) => {
                let ct = crate::media::ImageType::sniff(&obj.body)?.content_type();
                Some((obj.body, ct))
            }
            Err(StorageError::NotFound) => None,
            Err(e) => {
                tracing::warn!(error = %e, "shared variant store: read failed; rendering");
                None
            }
        }
    }

    /// Whether variant `id` of `key` is stored (a HEAD; errors count as "no").
    pub async fn contains(&self, key: &str, id: &VariantId) -> bool {
        match self.entry_key(key, id) {
            Some(entry) => self.storage.head(&entry).await.is_ok(),
            None => false,
        }
    }

    /// Queues `variant` for writing; never waits. False when the queue was full and the
    /// write was dropped.
    pub fn offer(&self, id: &VariantId, variant: &Variant) -> bool {
        let (Some(key), Some(queue)) = (self.entry_key(&variant.key, id), &self.queue) else {
            return true;
        };
        if variant.body.len() as u64 > MAX_ENTRY_BYTES {
            return true;
        }
        let write = PendingWrite {
            key,
            body: variant.body.clone(),
            content_type: variant.content_type,
        };
        queue.try_send(write).is_ok()
    }

    /// Writes now (ingest's eager presets: the message is deleted only once they are
    /// stored).
    pub async fn put(&self, id: &VariantId, variant: &Variant) -> Result<(), StorageError> {
        let Some(key) = self.entry_key(&variant.key, id) else {
            return Ok(());
        };
        self.storage
            .put(&key, variant.body.clone(), variant.content_type)
            .await
            .map(|_| ())
    }

    /// Removes every entry of the original at `key` (delete, level change, purge). Entries
    /// of other originals whose key starts with `key/` are left alone: an entry of `key`
    /// is exactly one segment below it.
    pub async fn forget(&self, key: &str) {
        let Some(p) = &self.prefix else { return };
        let dir = format!("{p}{key}/");
        self.remove_listed(&dir, |rest| !rest.contains('/')).await;
    }

    /// Removes every entry of the originals whose key starts with `prefix`.
    pub async fn forget_prefix(&self, prefix: &str) {
        let Some(p) = &self.prefix else { return };
        self.remove_listed(&format!("{p}{prefix}"), |_| true).await;
    }

    async fn remove_listed(&self, under: &str, keep: impl Fn(&str) -> bool) {
        let keys = match self.storage.list(under).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "shared variant store: listing for a purge failed; the lifecycle rule expires the entries");
                return;
            }
        };
        for k in keys {
            if !k.strip_prefix(under).is_some_and(&keep) {
                continue;
            }
            if let Err(e) = self.storage.delete(&k).await {
                tracing::warn!(error = %e, "shared variant store: entry not deleted");
            }
        }
    }
}

/// Drains the write queue with up to [`WRITERS`] PUTs at once until every sender is gone;
/// `done` hears of each write's outcome.
pub async fn run_writer(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<PendingWrite>,
    done: impl Fn(WriteOutcome) + Send + Sync + 'static,
) {
    let done = Arc::new(done);
    let slots = Arc::new(tokio::sync::Semaphore::new(WRITERS));
    while let Some(w) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (storage, done) = (storage.clone(), done.clone());
        tokio::spawn(async move {
            let outcome = match storage.put(&w.key, w.body, w.content_type).await {
                Ok(_) => WriteOutcome::Stored,
                Err(e) => {
                    tracing::warn!(error = %e, "shared variant store: write failed");
                    WriteOutcome::Failed
                }
            };
            done(outcome);
            drop(permit);
        });
    }
}

//! The lifecycle of an original and its record, without HTTP: stored together, deleted
//! together, and swept when a process died half-way. Every path keeps the invariant of
//! SPEC §6: no stored original without a record, no record without its original (records
//! in state `pending` or `deleting` are invisible until the sweep settles them).
//!
//! Also the facts of an original (SPEC §10) once it is stored: from the record, or
//! computed on the worker pool for keys without a record and records from before facts
//! existed (then written into the record).

use crate::cache::{Caches, Derived, Original, version_id};
use crate::cluster::{Change, Cluster, Ticket};
use crate::error::{Error, ErrorKind};
use crate::facts::Facts;
use crate::metadata::{
    self, ImageRecord, Level, MetaError, MetadataStore, RecordState, Reservation,
};
use crate::pipeline;
use crate::shared::SharedVariants;
use crate::storage::Storage;
use crate::workers::Workers;
use bytes::Bytes;
use std::sync::Arc;

/// Records still `pending` or `deleting` after this long belong to a process that died;
/// the start-up sweep removes them with their originals.
pub const STALE_AFTER_S: i64 = 3600;

/// Reservations whose upload URL expired over this long ago are swept: an object at a
/// reserved key without a record (never registered, or recreated after its record was
/// deleted) is deleted then. The grace lets a client register an upload it finished just
/// before its URL expired.
pub const RESERVATION_GRACE_S: i64 = 3600;

/// An image that passed validation (an upload, a registration, an ingested object).
pub struct Checked {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
    /// SPEC §10, from the validation decode.
    pub facts: Facts,
}

/// The stores an original's lifecycle touches.
pub struct Library<'a> {
    pub storage: &'a dyn Storage,
    pub metadata: &'a dyn MetadataStore,
    pub caches: &'a Caches,
    /// Where a gone original is announced: this instance's caches, the others', CloudFront.
    pub cluster: &'a Cluster,
    /// Where facts are computed.
    pub workers: &'a Workers,
    /// The shared variant store: an image's entries go with its delete or move.
    pub shared: &'a SharedVariants,
    /// `limits.max_source_bytes` and `limits.max_source_pixels`, for computing facts.
    pub max_source_bytes: u64,
    pub max_source_pixels: u64,
}

impl Library<'_> {
    /// Pending record → original stored → record ready. Any failure undoes the earlier steps
    /// (and logs); a crash in between leaves a pending record that the start-up sweep removes
    /// together with its original.
    pub async fn store(&self, mut rec: ImageRecord, bytes: Bytes) -> Result<ImageRecord, Error> {
        rec.state = RecordState::Pending;
        self.metadata.insert(&rec).await?;
        if let Err(e) = self.storage.put(&rec.key, bytes, &rec.content_type).await {
            // A put that failed may still have landed (a timeout after the write): the object
            // goes too, or the pending record stays so the sweep removes both later.
            tracing::warn!(id = %rec.id, error = %e, "upload: storing the original failed; removing it and the pending record");
            match self.storage.delete(&rec.key).await {
                Ok(()) => {
                    if let Err(e2) = self.metadata.delete(&rec.id).await {
                        tracing::error!(id = %rec.id, error = %e2, "upload: pending record not removed; the sweep will");
                    }
                }
                Err(e2) => {
                    tracing::error!(id = %rec.id, error = %e2, "upload: a possibly stored original not removed; the sweep will");
                }
            }
            return Err(e.into());
        }
        let now = metadata::now_micros().max(rec.updated_at);
        let ready = self
            .metadata
            .set_state(&rec.id, RecordState::Pending, RecordState::Ready, now)
            .await;
        match ready {
            Ok(true) => {
                rec.state = RecordState::Ready;
                rec.updated_at = now;
                Ok(rec)
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "record vanished".to_string(),
                };
                tracing::warn!(id = %rec.id, error = %why, "upload: marking the record ready failed; removing the original");
                match self.storage.delete(&rec.key).await {
                    Ok(()) => {
                        if let Err(e2) = self.metadata.delete(&rec.id).await {
                            tracing::error!(id = %rec.id, error = %e2, "upload: pending record not removed; the sweep will");
                        }
                    }
                    Err(e2) => {
                        tracing::error!(id = %rec.id, error = %e2, "upload: original not removed; the sweep will retry");
                    }
                }
                Err(
                    Error::new(ErrorKind::ServiceUnavailable, "metadata database failed")
                        .with_cause(why),
                )
            }
        }
    }

    /// Record hidden (`deleting`) → original deleted → cached variants dropped on every
    /// instance → record and shares deleted. If the original cannot be deleted, the record is
    /// shown again and the call fails; if the last step fails, the hidden record is removed by
    /// the next sweep.
    pub async fn delete(&self, rec: &ImageRecord) -> Result<Ticket, Error> {
        if !self
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
        if let Err(e) = self.storage.delete(&rec.key).await {
            if let Err(e2) = self
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
        self.shared.forget(&rec.key).await;
        let ticket = self.cluster.publish(Change::Key(rec.key.clone())).await;
        if let Err(e) = self.metadata.delete(&rec.id).await {
            tracing::error!(id = %rec.id, error = %e, "original deleted but its record is left hidden; the sweep removes it");
        }
        Ok(ticket)
    }

    /// A level change (SPEC §6 PATCH `level`): the original is copied to `to_key`, the
    /// record pointed there, then the old original deleted and its cached variants dropped;
    /// the old key is 404 from then on. Both keys are first marked with spent, already
    /// expired upload reservations, so if the process dies half-way the reservation sweep
    /// deletes whichever object is left without a record (it never touches a recorded key).
    /// Shares keep pointing at the old key and stop working.
    pub async fn move_original(
        &self,
        rec: &ImageRecord,
        to_key: &str,
        level: Level,
        max_bytes: u64,
    ) -> Result<(ImageRecord, Ticket), Error> {
        let now = metadata::now_micros();
        for key in [to_key, rec.key.as_str()] {
            let marker = Reservation {
                key: key.to_string(),
                identity: None,
                created_at: now,
                expires_at: now,
                used_at: Some(now),
            };
            match self.metadata.reserve_upload(&marker).await {
                // One there already (an earlier move) marks the key just as well.
                Ok(()) | Err(MetaError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let original = self.storage.get(&rec.key, max_bytes).await?;
        self.storage
            .put(to_key, original.body, &rec.content_type)
            .await?;
        let moved = self
            .metadata
            .move_key(&rec.id, &rec.key, to_key, level, now.max(rec.updated_at))
            .await;
        match moved {
            Ok(true) => {}
            other => {
                // Deleted or moved meanwhile: the copy goes, the record stays as it is.
                if let Err(e) = self.storage.delete(to_key).await {
                    tracing::warn!(id = %rec.id, error = %e, "move: copy not removed; the reservation sweep will");
                }
                return match other {
                    Err(e) => Err(e.into()),
                    _ => Err(Error::new(
                        ErrorKind::Conflict,
                        "the image was changed or deleted meanwhile; reload it",
                    )),
                };
            }
        }
        let _ = self.metadata.delete_reservation(to_key).await;
        match self.storage.delete(&rec.key).await {
            Ok(()) => {
                let _ = self.metadata.delete_reservation(&rec.key).await;
            }
            Err(e) => {
                tracing::warn!(id = %rec.id, error = %e, "move: old original not deleted; the reservation sweep will")
            }
        }
        self.shared.forget(&rec.key).await;
        let ticket = self.cluster.publish(Change::Key(rec.key.clone())).await;
        let mut out = rec.clone();
        out.key = to_key.to_string();
        out.level = level;
        out.updated_at = now.max(rec.updated_at);
        Ok((out, ticket))
    }

    /// Start-up sweep: records left `pending` (an upload that died between database and
    /// storage) or `deleting` for over `older_than_s`: their original (if any) and the record
    /// are removed.
    pub async fn sweep_unfinished(&self, older_than_s: i64) {
        let cutoff = metadata::now_micros() - older_than_s * 1_000_000;
        let stale = match self.metadata.stale(cutoff).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metadata sweep failed");
                return;
            }
        };
        for r in stale {
            match self.storage.delete(&r.key).await {
                Ok(()) => {
                    self.cluster.publish(Change::Key(r.key.clone())).await;
                    match self.metadata.delete(&r.id).await {
                        Ok(()) => {
                            tracing::info!(id = %r.id, state = r.state.as_str(), "swept an unfinished record")
                        }
                        Err(e) => {
                            tracing::warn!(id = %r.id, error = %e, "sweep: record not deleted")
                        }
                    }
                }
                Err(e) => tracing::warn!(id = %r.id, error = %e, "sweep: original not deleted"),
            }
        }
    }

    /// A presigned upload that failed validation at `register`: the object goes and the
    /// reservation is spent, so nothing unrecorded stays in the bucket.
    pub async fn discard_reserved_upload(&self, key: &str) {
        if let Err(e) = self.storage.delete(key).await {
            tracing::warn!(error = %e, "register: could not delete a refused upload; the reservation sweep will");
            return;
        }
        if let Err(e) = self
            .metadata
            .use_reservation(key, metadata::now_micros())
            .await
        {
            tracing::warn!(error = %e, "register: could not spend a refused upload's reservation");
        }
    }

    /// Header first (format, size; more than `limits.max_source_pixels` → 422 before any
    /// pixel is decoded), then a full decode on the worker pool (corrupt → 422), which also
    /// gives the image's facts. The content type comes from the bytes, never from a client.
    pub async fn check_image(&self, bytes: Bytes) -> Result<Checked, Error> {
        use sha2::{Digest, Sha256};
        if bytes.is_empty() {
            return Err(Error::new(ErrorKind::UnsupportedMediaType, "empty body"));
        }
        let info = pipeline::probe(&bytes)?;
        let limit = self.max_source_pixels;
        pipeline::check_source_pixels(info.width, info.height, limit)?;
        let b2 = bytes.clone();
        let (_, facts) = self
            .workers
            .run(move || pipeline::inspect(&b2, limit))
            .await??;
        let (content_type, ext) = (info.format.content_type(), info.format.ext());
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(Checked {
            bytes,
            content_type,
            ext,
            width: info.width,
            height: info.height,
            sha256,
            facts,
        })
    }

    /// The facts of this version of the original at `key`: from the facts tier, else
    /// from its ready record (when the record is for bytes of this size), else computed
    /// from `original`, starting from a kept decode when there is one. Computed facts are
    /// written into a record that lacks them. Concurrent misses compute once.
    pub async fn facts(
        &self,
        key: &str,
        original: &Arc<Original>,
    ) -> Result<Arc<Derived<Facts>>, Error> {
        let id = version_id("facts-v1", key, &original.meta.etag);
        if let Some(hit) = self.caches.facts.get(&id).await {
            return Ok(hit);
        }
        self.caches
            .facts
            .try_get_with(id, async {
                let rec = match self.metadata.get_by_key(key).await {
                    Ok(r) => r.filter(|r| r.state == RecordState::Ready),
                    Err(e) => {
                        tracing::warn!(error = %e, "facts: record lookup failed; computing them");
                        None
                    }
                };
                // A record of other bytes (the object was replaced behind the API's back)
                // describes something else.
                let same_bytes = |r: &ImageRecord| r.bytes == original.body.len() as i64;
                if let Some(f) = rec
                    .as_ref()
                    .filter(|r| same_bytes(r))
                    .and_then(|r| r.facts.clone())
                {
                    return Ok(Arc::new(Derived {
                        value: f,
                        key: key.into(),
                    }));
                }
                let facts = self.compute_facts(key, original).await?;
                if let Some(r) = rec.filter(|r| same_bytes(r)) {
                    self.store_facts(&r, &facts).await;
                }
                Ok(Arc::new(Derived {
                    value: facts,
                    key: key.into(),
                }))
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone())
    }

    /// The facts of a record that has none (stored before facts existed): its original is
    /// read and the facts written into the record. `None` (logged) when that fails; the
    /// record is shown without facts then.
    pub async fn backfill_facts(&self, rec: &ImageRecord) -> Option<Facts> {
        let obj = match self.storage.get(&rec.key, self.max_source_bytes).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(id = %rec.id, error = %e, "facts: original not read");
                return None;
            }
        };
        let original = Arc::new(Original::from(obj));
        let facts = match self.compute_facts(&rec.key, &original).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(id = %rec.id, error = %e, "facts: not computed");
                return None;
            }
        };
        self.store_facts(rec, &facts).await;
        Some(facts)
    }

    async fn compute_facts(&self, key: &str, original: &Arc<Original>) -> Result<Facts, Error> {
        let body = original.body.clone();
        let decoded = self.caches.decoded.clone();
        let (key, etag) = (key.to_owned(), original.meta.etag.clone());
        let max_pixels = self.max_source_pixels;
        let facts = self
            .workers
            .run(move || {
                let kept = decoded.of(&key, &etag);
                pipeline::facts_with(&body, max_pixels, Some(&kept))
            })
            .await??;
        Ok(facts)
    }

    async fn store_facts(&self, rec: &ImageRecord, facts: &Facts) {
        if let Err(e) = self.metadata.set_facts(&rec.id, facts).await {
            tracing::warn!(id = %rec.id, error = %e, "facts: not written into the record; computed again next time");
        }
    }

    /// Sweeps expired upload reservations (see [`RESERVATION_GRACE_S`]) as of `now` (µs).
    pub async fn sweep_reservations(&self, now: i64) {
        let before = now - RESERVATION_GRACE_S * 1_000_000;
        let expired = match self.metadata.expired_reservations(before).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reservation sweep failed");
                return;
            }
        };
        for r in expired {
            match self.metadata.key_recorded(&r.key).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = self.storage.delete(&r.key).await {
                        tracing::warn!(error = %e, "reservation sweep: object not deleted");
                        continue;
                    }
                    self.cluster.publish(Change::Key(r.key.clone())).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reservation sweep failed");
                    return;
                }
            }
            if let Err(e) = self.metadata.delete_reservation(&r.key).await {
                tracing::warn!(error = %e, "reservation sweep: reservation not deleted");
            }
        }
    }
}

//! Ingest (SPEC §12): a long-polling SQS consumer of the bucket's `s3:ObjectCreated:*`
//! notifications. For each created object under the access prefixes: validate it as an
//! upload, record it (owner and level from the key, facts), label and moderate it with
//! Rekognition when configured, render the eager presets into the shared variant store;
//! an invalid object is moved under `rejected/` with a `rejected` record saying why.
//!
//! Idempotent, so at-least-once delivery is safe: a key that has a record is not recorded
//! again (the insert's key conflict settles races with `register` and other workers); the
//! remaining steps (a pending review, missing presets) are redone only where missing. A
//! message is deleted only once its work is stored; while an object is worked on its
//! visibility timeout is extended; a message that keeps failing is left to the queue's
//! redrive policy (dead-letter queue). Image work runs on the bounded worker pool.

mod event;
pub mod review;

pub use event::{Created, Message, parse};

use crate::auth::access;
use crate::cache::Original;
use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind};
use crate::metadata::{self, ImageRecord, Level, MetaError, Moderation, RecordState};
use crate::params;
use crate::state::AppState;
use crate::storage::{StorageError, key};
use crate::variants;
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Refused objects are moved under this prefix (outside the access prefixes).
pub const REJECTED_PREFIX: &str = "rejected/";

/// Pause after a failed ReceiveMessage before the next one.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(2);

/// Visibility timeout assumed when the queue's cannot be read.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);

/// `Accept` headers an `fm=auto` preset is pre-rendered for: AVIF-capable browsers,
/// WebP-only ones, and everything else. A preset with a fixed format is one variant.
const EAGER_ACCEPTS: [Option<&str>; 3] = [
    Some("image/avif,image/webp,*/*"),
    Some("image/webp,*/*"),
    None,
];

/// The AWS clients of ingest.
#[derive(Clone)]
struct Clients {
    sqs: aws_sdk_sqs::Client,
    /// When labels or moderation are on.
    rekognition: Option<aws_sdk_rekognition::Client>,
    queue_url: String,
    /// The queue's visibility timeout: extended by this much, every half of it.
    visibility: Duration,
}

impl Clients {
    /// Region and static credentials from `[storage.s3]` (the bucket's account), endpoint
    /// from `ingest.endpoint_url`.
    async fn new(state: &AppState) -> Result<Clients, String> {
        let cfg = &state.config;
        let queue_url = cfg
            .ingest
            .queue_url
            .clone()
            .ok_or("ingest.queue_url: not set")?;
        let StorageConfig::S3(s3) = &cfg.storage else {
            return Err("ingest needs storage.backend = \"s3\"".into());
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(s3.region.clone()));
        if let Some(c) = &s3.credentials {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                None,
                None,
                "imgorigin-config",
            ));
        }
        if let Some(url) = &cfg.ingest.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let shared = loader.load().await;
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let rekognition = cfg
            .ingest
            .reviews()
            .then(|| aws_sdk_rekognition::Client::new(&shared));
        let visibility = match sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await
        {
            Ok(out) => out
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout))
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_VISIBILITY),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "ingest: queue attributes not read; assuming a 30 s visibility timeout");
                DEFAULT_VISIBILITY
            }
        };
        Ok(Clients {
            sqs,
            rekognition,
            queue_url,
            visibility: visibility.max(Duration::from_secs(2)),
        })
    }
}

/// The consumer loop: at most `ingest.concurrency` messages in work at once. Holds the app
/// weakly between messages, so it ends with the app; aborting it aborts the messages in
/// work too (they are not deleted, so they come back after their visibility timeout).
pub async fn run(state: Arc<AppState>) {
    let clients = match Clients::new(&state).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "ingest not started");
            return;
        }
    };
    let concurrency = state.config.ingest.concurrency;
    let wait_s = i32::try_from(state.config.ingest.wait_s).unwrap_or(20);
    tracing::info!(queue = %clients.queue_url, concurrency, "ingest consuming");
    let weak: Weak<AppState> = Arc::downgrade(&state);
    drop(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut in_work = tokio::task::JoinSet::new();
    loop {
        while in_work.try_join_next().is_some() {}
        let Ok(first) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut free = vec![first];
        // SQS hands out at most 10 messages per receive.
        while free.len() < 10 {
            match slots.clone().try_acquire_owned() {
                Ok(p) => free.push(p),
                Err(_) => break,
            }
        }
        if weak.strong_count() == 0 {
            return;
        }
        let received = clients
            .sqs
            .receive_message()
            .queue_url(&clients.queue_url)
            .max_number_of_messages(free.len() as i32)
            .wait_time_seconds(wait_s)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "ingest: ReceiveMessage failed");
                tokio::time::sleep(RECEIVE_BACKOFF).await;
                continue;
            }
        };
        let Some(state) = weak.upgrade() else { return };
        for m in messages {
            let Some(permit) = free.pop() else { break };
            let (state, clients) = (state.clone(), clients.clone());
            in_work.spawn(async move {
                handle_message(&state, &clients, m).await;
                drop(permit);
            });
        }
    }
}

/// One message: worked on under a visibility heartbeat; deleted only when done.
async fn handle_message(state: &Arc<AppState>, clients: &Clients, m: aws_sdk_sqs::types::Message) {
    let (Some(receipt), Some(body)) = (m.receipt_handle(), m.body()) else {
        return;
    };
    let heartbeat = {
        let (sqs, url, receipt) = (
            clients.sqs.clone(),
            clients.queue_url.clone(),
            receipt.to_owned(),
        );
        let every = clients.visibility / 2;
        let secs = i32::try_from(clients.visibility.as_secs()).unwrap_or(i32::MAX);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = sqs
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(&receipt)
                    .visibility_timeout(secs)
                    .send()
                    .await
                {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "ingest: visibility not extended");
                }
            }
        })
    };
    // Aborting the message's task drops this guard, which stops the heartbeat too.
    let _stop = AbortOnDrop(heartbeat);
    match process_body(state, clients, body).await {
        Ok(()) => {
            if let Err(e) = clients
                .sqs
                .delete_message()
                .queue_url(&clients.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
            {
                // Delivered again later; the work is idempotent.
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "ingest: message not deleted");
            }
        }
        Err(e) => {
            state.metrics.ingest("failed");
            tracing::warn!(error = %e, message_id = m.message_id().unwrap_or(""), "ingest: message left for redelivery (the redrive policy moves it to the dead-letter queue after its last try)");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything a message asks for; `Err` leaves it for redelivery.
async fn process_body(
    state: &Arc<AppState>,
    clients_or_none: &Clients,
    body: &str,
) -> Result<(), String> {
    match event::parse(body)? {
        Message::Nothing => Ok(()),
        Message::Created(objects) => {
            for o in objects {
                process_object(state, clients_or_none.rekognition.as_ref(), &o)
                    .await
                    .map_err(|e| format!("{}: {e}", o.key))?;
            }
            Ok(())
        }
    }
}

/// The key inside our storage of an object a notification names, when ingest handles
/// it: our bucket, under our storage prefix, under an access prefix, not under the
/// shared variant prefix or `rejected/`.
fn our_key(state: &AppState, o: &Created) -> Option<String> {
    let StorageConfig::S3(s3) = &state.config.storage else {
        return None;
    };
    if o.bucket != s3.bucket {
        return None;
    }
    let k = o.key.strip_prefix(s3.prefix.as_str())?;
    if key::validate(k).is_err()
        || k.starts_with(REJECTED_PREFIX)
        || k.starts_with(state.config.cache.shared.prefix.as_str())
    {
        return None;
    }
    match access::level_of(k, &state.config.access).0 {
        Level::Other => None,
        _ => Some(k.to_owned()),
    }
}

async fn process_object(
    state: &Arc<AppState>,
    rekognition: Option<&aws_sdk_rekognition::Client>,
    o: &Created,
) -> Result<(), Error> {
    let Some(key) = our_key(state, o) else {
        tracing::debug!(key = %o.key, "ingest: not ours; ignored");
        state.metrics.ingest("ignored");
        return Ok(());
    };
    if let Some(rec) = state.metadata.get_by_key(&key).await? {
        return settle_existing(state, rekognition, rec).await;
    }
    let obj = match state
        .storage
        .get(&key, state.config.limits.max_upload_bytes)
        .await
    {
        Ok(o) => o,
        // Deleted (or moved by an earlier try) since the event: nothing to do.
        Err(StorageError::NotFound) => {
            state.metrics.ingest("skipped");
            return Ok(());
        }
        Err(e @ StorageError::TooLarge { .. }) => {
            let size = match e {
                StorageError::TooLarge { size, .. } => size,
                _ => 0,
            };
            let reason = format!(
                "the object is larger than limits.max_upload_bytes ({} bytes)",
                state.config.limits.max_upload_bytes
            );
            return reject(state, &key, &reason, None, size).await;
        }
        Err(e) => return Err(e.into()),
    };
    let reservation = state.metadata.get_reservation(&key).await?;
    if reservation.as_ref().is_some_and(|r| r.used_at.is_some()) {
        // A spent reservation and no record: the API is working on this key (a level
        // change copies the original there before its record follows). Later.
        return Err(Error::new(
            ErrorKind::ServiceUnavailable,
            "the API is moving an original to this key; retried later",
        ));
    }
    let checked = match state.library().check_image(obj.body.clone()).await {
        Ok(c) => c,
        Err(e) if refused(&e) => {
            let size = obj.body.len() as u64;
            return reject(state, &key, &e.detail, Some(&obj.body), size).await;
        }
        Err(e) => return Err(e),
    };
    let (level, identity) = access::level_of(&key, &state.config.access);
    let owner = match level {
        Level::Protected | Level::Private => match identity {
            Some(id) => Some(id.to_owned()),
            None => {
                let reason = "a protected or private key needs an identity segment: <prefix><identity>/<name>";
                return reject(state, &key, reason, Some(&obj.body), obj.body.len() as u64).await;
            }
        },
        // A public object has no owner (only admins manage it) unless the API reserved
        // its key for the uploader of a presigned PUT.
        _ => reservation.and_then(|r| r.identity),
    };
    let original = Arc::new(Original::from(obj));
    let (tags, moderation) = match rekognition {
        Some(client) => review(state, client, &key, &original).await?,
        None => (Vec::new(), None),
    };
    let now = metadata::now_micros();
    let rec = ImageRecord {
        id: metadata::new_id(),
        key: key.clone(),
        level,
        owner,
        filename: None,
        content_type: checked.content_type.to_string(),
        bytes: checked.bytes.len() as i64,
        width: i64::from(checked.width),
        height: i64::from(checked.height),
        sha256: checked.sha256,
        tags,
        description: None,
        state: RecordState::Ready,
        created_at: now,
        updated_at: now,
        facts: Some(checked.facts),
        moderation: moderation.or(state.config.ingest.initial_moderation()),
        rejected_reason: None,
    };
    match state.metadata.insert(&rec).await {
        Ok(()) => {
            // A presigned upload's reservation is spent: `register` answers 409 now.
            let _ = state.metadata.use_reservation(&key, now).await;
            state.metrics.ingest("recorded");
            tracing::info!(id = %rec.id, key = %key, "ingest: recorded");
        }
        // Recorded meanwhile (register, another worker): that record stands.
        Err(MetaError::Conflict(_)) => state.metrics.ingest("skipped"),
        Err(e) => return Err(e.into()),
    }
    eager_presets(state, &key, &original).await
}

/// 4xx from validation: the object itself is at fault; anything else is ours (retried).
fn refused(e: &Error) -> bool {
    matches!(
        e.kind,
        ErrorKind::UnsupportedMediaType
            | ErrorKind::Unprocessable
            | ErrorKind::PayloadTooLarge
            | ErrorKind::BadRequest
    )
}

/// A key that has a record: only what is missing is done. A record in review (stored by
/// the API while moderation is on) is labelled and moderated; a ready record gets its
/// eager presets.
async fn settle_existing(
    state: &Arc<AppState>,
    rekognition: Option<&aws_sdk_rekognition::Client>,
    rec: ImageRecord,
) -> Result<(), Error> {
    match rec.state {
        RecordState::Ready => {}
        // An upload still storing its original: its record is ready in a moment (or gone,
        // with its object, when the upload fails).
        RecordState::Pending => {
            return Err(Error::new(
                ErrorKind::ServiceUnavailable,
                "the record of this key is still pending; retried later",
            ));
        }
        RecordState::Deleting | RecordState::Rejected => {
            state.metrics.ingest("skipped");
            return Ok(());
        }
    }
    let pending = rec.moderation == Some(Moderation::Pending);
    let wants_presets = !state.config.ingest.eager_presets.is_empty();
    let to_review = pending && rekognition.is_some();
    if !(to_review || wants_presets) {
        state.metrics.ingest("skipped");
        return Ok(());
    }
    let obj = match state
        .storage
        .get(&rec.key, state.config.limits.max_source_bytes)
        .await
    {
        Ok(o) => o,
        Err(StorageError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let original = Arc::new(Original::from(obj));
    if pending && let Some(client) = rekognition {
        let (tags, moderation) = review(state, client, &rec.key, &original).await?;
        let moderation = moderation.or(rec.moderation);
        state
            .metadata
            .set_review(&rec.id, moderation, &tags, metadata::now_micros())
            .await?;
        state.metrics.ingest("reviewed");
    } else {
        state.metrics.ingest("skipped");
    }
    eager_presets(state, &rec.key, &original).await
}

/// Labels and moderation of one original, from a JPEG thumbnail rendered on the pool.
async fn review(
    state: &Arc<AppState>,
    client: &aws_sdk_rekognition::Client,
    key: &str,
    original: &Arc<Original>,
) -> Result<(Vec<String>, Option<Moderation>), Error> {
    let pending = params::parse(Some(review::REVIEW_QUERY), &state.parse)?
        .transform
        .ok_or_else(|| Error::internal("review thumbnail query has no transform"))?;
    let (transform, _) = variants::output(state, original, &pending, None)?;
    let thumb =
        variants::render_variant(state.clone(), original.clone(), transform, key.to_owned())
            .await?;
    let cfg = &state.config.ingest;
    let unavailable =
        |e: String| Error::new(ErrorKind::ServiceUnavailable, "Rekognition failed").with_cause(e);
    let tags = if cfg.labels {
        review::labels(client, &thumb.body, cfg.min_confidence)
            .await
            .map_err(unavailable)?
    } else {
        Vec::new()
    };
    let moderation = if cfg.moderation {
        Some(
            review::moderation(client, &thumb.body, cfg.min_confidence)
                .await
                .map_err(unavailable)?,
        )
    } else {
        None
    };
    Ok((tags, moderation))
}

/// Renders `ingest.eager_presets` into the shared variant store (each `fm=auto` preset
/// once per negotiated format), skipping those stored already.
async fn eager_presets(
    state: &Arc<AppState>,
    key: &str,
    original: &Arc<Original>,
) -> Result<(), Error> {
    if !state.shared.enabled() || original.probe.is_err() {
        return Ok(());
    }
    let mut done = Vec::new();
    for name in &state.config.ingest.eager_presets {
        let query = format!("p={name}");
        let Some(pending) = params::parse(Some(&query), &state.parse)?.transform else {
            continue;
        };
        for accept in EAGER_ACCEPTS {
            let (transform, _) = variants::output(state, original, &pending, accept)?;
            let id = params::variant_id(key, &original.meta.etag, &transform);
            if done.contains(&id) {
                continue;
            }
            done.push(id);
            variants::prerender(state, key, original, transform).await?;
        }
    }
    Ok(())
}

/// Moves a refused object under `rejected/` with a record saying why. The record comes
/// first (its key conflict makes a retry harmless), then the copy, then the delete: a
/// crash anywhere leaves a state the next delivery finishes.
async fn reject(
    state: &Arc<AppState>,
    key: &str,
    reason: &str,
    body: Option<&Bytes>,
    size: u64,
) -> Result<(), Error> {
    use sha2::Digest as _;
    let to = format!("{REJECTED_PREFIX}{key}");
    let (level, identity) = access::level_of(key, &state.config.access);
    let now = metadata::now_micros();
    let rec = ImageRecord {
        id: metadata::new_id(),
        key: to.clone(),
        level,
        owner: match level {
            Level::Protected | Level::Private => identity.map(str::to_owned),
            _ => None,
        },
        filename: None,
        content_type: body
            .and_then(|b| crate::media::ImageType::sniff(b))
            .map_or(
                "application/octet-stream",
                crate::media::ImageType::content_type,
            )
            .to_string(),
        bytes: i64::try_from(size).unwrap_or(i64::MAX),
        width: 0,
        height: 0,
        sha256: body
            .map(|b| hex::encode(sha2::Sha256::digest(b)))
            .unwrap_or_default(),
        tags: Vec::new(),
        description: None,
        state: RecordState::Rejected,
        created_at: now,
        updated_at: now,
        facts: None,
        moderation: None,
        rejected_reason: Some(reason.to_owned()),
    };
    match state.metadata.insert(&rec).await {
        Ok(()) | Err(MetaError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.storage.copy(key, &to).await?;
    state.storage.delete(key).await?;
    let _ = state.metadata.use_reservation(key, now).await;
    state.caches.purge_key(key).await;
    state.metrics.ingest("rejected");
    tracing::info!(key = %key, reason = %reason, "ingest: rejected");
    Ok(())
}

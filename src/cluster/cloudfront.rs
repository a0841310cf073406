//! CloudFront invalidations (SPEC §14): the paths of published changes are collected for a
//! second and sent as one `CreateInvalidation`, at most `cloudfront.invalidations_per_min`
//! calls a minute (evenly spaced), at most 15 paths a call (CloudFront allows 15 wildcard
//! paths in progress per distribution; every path here is a wildcard). A failed call is
//! retried with backoff; the change it belongs to has happened regardless.

use crate::telemetry::{InvalidationOutcome, Metrics};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a batch collects paths.
const BATCH_WINDOW: Duration = Duration::from_secs(1);
const MAX_PATHS_PER_CALL: usize = 15;
/// Paths waiting to be sent; more are dropped (logged and counted).
const QUEUE: usize = 10_000;
/// Attempts per call before giving up (backoff 1 s doubling to 60 s: about 10 minutes).
const ATTEMPTS: u32 = 14;

/// `cloudfront.distribution_id` and what goes with it.
#[derive(Clone, Debug)]
pub struct InvalidationConfig {
    pub distribution_id: String,
    /// `cloudfront.api_endpoint_url`, for compatible test servers.
    pub endpoint_url: Option<String>,
    pub per_min: u32,
    /// The SDK's region (CloudFront is global; `storage.s3.region` or us-east-1).
    pub region: String,
}

/// `/<key>*`: every query variant of the key (or everything under a prefix). Characters
/// outside RFC 3986's unreserved set and `/` are percent-encoded, as CloudFront asks.
pub fn path_for(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!("/{}*", percent_encoding::utf8_percent_encode(key, KEEP))
}

struct Request {
    path: String,
    done: oneshot::Sender<String>,
}

pub(super) struct Invalidator {
    tx: mpsc::Sender<Request>,
    /// Taken by the task [`Invalidator::start`] spawns.
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
    client: aws_sdk_cloudfront::Client,
    distribution_id: String,
    spacing: Duration,
    metrics: Metrics,
}

impl Invalidator {
    pub(super) async fn new(c: &InvalidationConfig, metrics: Metrics) -> Invalidator {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(c.region.clone()))
            .load()
            .await;
        // One attempt per call: retries are ours (backoff up to a minute, each failure
        // counted), not the SDK's three quick ones.
        let mut conf = aws_sdk_cloudfront::config::Builder::from(&sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
        if let Some(url) = &c.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        Invalidator {
            tx,
            rx: Mutex::new(Some(rx)),
            client: aws_sdk_cloudfront::Client::from_conf(conf.build()),
            distribution_id: c.distribution_id.clone(),
            spacing: Duration::from_secs(60) / c.per_min.max(1),
            metrics,
        }
    }

    pub(super) fn start(&self) {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let sender = Sender {
            client: self.client.clone(),
            distribution_id: self.distribution_id.clone(),
            spacing: self.spacing,
            metrics: self.metrics.clone(),
        };
        tokio::spawn(sender.run(rx));
    }

    /// Queues `path`; the receiver gets the id of the invalidation that covers it.
    pub(super) fn submit(&self, path: String) -> oneshot::Receiver<String> {
        let (done, rx) = oneshot::channel();
        if self.tx.try_send(Request { path, done }).is_err() {
            self.metrics.invalidation(InvalidationOutcome::GaveUp, 0);
            tracing::error!("cloudfront: invalidation queue full; a path was not invalidated");
        }
        rx
    }
}

struct Sender {
    client: aws_sdk_cloudfront::Client,
    distribution_id: String,
    spacing: Duration,
    metrics: Metrics,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let mut next_call = tokio::time::Instant::now();
        while let Some(first) = rx.recv().await {
            // Path → everyone waiting for it.
            let mut batch: BTreeMap<String, Vec<oneshot::Sender<String>>> = BTreeMap::new();
            batch.entry(first.path).or_default().push(first.done);
            let until = tokio::time::Instant::now() + BATCH_WINDOW;
            while let Ok(Some(r)) = tokio::time::timeout_at(until, rx.recv()).await {
                batch.entry(r.path).or_default().push(r.done);
            }
            let mut entries: Vec<_> = batch.into_iter().collect();
            while !entries.is_empty() {
                let rest = entries.split_off(entries.len().min(MAX_PATHS_PER_CALL));
                let call = std::mem::replace(&mut entries, rest);
                let paths: Vec<String> = call.iter().map(|(p, _)| p.clone()).collect();
                let Some(id) = self.create(&paths, &mut next_call).await else {
                    continue;
                };
                for (_, waiters) in call {
                    for w in waiters {
                        let _ = w.send(id.clone());
                    }
                }
            }
        }
    }

    /// One invalidation, retried with backoff; `None` when every attempt failed.
    async fn create(
        &self,
        paths: &[String],
        next_call: &mut tokio::time::Instant,
    ) -> Option<String> {
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            tokio::time::sleep_until(*next_call).await;
            *next_call = tokio::time::Instant::now() + self.spacing;
            match self.call(paths).await {
                Ok(id) => {
                    self.metrics
                        .invalidation(InvalidationOutcome::Created, paths.len());
                    tracing::info!(id, paths = paths.len(), "cloudfront: invalidation created");
                    return Some(id);
                }
                Err(e) => {
                    self.metrics.invalidation(InvalidationOutcome::Failed, 0);
                    tracing::warn!(error = %e, attempt, "cloudfront: creating an invalidation failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        self.metrics.invalidation(InvalidationOutcome::GaveUp, 0);
        tracing::error!(?paths, "cloudfront: invalidation abandoned after retries");
        None
    }

    async fn call(&self, paths: &[String]) -> Result<String, String> {
        let items = Paths::builder()
            .quantity(paths.len() as i32)
            .set_items(Some(paths.to_vec()))
            .build()
            .map_err(|e| e.to_string())?;
        let batch = InvalidationBatch::builder()
            .paths(items)
            .caller_reference(format!("imgorigin-{}", crate::metadata::new_id()))
            .build()
            .map_err(|e| e.to_string())?;
        let out = self
            .client
            .create_invalidation()
            .distribution_id(&self.distribution_id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| aws_sdk_cloudfront::error::DisplayErrorContext(e).to_string())?;
        out.invalidation()
            .map(|i| i.id().to_string())
            .ok_or_else(|| "CreateInvalidation answered without an invalidation".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::path_for;

    #[test]
    fn paths_cover_every_variant_and_encode_unsafe_characters() {
        assert_eq!(path_for("public/a.jpg"), "/public/a.jpg*");
        assert_eq!(path_for("public/"), "/public/*");
        assert_eq!(path_for(""), "/*");
        assert_eq!(
            path_for("public/ä b*?.png"),
            "/public/%C3%A4%20b%2A%3F.png*"
        );
    }
}

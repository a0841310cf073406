//! Changes that must reach every instance and CloudFront (SPEC §14). A delete, a level
//! change, a share revocation or a purge is applied to this instance's caches at once,
//! published to the other instances (PostgreSQL `LISTEN/NOTIFY`, see `pg`; on DynamoDB a
//! polled change log in the metadata table, see `dynamodb`), and turned into
//! a CloudFront invalidation when a distribution is configured (see `cloudfront`).
//!
//! What the other instances drop: every cached tier of the key (originals, variants,
//! decodes, stripped layouts, facts). When the listener loses its connection it may have
//! missed changes, so until it is back the originals tier is bypassed (every request
//! revalidates its original with storage) and on reconnecting that tier is dropped (on
//! DynamoDB only after an absence longer than the change log keeps its items). The
//! other tiers need no drop: their entries are keyed by the original's version (ETag) and
//! are only reached through an original confirmed by storage, so a stale one is never found.

pub mod cloudfront;
mod dynamodb;
mod pg;

use crate::cache::Caches;
use crate::telemetry::{ClusterEvent, Metrics};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use cloudfront::InvalidationConfig;

/// One change every instance applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Change {
    /// The original at this key is gone (deleted, or moved away by a level change).
    Key(String),
    /// An admin purge of every key under this prefix (`""`: every key).
    Prefix(String),
    /// A share was revoked. Shares are read from the metadata store on every request, so
    /// there is nothing cached to drop; it is published so every instance counts it.
    ShareRevoked(String),
}

/// A change as sent to the other instances: who sent it (an instance ignores its own).
#[derive(Serialize, Deserialize)]
struct Message {
    from: String,
    change: Change,
}

impl Message {
    fn encode(from: &str, change: &Change) -> Option<String> {
        serde_json::to_string(&Message {
            from: from.to_string(),
            change: change.clone(),
        })
        .inspect_err(|e| tracing::error!(error = %e, "cluster: cannot encode a change"))
        .ok()
    }
}

/// Tries to send one change before giving up (the backoff doubles from 100 ms to 10 s).
const PUBLISH_ATTEMPTS: u32 = 8;
/// One try's limit: a silently dropped connection must not hold the retries up.
const PUBLISH_TRY: Duration = Duration::from_secs(5);

/// Sends a change in the background with `send`, retried with backoff and counted.
fn publish_in_background<F, Fut>(metrics: Metrics, send: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=PUBLISH_ATTEMPTS {
            let outcome = match tokio::time::timeout(PUBLISH_TRY, send()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {PUBLISH_TRY:?}")),
            };
            match outcome {
                Ok(()) => {
                    metrics.cluster_event(ClusterEvent::Published);
                    return;
                }
                Err(e) => {
                    metrics.cluster_event(ClusterEvent::PublishFailed);
                    tracing::warn!(error = %e, attempt, "cluster: publishing a change failed");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        // The other instances use the same database: if it was unreachable this long they
        // were degraded too, and revalidated their originals meanwhile.
        tracing::error!(
            "cluster: a change was not published; other instances revalidate it at their source TTL"
        );
    });
}

impl Change {
    async fn apply(&self, caches: &Caches) {
        match self {
            Change::Key(key) => caches.purge_key(key).await,
            Change::Prefix(prefix) => caches.purge_prefix(prefix).await,
            Change::ShareRevoked(_) => {}
        }
    }

    /// The CloudFront path that covers every variant of what changed: `/<key>*`.
    fn invalidation_path(&self) -> Option<String> {
        match self {
            Change::Key(k) | Change::Prefix(k) => Some(cloudfront::path_for(k)),
            Change::ShareRevoked(_) => None,
        }
    }
}

/// Where the other instances are.
#[derive(Clone, Debug)]
pub enum Peers {
    /// None that could share this instance's data (SQLite: one instance per database).
    Alone,
    /// Every instance on this PostgreSQL database.
    Postgres(String),
    /// Every instance on this DynamoDB table (`dynamodb://` URL).
    Dynamodb(String),
}

/// How changes reach the other instances.
enum Fanout {
    // Boxed: the connect options are large, and there is one of these per process.
    Postgres(Box<pg::Peers>),
    Dynamodb(dynamodb::Peers),
}

#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub peers: Peers,
    /// `cluster.propagation_s`.
    pub propagation: Duration,
    pub invalidations: Option<InvalidationConfig>,
}

/// This instance's end of the change fan-out. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// Random per process: an instance ignores its own notifications.
    instance: String,
    caches: Caches,
    metrics: Metrics,
    propagation: Duration,
    peers: Option<Fanout>,
    invalidator: Option<cloudfront::Invalidator>,
    /// While the listener is down this instance may miss changes (see the module docs).
    degraded: AtomicBool,
}

/// What a published change started: the CloudFront invalidation it joined, if any.
pub struct Ticket(Option<tokio::sync::oneshot::Receiver<String>>);

impl Ticket {
    /// The invalidation id once CloudFront created it, waiting at most `wait` (a batch
    /// is sent within a second; a failed call is retried later without this caller).
    pub async fn invalidation_id(self, wait: Duration) -> Option<String> {
        let rx = self.0?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }
}

impl Cluster {
    /// Connects nothing yet (see [`Cluster::start`]); fails only on a malformed URL.
    pub async fn new(
        settings: ClusterSettings,
        caches: Caches,
        metrics: Metrics,
    ) -> Result<Cluster, String> {
        let peers = match &settings.peers {
            Peers::Alone => None,
            Peers::Postgres(url) => Some(Fanout::Postgres(Box::new(pg::Peers::new(url)?))),
            Peers::Dynamodb(url) => {
                let (client, table) = crate::metadata::dynamodb::DynamoStore::client_for(url)
                    .await
                    .map_err(|e| format!("metadata.url: {e}"))?;
                Some(Fanout::Dynamodb(dynamodb::Peers::new(client, table)))
            }
        };
        if peers.is_some() {
            metrics.cluster_degraded.set(1);
        }
        let invalidator = match &settings.invalidations {
            Some(c) => Some(cloudfront::Invalidator::new(c, metrics.clone()).await),
            None => None,
        };
        Ok(Cluster {
            inner: Arc::new(Inner {
                instance: crate::metadata::new_id(),
                caches,
                metrics,
                propagation: settings.propagation,
                // Until the listener has connected, this instance cannot know of changes.
                degraded: AtomicBool::new(peers.is_some()),
                peers,
                invalidator,
            }),
        })
    }

    /// Starts the listener for other instances' changes and the invalidation sender; they
    /// end when the last clone of this cluster is dropped.
    pub fn start(&self) {
        match &self.inner.peers {
            Some(Fanout::Postgres(_)) => {
                tokio::spawn(pg::listen(Arc::downgrade(&self.inner)));
            }
            Some(Fanout::Dynamodb(_)) => {
                tokio::spawn(dynamodb::poll(Arc::downgrade(&self.inner)));
            }
            None => {}
        }
        if let Some(inv) = &self.inner.invalidator {
            inv.start();
        }
    }

    /// Applies `change` here, sends it to the other instances and queues its CloudFront
    /// invalidation. Never fails: a change that cannot be sent is retried and logged; the
    /// caller's operation has happened either way.
    pub async fn publish(&self, change: Change) -> Ticket {
        let inner = &self.inner;
        change.apply(&inner.caches).await;
        match &inner.peers {
            Some(Fanout::Postgres(p)) => p.notify(&inner.instance, &change, inner.metrics.clone()),
            Some(Fanout::Dynamodb(p)) => p.notify(&inner.instance, &change, inner.metrics.clone()),
            None => {}
        }
        let ticket = match (&inner.invalidator, change.invalidation_path()) {
            (Some(inv), Some(path)) => Some(inv.submit(path)),
            _ => None,
        };
        Ticket(ticket)
    }

    /// This process's random id (in its notifications and its listener's
    /// `application_name`, `imgorigin-listener-<id>`).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// True while changes of other instances may be missed: callers must then confirm
    /// every cached original with storage before serving it.
    pub fn degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Acquire)
    }
}

impl Inner {
    fn postgres(&self) -> Option<&pg::Peers> {
        match &self.peers {
            Some(Fanout::Postgres(p)) => Some(p),
            _ => None,
        }
    }

    fn dynamodb(&self) -> Option<&dynamodb::Peers> {
        match &self.peers {
            Some(Fanout::Dynamodb(p)) => Some(p),
            _ => None,
        }
    }

    fn set_degraded(&self, on: bool) {
        self.degraded.store(on, Ordering::Release);
        self.metrics.cluster_degraded.set(i64::from(on));
    }

    /// A change from another instance.
    async fn received(&self, change: &Change) {
        self.metrics.cluster_event(ClusterEvent::Received);
        change.apply(&self.caches).await;
    }
}

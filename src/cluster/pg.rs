//! Fan-out over PostgreSQL `LISTEN/NOTIFY`: every instance of one database listens on one
//! channel; a change is a JSON notification `{from, change}`. Notifications are not stored,
//! so a listener that was disconnected may have missed some: it is then "degraded" (see
//! the module above) until it listens again.
//!
//! A dead connection is not always reported (a silent network drop), so the listener also
//! sends itself a heartbeat on its own channel every quarter of `propagation_s`: when none
//! has come back within `propagation_s`, it counts as lost.

use super::{Change, Inner, Message};
use crate::telemetry::{ClusterEvent, Metrics};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Weak;
use std::time::{Duration, Instant};

const CHANNEL: &str = "imgorigin_changes";

pub(super) struct Peers {
    options: PgConnectOptions,
    /// For sending: notifications and heartbeats.
    pool: PgPool,
}

impl Peers {
    pub(super) fn new(url: &str) -> Result<Peers, String> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| format!("metadata.url: {e}"))?
            .application_name("imgorigin-cluster");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.clone());
        Ok(Peers { options, pool })
    }

    /// Sends `change` in the background, retrying with backoff.
    pub(super) fn notify(&self, from: &str, change: &Change, metrics: Metrics) {
        let Some(payload) = Message::encode(from, change) else {
            return;
        };
        let pool = self.pool.clone();
        super::publish_in_background(metrics, move || {
            let (pool, payload) = (pool.clone(), payload.clone());
            async move {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
    }
}

/// The listener task: connect, listen, apply; on any loss mark degraded and reconnect with
/// backoff (capped at `propagation_s`, so recovery is quick once the database is back).
pub(super) async fn listen(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (options, propagation, heartbeat_channel, name) = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(peers) = inner.postgres() else {
                return;
            };
            (
                peers.options.clone(),
                inner.propagation,
                format!("imgorigin_heartbeat_{}", inner.instance),
                format!("imgorigin-listener-{}", inner.instance),
            )
        };
        match connect(&options, &name, &heartbeat_channel).await {
            Ok(listener) => {
                {
                    let Some(inner) = weak.upgrade() else { return };
                    // Changes made while nobody listened are unknown: drop what could be
                    // stale (see the module docs), then serve from the caches again.
                    inner.caches.drop_originals();
                    inner.set_degraded(false);
                    inner.metrics.cluster_event(ClusterEvent::Reconnected);
                    tracing::info!("cluster: listening for other instances' changes");
                }
                backoff = Duration::from_millis(100);
                if !serve(&weak, listener, &heartbeat_channel, propagation).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot listen for changes");
            }
        }
        {
            let Some(inner) = weak.upgrade() else { return };
            inner.set_degraded(true);
            inner.metrics.cluster_event(ClusterEvent::ListenerLost);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(propagation);
    }
}

async fn connect(
    options: &PgConnectOptions,
    name: &str,
    heartbeat_channel: &str,
) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone().application_name(name))
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen_all([CHANNEL, heartbeat_channel]).await?;
    Ok(listener)
}

/// Applies notifications until the connection is lost (`true`) or the app is gone (`false`).
async fn serve(
    weak: &Weak<Inner>,
    mut listener: PgListener,
    heartbeat_channel: &str,
    propagation: Duration,
) -> bool {
    let beat = (propagation / 4).max(Duration::from_millis(100));
    let mut last_heard = Instant::now();
    let mut last_beat: Option<Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        if last_beat.is_none_or(|t| t.elapsed() >= beat) {
            last_beat = Some(Instant::now());
            if let Some(peers) = inner.postgres() {
                let pool = peers.pool.clone();
                let channel = heartbeat_channel.to_string();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        beat,
                        sqlx::query("SELECT pg_notify($1, '')")
                            .bind(channel)
                            .execute(&pool),
                    )
                    .await;
                });
            }
        }
        drop(inner);
        match tokio::time::timeout(beat, listener.try_recv()).await {
            Err(_) => {}
            Ok(Ok(Some(n))) => {
                last_heard = Instant::now();
                if n.channel() == CHANNEL {
                    let Some(inner) = weak.upgrade() else {
                        return false;
                    };
                    match serde_json::from_str::<Message>(n.payload()) {
                        Ok(m) if m.from == inner.instance => {}
                        Ok(m) => inner.received(&m.change).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster: ignoring a malformed change")
                        }
                    }
                }
            }
            Ok(Ok(None)) => {
                tracing::warn!("cluster: the change listener lost its connection");
                return true;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: the change listener failed");
                return true;
            }
        }
        if last_heard.elapsed() > propagation {
            tracing::warn!("cluster: no heartbeat came back within cluster.propagation_s");
            return true;
        }
    }
}

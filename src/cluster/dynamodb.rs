//! Fan-out through the DynamoDB table (when the metadata store is DynamoDB): a change is an
//! item in one partition, `pk = CHANGES`, `sk = <µs since epoch, 20 digits>#<instance>#<n>`,
//! expiring after an hour (`expires`, the table's TTL attribute). Every instance queries
//! that partition (strongly consistent) every half `propagation_s` for items newer than its
//! last successful poll minus `LOOKBACK`, and applies each item once.
//!
//! Why a polled log and not DynamoDB Streams: a stream needs a shard reader per instance
//! (or a Lambda), the Streams API has no test server of its own, and a reader that was away
//! cannot tell what it missed once a shard closes. The log is read with the same client and
//! permissions as the records, costs about one read request unit per poll (≈ $0.65 a month
//! per instance at `propagation_s = 2`, us-east-1 on-demand prices of 2026-12), and a poller
//! that was cut off reads everything it missed when it is back, as long as that is within
//! the items' hour. `LOOKBACK` covers clock skew between instances and the time between a
//! writer taking its timestamp and its item becoming readable.

use super::{Change, Inner, Message};
use crate::metadata::dynamodb::TTL_ATTRIBUTE;
use crate::telemetry::{ClusterEvent, Metrics};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{HashMap, HashSet};
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PARTITION: &str = "CHANGES";
/// How long a change item lives (TTL); a poller away for longer drops its originals.
const LIFETIME: Duration = Duration::from_secs(3600);
const LOOKBACK: Duration = Duration::from_secs(60);

pub(super) struct Peers {
    client: Client,
    table: String,
    sequence: AtomicU64,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl Peers {
    pub(super) fn new(client: Client, table: String) -> Peers {
        Peers {
            client,
            table,
            sequence: AtomicU64::new(0),
        }
    }

    /// Writes `change` in the background, retrying with backoff.
    pub(super) fn notify(&self, from: &str, change: &Change, metrics: Metrics) {
        let Some(body) = Message::encode(from, change) else {
            return;
        };
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let sk = format!("{:020}#{from}#{n}", micros_now());
        let expires = (micros_now() / 1_000_000 + LIFETIME.as_secs()).to_string();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(PARTITION))
            .item("sk", s(sk))
            .item("change", s(body))
            .item(TTL_ATTRIBUTE, AttributeValue::N(expires));
        super::publish_in_background(metrics, move || {
            let put = put.clone();
            async move {
                put.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
            }
        });
    }

    /// Every change item with a sort key above `after`, oldest first.
    async fn since(&self, after: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(PARTITION))
                .expression_attribute_values(":after", s(after))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
            for item in page.items() {
                if let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(body))) =
                    (item.get("sk"), item.get("change"))
                {
                    out.push((sk.clone(), body.clone()));
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

/// The poller task: every half `propagation_s`, read and apply new change items. A poll that
/// fails or takes longer than that (a silent network drop) makes this instance degraded
/// until one succeeds: by then it may be missing a change older than `propagation_s`.
pub(super) async fn poll(weak: Weak<Inner>) {
    let every = {
        let Some(inner) = weak.upgrade() else { return };
        (inner.propagation / 2).max(Duration::from_millis(100))
    };
    // Sort keys already applied, with the time they carry (pruned past the look-back).
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_ok: Option<(Instant, u64)> = None;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(peers) = inner.dynamodb() else {
            return;
        };
        let started_at = micros_now();
        let from = last_ok.map_or(started_at, |(_, t)| t);
        let after = format!("{:020}", from.saturating_sub(LOOKBACK.as_micros() as u64));
        let polled = match tokio::time::timeout(every, peers.since(&after)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {every:?}")),
        };
        match polled {
            Ok(items) => {
                for (sk, body) in items {
                    if !seen.insert(sk.clone()) {
                        continue;
                    }
                    match serde_json::from_str::<Message>(&body) {
                        Ok(m) if m.from == inner.instance => {}
                        Ok(m) => inner.received(&m.change).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster: ignoring a malformed change")
                        }
                    }
                }
                seen.retain(|sk| sk.as_str() > after.as_str());
                if inner.degraded.load(Ordering::Acquire) {
                    // Away longer than the items live: what was missed may be gone.
                    if last_ok.is_none_or(|(at, _)| at.elapsed() + LOOKBACK > LIFETIME) {
                        inner.caches.drop_originals();
                    }
                    inner.set_degraded(false);
                    inner.metrics.cluster_event(ClusterEvent::Reconnected);
                    tracing::info!("cluster: reading other instances' changes");
                }
                last_ok = Some((Instant::now(), started_at));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot read changes");
                if !inner.degraded.load(Ordering::Acquire) {
                    inner.set_degraded(true);
                    inner.metrics.cluster_event(ClusterEvent::ListenerLost);
                }
            }
        }
    }
}

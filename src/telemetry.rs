//! Metric names and logging set-up. Metrics live in a per-app registry (no process-global
//! state), so several apps in one test process do not see each other's counts. Label values
//! are bounded sets: routes, status codes, tiers, never keys or URLs.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label-value enum encoded as its lowercase snake-case name (`route="image"`), which is
/// what dashboards and docs/operations.md use; the derive would emit the variant name.
macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_enum!(
    /// Which handler answered a request (`route` label).
    Route {
        Image => "image",
        Original => "original",
        Health => "health",
        Ready => "ready",
        Api => "api",
        Gallery => "gallery",
        Other => "other",
    }
);

label_enum!(
    /// A cache tier (`tier` label); `shared` is the variant store in the bucket (SPEC §12).
    Tier {
        Variant => "variant",
        Original => "original",
        Decoded => "decoded",
        Stripped => "stripped",
        Facts => "facts",
        Shared => "shared",
    }
);

label_enum!(
    /// A transform stage (`stage` label).
    Stage {
        Render => "render",
        Queue => "queue",
    }
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Route,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: Tier,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: Stage,
}

label_enum!(
    /// What happened to a change of another instance's making, or of ours (`event` label).
    ClusterEvent {
        Published => "published",
        PublishFailed => "publish_failed",
        Received => "received",
        ListenerLost => "listener_lost",
        Reconnected => "reconnected",
    }
);

label_enum!(
    /// The outcome of one CloudFront CreateInvalidation call (`outcome` label).
    InvalidationOutcome {
        Created => "created",
        Failed => "failed",
        GaveUp => "gave_up",
    }
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub event: ClusterEvent,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvalidationLabels {
    pub outcome: InvalidationOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Cheap to clone: every family shares its counters (background tasks keep a clone).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub cache_hits: Family<TierLabels, Counter>,
    pub cache_misses: Family<TierLabels, Counter>,
    pub cache_bytes: Family<TierLabels, Gauge>,
    pub renders: Counter,
    pub transform_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub storage_fetches: Counter,
    pub storage_fetch_seconds: Histogram,
    pub queue_depth: Gauge,
    pub transforms_running: Gauge,
    pub rejected: Family<ReasonLabels, Counter>,
    pub cluster: Family<ClusterLabels, Counter>,
    /// 1 while this instance may have missed other instances' changes (SPEC §14).
    pub cluster_degraded: Gauge,
    pub invalidations: Family<InvalidationLabels, Counter>,
    pub invalidation_paths: Counter,
    /// Writes to the shared variant store by outcome (`stored`, `dropped`, `failed`).
    pub shared_writes: Family<OutcomeLabels, Counter>,
    /// Ingested objects by outcome (`recorded`, `rejected`, `reviewed`, `skipped`, `failed`).
    pub ingested: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("imgorigin");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_bytes: Family::default(),
            renders: Counter::default(),
            transform_seconds: Family::new_with_constructor(latency_histogram),
            storage_fetches: Counter::default(),
            storage_fetch_seconds: latency_histogram(),
            queue_depth: Gauge::default(),
            transforms_running: Gauge::default(),
            rejected: Family::default(),
            cluster: Family::default(),
            cluster_degraded: Gauge::default(),
            invalidations: Family::default(),
            invalidation_paths: Counter::default(),
            shared_writes: Family::default(),
            ingested: Family::default(),
            registry: Default::default(),
        };
        registry.register(
            "requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by route",
            m.request_seconds.clone(),
        );
        registry.register("cache_hits", "Cache hits by tier", m.cache_hits.clone());
        registry.register(
            "cache_misses",
            "Cache misses by tier",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by each cache tier",
            m.cache_bytes.clone(),
        );
        registry.register(
            "renders",
            "Images rendered (decode+transform+encode)",
            m.renders.clone(),
        );
        registry.register(
            "transform_duration_seconds",
            "Time per transform stage (queue wait, render)",
            m.transform_seconds.clone(),
        );
        registry.register(
            "storage_fetches",
            "Originals fetched from storage",
            m.storage_fetches.clone(),
        );
        registry.register(
            "storage_fetch_duration_seconds",
            "Time to fetch an original from storage",
            m.storage_fetch_seconds.clone(),
        );
        registry.register(
            "transform_queue_depth",
            "Transforms waiting for a worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "transforms_running",
            "Transforms running now",
            m.transforms_running.clone(),
        );
        registry.register(
            "rejected",
            "Requests refused early, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "cluster_changes",
            "Cache-dropping changes published to and received from other instances, and listener events",
            m.cluster.clone(),
        );
        registry.register(
            "cluster_degraded",
            "1 while the change listener is down (originals are then revalidated on every request)",
            m.cluster_degraded.clone(),
        );
        registry.register(
            "cloudfront_invalidations",
            "CloudFront CreateInvalidation calls by outcome",
            m.invalidations.clone(),
        );
        registry.register(
            "cloudfront_invalidation_paths",
            "Paths sent in created CloudFront invalidations",
            m.invalidation_paths.clone(),
        );
        registry.register(
            "shared_variant_writes",
            "Writes to the shared variant store, by outcome (dropped: queue full)",
            m.shared_writes.clone(),
        );
        registry.register(
            "ingested",
            "Objects handled by ingest, by outcome",
            m.ingested.clone(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            ..m
        }
    }

    pub fn cache_hit(&self, tier: Tier) {
        self.cache_hits.get_or_create(&TierLabels { tier }).inc();
    }

    pub fn cache_miss(&self, tier: Tier) {
        self.cache_misses.get_or_create(&TierLabels { tier }).inc();
    }

    pub fn cache_bytes(&self, tier: Tier, bytes: u64) {
        self.cache_bytes
            .get_or_create(&TierLabels { tier })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A request refused early; `reason` is one of a fixed set (`queue_full`, `rate_limited`).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A write to the shared variant store ended (or was dropped).
    pub fn shared_write(&self, outcome: &'static str) {
        self.shared_writes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Ingest finished with one object.
    pub fn ingest(&self, outcome: &'static str) {
        self.ingested
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Time spent in one transform stage.
    pub fn stage(&self, stage: Stage, seconds: f64) {
        self.transform_seconds
            .get_or_create(&StageLabels { stage })
            .observe(seconds);
    }

    /// A storage round trip for an original; `fetched` when it brought the bytes.
    pub fn storage_fetch(&self, seconds: f64, fetched: bool) {
        self.storage_fetch_seconds.observe(seconds);
        if fetched {
            self.storage_fetches.inc();
        }
    }

    /// One answered request, by route and status.
    pub fn request(&self, route: Route, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// Transforms waiting for a worker.
    pub fn queue_depth(&self, waiting: usize) {
        self.queue_depth
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// A render took a worker after waiting `queued_seconds`.
    pub fn render_started(&self, queued_seconds: f64) {
        self.stage(Stage::Queue, queued_seconds);
        self.transforms_running.inc();
    }

    /// A render finished (or failed) after `seconds` on its worker.
    pub fn render_finished(&self, seconds: f64) {
        self.transforms_running.dec();
        self.renders.inc();
        self.stage(Stage::Render, seconds);
    }

    pub fn cluster_event(&self, event: ClusterEvent) {
        self.cluster.get_or_create(&ClusterLabels { event }).inc();
    }

    pub fn invalidation(&self, outcome: InvalidationOutcome, paths: usize) {
        self.invalidations
            .get_or_create(&InvalidationLabels { outcome })
            .inc();
        if outcome == InvalidationOutcome::Created {
            self.invalidation_paths.inc_by(paths as u64);
        }
    }

    /// OpenMetrics 1.0 text (what prometheus-client writes).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics
    /// (`promtool check metrics`, older agents): the same samples, with a counter family
    /// named by its `_total` samples and no `# EOF`/`# UNIT` lines.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text004(&self.encode_openmetrics())
    }
}

/// OpenMetrics names a counter family without `_total` (`# TYPE x counter`, samples
/// `x_total`); format 0.0.4 wants the family named like its samples, or parsers see
/// samples without HELP/TYPE. Everything else is the same line for line.
fn openmetrics_to_text004(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(om.len() + 64);
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let name = rest.split(' ').next().unwrap_or("");
                if counters.contains(name) {
                    out.push_str(prefix);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Installs the global tracing subscriber (the binary calls this; tests may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

pub fn init_logging(cfg: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// A short random request id (when the client or CDN gave none).
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

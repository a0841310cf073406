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
        Other => "other",
    }
);

label_enum!(
    /// A cache tier (`tier` label).
    Tier {
        Variant => "variant",
        Original => "original",
        Decoded => "decoded",
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
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
            registry: Registry::default(),
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
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
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

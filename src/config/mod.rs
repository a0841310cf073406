//! Configuration in two stages: `raw` is the TOML shape (file, then `IMGORIGIN__SECTION__KEY`
//! environment overrides); `Config` is the validated, typed result. Validation reports every
//! problem at once, each naming its key, so a bad deploy fails at start-up in one go.

mod auth;
mod delivery;
mod env;
mod ingest;
pub mod raw;
#[cfg(test)]
mod s3_tests;
mod storage;
#[cfg(test)]
mod tests;

use crate::media::OutputFormat;
use crate::params::{FormatChoice, Gravity, ParseSettings};
use crate::pipeline::{AvifEncoder, AvifSettings};
use raw::RawConfig;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// Each module owns the validated form of its settings; `Config` composes them.
pub use crate::auth::access::{AccessConfig, OtherAccess};
pub use crate::auth::ratelimit::RateLimitConfig;
pub use crate::auth::settings::{AuthConfig, CognitoConfig, HostedUi, LocalAuthConfig};
pub use crate::cluster::InvalidationConfig;
pub use crate::originals::MetadataPolicy;
pub use crate::storage::StorageConfig;
pub use crate::storage::s3::{S3Config, S3StaticCredentials};
pub use crate::telemetry::{LogConfig, LogFormat};

/// Prefix of environment overrides: `IMGORIGIN__STORAGE__S3__BUCKET=b` sets `storage.s3.bucket`.
pub const ENV_PREFIX: &str = "IMGORIGIN__";

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub storage: StorageConfig,
    pub metadata_url: String,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub format: FormatConfig,
    pub cache_control: CacheControlConfig,
    pub access: AccessConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub shares_max_ttl_s: u64,
    pub watermarks: BTreeMap<String, WatermarkConfig>,
    /// `[gallery] enabled`: `GET /` serves the web gallery (SPEC §15).
    pub gallery_enabled: bool,
    /// `originals.metadata`: who gets the stored bytes of a request without parameters.
    pub originals_metadata: MetadataPolicy,
    /// `[presets.NAME] params`, each checked to parse (SPEC §11).
    pub presets: BTreeMap<String, String>,
    /// `delivery.strict` (SPEC §11).
    pub delivery_strict: bool,
    /// `[cluster]` and the CloudFront invalidations of `[cloudfront]` (SPEC §14).
    pub cluster: ClusterConfig,
    /// `[ingest]` (SPEC §12).
    pub ingest: IngestConfig,
    /// Accepted but risky combinations, each naming its keys; logged at start-up and
    /// printed by `check-config`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    /// HTTP/1 request heads must arrive within this (also bounds an idle keep-alive wait).
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction this long is closed gracefully.
    pub idle_timeout: Duration,
    /// Open connections per listener; at the cap the server stops accepting.
    pub max_connections: usize,
    /// Whole-request limit of `/api` routes, body upload included (504).
    pub api_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub variant_bytes: u64,
    pub source_bytes: u64,
    pub decoded_bytes: u64,
    pub source_ttl: Duration,
    /// `[cache.shared]` (SPEC §12).
    pub shared: SharedCacheConfig,
}

/// `[cache.shared]`: rendered variants kept in the storage bucket under `prefix`.
#[derive(Debug, Clone)]
pub struct SharedCacheConfig {
    /// `backend = "s3"`.
    pub enabled: bool,
    /// Never a key of an original (delivery, register and ingest refuse it).
    pub prefix: String,
}

/// `[ingest]`, validated: on when `queue_url` is set.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub queue_url: Option<String>,
    /// The SQS and Rekognition endpoint (compatible test servers); `None` = AWS.
    pub endpoint_url: Option<String>,
    pub concurrency: usize,
    /// Long-poll wait of ReceiveMessage (0-20 s).
    pub wait_s: u64,
    pub eager_presets: Vec<String>,
    /// `labels = "rekognition"`.
    pub labels: bool,
    /// `moderation = "rekognition"`.
    pub moderation: bool,
    /// Labels and moderation labels below this confidence (percent) are ignored.
    pub min_confidence: f32,
}

impl IngestConfig {
    /// The moderation state of a record stored now: pending until ingest checked it
    /// when moderation is on, none when off.
    pub fn initial_moderation(&self) -> Option<crate::metadata::Moderation> {
        self.moderation
            .then_some(crate::metadata::Moderation::Pending)
    }

    /// Whether ingest calls Rekognition at all.
    pub fn reviews(&self) -> bool {
        self.labels || self.moderation
    }
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_source_bytes: u64,
    pub max_source_pixels: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_upload_bytes: u64,
    /// Sorted ascending; empty = any width.
    pub allowed_widths: Vec<u32>,
    pub transform_concurrency: usize,
    pub transform_queue: usize,
    /// Most pixels of a rendered output (any format); checked before a worker is taken.
    pub max_output_pixels: u64,
    /// Most pixels of an AVIF output (the smaller of this and `max_output_pixels` applies).
    pub max_avif_output_pixels: u64,
    /// Most frames of an animated source rendered with its animation.
    pub max_animation_frames: u32,
    /// Most pixels decoded for an animated render: frames × canvas pixels.
    pub max_animation_pixels: u64,
}

/// What `fm` means when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultFormat {
    Source,
    Auto,
    Fixed(OutputFormat),
}

#[derive(Debug, Clone)]
pub struct FormatConfig {
    pub default: DefaultFormat,
    pub avif: bool,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub avif_settings: AvifSettings,
}

#[derive(Debug, Clone)]
pub struct CacheControlConfig {
    pub public: String,
    pub private: String,
    pub not_found: String,
    pub share_max_age: u64,
}

#[derive(Debug, Clone)]
pub struct WatermarkConfig {
    pub file: PathBuf,
    pub position: Gravity,
    pub opacity: f32,
    pub scale: f32,
}

/// How changes reach other instances and CloudFront (SPEC §14).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub propagation: Duration,
    pub invalidations: Option<InvalidationConfig>,
}

/// Every problem found in a configuration, one line each (`key: what is wrong`).
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads `path` (a missing file is an error only when `required`), applies the
    /// process environment's overrides, validates.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => {
                return Err(ConfigError(vec![format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )]));
            }
        };
        Self::from_toml_and_env(&text, std::env::vars())
    }

    /// Parses TOML text plus `IMGORIGIN__…` overrides from `env`; used by tests too.
    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError(vec![format!("config file: {e}")]))?;
        env::apply_env_overrides(&mut table, env).map_err(|e| ConfigError(vec![e]))?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                ConfigError(vec![format!("{path}: {}", e.into_inner())])
            })?;
        validate(raw)
    }

    /// The defaults (what an empty config file gives).
    pub fn defaults() -> Config {
        match Self::from_toml_and_env("", std::iter::empty()) {
            Ok(c) => c,
            Err(e) => unreachable!("defaults must validate: {e}"),
        }
    }

    /// What the query parser needs: size limits, format defaults, watermark names.
    pub fn parse_settings(&self) -> ParseSettings {
        let (l, f) = (&self.limits, &self.format);
        ParseSettings {
            max_width: l.max_width,
            max_height: l.max_height,
            allowed_widths: l.allowed_widths.clone(),
            default_format: match f.default {
                DefaultFormat::Source => FormatChoice::Source,
                DefaultFormat::Auto => FormatChoice::Auto,
                DefaultFormat::Fixed(fm) => FormatChoice::Fixed(fm),
            },
            avif_enabled: f.avif,
            jpeg_quality: f.jpeg_quality,
            webp_quality: f.webp_quality,
            avif_quality: f.avif_quality,
            watermarks: self.watermarks.keys().cloned().collect(),
            presets: self.presets.clone(),
        }
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut errs: Vec<String> = Vec::new();
    let addr = |key: &str, v: &str, errs: &mut Vec<String>| -> SocketAddr {
        v.parse().unwrap_or_else(|_| {
            errs.push(format!(
                "{key}: `{v}` is not an address like 127.0.0.1:8080"
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    let server = ServerConfig {
        listen: addr("server.listen", &raw.server.listen, &mut errs),
        metrics_listen: addr(
            "server.metrics_listen",
            &raw.server.metrics_listen,
            &mut errs,
        ),
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_s),
        request_timeout: Duration::from_secs(raw.server.request_timeout_s),
        header_read_timeout: Duration::from_secs(raw.server.header_read_timeout_s),
        idle_timeout: Duration::from_secs(raw.server.idle_timeout_s),
        max_connections: raw.server.max_connections,
        api_timeout: Duration::from_secs(raw.server.api_timeout_s),
    };
    if raw.server.request_timeout_s == 0 {
        errs.push("server.request_timeout_s: must be at least 1".into());
    }
    for (key, v) in [
        ("header_read_timeout_s", raw.server.header_read_timeout_s),
        ("idle_timeout_s", raw.server.idle_timeout_s),
        ("api_timeout_s", raw.server.api_timeout_s),
    ] {
        if v == 0 {
            errs.push(format!("server.{key}: must be at least 1"));
        }
    }
    if raw.server.max_connections == 0 {
        errs.push("server.max_connections: must be at least 1".into());
    }

    let log_format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        other => {
            errs.push(format!("log.format: `{other}` is not `json` or `pretty`"));
            LogFormat::Pretty
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
        errs.push(format!(
            "log.level: `{}` is not a level or filter (e.g. `info`, `imgorigin=debug`)",
            raw.log.level
        ));
    }

    let storage = match raw.storage.backend.as_str() {
        "fs" => {
            if raw.storage.fs.root.is_empty() {
                errs.push("storage.fs.root: must not be empty".into());
            }
            StorageConfig::Fs {
                root: PathBuf::from(&raw.storage.fs.root),
            }
        }
        "s3" => StorageConfig::S3(storage::validate_s3(&raw.storage.s3, &mut errs)),
        other => {
            errs.push(format!("storage.backend: `{other}` is not `fs` or `s3`"));
            StorageConfig::Fs {
                root: PathBuf::new(),
            }
        }
    };

    let metadata_url = raw.metadata.url.clone();
    if let Err(e) = crate::metadata::check_url(&metadata_url) {
        errs.push(format!("metadata.url: {e}"));
    }

    let cache = CacheConfig {
        variant_bytes: raw.cache.variant_bytes.0,
        source_bytes: raw.cache.source_bytes.0,
        decoded_bytes: raw.cache.decoded_bytes.0,
        source_ttl: Duration::from_secs(raw.cache.source_ttl_s),
        shared: ingest::validate_shared(&raw, &mut errs),
    };
    let ingest = ingest::validate_ingest(&raw, &mut errs);

    let limits = delivery::validate_limits(&raw.limits, &mut errs);

    let format = delivery::validate_format(&raw.format, &mut errs);

    let cache_control = delivery::validate_cache_control(&raw.cache_control, &mut errs);

    let access = auth::validate_access(&raw.access, &mut errs);
    let auth = auth::validate_auth(&raw, &mut errs);
    let rate_limit = auth::validate_rate_limit(&raw.rate_limit, &mut errs);
    if raw.shares.max_ttl_s == 0 {
        errs.push("shares.max_ttl_s: must be at least 1".into());
    }

    let watermarks = delivery::validate_watermarks(&raw.watermarks, &mut errs);
    let originals_metadata = delivery::validate_originals(&raw.originals, &mut errs);
    let cluster = validate_cluster(&raw, &mut errs);

    if !errs.is_empty() {
        return Err(ConfigError(errs));
    }
    let warnings = auth::risky_combinations(&auth);
    Ok(Config {
        server,
        log: LogConfig {
            format: log_format,
            level: raw.log.level.clone(),
        },
        storage,
        metadata_url,
        cache,
        limits,
        format,
        cache_control,
        access,
        auth,
        rate_limit,
        shares_max_ttl_s: raw.shares.max_ttl_s,
        watermarks,
        gallery_enabled: raw.gallery.enabled,
        originals_metadata,
        presets: raw
            .presets
            .iter()
            .map(|(k, v)| (k.clone(), v.params.clone()))
            .collect(),
        delivery_strict: raw.delivery.strict,
        cluster,
        ingest,
        warnings,
    })
    .and_then(check_presets)
}

fn validate_cluster(raw: &RawConfig, errs: &mut Vec<String>) -> ClusterConfig {
    let propagation_s = raw.cluster.propagation_s;
    if !(1..=300).contains(&propagation_s) {
        errs.push("cluster.propagation_s: must be between 1 and 300 seconds".into());
    }
    let cf = &raw.cloudfront;
    let invalidations = match cf.distribution_id.as_deref() {
        None => None,
        Some(id) => {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                errs.push(format!(
                    "cloudfront.distribution_id: `{id}` is not a distribution id (e.g. E2QWRUHAPOMQZL)"
                ));
            }
            if cf.invalidations_per_min == 0 {
                errs.push("cloudfront.invalidations_per_min: must be at least 1".into());
            }
            if let Some(u) = &cf.api_endpoint_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                errs.push(format!(
                    "cloudfront.api_endpoint_url: `{u}` must be an http(s) URL"
                ));
            }
            Some(InvalidationConfig {
                distribution_id: id.to_string(),
                endpoint_url: cf.api_endpoint_url.clone(),
                per_min: cf.invalidations_per_min,
                region: raw
                    .storage
                    .s3
                    .region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".into()),
            })
        }
    };
    ClusterConfig {
        propagation: Duration::from_secs(propagation_s.max(1)),
        invalidations,
    }
}

/// Every preset must be a valid transform on its own: parsed with the finished settings,
/// so `w` above `limits.max_width` or an unknown watermark is caught at start-up and by
/// `imgorigin check-config`, not on the first request.
fn check_presets(config: Config) -> Result<Config, ConfigError> {
    let settings = config.parse_settings();
    let mut errs = Vec::new();
    for (name, params) in &config.presets {
        let key = format!("presets.{name}.params");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            errs.push(format!(
                "presets.{name}: names are 1-64 of a-z, 0-9, - and _"
            ));
            continue;
        }
        let names: Vec<&str> = params
            .split('&')
            .map(|p| p.split_once('=').map_or(p, |(n, _)| n))
            .collect();
        if let Some(n) = names.iter().find(|n| {
            matches!(**n, "p" | "v" | crate::params::SHARE_PARAM)
                || crate::params::SIGNATURE_PARAMS.contains(n)
        }) {
            errs.push(format!("{key}: `{n}` is not a transform parameter"));
            continue;
        }
        match crate::params::parse(Some(params), &settings) {
            Ok(parsed) if parsed.transform.is_some() && !parsed.facts => {}
            Ok(_) => errs.push(format!("{key}: must name at least one transform parameter")),
            Err(e) => errs.push(format!("{key}: {e}")),
        }
    }
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError(errs))
    }
}

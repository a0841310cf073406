//! Configuration in two stages: `raw` is the TOML shape (file, then `IMGORIGIN__SECTION__KEY`
//! environment overrides); `Config` is the validated, typed result. Validation reports every
//! problem at once, each naming its key, so a bad deploy fails at start-up in one go.

mod auth;
mod env;
pub mod raw;
#[cfg(test)]
mod s3_tests;
mod storage;
#[cfg(test)]
mod tests;

use crate::media::OutputFormat;
use crate::params::{FormatChoice, Gravity, ParseSettings};
use raw::RawConfig;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// Each module owns the validated form of its settings; `Config` composes them.
pub use crate::auth::access::{AccessConfig, OtherAccess};
pub use crate::auth::ratelimit::RateLimitConfig;
pub use crate::auth::settings::{AuthConfig, CognitoConfig, LocalAuthConfig};
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
    pub avif_speed: u8,
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
    if !(metadata_url.starts_with("sqlite:")
        || metadata_url.starts_with("postgres://")
        || metadata_url.starts_with("postgresql://"))
    {
        errs.push(format!(
            "metadata.url: `{metadata_url}` is not a sqlite:// or postgres:// URL"
        ));
    }

    let cache = CacheConfig {
        variant_bytes: raw.cache.variant_bytes.0,
        source_bytes: raw.cache.source_bytes.0,
        decoded_bytes: raw.cache.decoded_bytes.0,
        source_ttl: Duration::from_secs(raw.cache.source_ttl_s),
    };

    let l = &raw.limits;
    let nonzero = |key: &str, v: u64, errs: &mut Vec<String>| {
        if v == 0 {
            errs.push(format!("{key}: must be at least 1"));
        }
    };
    nonzero("limits.max_source_bytes", l.max_source_bytes.0, &mut errs);
    nonzero("limits.max_source_pixels", l.max_source_pixels, &mut errs);
    nonzero("limits.max_width", l.max_width as u64, &mut errs);
    nonzero("limits.max_height", l.max_height as u64, &mut errs);
    nonzero("limits.max_upload_bytes", l.max_upload_bytes.0, &mut errs);
    // Render cost caps.
    nonzero("limits.max_output_pixels", l.max_output_pixels, &mut errs);
    nonzero(
        "limits.max_avif_output_pixels",
        l.max_avif_output_pixels,
        &mut errs,
    );
    let mut allowed_widths = l.allowed_widths.clone().unwrap_or_default();
    allowed_widths.sort_unstable();
    allowed_widths.dedup();
    if let Some(l) = &l.allowed_widths
        && l.is_empty()
    {
        errs.push("limits.allowed_widths: when set, list at least one width".into());
    }
    if allowed_widths
        .iter()
        .any(|&w| w == 0 || w > raw.limits.max_width)
    {
        errs.push("limits.allowed_widths: every width must be 1..=limits.max_width".into());
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let limits = LimitsConfig {
        max_source_bytes: l.max_source_bytes.0,
        max_source_pixels: l.max_source_pixels,
        max_width: l.max_width,
        max_height: l.max_height,
        max_upload_bytes: l.max_upload_bytes.0,
        allowed_widths,
        transform_concurrency: if l.transform_concurrency == 0 {
            cores
        } else {
            l.transform_concurrency
        },
        transform_queue: l.transform_queue,
        max_output_pixels: l.max_output_pixels,
        max_avif_output_pixels: l.max_avif_output_pixels,
    };

    let f = &raw.format;
    let default = match f.default.as_str() {
        "source" => DefaultFormat::Source,
        "auto" => DefaultFormat::Auto,
        other => match OutputFormat::from_name_or_alias(other) {
            Some(fm) => DefaultFormat::Fixed(fm),
            None => {
                errs.push(format!(
                    "format.default: `{other}` is not one of source, auto, jpeg, png, webp, avif"
                ));
                DefaultFormat::Source
            }
        },
    };
    for (key, q) in [
        ("format.jpeg_quality", f.jpeg_quality),
        ("format.webp_quality", f.webp_quality),
        ("format.avif_quality", f.avif_quality),
    ] {
        if !(1..=100).contains(&q) {
            errs.push(format!("{key}: must be 1..=100"));
        }
    }
    if !(1..=10).contains(&f.avif_speed) {
        errs.push("format.avif_speed: must be 1..=10".into());
    }
    if default == DefaultFormat::Fixed(OutputFormat::Avif) && !f.avif {
        errs.push("format.default: `avif` while format.avif = false".into());
    }
    let format = FormatConfig {
        default,
        avif: f.avif,
        jpeg_quality: f.jpeg_quality,
        webp_quality: f.webp_quality,
        avif_quality: f.avif_quality,
        avif_speed: f.avif_speed,
    };

    let cc = &raw.cache_control;
    for (key, v) in [
        ("cache_control.public", &cc.public),
        ("cache_control.private", &cc.private),
        ("cache_control.not_found", &cc.not_found),
    ] {
        if axum::http::HeaderValue::from_str(v).is_err() {
            errs.push(format!("{key}: not a valid header value"));
        }
    }
    let cache_control = CacheControlConfig {
        public: cc.public.clone(),
        private: cc.private.clone(),
        not_found: cc.not_found.clone(),
        share_max_age: cc.share_max_age,
    };

    let a = &raw.access;
    let other = match a.other.as_str() {
        "none" => OtherAccess::None,
        "authenticated" => OtherAccess::Authenticated,
        "public" => OtherAccess::Public,
        o => {
            errs.push(format!(
                "access.other: `{o}` is not `none`, `authenticated` or `public`"
            ));
            OtherAccess::None
        }
    };
    for (key, p) in [
        ("access.public_prefix", &a.public_prefix),
        ("access.protected_prefix", &a.protected_prefix),
        ("access.private_prefix", &a.private_prefix),
    ] {
        if p.is_empty() || !p.ends_with('/') || p.starts_with('/') {
            errs.push(format!("{key}: must be a non-empty prefix ending in `/`"));
        }
    }
    errs.extend(auth::overlapping_prefixes(a));
    let access = AccessConfig {
        public_prefix: a.public_prefix.clone(),
        protected_prefix: a.protected_prefix.clone(),
        private_prefix: a.private_prefix.clone(),
        other,
    };

    let auth = auth::validate_auth(&raw, &mut errs);
    let rl = &raw.rate_limit;
    if rl.enabled && (rl.misses_per_s <= 0.0 || rl.writes_per_s <= 0.0 || rl.burst == 0) {
        errs.push(
            "rate_limit: misses_per_s, writes_per_s and burst must be positive when enabled".into(),
        );
    }
    if !(1..=128).contains(&rl.ipv6_prefix) {
        errs.push("rate_limit.ipv6_prefix: must be 1..=128".into());
    }
    let rate_limit = RateLimitConfig {
        enabled: rl.enabled,
        misses_per_s: rl.misses_per_s,
        writes_per_s: rl.writes_per_s,
        burst: rl.burst,
        ipv6_prefix: rl.ipv6_prefix,
    };
    if raw.shares.max_ttl_s == 0 {
        errs.push("shares.max_ttl_s: must be at least 1".into());
    }

    let mut watermarks = BTreeMap::new();
    for (name, w) in &raw.watermarks {
        let key = format!("watermarks.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(format!(
                "{key}: names use letters, digits, `-` and `_` only"
            ));
        }
        let position = Gravity::from_name(&w.position).unwrap_or_else(|| {
            errs.push(format!(
                "{key}.position: `{}` is not a gravity (center, n, s, e, w, ne, nw, se, sw)",
                w.position
            ));
            Gravity::SouthEast
        });
        if !(0.0..=1.0).contains(&w.opacity) {
            errs.push(format!("{key}.opacity: must be 0..=1"));
        }
        if !(w.scale > 0.0 && w.scale <= 1.0) {
            errs.push(format!("{key}.scale: must be in (0, 1]"));
        }
        watermarks.insert(
            name.clone(),
            WatermarkConfig {
                file: PathBuf::from(&w.file),
                position,
                opacity: w.opacity,
                scale: w.scale,
            },
        );
    }

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
        warnings,
    })
}

//! Configuration in two stages: `raw` is the TOML shape (file, then `IMGORIGIN__SECTION__KEY`
//! environment overrides); `Config` is the validated, typed result. Validation reports every
//! problem at once, each naming its key, so a bad deploy fails at start-up in one go.

pub mod raw;
#[cfg(test)]
mod s3_tests;

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
        apply_env_overrides(&mut table, env).map_err(|e| ConfigError(vec![e]))?;
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

fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(format!("{name}: malformed override name"));
        }
        // A value that parses as a TOML literal (number, bool, array, quoted string) is taken
        // as such; anything else is a plain string.
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let mut cur = &mut *table;
        for seg in &path[..path.len() - 1] {
            let entry = cur
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(format!("{name}: `{seg}` is not a section")),
            };
        }
        cur.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

/// `[storage.s3]`: every problem goes to `errs`; the returned value is only used when
/// there are none.
fn validate_s3(s3: &raw::StorageS3, errs: &mut Vec<String>) -> S3Config {
    let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let bucket = given(&s3.bucket).unwrap_or_else(|| {
        errs.push("storage.s3.bucket: required when storage.backend = \"s3\"".into());
        String::new()
    });
    let endpoint_url = given(&s3.endpoint_url);
    if let Some(e) = &endpoint_url
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        errs.push(format!(
            "storage.s3.endpoint_url: `{e}` is not an http:// or https:// URL"
        ));
    }
    let region = match (given(&s3.region), &endpoint_url) {
        (Some(r), _) => r,
        (None, Some(_)) => "us-east-1".into(),
        (None, None) => {
            errs.push("storage.s3.region: required unless storage.s3.endpoint_url is set".into());
            String::new()
        }
    };
    if s3.prefix.starts_with('/') {
        errs.push("storage.s3.prefix: must not start with `/`".into());
    }
    let secret = match (
        given(&s3.secret_access_key),
        given(&s3.secret_access_key_file),
    ) {
        (Some(_), Some(_)) => {
            errs.push(
                "storage.s3.secret_access_key_file: set either it or storage.s3.secret_access_key, not both"
                    .into(),
            );
            None
        }
        (Some(k), None) => Some(k),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                errs.push(format!(
                    "storage.s3.secret_access_key_file: {path} is empty"
                ));
                None
            }
            Err(e) => {
                errs.push(format!(
                    "storage.s3.secret_access_key_file: cannot read {path}: {e}"
                ));
                None
            }
        },
        (None, None) => None,
    };
    let key_id = given(&s3.access_key_id);
    let secret_given = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
    let credentials = match (key_id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(S3StaticCredentials {
            access_key_id,
            secret_access_key,
        }),
        (Some(_), None) if !secret_given => {
            errs.push(
                "storage.s3.secret_access_key: required with storage.s3.access_key_id (or secret_access_key_file)"
                    .into(),
            );
            None
        }
        (None, _) if secret_given => {
            errs.push(
                "storage.s3.access_key_id: required with storage.s3.secret_access_key(_file)"
                    .into(),
            );
            None
        }
        _ => None,
    };
    let mut timeout = |key: &str, v: f64| -> Duration {
        match Duration::try_from_secs_f64(v) {
            Ok(d) if !d.is_zero() && v <= 3600.0 => d,
            _ => {
                errs.push(format!("{key}: must be a number of seconds in (0, 3600]"));
                Duration::from_secs(1)
            }
        }
    };
    let connect_timeout = timeout("storage.s3.connect_timeout_s", s3.connect_timeout_s);
    let read_timeout = timeout("storage.s3.read_timeout_s", s3.read_timeout_s);
    S3Config {
        bucket,
        region,
        endpoint_url,
        force_path_style: s3.force_path_style,
        prefix: s3.prefix.clone(),
        credentials,
        connect_timeout,
        read_timeout,
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
        "s3" => StorageConfig::S3(validate_s3(&raw.storage.s3, &mut errs)),
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
    errs.extend(overlapping_prefixes(a));
    let access = AccessConfig {
        public_prefix: a.public_prefix.clone(),
        protected_prefix: a.protected_prefix.clone(),
        private_prefix: a.private_prefix.clone(),
        other,
    };

    let auth = validate_auth(&raw, &mut errs);
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
    let warnings = risky_combinations(&auth);
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

/// Combinations that are valid but unsafe in most deployments.
fn risky_combinations(auth: &AuthConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if auth.trust_viewer_address && auth.origin_secrets.is_empty() {
        warnings.push(
            "cloudfront.trust_viewer_address is on without cloudfront.origin_secret: anyone who \
             reaches the origin directly can forge CloudFront-Viewer-Address (defeating IpAddress \
             policies and rate limits). Set cloudfront.origin_secret, or make the origin reachable \
             only from CloudFront's managed prefix list (com.amazonaws.global.cloudfront.origin-facing)."
                .into(),
        );
    }
    warnings
}

/// Reads a secret from a `*_file` path (trailing newline trimmed).
/// Access prefixes that are equal or nested (compared case-insensitively, as a laptop's
/// file system resolves keys) would give one key two levels: with `public_prefix = "img/"`
/// and `private_prefix = "img/private/"` a guest reads private images.
fn overlapping_prefixes(a: &raw::Access) -> Vec<String> {
    let named = [
        ("access.public_prefix", a.public_prefix.to_lowercase()),
        ("access.protected_prefix", a.protected_prefix.to_lowercase()),
        ("access.private_prefix", a.private_prefix.to_lowercase()),
    ];
    let mut errs = Vec::new();
    for (i, (ka, pa)) in named.iter().enumerate() {
        for (kb, pb) in &named[i + 1..] {
            if pa.is_empty() || pb.is_empty() {
                continue;
            }
            if pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str()) {
                errs.push(format!(
                    "{ka}, {kb}: access prefixes must not be equal or nested (`{pa}`, `{pb}`, compared case-insensitively)"
                ));
            }
        }
    }
    errs
}

fn read_secret_file(key: &str, path: &str, errs: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            errs.push(format!("{key}: cannot read {path}: {e}"));
            None
        }
    }
}

fn validate_auth(raw: &RawConfig, errs: &mut Vec<String>) -> AuthConfig {
    let cf = &raw.cloudfront;
    let origin_secret_header = axum::http::HeaderName::from_bytes(
        cf.origin_secret_header.as_bytes(),
    )
    .unwrap_or_else(|_| {
        errs.push(format!(
            "cloudfront.origin_secret_header: `{}` is not a header name",
            cf.origin_secret_header
        ));
        axum::http::HeaderName::from_static("x-origin-verify")
    });
    let mut origin_secrets = cf.origin_secret.clone();
    if let Some(f) = &cf.origin_secret_file
        && let Some(text) = read_secret_file("cloudfront.origin_secret_file", f, errs)
    {
        origin_secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    if origin_secrets.len() > 2 {
        errs.push("cloudfront.origin_secret: at most two secrets (current and next)".into());
    }
    if origin_secrets
        .iter()
        .any(|s| s.len() < 16 || axum::http::HeaderValue::from_str(s).is_err())
    {
        errs.push(
            "cloudfront.origin_secret: each secret needs at least 16 header-safe characters".into(),
        );
    }
    let mut edge_verified_secret = cf.edge_verified_secret.clone();
    if let Some(f) = &cf.edge_verified_secret_file {
        edge_verified_secret = read_secret_file("cloudfront.edge_verified_secret_file", f, errs);
    }
    if edge_verified_secret.as_ref().is_some_and(|s| s.len() < 16) {
        errs.push("cloudfront.edge_verified_secret: at least 16 characters".into());
    }
    let mut cloudfront_keys = HashMap::new();
    for (i, k) in cf.keys.iter().enumerate() {
        let key = format!("cloudfront.keys[{i}]");
        if k.id.is_empty() {
            errs.push(format!("{key}.id: must not be empty"));
        }
        let pem = match (&k.public_key_pem, &k.public_key_file) {
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| errs.push(format!("{key}.public_key_file: cannot read {f}: {e}")))
                .ok(),
            _ => {
                errs.push(format!(
                    "{key}: give exactly one of public_key_pem and public_key_file"
                ));
                None
            }
        };
        if let Some(pem) = pem {
            match crate::auth::cloudfront::parse_public_key(&pem) {
                Ok(pk) => {
                    if cloudfront_keys.insert(k.id.clone(), pk).is_some() {
                        errs.push(format!("{key}.id: `{}` listed twice", k.id));
                    }
                }
                Err(e) => errs.push(format!("{key}: {e}")),
            }
        }
    }
    let mut public_base_urls = Vec::new();
    for (i, u) in cf.public_base_urls.iter().enumerate() {
        let ok = (u.starts_with("https://") || u.starts_with("http://"))
            && u.splitn(4, '/').nth(3).is_none_or(|rest| rest.is_empty());
        if !ok {
            errs.push(format!(
                "cloudfront.public_base_urls[{i}]: `{u}` must be a scheme and host only, e.g. https://d111111abcdef8.cloudfront.net"
            ));
        }
        public_base_urls.push(u.trim_end_matches('/').to_string());
    }
    if !cloudfront_keys.is_empty() && public_base_urls.is_empty() {
        errs.push("cloudfront.public_base_urls: needed to verify signed URLs (the distribution's domain names)".into());
    }
    let signing = match (&cf.signing_key_file, &cf.signing_key_pair_id) {
        (Some(f), Some(id)) => Some((PathBuf::from(f), id.clone())),
        (None, None) => None,
        _ => {
            errs.push("cloudfront.signing_key_file: set together with signing_key_pair_id".into());
            None
        }
    };

    let mut api_key_hashes = Vec::new();
    for (i, h) in raw.admin.api_keys_sha256.iter().enumerate() {
        let mut out = [0u8; 32];
        let ok = h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && hex::decode_to_slice(h, &mut out).is_ok();
        if ok {
            api_key_hashes.push(out);
        } else {
            errs.push(format!(
                "admin.api_keys_sha256[{i}]: 64 lowercase hex digits (sha256sum of the key)"
            ));
        }
    }

    let c = &raw.cognito;
    let cognito = if c.user_pool_id.is_some() || c.issuer.is_some() {
        let issuer = match (&c.issuer, &c.region, &c.user_pool_id) {
            (Some(i), _, _) => Some(i.trim_end_matches('/').to_string()),
            (None, Some(r), Some(p)) => Some(format!("https://cognito-idp.{r}.amazonaws.com/{p}")),
            _ => {
                errs.push(
                    "cognito.region: needed with cognito.user_pool_id (or set cognito.issuer)"
                        .into(),
                );
                None
            }
        };
        let token_use = match c.token_use.as_str() {
            "id" => crate::auth::jwt::TokenUse::Id,
            "access" => crate::auth::jwt::TokenUse::Access,
            "any" => crate::auth::jwt::TokenUse::Any,
            o => {
                errs.push(format!("cognito.token_use: `{o}` is not id, access or any"));
                crate::auth::jwt::TokenUse::Id
            }
        };
        if c.client_ids.is_empty() {
            errs.push(
                "cognito.client_ids: list the app client ids whose tokens are accepted".into(),
            );
        }
        if c.identity_pool_id.is_some() {
            errs.push(
                "cognito.identity_pool_id: Amplify identity ids (GetId) are not supported yet"
                    .into(),
            );
        }
        if c.jwks_min_refresh_s == 0 {
            errs.push("cognito.jwks_min_refresh_s: must be at least 1".into());
        }
        issuer.map(|issuer| CognitoConfig {
            jwks_url: c
                .jwks_url
                .clone()
                .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json")),
            issuer,
            client_ids: c.client_ids.clone(),
            token_use,
            identity_claim: c.identity_claim.clone(),
            leeway_s: c.leeway_s,
            jwks_min_refresh: Duration::from_secs(c.jwks_min_refresh_s),
        })
    } else {
        None
    };
    let local = raw.auth.local.as_ref().map(|l| LocalAuthConfig {
        key_file: PathBuf::from(&l.key_file),
        issuer: l.issuer.clone().unwrap_or_else(|| "imgorigin-local".into()),
    });
    if let (Some(l), Some(c)) = (&local, &cognito)
        && l.issuer == c.issuer
    {
        errs.push("auth.local.issuer: must differ from the Cognito issuer".into());
    }
    AuthConfig {
        origin_secret_header,
        origin_secrets,
        edge_verified_secret,
        cloudfront_keys,
        public_base_urls,
        trust_viewer_address: cf.trust_viewer_address,
        signing,
        api_key_hashes,
        admin_groups: raw.admin.groups.clone(),
        cognito,
        local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.metrics_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.server.request_timeout, Duration::from_secs(25));
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.api_timeout, Duration::from_secs(60));
        assert_eq!(c.format.default, DefaultFormat::Source);
        assert!(c.format.avif);
        assert_eq!(c.metadata_url, "sqlite://data/imgorigin.db");
        assert!(
            matches!(c.storage, StorageConfig::Fs { ref root } if root == Path::new("data/originals"))
        );
        assert_eq!(
            c.cache_control.public,
            "public, max-age=31536000, immutable"
        );
        assert_eq!(c.access.other, OtherAccess::None);
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_toml_and_env(
            "[server]\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_width = 100\n",
            env(&[
                ("IMGORIGIN__SERVER__LISTEN", "0.0.0.0:8081"),
                ("IMGORIGIN__LIMITS__ALLOWED_WIDTHS", "[64, 32]"),
                ("IMGORIGIN__CACHE__VARIANT_BYTES", "64MiB"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8081");
        assert_eq!(c.limits.max_width, 100);
        assert_eq!(c.limits.allowed_widths, vec![32, 64]);
        assert_eq!(c.cache.variant_bytes, 64 << 20);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml_and_env("[server]\nlisten_addr = \"x\"\n", env(&[])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("server"), "{msg}");
        assert!(msg.contains("listen_addr"), "{msg}");
        let e = Config::from_toml_and_env("", env(&[("IMGORIGIN__LIMITS__MAX_WIDHT", "5")]))
            .unwrap_err();
        assert!(e.to_string().contains("max_widht"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e =
            Config::from_toml_and_env("[limits]\nmax_width = \"wide\"\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("limits.max_width"), "{e}");
    }

    #[test]
    fn every_problem_reported_at_once() {
        let e = Config::from_toml_and_env(
            "[server]\nlisten = \"nowhere\"\n[log]\nformat = \"xml\"\n[format]\njpeg_quality = 0\navif_speed = 11\n[access]\nother = \"everyone\"\n",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|l| l.split(':').next().unwrap()).collect();
        for k in [
            "server.listen",
            "log.format",
            "format.jpeg_quality",
            "format.avif_speed",
            "access.other",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(raw::parse_byte_size("1024").unwrap(), 1024);
        assert_eq!(raw::parse_byte_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(raw::parse_byte_size("3 GB").unwrap(), 3_000_000_000);
        assert!(raw::parse_byte_size("lots").is_err());
        assert!(raw::parse_byte_size("5XB").is_err());
    }

    #[test]
    fn unavailable_security_features_fail_loudly() {
        let e = Config::from_toml_and_env("[cloudfront]\norigin_secret = [\"s\"]\n", env(&[]))
            .unwrap_err();
        assert!(e.to_string().contains("cloudfront"), "{e}");
    }

    /// Regression (security review, finding 9): nested or equal access prefixes gave a
    /// guest private images with a one-year public Cache-Control.
    #[test]
    fn overlapping_access_prefixes_are_refused() {
        for (toml, names) in [
            (
                "[access]\npublic_prefix = \"img/\"\nprivate_prefix = \"img/private/\"\n",
                ["access.public_prefix", "access.private_prefix"],
            ),
            (
                "[access]\nprotected_prefix = \"public/\"\n",
                ["access.public_prefix", "access.protected_prefix"],
            ),
            (
                "[access]\nprivate_prefix = \"Protected/x/\"\n",
                ["access.protected_prefix", "access.private_prefix"],
            ),
        ] {
            let e = Config::from_toml_and_env(toml, env(&[])).unwrap_err();
            let text = e.to_string();
            for n in names {
                assert!(text.contains(n), "{toml}: {text}");
            }
        }
        Config::from_toml_and_env(
            "[access]\npublic_prefix = \"img/pub/\"\nprivate_prefix = \"img/priv/\"\n",
            env(&[]),
        )
        .unwrap();
    }

    /// Regression (finding 10): trusting CloudFront-Viewer-Address without an origin
    /// secret is accepted but warned about, naming the key that fixes it.
    #[test]
    fn trusted_viewer_address_without_origin_secret_warns() {
        let c = Config::from_toml_and_env("[cloudfront]\ntrust_viewer_address = true\n", env(&[]))
            .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("cloudfront.origin_secret"));
        let c = Config::from_toml_and_env(
            "[cloudfront]\ntrust_viewer_address = true\norigin_secret = [\"0123456789abcdef-secret\"]\n",
            env(&[]),
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(Config::defaults().warnings.is_empty());
    }

    // Render cost caps.
    #[test]
    fn output_pixel_caps() {
        let c = Config::defaults();
        assert_eq!(c.limits.max_output_pixels, 40_000_000);
        assert_eq!(c.limits.max_avif_output_pixels, 8_388_608);
        let e =
            Config::from_toml_and_env("[limits]\nmax_output_pixels = 0\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("limits.max_output_pixels"), "{e}");
    }
}

//! Stage one of configuration: the TOML shape, exactly as users write it. Every struct
//! rejects unknown keys so a typo fails at start-up instead of being silently ignored.
//! Defaults live here, next to the key they belong to.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: Server,
    pub log: Log,
    pub storage: Storage,
    pub metadata: Metadata,
    pub cache: Cache,
    pub limits: Limits,
    pub format: Format,
    pub cache_control: CacheControl,
    pub cloudfront: Cloudfront,
    pub cognito: Cognito,
    pub auth: Auth,
    pub admin: Admin,
    pub access: Access,
    pub shares: Shares,
    pub rate_limit: RateLimit,
    pub watermarks: BTreeMap<String, Watermark>,
    pub gallery: Gallery,
    pub originals: Originals,
    pub presets: BTreeMap<String, Preset>,
    pub delivery: Delivery,
    pub cluster: Cluster,
    pub ingest: Ingest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub metrics_listen: String,
    pub shutdown_grace_s: u64,
    pub request_timeout_s: u64,
    // Connection hygiene (security review, issue 11).
    pub header_read_timeout_s: u64,
    pub idle_timeout_s: u64,
    pub max_connections: usize,
    pub api_timeout_s: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9090".into(),
            shutdown_grace_s: 20,
            request_timeout_s: 25,
            header_read_timeout_s: 10,
            idle_timeout_s: 75,
            max_connections: 1024,
            api_timeout_s: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: String,
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub backend: String,
    pub fs: StorageFs,
    pub s3: StorageS3,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            backend: "fs".into(),
            fs: StorageFs::default(),
            s3: StorageS3::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageFs {
    pub root: String,
}

impl Default for StorageFs {
    fn default() -> Self {
        StorageFs {
            root: "data/originals".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageS3 {
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub connect_timeout_s: f64,
    pub read_timeout_s: f64,
}

impl Default for StorageS3 {
    fn default() -> Self {
        StorageS3 {
            bucket: None,
            region: None,
            endpoint_url: None,
            force_path_style: false,
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            connect_timeout_s: 3.0,
            read_timeout_s: 10.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metadata {
    pub url: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            url: "sqlite://data/imgorigin.db".into(),
        }
    }
}

/// A byte size: an integer, or a string such as `"256MiB"` / `"50MB"`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "ByteSizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(r: ByteSizeRepr) -> Result<Self, String> {
        match r {
            ByteSizeRepr::Int(n) => Ok(ByteSize(n)),
            ByteSizeRepr::Text(s) => parse_byte_size(&s).map(ByteSize),
        }
    }
}

pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte size (e.g. 1048576, \"64MiB\", \"2GB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown byte-size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("byte size `{s}` is too large"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    pub variant_bytes: ByteSize,
    pub source_bytes: ByteSize,
    pub decoded_bytes: ByteSize,
    pub source_ttl_s: u64,
    pub shared: SharedCache,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            variant_bytes: ByteSize(256 << 20),
            source_bytes: ByteSize(256 << 20),
            decoded_bytes: ByteSize(256 << 20),
            source_ttl_s: 60,
            shared: SharedCache::default(),
        }
    }
}

/// `[cache.shared]` (SPEC §12): rendered variants in the storage bucket, shared by all
/// instances.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedCache {
    /// `off` or `s3`.
    pub backend: String,
    pub prefix: String,
}

impl Default for SharedCache {
    fn default() -> Self {
        SharedCache {
            backend: "off".into(),
            prefix: "_variants/".into(),
        }
    }
}

/// `[ingest]` (SPEC §12): S3 event notifications from an SQS queue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Empty: ingest is off.
    pub queue_url: String,
    pub endpoint_url: String,
    pub concurrency: usize,
    pub wait_s: u64,
    pub eager_presets: Vec<String>,
    /// `off` or `rekognition`.
    pub labels: String,
    /// `off` or `rekognition`.
    pub moderation: String,
    pub min_confidence: f32,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            queue_url: String::new(),
            endpoint_url: String::new(),
            concurrency: 2,
            wait_s: 20,
            eager_presets: Vec::new(),
            labels: "off".into(),
            moderation: "off".into(),
            min_confidence: 80.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_source_bytes: ByteSize,
    pub max_source_pixels: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_upload_bytes: ByteSize,
    pub allowed_widths: Option<Vec<u32>>,
    /// 0 = number of cores.
    pub transform_concurrency: usize,
    pub transform_queue: usize,
    // Render cost caps (output pixels per format).
    pub max_output_pixels: u64,
    pub max_avif_output_pixels: u64,
    /// Animated GIF/WebP sources rendered with their animation.
    pub max_animation_frames: u32,
    /// Sum over frames of the canvas pixels; `None` = `max_source_pixels` × 4.
    pub max_animation_pixels: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: ByteSize(50 << 20),
            max_source_pixels: 100_000_000,
            max_width: 8192,
            max_height: 8192,
            max_upload_bytes: ByteSize(50 << 20),
            allowed_widths: None,
            transform_concurrency: 0,
            transform_queue: 64,
            // 40 MP: above 8K UHD (7680x4320 = 33 MP), so no display size is refused.
            max_output_pixels: 40_000_000,
            // 2^23: a 3840x2160 (4K UHD) frame still fits; AVIF is the slowest encoder per pixel.
            max_avif_output_pixels: 8_388_608,
            max_animation_frames: 300,
            max_animation_pixels: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Format {
    pub default: String,
    pub avif: bool,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub avif_encoder: String,
    /// Unset: the encoder's default speed.
    pub avif_speed: Option<u8>,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            default: "source".into(),
            avif: true,
            jpeg_quality: 80,
            webp_quality: 80,
            avif_quality: 60,
            avif_encoder: "aom".into(),
            avif_speed: None,
        }
    }
}

/// `[originals]`: what a request without parameters returns (SPEC §10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Originals {
    /// `owner` (default), `strip` or `keep`.
    pub metadata: String,
}

impl Default for Originals {
    fn default() -> Self {
        Originals {
            metadata: "owner".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheControl {
    pub public: String,
    pub private: String,
    pub not_found: String,
    pub share_max_age: u64,
}

impl Default for CacheControl {
    fn default() -> Self {
        CacheControl {
            public: "public, max-age=31536000, immutable".into(),
            private: "private, max-age=3600".into(),
            not_found: "public, max-age=60".into(),
            share_max_age: 300,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cloudfront {
    pub public_base_urls: Vec<String>,
    pub keys: Vec<CloudfrontKey>,
    pub signing_key_file: Option<String>,
    pub signing_key_pair_id: Option<String>,
    pub origin_secret_header: String,
    pub origin_secret: Vec<String>,
    pub origin_secret_file: Option<String>,
    pub edge_verified_secret: Option<String>,
    pub edge_verified_secret_file: Option<String>,
    pub trust_viewer_address: bool,
    /// Invalidations for deletes, level changes and purges (SPEC §14).
    pub distribution_id: Option<String>,
    /// The CloudFront API endpoint, for compatible test servers.
    pub api_endpoint_url: Option<String>,
    pub invalidations_per_min: u32,
}

impl Default for Cloudfront {
    fn default() -> Self {
        Cloudfront {
            public_base_urls: Vec::new(),
            keys: Vec::new(),
            signing_key_file: None,
            signing_key_pair_id: None,
            origin_secret_header: "X-Origin-Verify".into(),
            origin_secret: Vec::new(),
            origin_secret_file: None,
            edge_verified_secret: None,
            edge_verified_secret_file: None,
            trust_viewer_address: false,
            distribution_id: None,
            api_endpoint_url: None,
            invalidations_per_min: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudfrontKey {
    pub id: String,
    pub public_key_pem: Option<String>,
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cognito {
    pub region: Option<String>,
    pub user_pool_id: Option<String>,
    pub client_ids: Vec<String>,
    pub token_use: String,
    pub identity_claim: String,
    pub issuer: Option<String>,
    pub jwks_url: Option<String>,
    pub leeway_s: u64,
    pub jwks_min_refresh_s: u64,
    pub identity_pool_id: Option<String>,
    /// A Cognito Identity-compatible endpoint for GetId (test servers).
    pub identity_endpoint_url: Option<String>,
    /// The Hosted UI domain the gallery signs in with (SPEC §15).
    pub domain: Option<String>,
    /// The app client of the gallery (public client, authorization code + PKCE).
    pub gallery_client_id: Option<String>,
}

impl Default for Cognito {
    fn default() -> Self {
        Cognito {
            region: None,
            user_pool_id: None,
            client_ids: Vec::new(),
            token_use: "id".into(),
            identity_claim: "sub".into(),
            issuer: None,
            jwks_url: None,
            leeway_s: 0,
            jwks_min_refresh_s: 60,
            identity_pool_id: None,
            identity_endpoint_url: None,
            domain: None,
            gallery_client_id: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub local: Option<AuthLocal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLocal {
    pub key_file: String,
    pub issuer: Option<String>,
    /// Lifetime of the tokens `POST /api/v1/session` hands out.
    #[serde(default = "default_session_ttl_s")]
    pub session_ttl_s: u64,
}

fn default_session_ttl_s() -> u64 {
    43_200
}

/// `[presets.NAME]` (SPEC §11).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub params: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// SPEC §11: unsigned, non-admin requests may carry only p, w, dpr, fm=auto, v.
    pub strict: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gallery {
    pub enabled: bool,
}

impl Default for Gallery {
    fn default() -> Self {
        Gallery { enabled: true }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub api_keys_sha256: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    pub public_prefix: String,
    pub protected_prefix: String,
    pub private_prefix: String,
    pub other: String,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            public_prefix: "public/".into(),
            protected_prefix: "protected/".into(),
            private_prefix: "private/".into(),
            other: "none".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shares {
    pub max_ttl_s: u64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares { max_ttl_s: 604_800 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub enabled: bool,
    pub misses_per_s: f64,
    pub writes_per_s: f64,
    pub burst: u32,
    /// IPv6 clients are keyed by this prefix length: one /64 is one subscriber.
    pub ipv6_prefix: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            enabled: false,
            misses_per_s: 10.0,
            writes_per_s: 2.0,
            burst: 20,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    pub file: String,
    #[serde(default = "default_wm_position")]
    pub position: String,
    #[serde(default = "default_wm_opacity")]
    pub opacity: f32,
    #[serde(default = "default_wm_scale")]
    pub scale: f32,
}

fn default_wm_position() -> String {
    "se".into()
}
fn default_wm_opacity() -> f32 {
    0.5
}
fn default_wm_scale() -> f32 {
    0.25
}

/// `[cluster]` (SPEC §14): how soon every instance applies a change made on one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    pub propagation_s: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster { propagation_s: 2 }
    }
}

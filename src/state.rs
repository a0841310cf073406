//! Everything built once at start-up and shared by all requests (`Arc<AppState>`), and
//! the narrow views of it that lower layers take (the original/record lifecycle, URL
//! building). Built by `app`; read by `server`, `delivery` and `api`.

use crate::auth::Authenticator;
use crate::auth::cloudfront::UrlSigner;
use crate::auth::local::LocalIssuer;
use crate::auth::ratelimit::RateLimits;
use crate::cache::Caches;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::headers::CacheControls;
use crate::metadata::MetadataStore;
use crate::params::ParseSettings;
use crate::pipeline::Watermark;
use crate::shared::{PendingWrite, SharedVariants};
use crate::storage::Storage;
use crate::telemetry::Metrics;
use crate::workers::Workers;
use std::collections::HashMap;
use std::sync::Arc;

/// Everything built once at start-up and shared by all requests.
pub struct AppState {
    pub config: Config,
    pub auth: Authenticator,
    pub rate_limits: RateLimits,
    pub storage: Arc<dyn Storage>,
    pub caches: Caches,
    /// Changes every instance (and CloudFront) must apply (SPEC §14).
    pub cluster: Cluster,
    pub workers: Workers,
    pub metrics: Metrics,
    /// `cache_control.public`/`private` as header values, parsed once.
    pub cache_controls: CacheControls,
    pub parse: ParseSettings,
    pub watermarks: HashMap<String, Arc<Watermark>>,
    pub metadata: Arc<dyn MetadataStore>,
    /// Signs share links (`cloudfront.signing_key_file`); `None` when not configured.
    pub signer: Option<UrlSigner>,
    /// Mints sign-in tokens (`[auth.local]`); `None` when not configured.
    pub local_issuer: Option<LocalIssuer>,
    /// `[cache.shared]` (SPEC §12); a no-op when off.
    pub shared: SharedVariants,
    /// Its write queue, until `App::start_background` starts the writer.
    pub shared_writes: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<PendingWrite>>>,
    /// The ingest consumer (SPEC §12), once started; aborting it stops ingest here.
    pub ingest_task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl AppState {
    /// The original/record lifecycle over this app's stores.
    pub fn library(&self) -> crate::library::Library<'_> {
        crate::library::Library {
            storage: self.storage.as_ref(),
            metadata: self.metadata.as_ref(),
            caches: &self.caches,
            cluster: &self.cluster,
            workers: &self.workers,
            shared: &self.shared,
            max_source_bytes: self.config.limits.max_source_bytes,
            max_source_pixels: self.config.limits.max_source_pixels,
        }
    }
}

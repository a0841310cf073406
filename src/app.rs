//! The composition root: builds [`AppState`] from a validated [`Config`] (storage and
//! metadata injectable), starts the background work explicitly, and runs the server.

use crate::auth::Authenticator;
use crate::auth::cloudfront::UrlSigner;
use crate::auth::jwt::{JwtSettings, JwtVerifier, KeySource};
use crate::auth::local::LocalIssuer;
use crate::auth::ratelimit::RateLimits;
use crate::cache::Caches;
use crate::cluster::{Cluster, ClusterSettings, Peers};
use crate::config::{Config, StorageConfig};
use crate::headers::CacheControls;
use crate::metadata::MetadataStore;
use crate::pipeline::Watermark;
use crate::server;
use crate::shared::SharedVariants;
use crate::state::AppState;
use crate::storage::Storage;
use crate::storage::fs::FsStorage;
use crate::storage::s3::S3Storage;
use crate::telemetry::Metrics;
use crate::workers::Workers;
use axum::Router;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use crate::library::STALE_AFTER_S;

/// How often idle clients' rate-limit state is freed.
const RATE_LIMIT_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often expired upload reservations are swept.
const RESERVATION_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// A built server, not yet listening, its background work not yet started.
pub struct App {
    pub state: Arc<AppState>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// The storage `storage.backend` names.
pub async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, StartError> {
    Ok(match &config.storage {
        StorageConfig::Fs { root } => {
            Arc::new(FsStorage::new(root).map_err(|e| StartError(format!("storage.fs.root: {e}")))?)
        }
        StorageConfig::S3(s3) => Arc::new(S3Storage::new(s3).await),
    })
}

/// The one way to build an [`App`]: from a validated config, with storage and metadata
/// opened from it unless given (tests inject failing or counting stores).
pub struct AppBuilder {
    config: Config,
    storage: Option<Arc<dyn Storage>>,
    metadata: Option<Arc<dyn MetadataStore>>,
}

impl AppBuilder {
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    pub fn metadata(mut self, metadata: Arc<dyn MetadataStore>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Opens what was not given (metadata migrations run here), loads keys and
    /// watermarks. Starts nothing: see [`App::start_background`].
    pub async fn build(self) -> Result<App, StartError> {
        install_crypto_provider();
        let storage = match self.storage {
            Some(s) => s,
            None => open_storage(&self.config).await?,
        };
        build_state(self.config, storage, self.metadata).await
    }
}

/// One TLS crypto backend for the whole process (aws-lc-rs, as the AWS SDK uses); HTTP
/// clients built without a bundled provider (reqwest for JWKS) use it. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn build_state(
    config: Config,
    storage: Arc<dyn Storage>,
    metadata: Option<Arc<dyn MetadataStore>>,
) -> Result<App, StartError> {
    let metadata = match metadata {
        Some(m) => m,
        None => crate::metadata::open(&config.metadata_url)
            .await
            .map_err(|e| StartError(format!("metadata.url: {e}")))?,
    };
    let signer = match &config.auth.signing {
        Some((file, key_pair_id)) => {
            let pem = std::fs::read_to_string(file).map_err(|e| {
                StartError(format!(
                    "cloudfront.signing_key_file: cannot read {}: {e}",
                    file.display()
                ))
            })?;
            Some(
                UrlSigner::from_pem(&pem, key_pair_id)
                    .map_err(|e| StartError(format!("cloudfront.signing_key_file: {e}")))?,
            )
        }
        None => None,
    };
    let mut watermarks = HashMap::new();
    for (name, w) in &config.watermarks {
        let bytes = std::fs::read(&w.file).map_err(|e| {
            StartError(format!(
                "watermarks.{name}.file: cannot read {}: {e}",
                w.file.display()
            ))
        })?;
        let wm = Watermark::from_bytes(&bytes, w.position, w.opacity, w.scale)
            .map_err(|e| StartError(format!("watermarks.{name}.file: {e}")))?;
        watermarks.insert(name.clone(), Arc::new(wm));
    }
    let (mut auth, local_issuer) = build_authenticator(&config)?;
    if let Some(c) = &config.auth.cognito
        && let Some(pool) = &c.identity_pool
    {
        auth.identities = Some(Arc::new(
            crate::auth::identity::IdentityResolver::new(
                pool.clone(),
                c.issuer.clone(),
                metadata.clone(),
            )
            .await,
        ));
    }
    let rate_limits = RateLimits::new(&config.rate_limit);
    let parse = config.parse_settings();
    let shared_prefix = config
        .cache
        .shared
        .enabled
        .then(|| config.cache.shared.prefix.clone());
    let (shared, shared_writes) = SharedVariants::new(storage.clone(), shared_prefix);
    let caches = Caches::new(
        config.cache.variant_bytes,
        config.cache.source_bytes,
        config.cache.decoded_bytes,
    );
    let metrics = Metrics::new();
    let cluster = Cluster::new(
        ClusterSettings {
            peers: peers_of(&config.metadata_url),
            propagation: config.cluster.propagation,
            invalidations: config.cluster.invalidations.clone(),
        },
        caches.clone(),
        metrics.clone(),
    )
    .await
    .map_err(StartError)?;
    let state = AppState {
        caches,
        cluster,
        shared,
        shared_writes: std::sync::Mutex::new(shared_writes),
        ingest_task: std::sync::Mutex::new(None),
        workers: Workers::new(
            config.limits.transform_concurrency,
            config.limits.transform_queue,
        ),
        metrics,
        cache_controls: CacheControls::new(
            &config.cache_control.public,
            &config.cache_control.private,
        ),
        parse,
        watermarks,
        storage,
        auth,
        rate_limits,
        metadata,
        signer,
        local_issuer,
        config,
    };
    let state = Arc::new(state);
    Ok(App { state })
}

/// The other instances that share this one's data: those on the same PostgreSQL database
/// or DynamoDB table.
fn peers_of(metadata_url: &str) -> Peers {
    if metadata_url.starts_with("postgres://") || metadata_url.starts_with("postgresql://") {
        Peers::Postgres(metadata_url.to_string())
    } else if metadata_url.starts_with("dynamodb://") {
        Peers::Dynamodb(metadata_url.to_string())
    } else {
        Peers::Alone
    }
}

/// Runs `work` every `every` for as long as the app lives (the task holds only a weak
/// reference, so it ends when the app is dropped).
fn spawn_periodic<F, Fut>(state: &Arc<AppState>, every: std::time::Duration, work: F)
where
    F: Fn(Arc<AppState>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            work(state).await;
        }
    });
}

/// JWT verifiers (Cognito, local issuer) and the rest of the request authentication; the
/// local issuer also mints the tokens of `POST /api/v1/session`.
fn build_authenticator(
    config: &Config,
) -> Result<(Authenticator, Option<LocalIssuer>), StartError> {
    let a = &config.auth;
    let mut jwt = Vec::new();
    if let Some(c) = &a.cognito {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| StartError(format!("cognito: cannot build an HTTP client: {e}")))?;
        jwt.push(JwtVerifier::new(
            JwtSettings {
                issuer: c.issuer.clone(),
                client_ids: c.client_ids.clone(),
                token_use: c.token_use,
                identity_claim: c.identity_claim.clone(),
                leeway_s: c.leeway_s,
                min_refresh: c.jwks_min_refresh,
            },
            KeySource::Remote {
                url: c.jwks_url.clone(),
                http,
            },
        ));
    }
    let mut local = None;
    if let Some(l) = &a.local {
        let issuer = LocalIssuer::load_or_create(&l.key_file, &l.issuer)
            .map_err(|e| StartError(format!("auth.local.key_file: {e}")))?;
        jwt.push(issuer.verifier());
        local = Some(issuer);
        // Made now, so the first sign-in with an unknown name is not slower than others.
        let _ = crate::auth::password::dummy_hash();
    }
    Ok((Authenticator::new(a, jwt), local))
}

impl App {
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            config,
            storage: None,
            metadata: None,
        }
    }

    /// Background work, started explicitly (by `run`, and by tests that want it): the
    /// sweep of uploads and deletes an earlier process left half-done, and the periodic
    /// rate-limit pruning and upload-reservation sweep. The tasks end with the app.
    pub fn start_background(&self) {
        self.state.cluster.start();
        self.start_shared_writer();
        if self.state.config.ingest.queue_url.is_some() {
            let task = tokio::spawn(crate::ingest::run(self.state.clone()));
            *lock(&self.state.ingest_task) = Some(task.abort_handle());
        }
        let sweep_state = self.state.clone();
        tokio::spawn(async move { sweep_state.library().sweep_unfinished(STALE_AFTER_S).await });
        spawn_periodic(&self.state, RATE_LIMIT_PRUNE_EVERY, |state| async move {
            state.rate_limits.shrink();
        });
        spawn_periodic(&self.state, RESERVATION_SWEEP_EVERY, |state| async move {
            state
                .library()
                .sweep_reservations(crate::metadata::now_micros())
                .await;
        });
    }

    /// The writer of the shared variant store (SPEC §12), when it is on. It holds the
    /// store's storage, not the app: it ends when the app (the queue's sender) is dropped.
    fn start_shared_writer(&self) {
        let Some(rx) = lock(&self.state.shared_writes).take() else {
            return;
        };
        let weak = Arc::downgrade(&self.state);
        let storage = self.state.storage.clone();
        tokio::spawn(crate::shared::run_writer(storage, rx, move |outcome| {
            if let Some(state) = weak.upgrade() {
                state.metrics.shared_write(outcome.as_str());
            }
        }));
    }

    /// Only the ingest consumer and the shared-store writer, no listener
    /// (`imgorigin ingest`, a worker-only deployment), until `shutdown` resolves.
    pub async fn run_ingest_only(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        if self.state.config.ingest.queue_url.is_none() {
            return Err(StartError(
                "ingest.queue_url: not set; nothing to do".into(),
            ));
        }
        self.start_background();
        shutdown.await;
        if let Some(t) = lock(&self.state.ingest_task).take() {
            t.abort();
        }
        Ok(())
    }

    /// The public router (delivery, health, API).
    pub fn router(&self) -> Router {
        server::router(&self.state)
    }

    /// The metrics router (`/metrics`), served on its own listener.
    pub fn metrics_router(&self) -> Router {
        server::metrics_router(&self.state)
    }

    /// Serves until `shutdown` resolves (see [`server::serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(self.state, listener, metrics_listener, shutdown).await
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds both listeners from the config and serves until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    let listen = config.server.listen;
    let metrics_listen = config.server.metrics_listen;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let app = App::builder(config).build().await?;
    app.start_background();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| StartError(format!("server.listen: cannot bind {listen}: {e}")))?;
    let metrics_listener = TcpListener::bind(metrics_listen).await.map_err(|e| {
        StartError(format!(
            "server.metrics_listen: cannot bind {metrics_listen}: {e}"
        ))
    })?;
    tracing::info!(%listen, %metrics_listen, "imgorigin listening");
    app.serve(listener, Some(metrics_listener), server::shutdown_signal())
        .await
        .map_err(|e| StartError(format!("server error: {e}")))?;
    tracing::info!("imgorigin stopped");
    Ok(())
}

/// `imgorigin ingest`: the ingest consumer alone, until SIGTERM/SIGINT.
pub async fn run_ingest(config: Config) -> Result<(), StartError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let app = App::builder(config).build().await?;
    tracing::info!("imgorigin ingest worker started");
    app.run_ingest_only(server::shutdown_signal()).await?;
    tracing::info!("imgorigin ingest worker stopped");
    Ok(())
}

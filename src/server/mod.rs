//! Listener, router, per-request log and metrics, graceful shutdown, and the single
//! `Error -> Response` function.

mod problem;

pub use problem::error_response;

use crate::auth::Authenticator;
use crate::auth::cloudfront::UrlSigner;
use crate::auth::jwt::{JwtSettings, JwtVerifier, KeySource};
use crate::auth::local::LocalIssuer;
use crate::auth::ratelimit::RateLimits;
use crate::cache::Caches;
use crate::config::{Config, StorageConfig};
use crate::delivery::{self, CacheOutcome};
use crate::error::{Error, ErrorKind};
use crate::headers::CacheControls;
use crate::metadata::MetadataStore;
use crate::params::ParseSettings;
use crate::pipeline::Watermark;
use crate::storage::Storage;
use crate::storage::fs::FsStorage;
use crate::storage::s3::S3Storage;
use crate::telemetry::{Metrics, Route, Tier};
use crate::workers::Workers;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Response, header};
use axum::middleware::{self, Next};
use axum::routing::get;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// Everything built once at start-up and shared by all requests.
pub struct AppState {
    pub config: Config,
    pub auth: Authenticator,
    pub rate_limits: RateLimits,
    pub storage: Arc<dyn Storage>,
    pub caches: Caches,
    pub workers: Workers,
    pub metrics: Metrics,
    /// `cache_control.public`/`private` as header values, parsed once.
    pub cache_controls: CacheControls,
    pub parse: ParseSettings,
    pub watermarks: HashMap<String, Arc<Watermark>>,
    pub metadata: Arc<dyn MetadataStore>,
    /// Signs share links (`cloudfront.signing_key_file`); `None` when not configured.
    pub signer: Option<UrlSigner>,
}

pub use crate::library::STALE_AFTER_S;

/// How often idle clients' rate-limit state is freed.
const RATE_LIMIT_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often expired upload reservations are swept.
const RESERVATION_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

impl AppState {
    /// The original/record lifecycle over this app's stores.
    pub fn library(&self) -> crate::library::Library<'_> {
        crate::library::Library {
            storage: self.storage.as_ref(),
            metadata: self.metadata.as_ref(),
            caches: &self.caches,
        }
    }

    /// Delivery and share URLs as the API shows them.
    pub(crate) fn urls(&self) -> crate::api::Urls<'_> {
        crate::api::Urls {
            base: self
                .config
                .auth
                .public_base_urls
                .first()
                .map(String::as_str)
                .unwrap_or(""),
            signer: self.signer.as_ref(),
        }
    }
}

/// A built server, not yet listening.
pub struct App {
    pub state: Arc<AppState>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Builds the app from a validated config: storage, caches, workers, watermarks.
pub async fn build_app(config: Config) -> Result<App, StartError> {
    install_crypto_provider();
    let storage: Arc<dyn Storage> = match &config.storage {
        StorageConfig::Fs { root } => {
            Arc::new(FsStorage::new(root).map_err(|e| StartError(format!("storage.fs.root: {e}")))?)
        }
        StorageConfig::S3(s3) => Arc::new(S3Storage::new(s3).await),
    };
    build_app_with_storage(config, storage).await
}

/// One TLS crypto backend for the whole process (aws-lc-rs, as the AWS SDK uses); HTTP
/// clients built without a bundled provider (reqwest for JWKS) use it. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Like `build_app` with a given storage (tests inject failing or counting stores).
pub async fn build_app_with_storage(
    config: Config,
    storage: Arc<dyn Storage>,
) -> Result<App, StartError> {
    build_app_with_parts(config, storage, None).await
}

/// Like `build_app_with_storage`, with a given metadata store (tests inject failing
/// ones); `None` opens `metadata.url` and applies the migrations.
pub async fn build_app_with_parts(
    config: Config,
    storage: Arc<dyn Storage>,
    metadata: Option<Arc<dyn MetadataStore>>,
) -> Result<App, StartError> {
    install_crypto_provider();
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
    let auth = build_authenticator(&config)?;
    let rate_limits = RateLimits::new(&config.rate_limit);
    let parse = ParseSettings::new(
        &config.limits,
        &config.format,
        config.watermarks.keys().cloned().collect(),
    );
    let state = AppState {
        caches: Caches::new(
            config.cache.variant_bytes,
            config.cache.source_bytes,
            config.cache.decoded_bytes,
        ),
        workers: Workers::new(
            config.limits.transform_concurrency,
            config.limits.transform_queue,
        ),
        metrics: Metrics::new(),
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
        config,
    };
    let state = Arc::new(state);
    // Finish or undo uploads and deletes that an earlier process left half-done.
    let sweep_state = state.clone();
    tokio::spawn(async move { sweep_state.library().sweep_unfinished(STALE_AFTER_S).await });
    spawn_periodic(&state, RATE_LIMIT_PRUNE_EVERY, |state| async move {
        state.rate_limits.shrink();
    });
    spawn_periodic(&state, RESERVATION_SWEEP_EVERY, |state| async move {
        state
            .library()
            .sweep_reservations(crate::metadata::now_micros())
            .await;
    });
    Ok(App { state })
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

/// JWT verifiers (Cognito, local issuer) and the rest of the request authentication.
fn build_authenticator(config: &Config) -> Result<Authenticator, StartError> {
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
    if let Some(l) = &a.local {
        let issuer = LocalIssuer::load_or_create(&l.key_file, &l.issuer)
            .map_err(|e| StartError(format!("auth.local.key_file: {e}")))?;
        jwt.push(issuer.verifier());
    }
    Ok(Authenticator::new(a, jwt))
}

impl App {
    /// The public router (delivery, health, API).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .merge(crate::api::routes())
            .route("/api", axum::routing::any(api_placeholder))
            .route("/api/{*rest}", axum::routing::any(api_placeholder))
            .fallback(delivery_route)
            .layer(middleware::from_fn_with_state(
                self.state.clone(),
                origin_guard,
            ))
            .layer(middleware::from_fn_with_state(self.state.clone(), observe))
            .with_state(self.state.clone())
    }

    /// The metrics router (`/metrics`), served on its own listener.
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics_route))
            .with_state(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish for up to `server.shutdown_grace_s`.
    pub async fn serve(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.server.shutdown_grace;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        if let Some(ml) = metrics_listener {
            let mr = self.metrics_router();
            let rx2 = rx.clone();
            tokio::spawn(async move {
                let _ = axum::serve(ml, mr).with_graceful_shutdown(wait(rx2)).await;
            });
        }
        let router = self.router();
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait(rx.clone()));
        let deadline = async move {
            wait(rx).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = server => r,
            _ = deadline => {
                tracing::warn!("shutdown grace period over; dropping remaining connections");
                Ok(())
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response<Body> {
    if let Err(e) = state.storage.check().await {
        return error_response(
            &Error::new(ErrorKind::ServiceUnavailable, "storage is not reachable").with_cause(e),
            &state.config.cache_control.not_found,
        );
    }
    match state.metadata.check().await {
        Ok(()) => Response::new(Body::from("ready\n")),
        Err(e) => error_response(
            &Error::new(ErrorKind::ServiceUnavailable, "metadata is not reachable").with_cause(e),
            &state.config.cache_control.not_found,
        ),
    }
}

async fn api_placeholder(State(state): State<Arc<AppState>>) -> Response<Body> {
    error_response(
        &Error::new(ErrorKind::NotFound, "no such API route"),
        &state.config.cache_control.not_found,
    )
}

async fn metrics_route(State(state): State<Arc<AppState>>) -> Response<Body> {
    let m = &state.metrics;
    m.queue_depth(state.workers.queue_depth());
    // moka counts sizes lazily; settle pending inserts so the gauges are current.
    state.caches.variants.run_pending_tasks().await;
    state.caches.originals.run_pending_tasks().await;
    m.cache_bytes(Tier::Variant, state.caches.variants.weighted_size());
    m.cache_bytes(Tier::Original, state.caches.originals.weighted_size());
    m.cache_bytes(Tier::Decoded, state.caches.decoded.weighted_size());
    let mut r = Response::new(Body::from(m.encode()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// SPEC §3 step 1: every route but `/healthz` needs the origin secret when one is set.
async fn origin_guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    if req.uri().path() != "/healthz"
        && let Err(e) = state.auth.check_origin_secret(req.headers())
    {
        return error_response(&e, &state.config.cache_control.not_found);
    }
    next.run(req).await
}

async fn delivery_route(State(state): State<Arc<AppState>>, req: Request) -> Response<Body> {
    let timeout = state.config.server.request_timeout;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, _body) = req.into_parts();
    let work = delivery::handle(&state, &parts.method, &parts.uri, &parts.headers, peer);
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(ErrorKind::GatewayTimeout, "request timed out")),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = error_response(&e, &state.config.cache_control.not_found);
            if e.kind == ErrorKind::MethodNotAllowed {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            r
        }
    }
}

/// Request id from the client or CDN when it looks sane, else a new one.
fn request_id(req: &Request) -> String {
    for name in ["x-request-id", "x-amz-cf-id"] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok())
            && !v.is_empty()
            && v.len() <= 128
            && v.bytes().all(|b| b.is_ascii_graphic())
        {
            return v.to_string();
        }
    }
    crate::telemetry::new_request_id()
}

fn route_of(path: &str) -> Route {
    match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        p if p == "/api" || p.starts_with("/api/") => Route::Api,
        _ => Route::Image,
    }
}

/// One log line and the request metrics per request. The path is logged without its
/// query: signed URLs carry signatures there.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(256).collect();
    let mut route = route_of(&path);
    let mut resp = next.run(req).await;
    let outcome = resp.extensions().get::<CacheOutcome>().copied();
    if outcome == Some(CacheOutcome::Original) {
        route = Route::Original;
    }
    let status = resp.status().as_u16();
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    state.metrics.request(route, status, elapsed.as_secs_f64());
    let cause = resp
        .extensions()
        .get::<problem::ErrorCause>()
        .map(|c| c.0.as_str());
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status,
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        cache = outcome.map(|o| o.as_str()).unwrap_or("-"),
        error = cause.unwrap_or(""),
        "request"
    );
    resp
}

/// Binds both listeners from the config and serves until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    let listen = config.server.listen;
    let metrics_listen = config.server.metrics_listen;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let app = build_app(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| StartError(format!("server.listen: cannot bind {listen}: {e}")))?;
    let metrics_listener = TcpListener::bind(metrics_listen).await.map_err(|e| {
        StartError(format!(
            "server.metrics_listen: cannot bind {metrics_listen}: {e}"
        ))
    })?;
    tracing::info!(%listen, %metrics_listen, "imgorigin listening");
    app.serve(listener, Some(metrics_listener), shutdown_signal())
        .await
        .map_err(|e| StartError(format!("server error: {e}")))?;
    tracing::info!("imgorigin stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

//! Listeners (`listen`: accept loop, timeouts, connection cap), the router, the
//! per-request log and metrics, graceful shutdown, and the single `Error -> Response`
//! function. Nothing here builds state: that is `app`.

mod listen;
mod problem;

pub use problem::error_response;

use crate::delivery::{self, CacheOutcome};
use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use crate::telemetry::{Route, Tier};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, header};
use axum::middleware::{self, Next};
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// The public router (delivery, health, API).
pub fn router(state: &Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::api::routes())
        .merge(crate::gallery::routes(state.config.gallery_enabled))
        .route("/api", axum::routing::any(api_placeholder))
        .route("/api/{*rest}", axum::routing::any(api_placeholder))
        .fallback(delivery_route)
        .layer(middleware::from_fn_with_state(state.clone(), api_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), origin_guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone())
}

/// The metrics router (`/metrics`), served on its own listener.
pub fn metrics_router(state: &Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_route))
        .with_state(state.clone())
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `server.shutdown_grace_s`. Both listeners get the connection limits
/// of `[server]` (see `listen`).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sc = &state.config.server;
    let grace = sc.shutdown_grace;
    let limits = listen::ConnLimits {
        header_read_timeout: sc.header_read_timeout,
        idle_timeout: sc.idle_timeout,
        max_connections: sc.max_connections,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    if let Some(ml) = metrics_listener {
        tokio::spawn(listen::serve(
            ml,
            metrics_router(&state),
            limits,
            rx.clone(),
            grace,
        ));
    }
    listen::serve(listener, router(&state), limits, rx, grace).await;
    Ok(())
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

/// OpenMetrics for scrapers that ask for it (Prometheus does), text format 0.0.4 otherwise;
/// each labelled with its own content type so the scraper picks the right parser.
async fn metrics_route(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response<Body> {
    let m = &state.metrics;
    m.queue_depth(state.workers.queue_depth());
    // moka counts sizes lazily; settle pending inserts so the gauges are current.
    state.caches.variants.run_pending_tasks().await;
    state.caches.originals.run_pending_tasks().await;
    m.cache_bytes(Tier::Variant, state.caches.variants.weighted_size());
    m.cache_bytes(Tier::Original, state.caches.originals.weighted_size());
    m.cache_bytes(Tier::Decoded, state.caches.decoded.weighted_size());
    m.cache_bytes(Tier::Stripped, state.caches.stripped.weighted_size());
    m.cache_bytes(Tier::Facts, state.caches.facts.weighted_size());
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().starts_with("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            m.encode_openmetrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (m.encode_text(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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

/// `server.api_timeout_s` bounds every `/api` request, reading its body included (a slowly
/// dripped upload). On expiry the handler is dropped, which frees its buffers; the upload's
/// store step runs in its own task so it is never cut in half (see `api::upload::store`).
async fn api_deadline(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    if route_of(req.uri().path(), false) != Route::Api {
        return next.run(req).await;
    }
    match tokio::time::timeout(state.config.server.api_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error_response(
            &Error::new(ErrorKind::GatewayTimeout, "request timed out"),
            &state.config.cache_control.not_found,
        ),
    }
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

fn route_of(path: &str, gallery: bool) -> Route {
    match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        p if p == "/api" || p.starts_with("/api/") => Route::Api,
        "/" if gallery => Route::Gallery,
        p if p == "/_gallery" || p.starts_with("/_gallery/") => Route::Gallery,
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
    let mut route = route_of(&path, state.config.gallery_enabled);
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

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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

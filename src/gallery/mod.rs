//! The web gallery (SPEC §15): `GET /` and its files under `/_gallery/`, built into the
//! binary (plain HTML, CSS and JavaScript modules; no build step, nothing from another
//! host). `/_gallery/config.json` tells the page how to sign in; `/_gallery/csp-report`
//! logs Content-Security-Policy violations. The page is an ordinary client of `/api/v1`
//! and of delivery. See docs/gallery.md for the design (tokens, CSP, private images).

use crate::auth::jwt::TokenUse;
use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// One file of the gallery.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/auth.js", JS),
    asset!("js/grid.js", JS),
    asset!("js/detail.js", JS),
    asset!("js/upload.js", JS),
    asset!("js/images.js", JS),
    asset!("js/dom.js", JS),
    asset!("vendor/blurhash.js", JS),
    asset!("vendor/LICENSE-blurhash.txt", "text/plain; charset=utf-8"),
];

/// Strong ETags of the files, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let h = hex::encode(&Sha256::digest(a.body)[..12]);
            HeaderValue::from_str(&format!("\"g-{h}\""))
                .unwrap_or(HeaderValue::from_static("\"g\""))
        })
        .collect()
});

/// Widths offered in `srcset` when `limits.allowed_widths` is not set.
const DEFAULT_WIDTHS: &[u32] = &[160, 240, 320, 480, 640, 800, 960, 1280, 1600, 1920, 2560];

/// What the gallery takes from the configuration.
struct GalleryView<'a> {
    state: &'a AppState,
    hosted_ui_origin: Option<&'a str>,
}

impl<'a> GalleryView<'a> {
    fn of(state: &'a AppState) -> Self {
        GalleryView {
            state,
            hosted_ui_origin: state
                .config
                .auth
                .cognito
                .as_ref()
                .and_then(|c| c.hosted_ui.as_ref())
                .map(|h| h.origin.as_str()),
        }
    }

    fn config_json(&self) -> Value {
        let c = &self.state.config;
        let cognito = c.auth.cognito.as_ref().and_then(|cg| {
            let h = cg.hosted_ui.as_ref()?;
            Some(json!({
                "authorize_url": format!("{}/oauth2/authorize", h.origin),
                "token_url": format!("{}/oauth2/token", h.origin),
                "logout_url": format!("{}/logout", h.origin),
                "client_id": h.client_id,
                "scope": "openid",
                "identity_claim": cg.identity_claim,
                // Which of the tokens the server accepts (cognito.token_use).
                "token": if cg.token_use == TokenUse::Access { "access_token" } else { "id_token" },
            }))
        });
        let widths: Vec<u32> = if c.limits.allowed_widths.is_empty() {
            DEFAULT_WIDTHS
                .iter()
                .copied()
                .filter(|w| *w <= c.limits.max_width)
                .collect()
        } else {
            c.limits.allowed_widths.clone()
        };
        json!({
            "local": self.state.local_issuer.is_some(),
            "cognito": cognito,
            "shares": self.state.signer.is_some(),
            "max_upload_bytes": c.limits.max_upload_bytes,
            "max_share_ttl_s": c.shares_max_ttl_s,
            "widths": widths,
        })
    }
}

/// Largest CSP report read.
const MAX_REPORT_BYTES: u64 = 16 * 1024;

/// The gallery routes; with `gallery.enabled = false` only the reserved `/_gallery/`
/// prefix stays (404), and `/` is left to delivery.
pub fn routes(enabled: bool) -> Router<Arc<AppState>> {
    let r = Router::new();
    if !enabled {
        return r
            .route("/_gallery", get(off))
            .route("/_gallery/{*rest}", get(off).post(off));
    }
    r.route("/", get(index))
        .route("/_gallery/config.json", get(config_json))
        .route("/_gallery/csp-report", post(csp_report))
        .route("/_gallery", get(not_found))
        .route("/_gallery/{*path}", get(file))
}

async fn off() -> Error {
    Error::new(ErrorKind::NotFound, "the gallery is off (gallery.enabled)")
}

async fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "no such gallery file")
}

/// The policy of every gallery response. Scripts and styles only from this origin (no
/// inline code, no `eval`), images from here or `blob:` (private images are fetched with
/// the token and shown from memory), requests to here and to the Cognito domain, no forms
/// submitted natively (a page without its script would otherwise put a password in a URL),
/// no framing, Trusted Types so the DOM cannot be written from strings.
fn csp(view: &GalleryView) -> String {
    let connect = match view.hosted_ui_origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".into(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
         connect-src {connect}; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'; \
         report-uri /_gallery/csp-report"
    )
}

fn security_headers(h: &mut HeaderMap, csp: &str) {
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The authorization code of a Hosted UI sign-in arrives in the page URL.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn serve(state: &AppState, i: usize, req_headers: &HeaderMap) -> Response<Body> {
    let a = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_str().unwrap_or(""))
        });
    let mut r = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(a.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(a.body.len()));
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, etag.clone());
    // Revalidated on every load: a new binary serves new files at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h, &csp(&GalleryView::of(state)));
    r
}

async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response<Body> {
    serve(&state, 0, &headers)
}

async fn file(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response<Body>, Error> {
    // index.html is served as `/` only.
    match ASSETS
        .iter()
        .position(|a| a.path == path && a.path != "index.html")
    {
        Some(i) => Ok(serve(&state, i, &headers)),
        None => Err(Error::new(ErrorKind::NotFound, "no such gallery file")),
    }
}

/// What the page needs to know: how to sign in, whether shares work, upload limits, the
/// widths to put in `srcset`.
async fn config_json(State(state): State<Arc<AppState>>) -> Response<Body> {
    let view = GalleryView::of(&state);
    let body = serde_json::to_vec(&view.config_json()).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h, &csp(&view));
    r
}

/// `report-uri` target: one warning per report (the browser's JSON, capped), 204.
async fn csp_report(State(state): State<Arc<AppState>>, req: Request) -> Response<Body> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = state
        .rate_limits
        .ip_key(state.auth.viewer_ip(req.headers(), peer));
    if let Err(e) = state.rate_limits.check_write(&client) {
        return e.into_response();
    }
    let read = http_body_util::Limited::new(req.into_body(), MAX_REPORT_BYTES as usize);
    let body = tokio::time::timeout(Duration::from_secs(5), async {
        use http_body_util::BodyExt as _;
        read.collect().await.map(|b| b.to_bytes())
    })
    .await;
    let text = match body {
        Ok(Ok(b)) => String::from_utf8_lossy(&b)
            .chars()
            .take(2000)
            .collect::<String>(),
        _ => {
            return Error::bad_request(format!("a CSP report of at most {MAX_REPORT_BYTES} bytes"))
                .into_response();
        }
    };
    tracing::warn!(report = %text, "gallery: content security policy violation");
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

//! Bearer tokens from Amazon Cognito user pools (or any issuer that behaves like one), and
//! from the embedded `[auth.local]` issuer (SPEC §5).
//!
//! RS256 only: the algorithm comes from our side (the JWK), never from the token header, so
//! `alg: none` and HS256-with-the-public-key tokens fail. The JWKS is fetched lazily, cached,
//! and refetched only for an unknown `kid`, at most once per `jwks_min_refresh_s`, with
//! concurrent refetches coalesced: a flood of bogus kids cannot flood the issuer.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Id,
    Access,
    Any,
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub groups: Vec<String>,
    /// Which kind the token was (only an ID token can be given to Cognito Identity).
    pub token_use: TokenUse,
}

/// Why a token was refused (logged; clients see a plain 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn err(s: impl Into<String>) -> TokenError {
    TokenError(s.into())
}

pub enum KeySource {
    /// Fetched from a JWKS URL.
    Remote { url: String, http: reqwest::Client },
    /// Fixed keys (the local issuer).
    Static,
}

pub struct JwtSettings {
    pub issuer: String,
    pub client_ids: Vec<String>,
    pub token_use: TokenUse,
    pub identity_claim: String,
    pub leeway_s: u64,
    pub min_refresh: Duration,
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    last_fetch: Option<Instant>,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    source: KeySource,
    cache: RwLock<KeyCache>,
    refresh: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings, source: KeySource) -> Self {
        JwtVerifier {
            settings,
            source,
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                last_fetch: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
            fetches: Default::default(),
        }
    }

    /// A verifier with fixed RSA keys (kid → key).
    pub fn with_static_keys(settings: JwtSettings, keys: HashMap<String, DecodingKey>) -> Self {
        let v = Self::new(settings, KeySource::Static);
        if let Ok(mut c) = v.cache.write() {
            c.keys = keys;
        }
        v
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// How many times the JWKS was fetched (for tests and metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.cache.read().ok()?.keys.get(kid).cloned()
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        if let Some(k) = self.cached(kid) {
            return Ok(k);
        }
        let KeySource::Remote { url, http } = &self.source else {
            return Err(err("unknown kid"));
        };
        // One refetch at a time; whoever waited re-checks the cache first.
        let _guard = self.refresh.lock().await;
        if let Some(k) = self.cached(kid) {
            return Ok(k);
        }
        let recently = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.last_fetch)
            .is_some_and(|t| t.elapsed() < self.settings.min_refresh);
        if recently {
            return Err(err("unknown kid (JWKS refreshed recently)"));
        }
        if let Ok(mut c) = self.cache.write() {
            c.last_fetch = Some(Instant::now());
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let keys = fetch_jwks(http, url).await?;
        if let Ok(mut c) = self.cache.write() {
            c.keys = keys;
        }
        self.cached(kid).ok_or_else(|| err("unknown kid"))
    }

    /// Verifies a compact JWS and returns the identity it carries.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| err("malformed token"))?;
        let kid = header.kid.ok_or_else(|| err("token has no kid"))?;
        let key = self.key_for(&kid).await?;
        let s = &self.settings;
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = s.leeway_s;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false; // checked below: `aud` for ID tokens, `client_id` for access tokens
        v.set_issuer(&[s.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| err(format!("token rejected: {e}")))?;
        let claims = data.claims;
        let now = crate::unix_now();
        if let Some(iat) = claims.get("iat") {
            let iat = iat.as_u64().ok_or_else(|| err("iat is not a number"))?;
            if iat > now + s.leeway_s {
                return Err(err("token issued in the future"));
            }
        }
        let token_use = claims.get("token_use").and_then(Value::as_str);
        let kind = match (s.token_use, token_use) {
            (TokenUse::Id | TokenUse::Any, Some("id")) => TokenUse::Id,
            (TokenUse::Access | TokenUse::Any, Some("access")) => TokenUse::Access,
            _ => return Err(err("wrong token_use")),
        };
        let client_ok = match kind {
            TokenUse::Id => match claims.get("aud") {
                Some(Value::String(a)) => s.client_ids.iter().any(|c| c == a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| s.client_ids.iter().any(|c| c == a)),
                _ => false,
            },
            _ => claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|c| s.client_ids.iter().any(|x| x == c)),
        };
        if !client_ok {
            return Err(err("token is for another client"));
        }
        let id = claims
            .get(&s.identity_claim)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && !v.contains('/'))
            .ok_or_else(|| err("identity claim missing or unusable"))?
            .to_string();
        let groups = claims
            .get("cognito:groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Identity {
            id,
            groups,
            token_use: kind,
        })
    }
}

/// The `iss` claim of a token, read without verifying it (to pick the verifier; the chosen
/// verifier then checks everything).
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(String::from)
}

/// Largest JWKS document accepted (Cognito's are a few KiB).
const MAX_JWKS_BYTES: u64 = 1 << 20;

async fn fetch_jwks(
    http: &reqwest::Client,
    url: &str,
) -> Result<HashMap<String, DecodingKey>, TokenError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| err(format!("JWKS fetch failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(err(format!("JWKS fetch failed: HTTP {}", resp.status())));
    }
    // Refused from Content-Length, or while streaming: an endless body is never buffered.
    if resp.content_length().is_some_and(|n| n > MAX_JWKS_BYTES) {
        return Err(err("JWKS document too large"));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| err(format!("JWKS fetch failed: {e}")))?
    {
        if (body.len() + chunk.len()) as u64 > MAX_JWKS_BYTES {
            return Err(err("JWKS document too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let set: JwkSet =
        serde_json::from_slice(&body).map_err(|e| err(format!("JWKS is not valid: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        // RSA keys for RS256 only; anything else in the set is ignored.
        let AlgorithmParameters::RSA(_) = &jwk.algorithm else {
            continue;
        };
        if let Some(alg) = &jwk.common.key_algorithm
            && format!("{alg:?}") != "RS256"
        {
            continue;
        }
        let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
            continue;
        };
        keys.insert(kid.clone(), key);
    }
    Ok(keys)
}

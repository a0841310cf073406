//! The validated form of the settings that decide who is asking (SPEC §3–§5): built by
//! `config` from `[cloudfront]`, `[cognito]`, `[auth.local]` and `[admin]`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that decides who is asking (SPEC §3–§5), with keys already parsed.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub origin_secret_header: axum::http::HeaderName,
    /// Up to two, for rotation; empty = no origin secret required.
    pub origin_secrets: Vec<String>,
    pub edge_verified_secret: Option<String>,
    pub cloudfront_keys: HashMap<String, rsa::RsaPublicKey>,
    pub public_base_urls: Vec<String>,
    pub trust_viewer_address: bool,
    /// Private key file and key-pair id for `sign-url` and share links.
    pub signing: Option<(PathBuf, String)>,
    pub api_key_hashes: Vec<[u8; 32]>,
    pub admin_groups: Vec<String>,
    pub cognito: Option<CognitoConfig>,
    pub local: Option<LocalAuthConfig>,
}

#[derive(Debug, Clone)]
pub struct CognitoConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub client_ids: Vec<String>,
    pub token_use: super::jwt::TokenUse,
    pub identity_claim: String,
    pub leeway_s: u64,
    pub jwks_min_refresh: Duration,
    /// `cognito.identity_pool_id`: keys use identity-pool ids (SPEC §13).
    pub identity_pool: Option<super::identity::IdentityPoolConfig>,
    /// `cognito.domain` + `cognito.gallery_client_id`: the gallery signs in there.
    pub hosted_ui: Option<HostedUi>,
}

/// The Cognito Hosted UI the gallery uses (authorization code + PKCE, in the browser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedUi {
    /// `https://<domain>` (scheme and host only; `http://` only for loopback test issuers).
    pub origin: String,
    pub client_id: String,
}

#[derive(Debug, Clone)]
pub struct LocalAuthConfig {
    pub key_file: PathBuf,
    pub issuer: String,
    /// Lifetime of sign-in tokens (`POST /api/v1/session`).
    pub session_ttl: Duration,
}

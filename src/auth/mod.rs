//! Who is asking, and what they may read. Decided before any cache lookup so a cached
//! variant is never served to someone who may not read its key (SPEC §3):
//! origin secret → CloudFront signature (URL or cookies) or `X-Edge-Verified` → `X-Api-Key`
//! → Bearer JWT → guest. Credentials that are present but bad end the request (403 / 401);
//! they never fall through to a weaker check.

pub mod access;
pub mod cloudfront;
pub mod identity;
pub mod jwt;
pub mod local;
pub mod password;
pub mod ratelimit;
pub mod settings;

use crate::error::{Error, ErrorKind};
pub use access::can_read;
use axum::http::{HeaderMap, header};
use cloudfront::{SignatureVerifier, SignedGrant};
use jwt::JwtVerifier;
use settings::AuthConfig;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Guest,
    /// A valid CloudFront signed URL or cookie: read access to this request's URL.
    Signed(SignedGrant),
    /// CloudFront verified the signature itself (trusted key group) and says so with
    /// `X-Edge-Verified`: read access to this request's URL.
    EdgeVerified,
    User {
        id: String,
        groups: Vec<String>,
    },
    Admin,
}

impl Principal {
    pub fn identity(&self) -> Option<&str> {
        match self {
            Principal::User { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        *self == Principal::Admin
    }
}

/// Constant-time equality of two secrets (length may leak, content does not).
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Everything needed to authenticate requests, built once at start-up.
pub struct Authenticator {
    pub origin_secret_header: axum::http::HeaderName,
    origin_secrets: Vec<Vec<u8>>,
    edge_verified_secret: Option<Vec<u8>>,
    pub signatures: Option<SignatureVerifier>,
    trust_viewer_address: bool,
    api_key_hashes: Vec<[u8; 32]>,
    pub jwt: Vec<JwtVerifier>,
    admin_groups: Vec<String>,
    /// Amplify identity ids for the Cognito user pool's users (SPEC §13).
    pub identities: Option<std::sync::Arc<identity::IdentityResolver>>,
}

fn forbidden(detail: &str, cause: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Forbidden, detail).with_cause(cause)
}

fn invalid_token(cause: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unauthorized, "invalid or expired token").with_cause(cause)
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig, jwt: Vec<JwtVerifier>) -> Self {
        Authenticator {
            origin_secret_header: cfg.origin_secret_header.clone(),
            origin_secrets: cfg
                .origin_secrets
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            edge_verified_secret: cfg
                .edge_verified_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            signatures: (!cfg.cloudfront_keys.is_empty()).then(|| {
                SignatureVerifier::new(cfg.cloudfront_keys.clone(), cfg.public_base_urls.clone())
            }),
            trust_viewer_address: cfg.trust_viewer_address,
            api_key_hashes: cfg.api_key_hashes.clone(),
            jwt,
            admin_groups: cfg.admin_groups.clone(),
            identities: None,
        }
    }

    /// Step 1 of SPEC §3, for every route but `/healthz`: the origin secret header.
    pub fn check_origin_secret(&self, headers: &HeaderMap) -> Result<(), Error> {
        if self.origin_secrets.is_empty() {
            return Ok(());
        }
        let given = headers
            .get(&self.origin_secret_header)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        // Compare with every configured secret, no early exit.
        let ok = self
            .origin_secrets
            .iter()
            .fold(false, |acc, s| acc | secret_eq(given, s));
        if ok {
            Ok(())
        } else {
            Err(forbidden(
                "forbidden",
                "missing or wrong origin secret header",
            ))
        }
    }

    /// The viewer's address: `CloudFront-Viewer-Address` when trusted, else the peer.
    pub fn viewer_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        if self.trust_viewer_address
            && let Some(v) = headers
                .get("cloudfront-viewer-address")
                .and_then(|v| v.to_str().ok())
        {
            // "ip:port"; IPv6 addresses contain colons, the port is after the last one.
            let ip = v.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(v);
            return ip.trim_matches(|c| c == '[' || c == ']').parse().ok();
        }
        peer.map(|p| p.ip())
    }

    /// Steps 2–5 of SPEC §3. `signed_target` is `(raw path, raw query)` for delivery
    /// requests, where signed URLs and cookies apply; `None` for the API.
    pub async fn principal(
        &self,
        headers: &HeaderMap,
        signed_target: Option<(&str, Option<&str>)>,
        peer: Option<SocketAddr>,
        now: u64,
    ) -> Result<Principal, Error> {
        if let Some((raw_path, raw_query)) = signed_target {
            let (mut params, other) = cloudfront::split_query(raw_query.unwrap_or(""));
            let from_query = params.signature.is_some()
                || params.expires.is_some()
                || params.policy.is_some()
                || params.key_pair_id.is_some();
            if !from_query {
                params = cloudfront::from_cookies(
                    headers
                        .get_all(header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
            }
            let present = params.signature.is_some()
                || params.expires.is_some()
                || params.policy.is_some()
                || params.key_pair_id.is_some();
            if present {
                let Some(verifier) = &self.signatures else {
                    return Err(forbidden(
                        "invalid signature",
                        "signed request but no CloudFront keys configured",
                    ));
                };
                let ip = self.viewer_ip(headers, peer);
                return match verifier.verify(&params, raw_path, &other, ip, now) {
                    Ok(Some(grant)) => Ok(Principal::Signed(grant)),
                    Ok(None) => Err(forbidden("invalid signature", "empty signature")),
                    Err(e) => Err(forbidden("invalid signature", e)),
                };
            }
            if let Some(v) = headers.get("x-edge-verified") {
                let ok = self
                    .edge_verified_secret
                    .as_ref()
                    .is_some_and(|s| secret_eq(v.as_bytes(), s));
                return if ok {
                    Ok(Principal::EdgeVerified)
                } else {
                    Err(forbidden("forbidden", "wrong X-Edge-Verified"))
                };
            }
        }
        if let Some(key) = headers.get("x-api-key") {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            let ok = self
                .api_key_hashes
                .iter()
                .fold(false, |acc, h| acc | secret_eq(&digest, h));
            return if ok {
                Ok(Principal::Admin)
            } else {
                Err(forbidden("invalid API key", "unknown X-Api-Key"))
            };
        }
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, rest) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
                })
                .ok_or_else(|| invalid_token("Authorization is not a Bearer token"))?;
            let iss =
                jwt::unverified_issuer(token).ok_or_else(|| invalid_token("malformed token"))?;
            let verifier = self
                .jwt
                .iter()
                .find(|v| v.issuer() == iss)
                .ok_or_else(|| invalid_token("unknown issuer"))?;
            let id = verifier.verify(token).await.map_err(invalid_token)?;
            if id.groups.iter().any(|g| self.admin_groups.contains(g)) {
                return Ok(Principal::Admin);
            }
            let user = match &self.identities {
                // The user pool's users are known by their identity-pool id; a refused or
                // failed GetId ends the request (never a fall-through to `sub`).
                Some(r) if r.issuer() == verifier.issuer() => {
                    let id_token = (id.token_use == jwt::TokenUse::Id).then_some(token);
                    r.resolve(&id.id, id_token).await?
                }
                _ => id.id,
            };
            return Ok(Principal::User {
                id: user,
                groups: id.groups,
            });
        }
        Ok(Principal::Guest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"abc", b"abcd"));
    }
}

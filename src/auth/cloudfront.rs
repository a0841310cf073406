//! CloudFront signed URLs and signed cookies, verified exactly as CloudFront does, so URLs
//! signed for the CDN by the AWS SDKs' signers also pass at the origin (SPEC §4).
//!
//! Canned policy: the policy is rebuilt from the viewer URL and `Expires`; custom policy: the
//! signed bytes are the base64 `Policy` itself, then its `Resource` pattern, dates and IP
//! condition are checked. Signatures are RSA PKCS#1 v1.5 over SHA-1 (or SHA-256 with
//! `Hash-Algorithm=SHA256`) in CloudFront's base64 alphabet. Must not: fall through to a
//! weaker check when a signature is present but wrong (the caller turns every error into 403).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPublicKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer as _, Verifier as _};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::params::SIGNATURE_PARAMS;

/// Why a signature was refused (logged, never shown: every case is a plain 403 to clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("incomplete signature parameters")]
    Incomplete,
    #[error("unknown Key-Pair-Id")]
    UnknownKey,
    #[error("unsupported Hash-Algorithm")]
    BadHashAlgorithm,
    #[error("malformed signature or policy encoding")]
    Malformed,
    #[error("signature does not match")]
    BadSignature,
    #[error("policy is not valid JSON of the expected shape")]
    BadPolicy,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("resource does not match this URL")]
    WrongResource,
    #[error("viewer IP not allowed by the policy")]
    WrongIp,
    #[error("no public base URL configured to rebuild the viewer URL")]
    NoBaseUrl,
}

/// What a valid signature grants: read access to this request's URL until `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedGrant {
    /// Epoch seconds; the URL is valid strictly before this.
    pub expires: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha256,
}

/// The signature material of one request, from the query or from cookies.
#[derive(Debug, Default, Clone)]
pub struct SignatureParams {
    pub expires: Option<String>,
    pub policy: Option<String>,
    pub signature: Option<String>,
    pub key_pair_id: Option<String>,
    pub hash_algorithm: Option<String>,
}

impl SignatureParams {
    fn is_empty(&self) -> bool {
        self.expires.is_none()
            && self.policy.is_none()
            && self.signature.is_none()
            && self.key_pair_id.is_none()
    }
}

/// Splits a raw query into CloudFront's signing parameters and the rest (raw, in order).
pub fn split_query(raw_query: &str) -> (SignatureParams, String) {
    let mut p = SignatureParams::default();
    let mut rest: Vec<&str> = Vec::new();
    for seg in raw_query.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = seg.split_once('=').unwrap_or((seg, ""));
        if !SIGNATURE_PARAMS.contains(&name) {
            rest.push(seg);
            continue;
        }
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned();
        let slot = match name {
            "Expires" => &mut p.expires,
            "Policy" => &mut p.policy,
            "Signature" => &mut p.signature,
            "Key-Pair-Id" => &mut p.key_pair_id,
            _ => &mut p.hash_algorithm,
        };
        *slot = Some(value);
    }
    (p, rest.join("&"))
}

/// Signing parameters from `CloudFront-*` cookies.
pub fn from_cookies<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> SignatureParams {
    let mut p = SignatureParams::default();
    for header in cookie_headers {
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let value = Some(value.trim().trim_matches('"').to_string());
            match name.trim() {
                "CloudFront-Expires" => p.expires = value,
                "CloudFront-Policy" => p.policy = value,
                "CloudFront-Signature" => p.signature = value,
                "CloudFront-Key-Pair-Id" => p.key_pair_id = value,
                "CloudFront-Hash-Algorithm" => p.hash_algorithm = value,
                _ => {}
            }
        }
    }
    p
}

/// CloudFront's URL-safe base64: `+`→`-`, `=`→`_`, `/`→`~`.
pub fn cf_b64_encode(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

pub fn cf_b64_decode(s: &str) -> Option<Vec<u8>> {
    let std: String = s
        .trim()
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    STANDARD.decode(std).ok()
}

/// The canned policy CloudFront (and the SDK signers) build for `url` and `expires`.
pub fn canned_policy(url: &str, expires: u64) -> String {
    let resource = serde_json::to_string(url).unwrap_or_else(|_| "\"\"".into());
    format!(
        "{{\"Statement\":[{{\"Resource\":{resource},\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}"
    )
}

#[derive(Deserialize)]
struct Policy {
    #[serde(rename = "Statement")]
    statement: Vec<Statement>,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "Resource")]
    resource: Option<String>,
    #[serde(rename = "Condition")]
    condition: Condition,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "DateLessThan")]
    date_less_than: EpochTime,
    #[serde(rename = "DateGreaterThan")]
    date_greater_than: Option<EpochTime>,
    #[serde(rename = "IpAddress")]
    ip_address: Option<SourceIp>,
}

#[derive(Deserialize)]
struct EpochTime {
    #[serde(rename = "AWS:EpochTime")]
    epoch: u64,
}

#[derive(Deserialize)]
struct SourceIp {
    #[serde(rename = "AWS:SourceIp")]
    source_ip: String,
}

/// Verifies signatures with the configured public keys.
pub struct SignatureVerifier {
    keys: HashMap<String, RsaPublicKey>,
    base_urls: Vec<String>,
}

/// Parses a PEM public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| {
            "not an RSA public key in PEM (BEGIN PUBLIC KEY / BEGIN RSA PUBLIC KEY)".to_string()
        })
}

/// Parses a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn parse_private_key(pem: &str) -> Result<rsa::RsaPrivateKey, String> {
    rsa::RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| {
            "not an RSA private key in PEM (BEGIN PRIVATE KEY / BEGIN RSA PRIVATE KEY)".to_string()
        })
}

impl SignatureVerifier {
    /// `base_urls` are the distribution's domain and alternate domain names, such as
    /// `https://d111111abcdef8.cloudfront.net` (a trailing `/` is ignored).
    pub fn new(keys: HashMap<String, RsaPublicKey>, base_urls: Vec<String>) -> Self {
        let base_urls = base_urls
            .into_iter()
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        SignatureVerifier { keys, base_urls }
    }

    /// Checks signature material against the request. `Ok(None)` when there is none at all.
    /// `raw_path` and `other_query` are exactly as received (no re-encoding).
    pub fn verify(
        &self,
        params: &SignatureParams,
        raw_path: &str,
        other_query: &str,
        viewer_ip: Option<IpAddr>,
        now: u64,
    ) -> Result<Option<SignedGrant>, SignatureError> {
        if params.is_empty() {
            return Ok(None);
        }
        let (Some(sig), Some(kid)) = (&params.signature, &params.key_pair_id) else {
            return Err(SignatureError::Incomplete);
        };
        if params.expires.is_some() == params.policy.is_some() {
            return Err(SignatureError::Incomplete);
        }
        let hash = match params.hash_algorithm.as_deref() {
            None | Some("SHA1") => Hash::Sha1,
            Some("SHA256") => Hash::Sha256,
            Some(_) => return Err(SignatureError::BadHashAlgorithm),
        };
        let key = self
            .keys
            .get(kid.as_str())
            .ok_or(SignatureError::UnknownKey)?;
        let sig = cf_b64_decode(sig).ok_or(SignatureError::Malformed)?;
        if self.base_urls.is_empty() {
            return Err(SignatureError::NoBaseUrl);
        }
        let urls: Vec<String> = self
            .base_urls
            .iter()
            .map(|b| {
                if other_query.is_empty() {
                    format!("{b}{raw_path}")
                } else {
                    format!("{b}{raw_path}?{other_query}")
                }
            })
            .collect();

        if let Some(expires) = &params.expires {
            let expires: u64 = expires
                .trim()
                .parse()
                .map_err(|_| SignatureError::Malformed)?;
            let signed = urls
                .iter()
                .any(|u| verify_sig(key, hash, canned_policy(u, expires).as_bytes(), &sig));
            if !signed {
                return Err(SignatureError::BadSignature);
            }
            if now >= expires {
                return Err(SignatureError::Expired);
            }
            return Ok(Some(SignedGrant { expires }));
        }

        let policy_bytes = params
            .policy
            .as_deref()
            .and_then(cf_b64_decode)
            .ok_or(SignatureError::Malformed)?;
        if !verify_sig(key, hash, &policy_bytes, &sig) {
            return Err(SignatureError::BadSignature);
        }
        check_policy(&policy_bytes, &urls, viewer_ip, now).map(Some)
    }
}

/// What a custom policy whose signature matched grants to a request for one of `urls`
/// (the viewer URL rebuilt for each base URL). Public for the fuzz targets, which cannot
/// sign what they generate (`crate::fuzzing`); not an API.
#[doc(hidden)]
pub fn check_policy(
    policy_bytes: &[u8],
    urls: &[String],
    viewer_ip: Option<IpAddr>,
    now: u64,
) -> Result<SignedGrant, SignatureError> {
    let policy: Policy =
        serde_json::from_slice(policy_bytes).map_err(|_| SignatureError::BadPolicy)?;
    let [st] = policy.statement.as_slice() else {
        return Err(SignatureError::BadPolicy);
    };
    let c = &st.condition;
    if now >= c.date_less_than.epoch {
        return Err(SignatureError::Expired);
    }
    if let Some(start) = &c.date_greater_than
        && now < start.epoch
    {
        return Err(SignatureError::NotYetValid);
    }
    if let Some(resource) = &st.resource
        && !urls.iter().any(|u| wildcard_match(resource, u))
    {
        return Err(SignatureError::WrongResource);
    }
    if let Some(ip) = &c.ip_address {
        let ok = viewer_ip.is_some_and(|v| cidr_contains(&ip.source_ip, v).unwrap_or(false));
        if !ok {
            return Err(SignatureError::WrongIp);
        }
    }
    Ok(SignedGrant {
        expires: c.date_less_than.epoch,
    })
}

fn verify_sig(key: &RsaPublicKey, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    match hash {
        Hash::Sha1 => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key.clone())
            .verify(msg, &sig)
            .is_ok(),
        Hash::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
            .verify(msg, &sig)
            .is_ok(),
    }
}

/// CloudFront's Resource wildcards: `*` any run of characters (also none), `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `ip` is inside `cidr` (`192.0.2.0/24`, `2001:db8::/32`, or a bare address).
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> Option<bool> {
    let (addr, len) = match cidr.trim().split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u32>().ok()?)),
        None => (cidr.trim().parse::<IpAddr>().ok()?, None),
    };
    // An IPv4 viewer seen as an IPv4-mapped IPv6 address still matches IPv4 ranges.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (addr, ip) {
        (IpAddr::V4(net), IpAddr::V4(v)) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(u32::from(net) & mask == u32::from(v) & mask)
        }
        (IpAddr::V6(net), IpAddr::V6(v)) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(u128::from(net) & mask == u128::from(v) & mask)
        }
        _ => Some(false),
    }
}

/// Signs delivery URLs with the configured private key (`imgorigin sign-url`, share links).
pub struct UrlSigner {
    key: rsa::RsaPrivateKey,
    key_pair_id: String,
}

impl UrlSigner {
    pub fn new(key: rsa::RsaPrivateKey, key_pair_id: String) -> Self {
        UrlSigner { key, key_pair_id }
    }

    pub fn from_pem(pem: &str, key_pair_id: &str) -> Result<Self, String> {
        Ok(Self::new(parse_private_key(pem)?, key_pair_id.to_string()))
    }

    fn sign(&self, msg: &[u8]) -> String {
        let sk = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(self.key.clone());
        cf_b64_encode(&sk.sign(msg).to_bytes())
    }

    /// A canned-policy URL (`Expires`, `Signature`, `Key-Pair-Id` appended).
    pub fn sign_canned(&self, url: &str, expires: u64) -> String {
        let sig = self.sign(canned_policy(url, expires).as_bytes());
        let sep = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{sep}Expires={expires}&Signature={sig}&Key-Pair-Id={}",
            self.key_pair_id
        )
    }

    /// A custom-policy URL: `resource` pattern (default: the URL itself), optional start
    /// time and source IP range.
    pub fn sign_custom(
        &self,
        url: &str,
        resource: Option<&str>,
        expires: u64,
        not_before: Option<u64>,
        source_ip: Option<&str>,
    ) -> String {
        let mut condition = serde_json::Map::new();
        condition.insert(
            "DateLessThan".into(),
            serde_json::json!({"AWS:EpochTime": expires}),
        );
        if let Some(nb) = not_before {
            condition.insert(
                "DateGreaterThan".into(),
                serde_json::json!({"AWS:EpochTime": nb}),
            );
        }
        if let Some(ip) = source_ip {
            condition.insert("IpAddress".into(), serde_json::json!({"AWS:SourceIp": ip}));
        }
        let policy = serde_json::json!({"Statement": [{
            "Resource": resource.unwrap_or(url),
            "Condition": condition,
        }]})
        .to_string();
        let sig = self.sign(policy.as_bytes());
        let sep = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{sep}Policy={}&Signature={sig}&Key-Pair-Id={}",
            cf_b64_encode(policy.as_bytes()),
            self.key_pair_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(
            "https://d.net/public/*",
            "https://d.net/public/a.jpg?w=1"
        ));
        assert!(wildcard_match(
            "https://d.net/public/a.jpg*",
            "https://d.net/public/a.jpg"
        ));
        assert!(wildcard_match("https://d.net/?.jpg", "https://d.net/a.jpg"));
        assert!(!wildcard_match(
            "https://d.net/?.jpg",
            "https://d.net/ab.jpg"
        ));
        assert!(!wildcard_match(
            "https://d.net/public/*",
            "https://e.net/public/a.jpg"
        ));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(cidr_contains("192.0.2.0/24", ip("192.0.2.77")), Some(true));
        assert_eq!(cidr_contains("192.0.2.0/24", ip("192.0.3.1")), Some(false));
        assert_eq!(cidr_contains("192.0.2.5", ip("192.0.2.5")), Some(true));
        assert_eq!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")), Some(true));
        assert_eq!(
            cidr_contains("2001:db8::/32", ip("2001:db8:1::1")),
            Some(true)
        );
        assert_eq!(
            cidr_contains("2001:db8::/32", ip("2001:db9::1")),
            Some(false)
        );
        assert_eq!(
            cidr_contains("192.0.2.0/24", ip("::ffff:192.0.2.9")),
            Some(true)
        );
        assert_eq!(
            cidr_contains("192.0.2.0/24", ip("2001:db8::1")),
            Some(false)
        );
        assert_eq!(cidr_contains("192.0.2.0/33", ip("192.0.2.1")), None);
        assert_eq!(cidr_contains("nonsense", ip("192.0.2.1")), None);
    }

    #[test]
    fn query_split_keeps_order_and_encoding() {
        let (p, rest) = split_query("w=1&Expires=5&x=a%20b+c~&Signature=s-_~&Key-Pair-Id=K&fm=png");
        assert_eq!(rest, "w=1&x=a%20b+c~&fm=png");
        assert_eq!(p.expires.as_deref(), Some("5"));
        assert_eq!(p.signature.as_deref(), Some("s-_~"));
        assert_eq!(p.key_pair_id.as_deref(), Some("K"));
    }

    #[test]
    fn canned_policy_shape() {
        assert_eq!(
            canned_policy("https://d.net/a.jpg?w=1", 1700000000),
            r#"{"Statement":[{"Resource":"https://d.net/a.jpg?w=1","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
    }

    #[test]
    fn b64_alphabet_roundtrip() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let e = cf_b64_encode(&bytes);
        assert!(!e.contains('+') && !e.contains('/') && !e.contains('='));
        assert_eq!(cf_b64_decode(&e).unwrap(), bytes);
    }
}

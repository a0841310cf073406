//! `[cloudfront]`, `[cognito]`, `[auth.local]`, `[admin]` and `[access]`: checked into
//! `auth::settings::AuthConfig` and `auth::access::AccessConfig`, with the risky
//! combinations that are only warned about.

use super::*;

/// Combinations that are valid but unsafe in most deployments.
pub(super) fn risky_combinations(auth: &AuthConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if auth.trust_viewer_address && auth.origin_secrets.is_empty() {
        warnings.push(
            "cloudfront.trust_viewer_address is on without cloudfront.origin_secret: anyone who \
             reaches the origin directly can forge CloudFront-Viewer-Address (defeating IpAddress \
             policies and rate limits). Set cloudfront.origin_secret, or make the origin reachable \
             only from CloudFront's managed prefix list (com.amazonaws.global.cloudfront.origin-facing)."
                .into(),
        );
    }
    warnings
}

/// Reads a secret from a `*_file` path (trailing newline trimmed).
/// Access prefixes that are equal or nested (compared case-insensitively, as a laptop's
/// file system resolves keys) would give one key two levels: with `public_prefix = "img/"`
/// and `private_prefix = "img/private/"` a guest reads private images.
pub(super) fn overlapping_prefixes(a: &raw::Access) -> Vec<String> {
    let named = [
        ("access.public_prefix", a.public_prefix.to_lowercase()),
        ("access.protected_prefix", a.protected_prefix.to_lowercase()),
        ("access.private_prefix", a.private_prefix.to_lowercase()),
    ];
    let mut errs = Vec::new();
    for (i, (ka, pa)) in named.iter().enumerate() {
        for (kb, pb) in &named[i + 1..] {
            if pa.is_empty() || pb.is_empty() {
                continue;
            }
            if pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str()) {
                errs.push(format!(
                    "{ka}, {kb}: access prefixes must not be equal or nested (`{pa}`, `{pb}`, compared case-insensitively)"
                ));
            }
        }
    }
    errs
}

fn read_secret_file(key: &str, path: &str, errs: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            errs.push(format!("{key}: cannot read {path}: {e}"));
            None
        }
    }
}

pub(super) fn validate_auth(raw: &RawConfig, errs: &mut Vec<String>) -> AuthConfig {
    let cf = &raw.cloudfront;
    let origin_secret_header = axum::http::HeaderName::from_bytes(
        cf.origin_secret_header.as_bytes(),
    )
    .unwrap_or_else(|_| {
        errs.push(format!(
            "cloudfront.origin_secret_header: `{}` is not a header name",
            cf.origin_secret_header
        ));
        axum::http::HeaderName::from_static("x-origin-verify")
    });
    let mut origin_secrets = cf.origin_secret.clone();
    if let Some(f) = &cf.origin_secret_file
        && let Some(text) = read_secret_file("cloudfront.origin_secret_file", f, errs)
    {
        origin_secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    if origin_secrets.len() > 2 {
        errs.push("cloudfront.origin_secret: at most two secrets (current and next)".into());
    }
    if origin_secrets
        .iter()
        .any(|s| s.len() < 16 || axum::http::HeaderValue::from_str(s).is_err())
    {
        errs.push(
            "cloudfront.origin_secret: each secret needs at least 16 header-safe characters".into(),
        );
    }
    let mut edge_verified_secret = cf.edge_verified_secret.clone();
    if let Some(f) = &cf.edge_verified_secret_file {
        edge_verified_secret = read_secret_file("cloudfront.edge_verified_secret_file", f, errs);
    }
    if edge_verified_secret.as_ref().is_some_and(|s| s.len() < 16) {
        errs.push("cloudfront.edge_verified_secret: at least 16 characters".into());
    }
    let mut cloudfront_keys = HashMap::new();
    for (i, k) in cf.keys.iter().enumerate() {
        let key = format!("cloudfront.keys[{i}]");
        if k.id.is_empty() {
            errs.push(format!("{key}.id: must not be empty"));
        }
        let pem = match (&k.public_key_pem, &k.public_key_file) {
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| errs.push(format!("{key}.public_key_file: cannot read {f}: {e}")))
                .ok(),
            _ => {
                errs.push(format!(
                    "{key}: give exactly one of public_key_pem and public_key_file"
                ));
                None
            }
        };
        if let Some(pem) = pem {
            match crate::auth::cloudfront::parse_public_key(&pem) {
                Ok(pk) => {
                    if cloudfront_keys.insert(k.id.clone(), pk).is_some() {
                        errs.push(format!("{key}.id: `{}` listed twice", k.id));
                    }
                }
                Err(e) => errs.push(format!("{key}: {e}")),
            }
        }
    }
    let mut public_base_urls = Vec::new();
    for (i, u) in cf.public_base_urls.iter().enumerate() {
        let ok = (u.starts_with("https://") || u.starts_with("http://"))
            && u.splitn(4, '/').nth(3).is_none_or(|rest| rest.is_empty());
        if !ok {
            errs.push(format!(
                "cloudfront.public_base_urls[{i}]: `{u}` must be a scheme and host only, e.g. https://d111111abcdef8.cloudfront.net"
            ));
        }
        public_base_urls.push(u.trim_end_matches('/').to_string());
    }
    if !cloudfront_keys.is_empty() && public_base_urls.is_empty() {
        errs.push("cloudfront.public_base_urls: needed to verify signed URLs (the distribution's domain names)".into());
    }
    let signing = match (&cf.signing_key_file, &cf.signing_key_pair_id) {
        (Some(f), Some(id)) => Some((PathBuf::from(f), id.clone())),
        (None, None) => None,
        _ => {
            errs.push("cloudfront.signing_key_file: set together with signing_key_pair_id".into());
            None
        }
    };

    let mut api_key_hashes = Vec::new();
    for (i, h) in raw.admin.api_keys_sha256.iter().enumerate() {
        let mut out = [0u8; 32];
        let ok = h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && hex::decode_to_slice(h, &mut out).is_ok();
        if ok {
            api_key_hashes.push(out);
        } else {
            errs.push(format!(
                "admin.api_keys_sha256[{i}]: 64 lowercase hex digits (sha256sum of the key)"
            ));
        }
    }

    let c = &raw.cognito;
    let cognito = if c.user_pool_id.is_some() || c.issuer.is_some() {
        let issuer = match (&c.issuer, &c.region, &c.user_pool_id) {
            (Some(i), _, _) => Some(i.trim_end_matches('/').to_string()),
            (None, Some(r), Some(p)) => Some(format!("https://cognito-idp.{r}.amazonaws.com/{p}")),
            _ => {
                errs.push(
                    "cognito.region: needed with cognito.user_pool_id (or set cognito.issuer)"
                        .into(),
                );
                None
            }
        };
        let token_use = match c.token_use.as_str() {
            "id" => crate::auth::jwt::TokenUse::Id,
            "access" => crate::auth::jwt::TokenUse::Access,
            "any" => crate::auth::jwt::TokenUse::Any,
            o => {
                errs.push(format!("cognito.token_use: `{o}` is not id, access or any"));
                crate::auth::jwt::TokenUse::Id
            }
        };
        if c.client_ids.is_empty() && c.gallery_client_id.is_none() {
            errs.push(
                "cognito.client_ids: list the app client ids whose tokens are accepted".into(),
            );
        }
        let identity_pool = identity_pool(c, errs);
        if c.jwks_min_refresh_s == 0 {
            errs.push("cognito.jwks_min_refresh_s: must be at least 1".into());
        }
        let hosted_ui = validate_hosted_ui(c, errs);
        let mut client_ids = c.client_ids.clone();
        // The gallery's own client: its tokens are meant for this server.
        if let Some(h) = &hosted_ui
            && !client_ids.contains(&h.client_id)
        {
            client_ids.push(h.client_id.clone());
        }
        issuer.map(|issuer| CognitoConfig {
            jwks_url: c
                .jwks_url
                .clone()
                .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json")),
            issuer,
            client_ids,
            hosted_ui,
            identity_pool,
            token_use,
            identity_claim: c.identity_claim.clone(),
            leeway_s: c.leeway_s,
            jwks_min_refresh: Duration::from_secs(c.jwks_min_refresh_s),
        })
    } else {
        if c.domain.is_some() || c.gallery_client_id.is_some() {
            errs.push(
                "cognito.domain: the Hosted UI needs the user pool too (cognito.region and cognito.user_pool_id, or cognito.issuer)"
                    .into(),
            );
        }
        None
    };
    let local = raw.auth.local.as_ref().map(|l| {
        if l.session_ttl_s == 0 {
            errs.push("auth.local.session_ttl_s: must be at least 1".into());
        }
        LocalAuthConfig {
            key_file: PathBuf::from(&l.key_file),
            issuer: l.issuer.clone().unwrap_or_else(|| "imgorigin-local".into()),
            session_ttl: Duration::from_secs(l.session_ttl_s),
        }
    });
    if let (Some(l), Some(c)) = (&local, &cognito)
        && l.issuer == c.issuer
    {
        errs.push("auth.local.issuer: must differ from the Cognito issuer".into());
    }
    AuthConfig {
        origin_secret_header,
        origin_secrets,
        edge_verified_secret,
        cloudfront_keys,
        public_base_urls,
        trust_viewer_address: cf.trust_viewer_address,
        signing,
        api_key_hashes,
        admin_groups: raw.admin.groups.clone(),
        cognito,
        local,
    }
}

/// `cognito.domain` and `cognito.gallery_client_id`, set together. The domain is a host
/// (`auth.example.com`, `myapp.auth.eu-west-1.amazoncognito.com`) or an origin URL;
/// plain `http://` only for a loopback host (a local stand-in issuer in tests).
fn validate_hosted_ui(c: &raw::Cognito, errs: &mut Vec<String>) -> Option<HostedUi> {
    let (domain, client_id) = match (&c.domain, &c.gallery_client_id) {
        (None, None) => return None,
        (Some(d), Some(id)) => (d.trim().trim_end_matches('/'), id.trim()),
        _ => {
            errs.push("cognito.domain: set together with cognito.gallery_client_id".into());
            return None;
        }
    };
    let origin = if domain.contains("://") {
        domain.to_string()
    } else {
        format!("https://{domain}")
    };
    let (scheme, host) = origin.split_once("://").unwrap_or(("", ""));
    let hostname = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    let loopback = matches!(hostname, "localhost" | "127.0.0.1");
    let ok = host_ok && (scheme == "https" || (scheme == "http" && loopback));
    if !ok {
        errs.push(format!(
            "cognito.domain: `{domain}` must be a host name like myapp.auth.eu-west-1.amazoncognito.com (https; http only for localhost)"
        ));
        return None;
    }
    let id_ok = !client_id.is_empty()
        && client_id.len() <= 128
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !id_ok {
        errs.push("cognito.gallery_client_id: an app client id (letters and digits)".into());
        return None;
    }
    Some(HostedUi {
        origin,
        client_id: client_id.to_string(),
    })
}

pub(super) fn validate_access(a: &raw::Access, errs: &mut Vec<String>) -> AccessConfig {
    let other = match a.other.as_str() {
        "none" => OtherAccess::None,
        "authenticated" => OtherAccess::Authenticated,
        "public" => OtherAccess::Public,
        o => {
            errs.push(format!(
                "access.other: `{o}` is not `none`, `authenticated` or `public`"
            ));
            OtherAccess::None
        }
    };
    for (key, p) in [
        ("access.public_prefix", &a.public_prefix),
        ("access.protected_prefix", &a.protected_prefix),
        ("access.private_prefix", &a.private_prefix),
    ] {
        if p.is_empty() || !p.ends_with('/') || p.starts_with('/') {
            errs.push(format!("{key}: must be a non-empty prefix ending in `/`"));
        }
    }
    errs.extend(overlapping_prefixes(a));
    AccessConfig {
        public_prefix: a.public_prefix.clone(),
        protected_prefix: a.protected_prefix.clone(),
        private_prefix: a.private_prefix.clone(),
        other,
    }
}

pub(super) fn validate_rate_limit(rl: &raw::RateLimit, errs: &mut Vec<String>) -> RateLimitConfig {
    if rl.enabled && (rl.misses_per_s <= 0.0 || rl.writes_per_s <= 0.0 || rl.burst == 0) {
        errs.push(
            "rate_limit: misses_per_s, writes_per_s and burst must be positive when enabled".into(),
        );
    }
    if !(1..=128).contains(&rl.ipv6_prefix) {
        errs.push("rate_limit.ipv6_prefix: must be 1..=128".into());
    }
    RateLimitConfig {
        enabled: rl.enabled,
        misses_per_s: rl.misses_per_s,
        writes_per_s: rl.writes_per_s,
        burst: rl.burst,
        ipv6_prefix: rl.ipv6_prefix,
    }
}

/// `cognito.identity_pool_id` (+ `identity_endpoint_url`): GetId needs the user pool's
/// provider name, `cognito-idp.<region>.amazonaws.com/<user_pool_id>`, as its `Logins` key.
fn identity_pool(
    c: &crate::config::raw::Cognito,
    errs: &mut Vec<String>,
) -> Option<crate::auth::identity::IdentityPoolConfig> {
    if c.identity_pool_id.is_none() && c.identity_endpoint_url.is_some() {
        errs.push("cognito.identity_endpoint_url: set only with cognito.identity_pool_id".into());
    }
    let pool_id = c.identity_pool_id.as_ref()?;
    if !crate::auth::identity::valid_pool_id(pool_id) {
        errs.push(format!(
            "cognito.identity_pool_id: `{pool_id}` is not REGION:GUID (e.g. us-east-1:4d4b0f4e-0c9e-4b8e-9f31-2c0a8c1b1a11)"
        ));
        return None;
    }
    let (Some(region), Some(user_pool)) = (&c.region, &c.user_pool_id) else {
        errs.push(
            "cognito.identity_pool_id: needs cognito.region and cognito.user_pool_id (the GetId login provider)"
                .into(),
        );
        return None;
    };
    if let Some(u) = &c.identity_endpoint_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        errs.push(format!(
            "cognito.identity_endpoint_url: `{u}` is not an http(s) URL"
        ));
    }
    Some(crate::auth::identity::IdentityPoolConfig {
        pool_id: pool_id.clone(),
        login_provider: format!("cognito-idp.{region}.amazonaws.com/{user_pool}"),
        endpoint_url: c.identity_endpoint_url.clone(),
    })
}

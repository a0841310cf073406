//! What the API answers, as typed views (SPEC §6 record, share, pages), and the one
//! constructor of each. Handlers never write JSON by hand.

use crate::auth::cloudfront::UrlSigner;
use crate::facts::FactsView;
use crate::metadata::{self, ImageRecord, Share};
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

/// `status` with `v` as its JSON body.
pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    // Serializing plain structs of strings and numbers cannot fail.
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Header naming the CloudFront invalidation a change created (SPEC §14).
pub(crate) const INVALIDATION_HEADER: &str = "x-imgorigin-invalidation";

/// How long a response waits for its change's CloudFront invalidation: one batch window
/// plus a call. A slower or failing call is retried later, without holding the response.
const INVALIDATION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// `response` with `x-imgorigin-invalidation` when the change's invalidation was created.
pub(crate) async fn with_invalidation(
    mut response: Response<Body>,
    ticket: crate::cluster::Ticket,
) -> Response<Body> {
    if let Some(id) = ticket.invalidation_id(INVALIDATION_WAIT).await
        && let Ok(v) = axum::http::HeaderValue::try_from(id)
    {
        response.headers_mut().insert(INVALIDATION_HEADER, v);
    }
    response
}

pub(crate) fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// Characters escaped in a key's path segments when building URLs.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'+')
    .add(b'&');

/// `/{key}` with each segment percent-encoded.
pub fn key_path(key: &str) -> String {
    let mut out = String::new();
    for seg in key.split('/') {
        out.push('/');
        out.extend(utf8_percent_encode(seg, PATH));
    }
    out
}

/// The URL builder of this app: delivery URLs on the first `cloudfront.public_base_urls`
/// entry, share URLs signed with its signing key.
pub(crate) fn urls(state: &crate::state::AppState) -> Urls<'_> {
    Urls {
        base: state
            .config
            .auth
            .public_base_urls
            .first()
            .map(String::as_str)
            .unwrap_or(""),
        signer: state.signer.as_ref(),
        presets: &state.config.presets,
    }
}

/// Builds URLs that point back at delivery: on the first `cloudfront.public_base_urls`
/// entry when set, else paths relative to this server.
pub(crate) struct Urls<'a> {
    pub base: &'a str,
    pub signer: Option<&'a UrlSigner>,
    /// `[presets]`: each record lists its delivery URL per preset (SPEC §11).
    pub presets: &'a std::collections::BTreeMap<String, String>,
}

impl Urls<'_> {
    pub fn delivery(&self, key: &str) -> String {
        format!("{}{}", self.base, key_path(key))
    }

    /// The unsigned share URL: delivery URL + transform params + `share=<id>`.
    pub fn share_unsigned(&self, key: &str, params: Option<&str>, id: &str) -> String {
        let base = self.delivery(key);
        match params {
            Some(p) if !p.is_empty() => format!("{base}?{p}&share={id}"),
            _ => format!("{base}?share={id}"),
        }
    }

    /// The signed share URL, when signing is configured.
    pub fn share(&self, s: &Share) -> Option<String> {
        self.signer.map(|signer| {
            signer.sign_canned(
                &self.share_unsigned(&s.key, s.params.as_deref(), &s.id),
                s.expires_at as u64,
            )
        })
    }
}

/// An image record (SPEC §6) with its facts (SPEC §10) as top-level fields.
#[derive(Serialize)]
pub(crate) struct RecordView<'a> {
    id: &'a str,
    key: &'a str,
    level: &'static str,
    owner: Option<&'a str>,
    filename: Option<&'a str>,
    content_type: &'a str,
    bytes: i64,
    width: i64,
    height: i64,
    sha256: &'a str,
    tags: &'a [String],
    description: Option<&'a str>,
    /// `ready`, or `rejected` (ingest refused the object, SPEC §12).
    state: &'static str,
    /// SPEC §12: `null` while moderation is off.
    moderation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_reason: Option<&'a str>,
    created_at: String,
    updated_at: String,
    url: String,
    /// Preset name → the delivery URL with `?p=NAME` (SPEC §11).
    variants: std::collections::BTreeMap<String, String>,
    #[serde(flatten)]
    facts: FactsView<'a>,
}

impl<'a> RecordView<'a> {
    /// `show_gps`: the caller is the owner or an admin (else `gps` is `null`).
    pub fn new(r: &'a ImageRecord, urls: &Urls<'_>, show_gps: bool) -> Self {
        RecordView {
            id: &r.id,
            key: &r.key,
            level: r.level.as_str(),
            owner: r.owner.as_deref(),
            filename: r.filename.as_deref(),
            content_type: &r.content_type,
            bytes: r.bytes,
            width: r.width,
            height: r.height,
            sha256: &r.sha256,
            tags: &r.tags,
            description: r.description.as_deref(),
            state: r.state.as_str(),
            moderation: r.moderation.map(metadata::Moderation::as_str),
            rejected_reason: r.rejected_reason.as_deref(),
            created_at: metadata::rfc3339_micros(r.created_at),
            updated_at: metadata::rfc3339_micros(r.updated_at),
            url: urls.delivery(&r.key),
            variants: urls
                .presets
                .keys()
                .map(|name| (name.clone(), format!("{}?p={name}", urls.delivery(&r.key))))
                .collect(),
            facts: FactsView::of(r.facts.as_ref(), show_gps),
        }
    }
}

/// One page of a list.
#[derive(Serialize)]
pub(crate) struct Page<T: Serialize> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Option<String>>,
}

/// A share link as listed.
#[derive(Serialize)]
pub(crate) struct ShareView<'a> {
    id: &'a str,
    image_id: &'a str,
    url: Option<String>,
    params: Option<&'a str>,
    created_at: String,
    expires_at: String,
    revoked: bool,
    revoked_at: Option<String>,
}

impl<'a> ShareView<'a> {
    pub fn new(s: &'a Share, urls: &Urls<'_>) -> Self {
        ShareView {
            id: &s.id,
            image_id: &s.image_id,
            url: urls.share(s),
            params: s.params.as_deref(),
            created_at: metadata::rfc3339_micros(s.created_at),
            expires_at: metadata::rfc3339_secs(s.expires_at),
            revoked: s.revoked_at.is_some(),
            revoked_at: s.revoked_at.map(metadata::rfc3339_micros),
        }
    }
}

/// A share link just created.
#[derive(Serialize)]
pub(crate) struct NewShareView<'a> {
    pub id: &'a str,
    pub url: String,
    pub expires_at: String,
}

/// A presigned upload (`POST /api/v1/uploads`).
#[derive(Serialize)]
pub(crate) struct PresignView<'a> {
    pub key: &'a str,
    pub url: &'a str,
    pub method: &'static str,
    /// To send with the PUT: they are covered by its signature.
    pub headers: std::collections::BTreeMap<String, String>,
    pub max_bytes: u64,
    pub expires_at: String,
    pub register: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_encoded() {
        assert_eq!(key_path("public/a b+c?.png"), "/public/a%20b%2Bc%3F.png");
        assert_eq!(key_path("public/café.png"), "/public/caf%C3%A9.png");
    }
}

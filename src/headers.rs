//! Response header decisions from plain values: ETags, Last-Modified, the 304 decision and
//! the Cache-Control class, and the response heads built from them. No I/O.
//!
//! What is known before a request (Cache-Control per audience class, an original's
//! Last-Modified) arrives here as ready `HeaderValue`s, so a cache hit formats nothing but
//! its ETag.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use std::time::SystemTime;

/// How a delivery response was produced; read by the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// From the shared variant store (SPEC §12): no render on this instance.
    Shared,
    Original,
    NotModified,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Shared => "shared",
            CacheOutcome::Original => "original",
            CacheOutcome::NotModified => "not-modified",
        }
    }
}

/// Tags a response with how it was produced, for the request log.
pub fn with_outcome(mut r: Response<Body>, o: CacheOutcome) -> Response<Body> {
    r.extensions_mut().insert(o);
    r
}

/// A quoted strong ETag: its header value, or only its text when that is not a valid
/// header value (then it is still compared for 304s but not sent).
pub struct ETag(Result<HeaderValue, String>);

impl ETag {
    /// From an opaque tag (a storage ETag).
    pub fn strong(tag: &str) -> Self {
        match HeaderValue::try_from(format!("\"{tag}\"")) {
            Ok(v) => ETag(Ok(v)),
            Err(_) => ETag(Err(format!("\"{tag}\""))),
        }
    }

    /// From an id written as lowercase hex (a variant id): one buffer, no copy into the value.
    pub fn strong_hex(id: &[u8]) -> Self {
        let mut buf = vec![b'"'; id.len() * 2 + 2];
        let hex_len = buf.len() - 1;
        let text = hex::encode_to_slice(id, &mut buf[1..hex_len]).map(|()| buf);
        match text.map(|b| HeaderValue::from_maybe_shared(Bytes::from(b))) {
            Ok(Ok(v)) => ETag(Ok(v)),
            _ => ETag::strong(&hex::encode(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a `String`, so always UTF-8.
            Ok(v) => std::str::from_utf8(v.as_bytes()).unwrap_or_default(),
            Err(text) => text,
        }
    }

    fn into_value(self) -> Option<HeaderValue> {
        self.0.ok()
    }
}

/// `If-None-Match` against our ETag, with the weak comparison RFC 9110 prescribes for it.
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// Whether a conditional GET/HEAD may be answered with 304. `If-None-Match` wins when
/// present; `If-Modified-Since` is used only without it.
pub fn is_not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    last_modified: SystemTime,
) -> bool {
    if let Some(inm) = if_none_match {
        return if_none_match_matches(inm, etag);
    }
    if let Some(ims) = if_modified_since.and_then(|v| httpdate::parse_http_date(v).ok()) {
        // HTTP dates have whole seconds: compare at that precision.
        let lm = truncate_to_secs(last_modified);
        return lm <= ims;
    }
    false
}

fn truncate_to_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Who could read the response, which decides how it may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Anyone without credentials.
    Public,
    /// Only with a credential (token, API key).
    Private,
    /// Through a signed URL / cookie valid for `secs_left` more seconds.
    Signed { secs_left: u64 },
}

/// The Cache-Control values of the configured classes, parsed once at start-up.
pub struct CacheControls {
    public: Option<HeaderValue>,
    private: Option<HeaderValue>,
}

impl CacheControls {
    /// Invalid values (refused by config validation already) are not sent.
    pub fn new(public: &str, private: &str) -> Self {
        CacheControls {
            public: HeaderValue::from_str(public).ok(),
            private: HeaderValue::from_str(private).ok(),
        }
    }

    /// The value for an audience; only a signed one is formatted, as its lifetime varies.
    pub fn value(&self, a: Audience) -> Option<HeaderValue> {
        match a {
            Audience::Public => self.public.clone(),
            Audience::Private => self.private.clone(),
            Audience::Signed { secs_left } => {
                HeaderValue::try_from(format!("public, max-age={secs_left}")).ok()
            }
        }
    }
}

/// Everything shared by the 200 and 304 answers of one resource.
pub struct ResponseHeads {
    pub etag: ETag,
    /// For `If-Modified-Since`.
    pub modified: SystemTime,
    /// `modified` as an HTTP date, formatted when the original was stored.
    pub last_modified: Option<HeaderValue>,
    pub cache_control: Option<HeaderValue>,
    /// The format was negotiated from `Accept`.
    pub vary_accept: bool,
}

impl ResponseHeads {
    /// Whether the request's conditionals allow a 304.
    pub fn is_not_modified(&self, req: &HeaderMap) -> bool {
        let text = |name| req.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        is_not_modified(
            text(header::IF_NONE_MATCH),
            text(header::IF_MODIFIED_SINCE),
            self.etag.as_str(),
            self.modified,
        )
    }

    /// The 304 answer, without a body.
    pub fn not_modified(self) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        self.apply(r.headers_mut());
        with_outcome(r, CacheOutcome::NotModified)
    }

    /// The 200 answer; `head_only` keeps the length but sends no body.
    pub fn ok(
        self,
        content_type: &'static str,
        body: &Bytes,
        head_only: bool,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let b = if head_only {
            Body::empty()
        } else {
            Body::from(body.clone())
        };
        self.ok_with(content_type, b, body.len() as u64, outcome)
    }

    /// The 200 answer with a body of `len` bytes, streamed as it comes (empty for HEAD,
    /// which still states the length).
    pub fn ok_with(
        self,
        content_type: &'static str,
        body: Body,
        len: u64,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let mut r = Response::new(body);
        let h = r.headers_mut();
        self.apply(h);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        with_outcome(r, outcome)
    }

    fn apply(self, h: &mut HeaderMap) {
        if let Some(v) = self.etag.into_value() {
            h.insert(header::ETAG, v);
        }
        if let Some(v) = self.last_modified {
            h.insert(header::LAST_MODIFIED, v);
        }
        if let Some(v) = self.cache_control {
            h.insert(header::CACHE_CONTROL, v);
        }
        if self.vary_accept {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn inm_matching() {
        assert!(if_none_match_matches("\"abc\"", "\"abc\""));
        assert!(if_none_match_matches("W/\"abc\"", "\"abc\""));
        assert!(if_none_match_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(if_none_match_matches("*", "\"abc\""));
        assert!(!if_none_match_matches("\"abcd\"", "\"abc\""));
        assert!(!if_none_match_matches("abc", "\"abc\""));
    }

    #[test]
    fn not_modified_rules() {
        let lm = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let same = http_date(lm);
        let before = http_date(lm - Duration::from_secs(10));
        assert!(is_not_modified(None, Some(&same), "\"e\"", lm));
        assert!(!is_not_modified(None, Some(&before), "\"e\"", lm));
        // If-None-Match present and not matching: modified, whatever the date says.
        assert!(!is_not_modified(
            Some("\"other\""),
            Some(&same),
            "\"e\"",
            lm
        ));
        assert!(is_not_modified(Some("\"e\""), Some(&before), "\"e\"", lm));
        assert!(!is_not_modified(None, Some("garbage"), "\"e\"", lm));
        assert!(!is_not_modified(None, None, "\"e\"", lm));
    }

    #[test]
    fn cache_control_classes() {
        let cc = CacheControls::new("pub", "priv");
        let v = |a| cc.value(a).unwrap();
        assert_eq!(v(Audience::Public), "pub");
        assert_eq!(v(Audience::Private), "priv");
        assert_eq!(v(Audience::Signed { secs_left: 42 }), "public, max-age=42");
        assert!(
            CacheControls::new("bad\n", "priv")
                .value(Audience::Public)
                .is_none()
        );
    }

    #[test]
    fn etags() {
        let e = ETag::strong_hex(&[0x01, 0xab, 0xff]);
        assert_eq!(e.as_str(), "\"01abff\"");
        assert_eq!(e.into_value().unwrap(), "\"01abff\"");
        assert_eq!(ETag::strong("abc").as_str(), "\"abc\"");
        // Not a header value: compared, never sent.
        let bad = ETag::strong("a\nb");
        assert_eq!(bad.as_str(), "\"a\nb\"");
        assert!(bad.into_value().is_none());
    }
}

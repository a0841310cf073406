//! Response header decisions from plain values: ETags, Last-Modified, the 304 decision and
//! the Cache-Control class. No I/O.

use std::time::SystemTime;

/// Quoted strong ETag from an opaque tag.
pub fn strong_etag(tag: &str) -> String {
    format!("\"{tag}\"")
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

pub fn cache_control(a: Audience, public: &str, private: &str) -> String {
    match a {
        Audience::Public => public.to_string(),
        Audience::Private => private.to_string(),
        Audience::Signed { secs_left } => format!("public, max-age={secs_left}"),
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
        assert_eq!(cache_control(Audience::Public, "pub", "priv"), "pub");
        assert_eq!(cache_control(Audience::Private, "pub", "priv"), "priv");
        assert_eq!(
            cache_control(Audience::Signed { secs_left: 42 }, "pub", "priv"),
            "public, max-age=42"
        );
    }
}

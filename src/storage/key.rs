//! Object keys from URL paths. Rejects anything that could escape a folder or confuse a
//! backend before any storage access happens.

use percent_encoding::percent_decode_str;

/// Why a key was refused. The `Display` text is the public problem `detail` (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid image key: not UTF-8")]
    NotUtf8,
    #[error("invalid image key: empty")]
    Empty,
    #[error("invalid image key: longer than 1024 bytes")]
    TooLong,
    #[error("invalid image key: contains a backslash")]
    Backslash,
    #[error("invalid image key: contains a control character")]
    ControlCharacter,
    #[error("invalid image key: empty path segment")]
    EmptySegment,
    #[error("invalid image key: `.` or `..` segment")]
    DotSegment,
}

/// Turns a raw request path (`/public/a%20b.jpg`) into a validated object key
/// (`public/a b.jpg`). Rejects empty, `.` and `..` segments (also when percent-encoded),
/// backslashes, NUL and other control characters, and non-UTF-8.
pub fn from_path(raw_path: &str) -> Result<String, KeyError> {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let key = percent_decode_str(trimmed)
        .decode_utf8()
        .map_err(|_| KeyError::NotUtf8)?;
    validate(&key)?;
    Ok(key.into_owned())
}

pub fn validate(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > 1024 {
        return Err(KeyError::TooLong);
    }
    if key.contains('\\') {
        return Err(KeyError::Backslash);
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(KeyError::ControlCharacter);
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err(KeyError::EmptySegment),
            "." | ".." => return Err(KeyError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_keys() {
        assert_eq!(from_path("/public/a.jpg").unwrap(), "public/a.jpg");
        assert_eq!(
            from_path("/public/a%20b%2B.jpg").unwrap(),
            "public/a b+.jpg"
        );
        assert_eq!(
            from_path("/public/caf%C3%A9.jpg").unwrap(),
            "public/café.jpg"
        );
        assert_eq!(
            from_path("/public/..a/b..jpg").unwrap(),
            "public/..a/b..jpg"
        );
    }

    #[test]
    fn rejects_traversal_and_junk() {
        for p in [
            "/",
            "/../etc/passwd",
            "/public/../x",
            "/public/%2e%2e/x",
            "/public/%2E%2E/x",
            "/public//x",
            "/public/./x",
            "/public/x/",
            "/public\\x",
            "/public%5cx",
            "/public/%00x",
            "/public/a%0Ab",
            "/public/%ff.jpg",
            "/%2fetc/passwd",
        ] {
            assert!(from_path(p).is_err(), "{p} was accepted");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(from_path("/%ff"), Err(KeyError::NotUtf8));
        assert_eq!(validate("a/../b"), Err(KeyError::DotSegment));
        assert_eq!(validate(&"a".repeat(1025)), Err(KeyError::TooLong));
        assert_eq!(
            KeyError::Backslash.to_string(),
            "invalid image key: contains a backslash"
        );
    }
}

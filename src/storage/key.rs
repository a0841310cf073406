//! Object keys from URL paths. Rejects anything that could escape a folder or confuse a
//! backend before any storage access happens.

use crate::error::Error;
use percent_encoding::percent_decode_str;

/// Turns a raw request path (`/public/a%20b.jpg`) into a validated object key
/// (`public/a b.jpg`). Rejects empty, `.` and `..` segments (also when percent-encoded),
/// backslashes, NUL and other control characters, and non-UTF-8.
pub fn from_path(raw_path: &str) -> Result<String, Error> {
    let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let key = percent_decode_str(trimmed)
        .decode_utf8()
        .map_err(|_| Error::bad_request("invalid image key: not UTF-8"))?;
    validate(&key)?;
    Ok(key.into_owned())
}

pub fn validate(key: &str) -> Result<(), Error> {
    let reject = |why: &str| Err(Error::bad_request(format!("invalid image key: {why}")));
    if key.is_empty() {
        return reject("empty");
    }
    if key.len() > 1024 {
        return reject("longer than 1024 bytes");
    }
    if key.contains('\\') {
        return reject("contains a backslash");
    }
    if key.chars().any(|c| c.is_control()) {
        return reject("contains a control character");
    }
    for seg in key.split('/') {
        match seg {
            "" => return reject("empty path segment"),
            "." | ".." => return reject("`.` or `..` segment"),
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
}

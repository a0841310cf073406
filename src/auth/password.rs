//! Local accounts (SPEC §15): names that become identities, and their argon2id password
//! hashes (PHC strings, OWASP's parameters: 19 MiB, 2 passes, 1 lane). Hashing and
//! verifying are CPU work: callers run them on the workers.

use crate::metadata::{self, MetaError, MetadataStore, User};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};
use std::sync::LazyLock;

/// Longest password accepted (argon2 takes any length; this only bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password `imgorigin user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A user name: 1-64 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit.
/// Lowercase only: the name is the identity segment of keys (`private/<name>/…`), and a
/// case-insensitive file system would give `Alice` and `alice` one folder.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name `{}`: 1-64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// What `user add` accepts as a new password.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    Argon2::from(Params::DEFAULT)
}

/// An argon2id PHC string of `password` with a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `phc` (constant-time compare of the outputs;
/// a malformed hash never matches).
pub fn verify(password: &str, phc: &str) -> bool {
    password.len() <= MAX_PASSWORD_BYTES
        && hasher().verify_password(password.as_bytes(), phc).is_ok()
}

/// A hash of a random password, with the same parameters as real ones: verified against
/// when the name is unknown, so an unknown name costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        use rand::Rng as _;
        let random: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        // Hashing cannot fail for a short password and default parameters; an empty
        // string would still never verify.
        hash(&random).unwrap_or_default()
    });
    &DUMMY
}

/// Adds the account `name` (`replace = false`) or sets its new password (`true`), for
/// `imgorigin user add|passwd`. Hashes on the calling thread: for the CLI, not requests.
pub async fn save_user(
    store: &dyn MetadataStore,
    name: &str,
    password: &str,
    replace: bool,
) -> Result<(), String> {
    check_name(name)?;
    check_new_password(password)?;
    let hash = hash(password)?;
    let now = metadata::now_micros();
    if replace {
        return match store.set_user_password(name, &hash, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "no user `{name}` (add it with `imgorigin user add {name}`)"
            )),
            Err(e) => Err(e.to_string()),
        };
    }
    let user = User {
        name: name.to_string(),
        password_hash: hash,
        created_at: now,
        updated_at: now,
    };
    match store.insert_user(&user).await {
        Ok(()) => Ok(()),
        Err(MetaError::Conflict(_)) => Err(format!(
            "user `{name}` exists (set a new password with `imgorigin user passwd {name}`)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "a", "bob.smith", "x_1-2", &"a".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Alice", "-a", ".a", "a/b", "a b", "ä", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!verify(&"x".repeat(MAX_PASSWORD_BYTES + 1), &h));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert!(!verify("", dummy_hash()));
        assert!(check_new_password("short").is_err());
        check_new_password("long enough").unwrap();
    }
}

//! Who is asking, and what they may read. Decided before any cache lookup so a cached
//! variant is never served to someone who may not read its key.
//!
//! This release knows guests only: signed URLs, tokens and API keys come next, and
//! configuring them is refused at start-up (see `config`), so nothing is silently open.

use crate::config::{AccessConfig, OtherAccess};
use crate::error::Error;
use axum::http::HeaderMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Guest,
    User { id: String, groups: Vec<String> },
    Admin,
}

/// The principal of a request.
pub fn principal(_headers: &HeaderMap) -> Result<Principal, Error> {
    Ok(Principal::Guest)
}

/// Read access per the Amplify-style prefix table (SPEC §3).
pub fn can_read(p: &Principal, key: &str, a: &AccessConfig) -> bool {
    let owner_of = |prefix: &str| -> Option<&str> {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(id, _)| id)
    };
    match p {
        Principal::Admin => true,
        _ if key.starts_with(&a.public_prefix) => true,
        Principal::Guest => {
            !key.starts_with(&a.protected_prefix)
                && !key.starts_with(&a.private_prefix)
                && a.other == OtherAccess::Public
        }
        Principal::User { id, .. } => {
            if key.starts_with(&a.protected_prefix) {
                owner_of(&a.protected_prefix).is_some()
            } else if key.starts_with(&a.private_prefix) {
                owner_of(&a.private_prefix) == Some(id.as_str())
            } else {
                a.other != OtherAccess::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn guest_reads_only_public_by_default() {
        let a = Config::defaults().access;
        let g = Principal::Guest;
        assert!(can_read(&g, "public/x.jpg", &a));
        assert!(!can_read(&g, "protected/alice/x.jpg", &a));
        assert!(!can_read(&g, "private/alice/x.jpg", &a));
        assert!(!can_read(&g, "other/x.jpg", &a));
        let mut open = a.clone();
        open.other = OtherAccess::Public;
        assert!(can_read(&g, "other/x.jpg", &open));
        assert!(!can_read(&g, "private/alice/x.jpg", &open));
    }

    #[test]
    fn users_and_admins() {
        let a = Config::defaults().access;
        let alice = Principal::User {
            id: "alice".into(),
            groups: vec![],
        };
        assert!(can_read(&alice, "protected/bob/x.jpg", &a));
        assert!(can_read(&alice, "private/alice/x.jpg", &a));
        assert!(!can_read(&alice, "private/bob/x.jpg", &a));
        assert!(!can_read(&alice, "private/alicex/x.jpg", &a));
        assert!(!can_read(&alice, "other/x.jpg", &a));
        assert!(can_read(&Principal::Admin, "private/bob/x.jpg", &a));
        assert!(can_read(&Principal::Admin, "other/x.jpg", &a));
    }
}

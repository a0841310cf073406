//! Who may read and change what (SPEC §3): the Amplify-style levels decided by a key's
//! prefix, the identity segment that names an owner, and the same rules as a filter the
//! metadata store applies to lists. The one place these rules are written.

use super::Principal;
use crate::metadata::{Level, Visibility};

/// Who may read keys outside the public/protected/private prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherAccess {
    None,
    Authenticated,
    Public,
}

#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub public_prefix: String,
    pub protected_prefix: String,
    pub private_prefix: String,
    pub other: OtherAccess,
}

/// Read access per the Amplify-style prefix table (SPEC §3). Signed and edge-verified
/// requests were already checked against this exact URL.
pub fn can_read(p: &Principal, key: &str, a: &AccessConfig) -> bool {
    let owner_of = |prefix: &str| -> Option<&str> {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(id, _)| id)
    };
    match p {
        Principal::Admin | Principal::Signed(_) | Principal::EdgeVerified => true,
        _ if miscased_prefix(key, a) => false,
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

/// Whether `key` starts with an access prefix in another letter case (`PRIVATE/alice/`).
/// A case-insensitive file system (the embedded default on macOS or Windows) resolves
/// such a key to the private object while the prefix test sees an "other" key, so
/// guests and users are refused these keys outright.
fn miscased_prefix(key: &str, a: &AccessConfig) -> bool {
    [&a.public_prefix, &a.protected_prefix, &a.private_prefix]
        .into_iter()
        .any(|p| {
            key.get(..p.len())
                .is_some_and(|head| head != p.as_str() && head.to_lowercase() == p.to_lowercase())
        })
}

/// Level of a key and the identity in it (protected/private), per `[access]`.
pub fn level_of<'k>(key: &'k str, a: &AccessConfig) -> (Level, Option<&'k str>) {
    let identity = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty())
    };
    if key.starts_with(&a.public_prefix) {
        (Level::Public, None)
    } else if key.starts_with(&a.protected_prefix) {
        (Level::Protected, identity(&a.protected_prefix))
    } else if key.starts_with(&a.private_prefix) {
        (Level::Private, identity(&a.private_prefix))
    } else {
        (Level::Other, None)
    }
}

/// What the caller may list (SPEC §3 read column), for the database to filter on.
pub fn visibility(p: &Principal, a: &AccessConfig) -> Visibility {
    match p {
        Principal::Admin => Visibility {
            all: true,
            ..Default::default()
        },
        Principal::User { id, .. } => {
            let mut levels = vec![Level::Public, Level::Protected];
            if a.other != OtherAccess::None {
                levels.push(Level::Other);
            }
            Visibility {
                all: false,
                levels,
                private_of: Some(id.clone()),
                flagged_of: Some(id.clone()),
            }
        }
        _ => {
            let mut levels = vec![Level::Public];
            if a.other == OtherAccess::Public {
                levels.push(Level::Other);
            }
            Visibility {
                all: false,
                levels,
                private_of: None,
                flagged_of: None,
            }
        }
    }
}

/// Whether `p` owns `key` by the identity segment of a protected or private key; `None`
/// for the keys whose owner only their record knows (public, other). Only a user can own
/// a key this way; whether admins count is the caller's rule.
pub fn owns_by_key(p: &Principal, key: &str, a: &AccessConfig) -> Option<bool> {
    match level_of(key, a) {
        (Level::Protected | Level::Private, identity) => {
            Some(identity.is_some() && identity == p.identity())
        }
        _ => None,
    }
}

/// Whether `p` may change (edit, share, delete) an image owned by `owner`: its owner or
/// an admin.
pub fn may_change(p: &Principal, owner: Option<&str>) -> bool {
    match p {
        Principal::Admin => true,
        Principal::User { id, .. } => owner == Some(id.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[access]` defaults of SPEC §8.
    fn defaults() -> AccessConfig {
        AccessConfig {
            public_prefix: "public/".into(),
            protected_prefix: "protected/".into(),
            private_prefix: "private/".into(),
            other: OtherAccess::None,
        }
    }

    /// Regression (security review, finding 13): `/PRIVATE/alice/x.jpg` is not an
    /// "other" key that guests may read when `access.other = public`.
    #[test]
    fn miscased_prefixes_are_refused() {
        let a = &AccessConfig {
            other: OtherAccess::Public,
            ..defaults()
        };
        let alice = Principal::User {
            id: "alice".into(),
            groups: vec![],
        };
        assert!(can_read(&Principal::Guest, "other/x.jpg", a));
        for key in [
            "PRIVATE/alice/x.jpg",
            "Private/alice/x.jpg",
            "PROTECTED/bob/x.jpg",
        ] {
            assert!(!can_read(&Principal::Guest, key, a), "{key}");
            assert!(!can_read(&alice, key, a), "{key}");
            assert!(can_read(&Principal::Admin, key, a), "{key}");
        }
        assert!(!can_read(&Principal::Guest, "PUBLIC/x.jpg", a));
        assert!(can_read(&Principal::Guest, "public/x.jpg", a));
        assert!(can_read(&alice, "private/alice/x.jpg", a));
    }

    #[test]
    fn guest_reads_only_public_by_default() {
        let a = defaults();
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
        let a = defaults();
        let alice = Principal::User {
            id: "alice".into(),
            groups: vec![],
        };
        assert!(can_read(&alice, "protected/bob/x.jpg", &a));
        assert!(can_read(&alice, "private/alice/x.jpg", &a));
        assert!(!can_read(&alice, "private/bob/x.jpg", &a));
        assert!(!can_read(&alice, "private/alicex/x.jpg", &a));
        assert!(!can_read(&alice, "other/x.jpg", &a));
        let mut auth_other = a.clone();
        auth_other.other = OtherAccess::Authenticated;
        assert!(can_read(&alice, "other/x.jpg", &auth_other));
        assert!(can_read(&Principal::Admin, "private/bob/x.jpg", &a));
        assert!(can_read(&Principal::Admin, "other/x.jpg", &a));
    }

    #[test]
    fn owners_by_key() {
        let a = defaults();
        let alice = Principal::User {
            id: "alice".into(),
            groups: vec![],
        };
        assert_eq!(owns_by_key(&alice, "private/alice/x.png", &a), Some(true));
        assert_eq!(owns_by_key(&alice, "protected/alice/x.png", &a), Some(true));
        assert_eq!(owns_by_key(&alice, "protected/bob/x.png", &a), Some(false));
        assert_eq!(owns_by_key(&alice, "protected/x.png", &a), Some(false));
        assert_eq!(
            owns_by_key(&Principal::Guest, "private/alice/x.png", &a),
            Some(false)
        );
        assert_eq!(owns_by_key(&alice, "public/x.png", &a), None);
        assert_eq!(owns_by_key(&alice, "other/x.png", &a), None);
    }

    #[test]
    fn levels_from_keys() {
        let a = defaults();
        assert_eq!(level_of("public/x.png", &a), (Level::Public, None));
        assert_eq!(
            level_of("protected/alice/x.png", &a),
            (Level::Protected, Some("alice"))
        );
        assert_eq!(
            level_of("private/bob/a/b.png", &a),
            (Level::Private, Some("bob"))
        );
        assert_eq!(level_of("private/x.png", &a), (Level::Private, None));
        assert_eq!(level_of("other/x.png", &a), (Level::Other, None));
    }
}

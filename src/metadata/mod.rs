//! Image metadata and share links (SPEC §6): one `MetadataStore` interface, implemented on
//! SQLite (embedded default) and PostgreSQL (shared by all instances) with the same SQL and
//! the same migrations (`migrations/`), applied at start-up, and on one DynamoDB table
//! (SPEC §13, `dynamodb.rs`). sqlx's migrator takes a lock (`pg_advisory_lock` on
//! PostgreSQL), so several instances may start at once.

pub mod dynamodb;
mod sql;

pub use dynamodb::DynamoStore;
pub use sql::{PgStore, SqliteStore};

use async_trait::async_trait;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where an upload is in its life. Only `Ready` records are visible through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Written before the original is stored; becomes `Ready` once it is.
    Pending,
    Ready,
    /// The original is being deleted; the record goes once it is gone.
    Deleting,
    /// Ingest refused the object (SPEC §12): it was moved under `rejected/`, the record
    /// says why (`rejected_reason`). Never listed; readable by id for its owner and admins.
    Rejected,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Ready => "ready",
            RecordState::Deleting => "deleting",
            RecordState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(RecordState::Pending),
            "ready" => Some(RecordState::Ready),
            "deleting" => Some(RecordState::Deleting),
            "rejected" => Some(RecordState::Rejected),
            _ => None,
        }
    }
}

/// The moderation state of a record (SPEC §12); records have none while moderation is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moderation {
    /// Stored while moderation is on, not yet checked by ingest.
    Pending,
    Approved,
    /// Readable only by its owner and admins.
    Flagged,
}

impl Moderation {
    pub fn as_str(self) -> &'static str {
        match self {
            Moderation::Pending => "pending",
            Moderation::Approved => "approved",
            Moderation::Flagged => "flagged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Moderation::Pending),
            "approved" => Some(Moderation::Approved),
            "flagged" => Some(Moderation::Flagged),
            _ => None,
        }
    }
}

/// Access level of a key (SPEC §3), decided by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Public,
    Protected,
    Private,
    Other,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Public => "public",
            Level::Protected => "protected",
            Level::Private => "private",
            Level::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Level::Public),
            "protected" => Some(Level::Protected),
            "private" => Some(Level::Private),
            "other" => Some(Level::Other),
            _ => None,
        }
    }
}

/// One image record. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    pub key: String,
    pub level: Level,
    /// The identity in the key for protected/private; the uploader for public (none when
    /// an admin without identity uploaded it).
    pub owner: Option<String>,
    pub filename: Option<String>,
    pub content_type: String,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
    pub sha256: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub state: RecordState,
    pub created_at: i64,
    pub updated_at: i64,
    /// SPEC §10; `None` for records stored before facts existed (computed on first read).
    pub facts: Option<crate::facts::Facts>,
    /// SPEC §12: `None` while moderation is off.
    pub moderation: Option<Moderation>,
    /// Why ingest refused the object (state `Rejected`).
    pub rejected_reason: Option<String>,
}

/// A share link: a signed delivery URL carrying `share=<id>`, revocable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub id: String,
    pub image_id: String,
    pub key: String,
    /// Transform query (`w=200&fm=webp`) baked into the URL, if any.
    pub params: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    /// Unix seconds (the signature's `Expires`).
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key handed out with a presigned PUT: only `identity` may register the object there,
/// once. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub key: String,
    /// `None` when an admin asked for the URL.
    pub identity: Option<String>,
    pub created_at: i64,
    /// When the presigned PUT URL stops working.
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A local account (`imgorigin user add`): the name is the identity in keys and tokens.
/// Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Fields a PATCH may change (`None`: unchanged; `Some(None)`: cleared).
#[derive(Clone, Debug, Default)]
pub struct Patch {
    pub filename: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub description: Option<Option<String>>,
}

/// Which records a caller may read (SPEC §3), as a filter the database applies.
#[derive(Clone, Debug, Default)]
pub struct Visibility {
    /// Admin: everything.
    pub all: bool,
    /// Levels everyone in the caller's role reads.
    pub levels: Vec<Level>,
    /// Private records of this owner.
    pub private_of: Option<String>,
    /// Flagged records (SPEC §12) are listed only when `all`, or to their owner: this
    /// identity (`None`: to no one).
    pub flagged_of: Option<String>,
}

/// A list request: newest first, keyset-paginated on `(created_at, id)`.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub visible: Visibility,
    pub owner: Option<String>,
    pub level: Option<Level>,
    pub tag: Option<String>,
    pub limit: u32,
    /// Only records strictly older than this `(created_at, id)`.
    pub before: Option<(i64, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A record with this key (or id) exists already.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("metadata database: {0}")]
    Db(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return MetaError::Conflict(d.message().to_string());
        }
        MetaError::Db(e.to_string())
    }
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Inserts a new record (any state). `Conflict` when the id or key exists.
    async fn insert(&self, r: &ImageRecord) -> Result<(), MetaError>;
    /// Moves `id` from state `from` to `to` and sets `updated_at = now`; false when it was
    /// not in `from`.
    async fn set_state(
        &self,
        id: &str,
        from: RecordState,
        to: RecordState,
        now: i64,
    ) -> Result<bool, MetaError>;
    /// A record in any state.
    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, MetaError>;
    /// The record (any state) of an object key.
    async fn get_by_key(&self, key: &str) -> Result<Option<ImageRecord>, MetaError>;
    /// Stores the facts of a record computed after it was written; false when there is
    /// no such record.
    async fn set_facts(&self, id: &str, facts: &crate::facts::Facts) -> Result<bool, MetaError>;
    /// Ready records the query's visibility allows, newest first.
    async fn list(&self, q: &ListQuery) -> Result<Vec<ImageRecord>, MetaError>;
    /// Applies `patch` to a ready record; returns it updated, `None` when missing.
    async fn update(
        &self,
        id: &str,
        patch: &Patch,
        now: i64,
    ) -> Result<Option<ImageRecord>, MetaError>;
    /// Points a ready record at a new key and level (`from_key` must still be its key):
    /// the level change of a PATCH, after the original was copied. False when the record
    /// is gone, no longer ready, or was moved meanwhile.
    async fn move_key(
        &self,
        id: &str,
        from_key: &str,
        to_key: &str,
        level: Level,
        now: i64,
    ) -> Result<bool, MetaError>;
    /// Removes the record and its shares (one transaction).
    async fn delete(&self, id: &str) -> Result<(), MetaError>;
    async fn insert_share(&self, s: &Share) -> Result<(), MetaError>;
    async fn get_share(&self, id: &str) -> Result<Option<Share>, MetaError>;
    async fn list_shares(&self, image_id: &str) -> Result<Vec<Share>, MetaError>;
    /// Marks a share revoked (idempotent); false when there is no such share.
    async fn revoke_share(&self, id: &str, now: i64) -> Result<bool, MetaError>;
    /// Records left `pending` or `deleting` since before `older_than` (crashed uploads or
    /// deletes), for the start-up sweep; never `rejected` ones, which are kept on purpose.
    async fn stale(&self, older_than: i64) -> Result<Vec<ImageRecord>, MetaError>;
    /// Whether a record in any state has this key.
    async fn key_recorded(&self, key: &str) -> Result<bool, MetaError>;
    /// Reserves a key for a presigned upload. `Conflict` when it is reserved already.
    async fn reserve_upload(&self, r: &Reservation) -> Result<(), MetaError>;
    async fn get_reservation(&self, key: &str) -> Result<Option<Reservation>, MetaError>;
    /// Marks the reservation used; false when there is none or it was used (single use).
    async fn use_reservation(&self, key: &str, now: i64) -> Result<bool, MetaError>;
    /// Reservations whose upload URL expired before `before`, for the sweep.
    async fn expired_reservations(&self, before: i64) -> Result<Vec<Reservation>, MetaError>;
    async fn delete_reservation(&self, key: &str) -> Result<(), MetaError>;
    /// Adds a local account. `Conflict` when the name exists.
    async fn insert_user(&self, u: &User) -> Result<(), MetaError>;
    async fn get_user(&self, name: &str) -> Result<Option<User>, MetaError>;
    /// Replaces a password hash; false when there is no such user.
    async fn set_user_password(&self, name: &str, hash: &str, now: i64) -> Result<bool, MetaError>;
    /// Sets the moderation state of a record and adds `tags` to its tags (ingest's labels
    /// and moderation of a record stored before it ran, SPEC §12); false when there is no
    /// such record.
    async fn set_review(
        &self,
        id: &str,
        moderation: Option<Moderation>,
        tags: &[String],
        now: i64,
    ) -> Result<bool, MetaError>;
    /// The identity-pool id (SPEC §13) stored for `subject` (a user pool's `sub`) of the
    /// identity pool `pool`.
    async fn get_identity(&self, pool: &str, subject: &str) -> Result<Option<String>, MetaError>;
    /// Stores an identity-pool id unless one is stored already (first write wins); returns
    /// the stored one.
    async fn put_identity(
        &self,
        pool: &str,
        subject: &str,
        identity_id: &str,
        now: i64,
    ) -> Result<String, MetaError>;
    /// Readiness.
    async fn check(&self) -> Result<(), MetaError>;
}

/// Whether `metadata.url` names a store this build knows (checked at start-up, before
/// anything is opened).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Ok(())
    } else if url.starts_with("dynamodb://") {
        dynamodb::check_url(url)
    } else {
        Err(format!(
            "`{url}` is not a sqlite://, postgres:// or dynamodb:// URL"
        ))
    }
}

/// Opens the store named by `metadata.url` and applies the migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn MetadataStore>, String> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::open(url).await?))
    } else if url.starts_with("dynamodb://") {
        Ok(std::sync::Arc::new(DynamoStore::open(url).await?))
    } else {
        Err(format!(
            "`{url}` is not a sqlite:, postgres:// or dynamodb:// URL"
        ))
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A random id: 20 lowercase base32 characters (100 bits).
pub fn new_id() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T19:05:18.123456Z`.
pub fn rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    format!("{}.{frac:06}Z", rfc3339_base(secs))
}

/// RFC 3339 UTC to the second, e.g. `2026-11-21T19:05:18Z`.
pub fn rfc3339_secs(secs: i64) -> String {
    format!("{}Z", rfc3339_base(secs))
}

fn rfc3339_base(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_micros(1_795_806_318_123_456),
            "2026-11-27T19:05:18.123456Z"
        );
    }

    #[test]
    fn ids() {
        let a = new_id();
        assert_eq!(a.len(), 20);
        assert_ne!(a, new_id());
    }
}

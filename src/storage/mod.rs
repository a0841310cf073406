//! Where originals live. `Storage` is the one interface delivery and the API use; `fs` is the
//! embedded backend, `s3` the production one (any S3-compatible endpoint). Keys reaching here
//! were validated by `key`.

pub mod fs;
pub mod key;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// What storage knows about an object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Opaque, unquoted; changes whenever the content may have changed.
    pub etag: String,
    pub last_modified: SystemTime,
}

#[derive(Clone, Debug)]
pub struct Object {
    pub meta: ObjectMeta,
    pub body: Bytes,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("object of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// `storage.backend` and its settings, validated.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Fs { root: std::path::PathBuf },
    S3(s3::S3Config),
}

/// A presigned upload: the URL and the headers the client must send with its PUT (they
/// are covered by the signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Size, ETag and modification time, without the body.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError>;

    /// The whole object. Fails with `TooLarge` when the stored size exceeds `max_bytes`
    /// (checked before reading) or the body grows past it while streaming.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object, StorageError>;

    /// Like `get`, but returns `None` when the object's ETag still equals `etag`
    /// (a conditional GET: an unchanged object costs no transfer).
    async fn get_if_changed(
        &self,
        key: &str,
        etag: &str,
        max_bytes: u64,
    ) -> Result<Option<Object>, StorageError>;

    /// Stores `body` at `key`, replacing any object there, atomically for readers.
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError>;

    /// Removes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Readiness: can we reach the store at all?
    async fn check(&self) -> Result<(), StorageError>;

    /// Copies `from` to `to` inside the store (ingest moves refused objects under
    /// `rejected/`, whatever their size). The default reads and writes the whole object.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let obj = self.get(from, u64::MAX).await?;
        let ct = crate::media::ImageType::sniff(&obj.body).map_or(
            "application/octet-stream",
            crate::media::ImageType::content_type,
        );
        self.put(to, obj.body, ct).await.map(|_| ())
    }

    /// Keys starting with `prefix` (the shared variant store's purges). Backends without a
    /// listing answer `Unavailable`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let _ = prefix;
        Err(StorageError::Unavailable(
            "this storage backend cannot list keys".into(),
        ))
    }

    /// A URL that lets a client upload `key` itself with an HTTP PUT carrying the returned
    /// headers (`Content-Type: content_type`, and `If-None-Match: *` so the URL can create
    /// the object but never replace it), valid for `expires_in`. `None` when the backend has
    /// no such thing (the local folder).
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StorageError> {
        let _ = (key, content_type, expires_in);
        Ok(None)
    }
}

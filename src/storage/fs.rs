//! The embedded backend: originals in a local folder. Paths never leave the root, symlinks
//! included (the resolved path must stay under the resolved root).

use super::{Object, ObjectMeta, Storage, StorageError};
use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Creates the root folder if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| {
            StorageError::Unavailable(format!("cannot create {}: {e}", root.display()))
        })?;
        let root = root.canonicalize().map_err(|e| {
            StorageError::Unavailable(format!("cannot resolve {}: {e}", root.display()))
        })?;
        Ok(FsStorage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path for `key`, checked to stay inside the root after resolving symlinks.
    /// `must_exist = false` resolves the parent only (for `put`).
    async fn resolve(&self, key: &str, must_exist: bool) -> Result<PathBuf, StorageError> {
        crate::storage::key::validate(key).map_err(|e| StorageError::InvalidKey(e.to_string()))?;
        let joined = self.root.join(key);
        let resolved = if must_exist {
            tokio::fs::canonicalize(&joined).await.map_err(io_err)?
        } else {
            let parent = joined.parent().unwrap_or(&self.root);
            let file = joined
                .file_name()
                .ok_or_else(|| StorageError::InvalidKey("no file name".into()))?;
            match tokio::fs::canonicalize(parent).await {
                Ok(p) => p.join(file),
                // Not created yet: nothing below the root can be a symlink then.
                Err(e) if e.kind() == ErrorKind::NotFound => joined.clone(),
                Err(e) => return Err(io_err(e)),
            }
        };
        if !resolved.starts_with(&self.root) {
            // Reported as missing so the layout outside the root is not revealed.
            return Err(StorageError::NotFound);
        }
        Ok(resolved)
    }
}

fn io_err(e: std::io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::NotFound => StorageError::NotFound,
        // A path component that is a file, or a folder where a file was expected.
        ErrorKind::NotADirectory | ErrorKind::IsADirectory => StorageError::NotFound,
        _ => StorageError::Unavailable(e.to_string()),
    }
}

fn meta_of(m: &std::fs::Metadata) -> Result<ObjectMeta, StorageError> {
    if !m.is_file() {
        return Err(StorageError::NotFound);
    }
    let modified = m.modified().map_err(io_err)?;
    // No content hash on the hot path: size + mtime + inode change on every replace.
    let mut h = Sha256::new();
    h.update(m.len().to_le_bytes());
    let since = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(since.as_nanos().to_le_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        h.update(m.ino().to_le_bytes());
    }
    let d = h.finalize();
    Ok(ObjectMeta {
        size: m.len(),
        etag: hex::encode(&d[..12]),
        last_modified: modified,
    })
}

#[async_trait]
impl Storage for FsStorage {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        let path = self.resolve(key, true).await?;
        let m = tokio::fs::metadata(&path).await.map_err(io_err)?;
        meta_of(&m)
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object, StorageError> {
        let path = self.resolve(key, true).await?;
        let file = tokio::fs::File::open(&path).await.map_err(io_err)?;
        let m = file.metadata().await.map_err(io_err)?;
        let meta = meta_of(&m)?;
        if meta.size > max_bytes {
            return Err(StorageError::TooLarge {
                size: meta.size,
                limit: max_bytes,
            });
        }
        // The file may grow between stat and read: cap the read as well.
        let mut buf = Vec::with_capacity(meta.size as usize);
        file.take(max_bytes + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(io_err)?;
        if buf.len() as u64 > max_bytes {
            return Err(StorageError::TooLarge {
                size: buf.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(Object {
            meta,
            body: Bytes::from(buf),
        })
    }

    async fn get_if_changed(
        &self,
        key: &str,
        etag: &str,
        max_bytes: u64,
    ) -> Result<Option<Object>, StorageError> {
        let meta = self.head(key).await?;
        if meta.etag == etag {
            return Ok(None);
        }
        self.get(key, max_bytes).await.map(Some)
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let path = self.resolve(key, false).await?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io_err)?;
        }
        // Write beside the target, then rename: readers see the old or the new file, never half.
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("upload"),
            rand::random::<u64>()
        ));
        let write = async {
            tokio::fs::write(&tmp, &body).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err(e));
        }
        let m = tokio::fs::metadata(&path).await.map_err(io_err)?;
        meta_of(&m)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = match self.resolve(key, true).await {
            Ok(p) => p,
            Err(StorageError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let m = tokio::fs::metadata(&self.root).await.map_err(io_err)?;
        if m.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Unavailable("root is not a folder".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_head_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("root")).unwrap();
        let m = s
            .put("public/a/b.jpg", Bytes::from_static(b"hello"), "image/jpeg")
            .await
            .unwrap();
        assert_eq!(m.size, 5);
        let o = s.get("public/a/b.jpg", 100).await.unwrap();
        assert_eq!(&o.body[..], b"hello");
        assert_eq!(o.meta, s.head("public/a/b.jpg").await.unwrap());
        assert!(
            s.get_if_changed("public/a/b.jpg", &m.etag, 100)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            s.get("public/a/b.jpg", 4).await,
            Err(StorageError::TooLarge { size: 5, limit: 4 })
        ));
        s.delete("public/a/b.jpg").await.unwrap();
        s.delete("public/a/b.jpg").await.unwrap();
        assert!(matches!(
            s.get("public/a/b.jpg", 100).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn replaced_object_changes_etag() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path()).unwrap();
        let a = s
            .put("k.jpg", Bytes::from_static(b"one"), "image/jpeg")
            .await
            .unwrap();
        let b = s
            .put("k.jpg", Bytes::from_static(b"two"), "image/jpeg")
            .await
            .unwrap();
        assert_ne!(a.etag, b.etag);
        let o = s
            .get_if_changed("k.jpg", &a.etag, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&o.body[..], b"two");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, b"secret").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("public/link.jpg")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("public/dir")).unwrap();
        let s = FsStorage::new(&root).unwrap();
        assert!(matches!(
            s.get("public/link.jpg", 100).await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            s.get("public/dir/secret.txt", 100).await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            s.put("public/dir/new.jpg", Bytes::from_static(b"x"), "image/jpeg")
                .await,
            Err(StorageError::NotFound)
        ));
        assert!(!dir.path().join("new.jpg").exists());
        assert!(matches!(
            s.get("public/../secret.txt", 100).await,
            Err(StorageError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn a_folder_is_not_an_object() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("public/sub")).unwrap();
        let s = FsStorage::new(dir.path()).unwrap();
        assert!(matches!(
            s.get("public/sub", 100).await,
            Err(StorageError::NotFound)
        ));
    }
}

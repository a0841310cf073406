//! The production backend: originals in an S3 bucket (AWS or any S3-compatible endpoint).
//!
//! Time limits, per call: connecting is bounded by `connect_timeout_s`, each attempt's wait
//! for the answer's headers by `read_timeout_s`, and the whole call, the SDK's retries
//! included, by `connect_timeout_s + read_timeout_s`; while a body streams, a pause longer
//! than `read_timeout_s` fails the fetch. Retries (3 attempts, short backoff) therefore only
//! help with fast failures such as a 5xx or a refused connection, and a hung endpoint is
//! answered with a 504 after one attempt's budget instead of three.
//!
//! Errors keep bucket, endpoint and key out of their public side: `StorageError` strings only
//! reach the log (`Error::with_cause`), and the client sees "storage failed" / "timed out".

use super::{Object, ObjectMeta, PresignedPut, Storage, StorageError};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use bytes::{Bytes, BytesMut};
use std::time::{Duration, SystemTime};

/// `[storage.s3]`, validated.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Given, or `us-east-1` when only `endpoint_url` is set.
    pub region: String,
    /// Any S3-compatible endpoint; `None` = AWS.
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    /// Prepended to every key ("" = none).
    pub prefix: String,
    /// `None` = the AWS default chain (env, profile, web identity, ECS/IMDS role).
    pub credentials: Option<S3StaticCredentials>,
    pub connect_timeout: Duration,
    /// Time to the first byte of an answer, and the longest pause while a body streams.
    pub read_timeout: Duration,
}

#[derive(Clone)]
pub struct S3StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// `x-amz-copy-source` is `bucket/key`, URL-encoded except for `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl S3Storage {
    /// Builds the client. Nothing is contacted yet (credentials from the default chain are
    /// resolved on first use); `/readyz` tells whether the bucket is reachable.
    pub async fn new(cfg: &S3Config) -> S3Storage {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts(
                cfg.connect_timeout,
                cfg.read_timeout,
                cfg.connect_timeout + cfg.read_timeout,
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(1)),
            );
        if let Some(c) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                None,
                None,
                "imgorigin-config",
            ));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style)
            // Checksums only where S3 demands them: many S3-compatible stores reject the
            // newer default (CRC32 trailers on every upload).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(url) = &cfg.endpoint_url {
            b = b.endpoint_url(url.clone());
        }
        tracing::info!(
            bucket = %cfg.bucket,
            region = %cfg.region,
            endpoint = cfg.endpoint_url.as_deref().unwrap_or("AWS"),
            prefix = %cfg.prefix,
            static_credentials = cfg.credentials.is_some(),
            "S3 storage"
        );
        S3Storage {
            client: Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
        }
    }

    /// The object key in the bucket: the configured prefix + the validated key.
    fn object_key(&self, key: &str) -> Result<String, StorageError> {
        crate::storage::key::validate(key).map_err(|e| StorageError::InvalidKey(e.to_string()))?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// GetObject, conditional when `if_none_match` is given (`Ok(None)` on 304).
    async fn fetch(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        max_bytes: u64,
    ) -> Result<Option<Object>, StorageError> {
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?);
        if let Some(etag) = if_none_match {
            req = req.if_none_match(format!("\"{etag}\""));
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if if_none_match.is_some() && status_of(&e) == Some(304) => return Ok(None),
            Err(e) => return Err(classify("GetObject", e)),
        };
        let stored = out.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(size) = stored
            && size > max_bytes
        {
            // Dropping the unread body closes the connection: nothing more is transferred.
            return Err(StorageError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let etag = out.e_tag().map(unquote);
        let last_modified = out.last_modified().copied();
        let body = read_capped(out.body, stored, max_bytes, self.read_timeout).await?;
        let meta = meta(body.len() as u64, etag, last_modified);
        Ok(Some(Object { meta, body }))
    }
}

fn timeouts(connect: Duration, read: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(connect)
        .read_timeout(read)
        .operation_timeout(operation)
        .build()
}

/// Reads a body into memory, never holding more than `max_bytes`; a pause longer than
/// `read_timeout` between chunks is a timeout.
async fn read_capped(
    mut body: ByteStream,
    expected: Option<u64>,
    max_bytes: u64,
    read_timeout: Duration,
) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::with_capacity(expected.unwrap_or(0).min(max_bytes) as usize);
    loop {
        let chunk = match tokio::time::timeout(read_timeout, body.next()).await {
            Err(_) => {
                return Err(StorageError::Timeout(format!(
                    "S3 GetObject: no body data for {read_timeout:?}"
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(StorageError::Unavailable(format!(
                    "S3 GetObject body: {}",
                    DisplayErrorContext(&e)
                )));
            }
            Ok(Some(Ok(c))) => c,
        };
        let size = buf.len() as u64 + chunk.len() as u64;
        if size > max_bytes {
            return Err(StorageError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// S3 quotes ETags (`"9b2c…"`); storage ETags are unquoted.
fn unquote(etag: &str) -> String {
    let e = etag.strip_prefix("W/").unwrap_or(etag);
    e.trim_matches('"').to_string()
}

fn meta(size: u64, etag: Option<String>, last_modified: Option<DateTime>) -> ObjectMeta {
    let last_modified = last_modified
        .and_then(|d| SystemTime::try_from(d).ok())
        // Without one, "now" at fetch time: stable while cached, never claims to be old.
        .unwrap_or_else(SystemTime::now);
    let etag = etag.filter(|e| !e.is_empty()).unwrap_or_else(|| {
        // Some S3-compatible stores omit ETags; size + mtime still change on replace.
        let since = last_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("s{size}-t{}", since.as_nanos())
    });
    ObjectMeta {
        size,
        etag,
        last_modified,
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// SDK error → storage error. 404 / NoSuchKey: the object is missing. A missing bucket,
/// denied access, bad credentials, 5xx after the retries, unreachable endpoints: the store
/// is unavailable (502). Any time limit: timeout (504). The full chain goes into the
/// (logged-only) cause.
fn classify<E>(op: &str, e: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let cause = format!("S3 {op}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::TimeoutError(_) => StorageError::Timeout(cause),
        SdkError::DispatchFailure(d) if d.is_timeout() => StorageError::Timeout(cause),
        SdkError::ServiceError(s) => {
            let code = s.err().code();
            if code == Some("NoSuchBucket") {
                StorageError::Unavailable(cause)
            } else if s.raw().status().as_u16() == 404
                || matches!(code, Some("NoSuchKey") | Some("NotFound"))
            {
                StorageError::NotFound
            } else {
                StorageError::Unavailable(cause)
            }
        }
        _ => StorageError::Unavailable(cause),
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .send()
            .await
            .map_err(|e| classify("HeadObject", e))?;
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        Ok(meta(
            size,
            out.e_tag().map(unquote),
            out.last_modified().copied(),
        ))
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Object, StorageError> {
        match self.fetch(key, None, max_bytes).await? {
            Some(o) => Ok(o),
            None => Err(StorageError::Unavailable(
                "S3 GetObject: 304 to an unconditional request".into(),
            )),
        }
    }

    async fn get_if_changed(
        &self,
        key: &str,
        etag: &str,
        max_bytes: u64,
    ) -> Result<Option<Object>, StorageError> {
        self.fetch(key, Some(etag), max_bytes).await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        // The upload itself needs time: allow a slow 1 MiB/s on top of the usual limits.
        let upload = Duration::from_secs(body.len() as u64 >> 20);
        let read = self.read_timeout + upload;
        let overrides = aws_sdk_s3::config::Builder::new().timeout_config(timeouts(
            self.connect_timeout,
            read,
            self.connect_timeout + read,
        ));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .customize()
            .config_override(overrides)
            .send()
            .await
            .map_err(|e| classify("PutObject", e))?;
        // PutObject answers without Last-Modified: read back what readers will see.
        self.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .send()
            .await
            .map_err(|e| classify("DeleteObject", e))
        {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// CopyObject: the bytes never pass through this process.
    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let source = format!("{}/{}", self.bucket, self.object_key(from)?);
        let source: String = percent_encoding::utf8_percent_encode(&source, COPY_SOURCE).collect();
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.object_key(to)?)
            .copy_source(source)
            .send()
            .await
            .map_err(|e| classify("CopyObject", e))?;
        Ok(())
    }

    /// ListObjectsV2, every page; keys without the configured prefix.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListObjectsV2", e))?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(self.prefix.as_str())) {
                    out.push(k.to_string());
                }
            }
        }
        Ok(out)
    }

    /// HeadBucket: the bucket exists and these credentials may list it.
    async fn check(&self) -> Result<(), StorageError> {
        match self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| classify("HeadBucket", e))
        {
            Ok(_) => Ok(()),
            Err(StorageError::NotFound) => Err(StorageError::Unavailable(
                "S3 HeadBucket: no such bucket".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StorageError> {
        let cfg = PresigningConfig::expires_in(expires_in)
            .map_err(|e| StorageError::Unavailable(format!("S3 presign: {e}")))?;
        // `If-None-Match: *` is signed: the URL creates the object once and can never
        // overwrite it (e.g. after it was registered with its checksum).
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .content_type(content_type)
            .if_none_match("*")
            .presigned(cfg)
            .await
            .map_err(|e| classify("PutObject (presign)", e))?;
        let headers = req
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Some(PresignedPut {
            url: req.uri().to_string(),
            headers,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }

    #[test]
    fn missing_etag_is_derived_from_size_and_time() {
        let t = DateTime::from_secs(1_700_000_000);
        let a = meta(5, None, Some(t));
        let b = meta(6, None, Some(t));
        assert_ne!(a.etag, b.etag);
        assert_eq!(
            a.last_modified,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(meta(5, Some("x".into()), Some(t)).etag, "x");
    }
}

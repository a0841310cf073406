//! The S3 backend beyond the shared delivery tests: faults (hung, failing, denying
//! endpoints), revalidation, fetch counting, presigned uploads, the storage calls themselves.

use crate::support::*;
use imgorigin::config::{Config, S3Config, StorageConfig};
use imgorigin::storage::s3::S3Storage;
use imgorigin::storage::{Storage, StorageError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn s3_config(toml: &str) -> S3Config {
    match Config::from_toml_and_env(toml, std::iter::empty())
        .unwrap()
        .storage
    {
        StorageConfig::S3(c) => c,
        other => panic!("not s3: {other:?}"),
    }
}

/// The problem+json body says nothing about where the originals live or how we log in.
fn assert_no_leak(body: &str, endpoint: &str) {
    let host = endpoint.trim_start_matches("http://");
    for secret in [
        S3_BUCKET,
        S3_PREFIX,
        host,
        S3_ACCESS_KEY,
        S3_SECRET_KEY,
        "s3s",
    ] {
        assert!(!body.contains(secret), "`{secret}` leaked: {body}");
    }
}

/// Accepts TCP connections and never answers (nor closes them).
async fn black_hole() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    endpoint
}

#[tokio::test]
async fn unresponsive_endpoint_is_504_within_the_timeout() {
    let hole = black_hole().await;
    let s = TestServer::start_with_env(
        Backend::S3,
        "",
        &[
            ("IMGORIGIN__STORAGE__S3__ENDPOINT_URL", &hole),
            ("IMGORIGIN__STORAGE__S3__CONNECT_TIMEOUT_S", "0.5"),
            ("IMGORIGIN__STORAGE__S3__READ_TIMEOUT_S", "1"),
        ],
    )
    .await;
    let s = Arc::new(s);
    let started = Instant::now();
    let hung = {
        let s = s.clone();
        tokio::spawn(async move { s.get("/public/quad.jpg?w=10").await })
    };
    // While a fetch hangs, the server answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert!(t.elapsed() < Duration::from_millis(500));
    let r = hung.await.unwrap();
    let took = started.elapsed();
    eprintln!("unresponsive endpoint: {} after {took:?}", r.status());
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Budget: connect 0.5 s + read 1 s for the whole call, retries included.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(2500),
        "504 after {took:?}"
    );
    assert_no_leak(&r.text().await.unwrap(), &hole);
    let t = Instant::now();
    assert_eq!(s.get("/readyz").await.status(), 503);
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert_eq!(s.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn hung_storage_is_504_and_the_server_recovers() {
    let s = TestServer::start_with_env(
        Backend::S3,
        "",
        &[
            ("IMGORIGIN__STORAGE__S3__CONNECT_TIMEOUT_S", "0.5"),
            ("IMGORIGIN__STORAGE__S3__READ_TIMEOUT_S", "1"),
        ],
    )
    .await;
    let s3 = s.s3.as_ref().unwrap();
    s3.set_fault(Fault::Hang);
    let started = Instant::now();
    let r = s.get("/public/quad.jpg").await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(s.get("/healthz").await.status(), 200);
    s3.set_fault(Fault::None);
    // The failure was not cached: the same request now works.
    assert_eq!(s.ok_bytes("/public/quad.jpg").await, fixture("quad.jpg"));
    assert_eq!(s.get("/public/quad.jpg?w=10").await.status(), 200);
}

#[tokio::test]
async fn failing_endpoint_is_502_after_the_sdk_retries() {
    let s = TestServer::start_on(Backend::S3, "").await;
    let s3 = s.s3.as_ref().unwrap();
    s3.set_fault(Fault::Status500);
    let before = s3.get_object_calls("public/quad.jpg");
    let r = s.get("/public/quad.jpg?w=10").await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_no_leak(&r.text().await.unwrap(), &s3.endpoint);
    assert_eq!(
        s3.get_object_calls("public/quad.jpg") - before,
        3,
        "3 attempts (the SDK retried the 500s)"
    );
    assert_eq!(s.get("/readyz").await.status(), 503);
    assert_eq!(s.get("/healthz").await.status(), 200);
    s3.set_fault(Fault::None);
    assert_eq!(s.get("/public/quad.jpg?w=10").await.status(), 200);
    assert_eq!(s.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn wrong_credentials_are_502_without_leaks() {
    let s = TestServer::start_with_env(
        Backend::S3,
        "",
        &[(
            "IMGORIGIN__STORAGE__S3__SECRET_ACCESS_KEY",
            "not-the-secret",
        )],
    )
    .await;
    let s3 = s.s3.as_ref().unwrap();
    for path in [
        "/public/quad.jpg",
        "/public/quad.jpg?w=10",
        "/public/missing.jpg",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 502, "{path}");
        assert_no_leak(&r.text().await.unwrap(), &s3.endpoint);
    }
    // Really signed, sent and refused by the server (once: a 403 is not retried).
    assert_eq!(s3.get_object_calls("public/quad.jpg"), 2);
    assert_eq!(s.get("/readyz").await.status(), 503);
    assert_eq!(s.get("/healthz").await.status(), 200);
    // Requests that need no storage still work.
    assert_eq!(s.get("/public/quad.jpg?w=0").await.status(), 400);
}

#[tokio::test]
async fn ready_follows_the_bucket() {
    let s = TestServer::start_on(Backend::S3, "").await;
    let bucket = s.s3.as_ref().unwrap().bucket_dir();
    assert_eq!(s.get("/readyz").await.status(), 200);
    let moved = bucket.with_file_name("elsewhere");
    std::fs::rename(&bucket, &moved).unwrap();
    assert_eq!(s.get("/readyz").await.status(), 503);
    assert_eq!(s.get("/healthz").await.status(), 200);
    std::fs::rename(&moved, &bucket).unwrap();
    assert_eq!(s.get("/readyz").await.status(), 200);
    assert_eq!(s.get("/public/quad.png").await.status(), 200);
}

#[tokio::test]
async fn twenty_variants_fetch_the_original_once() {
    let s = Arc::new(TestServer::start_on(Backend::S3, "").await);
    let mut tasks = Vec::new();
    for w in 10..30 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.get(&format!("/public/quad.jpg?w={w}")).await;
            assert_eq!(r.status(), 200, "w={w}");
            r.headers()["etag"].to_str().unwrap().to_string()
        }));
    }
    let mut etags = Vec::new();
    for t in tasks {
        etags.push(t.await.unwrap());
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 20, "20 distinct variants");
    let s3 = s.s3.as_ref().unwrap();
    assert_eq!(s3.get_object_calls("public/quad.jpg"), 1);
    assert_eq!(s.metric("imgorigin_storage_fetches_total").await, 1.0);
    // And again, from the caches.
    for w in 10..30 {
        assert_eq!(
            s.get(&format!("/public/quad.jpg?w={w}")).await.status(),
            200
        );
    }
    assert_eq!(s3.get_object_calls("public/quad.jpg"), 1);
}

#[tokio::test]
async fn object_replaced_through_s3_is_served_fresh_after_the_source_ttl() {
    let s = TestServer::start_on(Backend::S3, "[cache]\nsource_ttl_s = 0\n").await;
    let s3 = s.s3.as_ref().unwrap();
    let client = s3.client();
    let key = format!("{S3_PREFIX}public/swap.png");
    let put = |png: Vec<u8>| {
        client
            .put_object()
            .bucket(S3_BUCKET)
            .key(&key)
            .content_type("image/png")
            .body(png.into())
            .send()
    };
    let red = solid_png(8, 8, [255, 0, 0, 255]);
    let blue = solid_png(9, 9, [0, 0, 255, 255]);
    put(red.clone()).await.unwrap();
    let a = s.get("/public/swap.png").await;
    let etag_a = a.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(a.bytes().await.unwrap().to_vec(), red);
    put(blue.clone()).await.unwrap();
    let b = s.get("/public/swap.png").await;
    assert_ne!(b.headers()["etag"].to_str().unwrap(), etag_a);
    assert_eq!(b.bytes().await.unwrap().to_vec(), blue);
    // The revalidation was a conditional GET carrying the cached ETag.
    let path = format!("/{S3_BUCKET}/{key}");
    assert!(
        s3.calls()
            .iter()
            .any(|c| c.path == path && c.if_none_match.as_deref() == Some(etag_a.as_str())),
        "{:?}",
        s3.calls()
    );
    client
        .delete_object()
        .bucket(S3_BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(s.get("/public/swap.png").await.status(), 404);
    assert_eq!(s.get("/healthz").await.status(), 200);
}

/// A hand-written S3 stand-in: `…/public/quad.jpg` with ETag "v1" that honours
/// If-None-Match (304), `…/public/big.jpg` streamed chunked without a length,
/// `…/public/nobucket.jpg` a NoSuchBucket 404, NoSuchKey else.
/// Records (path, If-None-Match, status) per request.
/// (path, If-None-Match, status) per request.
type ResponderLog = Arc<Mutex<Vec<(String, Option<String>, u16)>>>;

struct Responder {
    endpoint: String,
    log: ResponderLog,
}

async fn responder() -> Responder {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    let log: ResponderLog = Arc::default();
    let jpeg = fixture("quad.jpg");
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let (log, jpeg) = (log2.clone(), jpeg.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap()
                    .to_string();
                let inm = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("if-none-match")
                        .then(|| v.trim().to_string())
                });
                let (status, resp): (u16, Vec<u8>) = if path.ends_with("/public/quad.jpg") {
                    if inm.as_deref() == Some("\"v1\"") {
                        (304, b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_vec())
                    } else {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            jpeg.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&jpeg);
                        (200, r)
                    }
                } else if path.ends_with("/public/big.jpg") {
                    let mut r = b"HTTP/1.1 200 OK\r\nETag: \"big\"\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                    for i in 0..16 {
                        let mut c = vec![0u8; 256];
                        if i == 0 {
                            c[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
                        }
                        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                        r.extend_from_slice(&c);
                        r.extend_from_slice(b"\r\n");
                    }
                    r.extend_from_slice(b"0\r\n\r\n");
                    (200, r)
                } else {
                    let code = if path.ends_with("/public/nobucket.jpg") {
                        "NoSuchBucket"
                    } else {
                        "NoSuchKey"
                    };
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>no</Message></Error>"
                    );
                    (
                        404,
                        format!(
                            "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                    )
                };
                log.lock().unwrap().push((path, inm, status));
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Responder { endpoint, log }
}

#[tokio::test]
async fn unchanged_object_costs_no_transfer() {
    let r = responder().await;
    let s = TestServer::start_with_env(
        Backend::S3,
        "[cache]\nsource_ttl_s = 0\n",
        &[("IMGORIGIN__STORAGE__S3__ENDPOINT_URL", &r.endpoint)],
    )
    .await;
    for _ in 0..3 {
        let resp = s.get("/public/quad.jpg").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["etag"], "\"v1\"");
        assert_eq!(
            resp.headers()["last-modified"],
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
        assert_eq!(resp.bytes().await.unwrap().to_vec(), fixture("quad.jpg"));
    }
    let log = r.log.lock().unwrap().clone();
    let statuses: Vec<u16> = log.iter().map(|l| l.2).collect();
    assert_eq!(statuses, [200, 304, 304], "{log:?}");
    assert_eq!(log[0].1, None);
    assert_eq!(log[1].1.as_deref(), Some("\"v1\""));
    assert_eq!(s.metric("imgorigin_storage_fetches_total").await, 1.0);
    // The same at the storage interface.
    let st = &s.state.storage;
    assert!(
        st.get_if_changed("public/quad.jpg", "v1", 1 << 20)
            .await
            .unwrap()
            .is_none()
    );
    let o = st
        .get_if_changed("public/quad.jpg", "v0", 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.meta.etag, "v1");
    assert_eq!(s.get("/public/nothing.jpg").await.status(), 404);
    // A missing bucket is a broken deployment, not a missing image.
    assert_eq!(s.get("/public/nobucket.jpg").await.status(), 502);
}

#[tokio::test]
async fn body_without_length_is_capped_while_streaming() {
    let r = responder().await;
    let s = TestServer::start_with_env(
        Backend::S3,
        "[limits]\nmax_source_bytes = 1000\n",
        &[("IMGORIGIN__STORAGE__S3__ENDPOINT_URL", &r.endpoint)],
    )
    .await;
    assert_eq!(s.get("/public/big.jpg").await.status(), 413);
    assert!(matches!(
        s.state.storage.get("public/big.jpg", 1000).await,
        Err(StorageError::TooLarge { limit: 1000, .. })
    ));
    let o = s.state.storage.get("public/big.jpg", 4096).await.unwrap();
    assert_eq!(o.body.len(), 4096);
    assert_eq!(s.get("/public/quad.jpg").await.status(), 200);
}

#[tokio::test]
async fn storage_calls_against_s3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(S3_BUCKET)).unwrap();
    let server = S3Server::start(dir.path()).await;
    let st = S3Storage::new(&s3_config(&server.config_toml())).await;
    st.check().await.unwrap();
    let m = st
        .put(
            "public/a/b.jpg",
            bytes::Bytes::from_static(b"hello"),
            "image/jpeg",
        )
        .await
        .unwrap();
    assert_eq!(m.size, 5);
    assert_eq!(m.etag, "5d41402abc4b2a76b9719d911017c592", "MD5, unquoted");
    assert!(
        dir.path()
            .join(S3_BUCKET)
            .join(S3_PREFIX)
            .join("public/a/b.jpg")
            .is_file(),
        "stored below the prefix"
    );
    assert_eq!(st.head("public/a/b.jpg").await.unwrap(), m);
    let o = st.get("public/a/b.jpg", 5).await.unwrap();
    assert_eq!(&o.body[..], b"hello");
    assert_eq!(o.meta, m);
    assert!(matches!(
        st.get("public/a/b.jpg", 4).await,
        Err(StorageError::TooLarge { size: 5, limit: 4 })
    ));
    // s3s-fs ignores If-None-Match and answers 200: a changed-or-not answer with the object.
    if let Some(o) = st
        .get_if_changed("public/a/b.jpg", &m.etag, 5)
        .await
        .unwrap()
    {
        assert_eq!(o.meta.etag, m.etag);
    }
    st.delete("public/a/b.jpg").await.unwrap();
    st.delete("public/a/b.jpg").await.unwrap();
    assert!(matches!(
        st.get("public/a/b.jpg", 5).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        st.head("public/a/b.jpg").await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        st.get("public/../x", 5).await,
        Err(StorageError::InvalidKey(_))
    ));
    // A bucket that does not exist is not ready. (s3s-fs answers GetObject in a missing
    // bucket with NoSuchKey, so NoSuchBucket → 502 is shown with `responder` instead.)
    let other = S3Storage::new(&s3_config(
        &server.config_toml().replace(S3_BUCKET, "no-such-bucket"),
    ))
    .await;
    assert!(matches!(
        other.check().await,
        Err(StorageError::Unavailable(_))
    ));
}

#[tokio::test]
async fn presigned_put_uploads_without_our_credentials() {
    imgorigin::app::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(S3_BUCKET)).unwrap();
    let server = S3Server::start(dir.path()).await;
    let st = S3Storage::new(&s3_config(&server.config_toml())).await;
    let presigned = st
        .presign_put("public/up.jpg", "image/jpeg", Duration::from_secs(300))
        .await
        .unwrap()
        .expect("a URL");
    let url = presigned.url.clone();
    assert!(url.starts_with(&server.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let put = |url: String, body: Vec<u8>| {
        let mut req = reqwest::Client::new().put(url).body(body);
        for (k, v) in &presigned.headers {
            req = req.header(k, v);
        }
        req.send()
    };
    assert!(
        presigned
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("if-none-match") && v == "*"),
        "{:?}",
        presigned.headers
    );
    let jpeg = fixture("quad.jpg");
    let r = put(url.clone(), jpeg.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        &st.get("public/up.jpg", 1 << 20).await.unwrap().body[..],
        &jpeg[..]
    );
    // Security review, finding 1: the URL creates the object once and never replaces it
    // (e.g. after it was registered with its checksum).
    let r = put(url.clone(), fixture("quad.png")).await.unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(
        &st.get("public/up.jpg", 1 << 20).await.unwrap().body[..],
        &jpeg[..]
    );
    // Without the signed If-None-Match header the signature does not match.
    let r = reqwest::Client::new()
        .put(&url)
        .header("content-type", "image/jpeg")
        .body(fixture("quad.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The signature covers the key: another key with the same query is refused.
    let tampered = url.replace("public/up.jpg", "public/other.jpg");
    let r = put(tampered, jpeg).await.unwrap();
    assert_eq!(r.status(), 403);
    // The local folder has no such URL.
    let fs = imgorigin::storage::fs::FsStorage::new(dir.path().join("fs")).unwrap();
    assert_eq!(
        fs.presign_put("public/up.jpg", "image/jpeg", Duration::from_secs(300))
            .await
            .unwrap(),
        None
    );
}

//! One test per bug found after release. Empty so far.

use crate::support::*;

/// `enlarge=1` with one dimension, or `fit=outside`/`cover`, on an extreme aspect ratio used
/// to plan a gigantic buffer (8192 x 8 million pixels). Now a 400 naming `enlarge`.
#[tokio::test]
async fn enlarge_with_extreme_aspect_ratio_is_bounded() {
    let s = TestServer::start("").await;
    std::fs::write(
        s.root.join("public/tall.png"),
        solid_png(1, 1000, [0, 0, 0, 255]),
    )
    .unwrap();
    for q in [
        "w=8192&enlarge=1",
        "w=8192&h=1&fit=outside&enlarge=1",
        "w=8192&h=1&fit=cover&enlarge=1",
    ] {
        let r = s.get(&format!("/public/tall.png?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        let body = r.text().await.unwrap();
        assert!(body.contains("`enlarge`"), "{q}: {body}");
    }
    // Within the limits it still works.
    let img = s.image("/public/tall.png?w=8&enlarge=1&fm=png").await;
    assert_eq!((img.width(), img.height()), (8, 8000));
}

// ---- network limits (security review, issue 11: findings 6, 7, 12, 13a) ----------------

mod net_limits {
    use crate::support::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const KEY: &str = "net-limits-admin-key-0123456789";

    fn admin_toml() -> String {
        use sha2::Digest as _;
        format!(
            "[admin]\napi_keys_sha256 = [\"{}\"]\n",
            hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
        )
    }

    async fn connect(s: &TestServer) -> TcpStream {
        TcpStream::connect(s.base.trim_start_matches("http://"))
            .await
            .unwrap()
    }

    /// Reads one response head (and a Content-Length body) from `sock`.
    async fn read_response(sock: &mut TcpStream) -> (u16, String) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
                    return (status, text);
                }
            }
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a full response: {text}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True once the server has closed `sock` (EOF or reset); pending otherwise.
    async fn closed_by_server(sock: &mut TcpStream) {
        let mut b = [0u8; 1024];
        loop {
            match sock.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Safety net against a hang: the condition itself is what the test waits for.
    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: no result after 60 s"))
    }

    fn noise_png(w: u32, h: u32) -> Vec<u8> {
        let mut x: u32 = 7;
        let img = image::RgbImage::from_fn(w, h, |_, _| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            image::Rgb([(x >> 16) as u8, (x >> 8) as u8, (x >> 24) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// Writes `parts` as a chunked body, one HTTP chunk per part; counts what was written.
    async fn write_chunked(
        w: &mut (impl AsyncWriteExt + Unpin),
        parts: impl Iterator<Item = Vec<u8>>,
        sent: &AtomicU64,
    ) -> std::io::Result<()> {
        for p in parts {
            w.write_all(format!("{:x}\r\n", p.len()).as_bytes()).await?;
            w.write_all(&p).await?;
            w.write_all(b"\r\n").await?;
            sent.fetch_add(p.len() as u64, Ordering::Relaxed);
        }
        w.write_all(b"0\r\n\r\n").await
    }

    fn upload_head(content_type: &str) -> String {
        format!(
            "POST /api/v1/images HTTP/1.1\r\nHost: t\r\nX-Api-Key: {KEY}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
    }

    /// Finding 6: a chunked multipart body whose part header never ends was buffered whole
    /// (and rescanned). Now 413 after about a MiB, long before the body is sent, with
    /// memory flat; a large legitimate chunked multipart upload still works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_header_that_never_ends_is_refused_early() {
        let cap: u64 = 4 << 20;
        let s = TestServer::start(&format!(
            "{}[limits]\nmax_upload_bytes = {cap}\n",
            admin_toml()
        ))
        .await;
        let boundary = "netLimitsBoundary";
        let ct = format!("multipart/form-data; boundary={boundary}");

        let rss_before = rss_bytes();
        let mut sock = connect(&s).await;
        sock.write_all(upload_head(&ct).as_bytes()).await.unwrap();
        let (mut rd, mut wr) = sock.into_split();
        let total = cap + (16 << 20);
        let sent = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let (sent2, finished2) = (sent.clone(), finished.clone());
        let writer = tokio::spawn(async move {
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nX-Pad: "
            )
            .into_bytes();
            let pad = vec![b'a'; 64 * 1024];
            let parts = std::iter::once(head)
                .chain(std::iter::repeat_n(pad, (total / (64 * 1024)) as usize));
            let r = write_chunked(&mut wr, parts, &sent2).await;
            finished2.store(r.is_ok(), Ordering::SeqCst);
        });
        let mut resp = Vec::new();
        within("413 for an endless part header", async {
            let mut b = [0u8; 4096];
            while !String::from_utf8_lossy(&resp).contains("\r\n\r\n") {
                let n = rd.read(&mut b).await.unwrap();
                assert!(n > 0, "closed without a response");
                resp.extend_from_slice(&b[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&resp).to_string();
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(
            !finished.load(Ordering::SeqCst),
            "the whole body was accepted before the answer"
        );
        drop(rd);
        within("writer stops", writer).await.unwrap();
        // The writer stops on the reset: the server never read the rest.
        assert!(!finished.load(Ordering::SeqCst));
        assert!(
            sent.load(Ordering::Relaxed) < total,
            "sent {} of {total}",
            sent.load(Ordering::Relaxed)
        );
        let growth = rss_bytes().saturating_sub(rss_before);
        assert!(growth < 50 << 20, "RSS grew by {growth} bytes");
        assert_eq!(s.get("/healthz").await.status(), 200);

        // A ~3 MB image as a fast chunked multipart upload (large frames) is not refused.
        let png = noise_png(1000, 1000);
        assert!(png.len() as u64 > 2 << 20 && (png.len() as u64) < cap);
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&png);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut sock = connect(&s).await;
        sock.write_all(upload_head(&ct).as_bytes()).await.unwrap();
        let parts = body.chunks(400 * 1024).map(<[u8]>::to_vec);
        write_chunked(&mut sock, parts, &AtomicU64::new(0))
            .await
            .unwrap();
        let (status, text) = within("legit upload", read_response(&mut sock)).await;
        assert_eq!(status, 201, "{text}");
    }

    /// Finding 7: a half-sent request head (and a silent socket) was held for ever. Now both
    /// are closed after `header_read_timeout_s` while other requests are served, and a
    /// keep-alive connection idle for longer than that is still usable (the idle timeout is
    /// separate).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_sent_request_head_is_closed_after_header_timeout() {
        let s =
            TestServer::start("[server]\nheader_read_timeout_s = 1\nidle_timeout_s = 60\n").await;
        let mut keep = connect(&s).await;
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut keep).await.0, 200);

        let mut half = connect(&s).await;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        let mut silent = connect(&s).await;
        let mut served = 0;
        within("half-sent head closed", async {
            let mut closed = std::pin::pin!(closed_by_server(&mut half));
            loop {
                tokio::select! {
                    _ = &mut closed => break,
                    r = s.get("/healthz") => {
                        assert_eq!(r.status(), 200);
                        served += 1;
                    }
                }
            }
        })
        .await;
        assert!(served > 0);
        within("silent socket closed", closed_by_server(&mut silent)).await;
        // Idle for longer than the header timeout, yet still open: the next request works.
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut keep).await.0, 200);
        assert_eq!(s.get("/healthz").await.status(), 200);
    }

    /// Finding 7: idle sockets could use up every descriptor. With `max_connections = 2`,
    /// two open connections hold a third one in the listen backlog (not accepted, not
    /// refused); it is served as soon as one of them closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_cap_holds_new_connections_until_one_closes() {
        let s = TestServer::start(
            "[server]\nmax_connections = 2\nheader_read_timeout_s = 60\nidle_timeout_s = 60\n",
        )
        .await;
        let mut a = connect(&s).await;
        a.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut a).await.0, 200);
        let b = connect(&s).await;
        let mut c = connect(&s).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        // Not served while `a` and `b` hold both slots.
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(500), c.peek(&mut one))
                .await
                .is_err(),
            "served beyond max_connections"
        );
        drop(b);
        let (status, _) = within("served once a slot frees", read_response(&mut c)).await;
        assert_eq!(status, 200);
        drop(a);
    }

    /// Finding 7: with `idle_timeout_s`, an idle keep-alive connection is closed, which
    /// frees its slot for a waiting connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_closed_and_free_their_slot() {
        let s = TestServer::start(
            "[server]\nmax_connections = 1\nheader_read_timeout_s = 60\nidle_timeout_s = 1\n",
        )
        .await;
        let mut idle = connect(&s).await;
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut idle).await.0, 200);
        let mut waiting = connect(&s).await;
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        within("idle connection closed", closed_by_server(&mut idle)).await;
        let (status, _) = within("waiting request served", read_response(&mut waiting)).await;
        assert_eq!(status, 200);
    }

    /// Finding 12: API requests had no time limit; a slowly dripped upload body held its
    /// handler for ever. Now 504 problem+json (no-store) after `api_timeout_s`, the
    /// connection is closed and nothing is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_upload_body_gets_504_after_api_timeout() {
        let s = TestServer::start(&format!("{}[server]\napi_timeout_s = 1\n", admin_toml())).await;
        let sock = connect(&s).await;
        let (mut rd, mut wr) = sock.into_split();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let dripper = tokio::spawn(async move {
            let head = format!(
                "POST /api/v1/images HTTP/1.1\r\nHost: t\r\nX-Api-Key: {KEY}\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
            );
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(b"\x89PNG\r\n\x1a\n").await?;
            while !stop2.load(Ordering::SeqCst) {
                wr.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, std::io::Error>(())
        });
        let mut buf = Vec::new();
        within("504 for a slow body", async {
            let mut b = [0u8; 4096];
            // Read to the end: the server answers, then closes the connection.
            loop {
                match rd.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        let _ = dripper.await;
        let text = String::from_utf8_lossy(&buf).to_lowercase();
        assert!(text.starts_with("http/1.1 504"), "{text}");
        assert!(
            text.contains("content-type: application/problem+json"),
            "{text}"
        );
        assert!(text.contains("cache-control: no-store"), "{text}");
        let r = s
            .client
            .get(s.url("/api/v1/images"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");
        assert_eq!(s.get("/healthz").await.status(), 200);
    }

    /// Finding 13a: the JWKS body was read whole before its 1 MiB check (an endless body
    /// grew memory until the client timeout). Now refused after 1 MiB while streaming, and
    /// at once from a large Content-Length.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jwks_endless_body_is_refused_while_streaming() {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use imgorigin::auth::jwt::{JwtSettings, JwtVerifier, KeySource, TokenUse};

        const LIMIT: u64 = 64 << 20; // what the endless server sends at most
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // (path, bytes written, whether the client hung up before the end)
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64, bool)>();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !String::from_utf8_lossy(&head).contains("\r\n\r\n") {
                        let n = sock.read(&mut b).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&b[..n]);
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let path = text.split_whitespace().nth(1).unwrap().to_string();
                    let declared = path.contains("declared");
                    let resp_head = if declared {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {LIMIT}\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                    };
                    let mut written = 0u64;
                    let mut hung_up = sock.write_all(resp_head.as_bytes()).await.is_err();
                    let piece = vec![b' '; 64 * 1024];
                    while !hung_up && written < LIMIT {
                        let r = if declared {
                            sock.write_all(&piece).await
                        } else {
                            let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
                            c.extend_from_slice(&piece);
                            c.extend_from_slice(b"\r\n");
                            sock.write_all(&c).await
                        };
                        match r {
                            Ok(()) => written += piece.len() as u64,
                            Err(_) => hung_up = true,
                        }
                    }
                    let _ = tx.send((path, written, hung_up));
                    // Never end the body: only the client can stop this.
                    std::future::pending::<()>().await;
                });
            }
        });

        // A token whose kid is unknown, so the verifier fetches the JWKS.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
        let token = format!("{header}.{claims}.c2ln");
        for path in ["/endless", "/declared"] {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap();
            let v = JwtVerifier::new(
                JwtSettings {
                    issuer: "x".into(),
                    client_ids: vec!["c".into()],
                    token_use: TokenUse::Any,
                    identity_claim: "sub".into(),
                    leeway_s: 0,
                    min_refresh: Duration::from_secs(60),
                },
                KeySource::Remote {
                    url: format!("http://{addr}{path}"),
                    http,
                },
            );
            let e = within("JWKS refused", v.verify(&token)).await.unwrap_err();
            assert!(e.0.contains("too large"), "{path}: {e}");
            drop(v);
            // The server saw the client hang up long before it had sent everything.
            let (p, written, hung_up) = within("server sees the hang-up", rx.recv()).await.unwrap();
            assert_eq!(p, path);
            assert!(hung_up && written < LIMIT, "{path}: wrote {written}");
        }
    }
}

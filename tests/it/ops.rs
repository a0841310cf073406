//! Operations (SPEC §7, docs/operations.md): what /metrics shows after real traffic, what
//! the request log leaves out, and SIGTERM on the real `imgorigin` process.

use crate::api::{ADMIN_KEY, Api, Db};
use crate::support::*;
use std::io::Read;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every sample of one histogram series (`_count`, `_sum`) must be present and its count
/// equal `n`.
async fn histogram_count(s: &TestServer, name: &str, labels: &str) -> f64 {
    s.metric(&format!("{name}_count{labels}")).await
}

#[tokio::test]
async fn metrics_move_with_hits_misses_and_errors() {
    let s = TestServer::start("").await;
    let before = s.metrics().await;
    assert!(before.contains("imgorigin_renders_total 0"), "{before}");

    // A miss (render), then the same URL again (a variant-cache hit).
    assert_eq!(s.get("/public/quad.jpg?w=20").await.status(), 200);
    assert_eq!(s.get("/public/quad.jpg?w=20").await.status(), 200);
    // A client error before any work, and a missing original.
    assert_eq!(s.get("/public/quad.jpg?w=abc").await.status(), 400);
    assert_eq!(s.get("/public/nope.jpg?w=20").await.status(), 404);
    assert_eq!(s.get("/healthz").await.status(), 200);

    let m = |series: &'static str| {
        let s = &s;
        async move { s.metric(series).await }
    };
    assert_eq!(
        m("imgorigin_requests_total{route=\"image\",status=\"200\"}").await,
        2.0
    );
    assert_eq!(
        m("imgorigin_requests_total{route=\"image\",status=\"400\"}").await,
        1.0
    );
    assert_eq!(
        m("imgorigin_requests_total{route=\"image\",status=\"404\"}").await,
        1.0
    );
    assert_eq!(
        m("imgorigin_requests_total{route=\"health\",status=\"200\"}").await,
        1.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "imgorigin_request_duration_seconds",
            "{route=\"image\"}"
        )
        .await,
        4.0
    );
    assert!(
        s.metric("imgorigin_request_duration_seconds_sum{route=\"image\"}")
            .await
            > 0.0
    );
    assert_eq!(m("imgorigin_cache_hits_total{tier=\"variant\"}").await, 1.0);
    assert!(m("imgorigin_cache_misses_total{tier=\"variant\"}").await >= 1.0);
    assert!(m("imgorigin_cache_misses_total{tier=\"original\"}").await >= 1.0);
    assert_eq!(m("imgorigin_renders_total").await, 1.0);
    assert_eq!(
        histogram_count(
            &s,
            "imgorigin_transform_duration_seconds",
            "{stage=\"render\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "imgorigin_transform_duration_seconds",
            "{stage=\"queue\"}"
        )
        .await,
        1.0
    );
    let fetches = m("imgorigin_storage_fetches_total").await;
    assert!(fetches >= 1.0, "{fetches}");
    assert_eq!(
        histogram_count(&s, "imgorigin_storage_fetch_duration_seconds", "").await,
        fetches
    );
    assert!(m("imgorigin_cache_bytes{tier=\"variant\"}").await > 0.0);
    assert_eq!(m("imgorigin_transforms_running").await, 0.0);
    assert_eq!(m("imgorigin_transform_queue_depth").await, 0.0);

    // Bounded label values only: no key or URL ever becomes a label.
    let text = s.metrics().await;
    assert!(!text.contains("quad"), "{text}");
    assert!(!text.contains("nope"), "{text}");
    for line in text.lines().filter(|l| l.contains("route=\"")) {
        let route = line.split("route=\"").nth(1).unwrap().split('"').next();
        assert!(
            matches!(
                route,
                Some("image" | "original" | "health" | "ready" | "api" | "other")
            ),
            "{line}"
        );
    }
}

/// The request log line of an API call names the route and status, never the bearer
/// token or the admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_log_lines_carry_no_token_or_key() {
    let logs = captured_logs();
    let Some(api) = Api::start(Db::Sqlite, "").await else {
        return;
    };
    let token = api.token("alice");
    let r = api
        .s
        .client
        .get(api.s.url("/api/v1/images?owner=me"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "ops-log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "ops-log-test-1");
    let r = api
        .s
        .client
        .get(api.s.url("/api/v1/images"))
        .header("x-api-key", ADMIN_KEY)
        .header("x-request-id", "ops-log-test-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api
        .s
        .client
        .get(api.s.url("/api/v1/images"))
        .header("authorization", "Bearer not.a.validtoken")
        .header("x-request-id", "ops-log-test-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ops-log-test-"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines {
        assert!(l.contains("\"path\":\"/api/v1/images\""), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("\"status\":401")), "{text}");
    for secret in [
        token.as_str(),
        token.split('.').nth(2).unwrap(),
        ADMIN_KEY,
        "not.a.validtoken",
    ] {
        assert!(!text.contains(secret), "log contains a secret: {secret}");
    }
    // The whole capture is shared with other tests; the header itself is checked on our
    // own lines only.
    for l in &lines {
        assert!(!l.contains("Bearer") && !l.contains("x-api-key"), "{l}");
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary, serving `dir/originals` with the admin key, on fresh ports.
struct Proc {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(dir: &Path, grace_s: u64) -> Proc {
        use sha2::Digest as _;
        let root = dir.join("originals");
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::fs::write(root.join("public/quad.png"), fixture("quad.png")).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nshutdown_grace_s = {grace_s}\n[log]\nformat = \"json\"\n[storage.fs]\nroot = {root:?}\n[metadata]\nurl = \"sqlite://{db}\"\n[admin]\napi_keys_sha256 = [\"{key}\"]\n",
                root = root.to_str().unwrap(),
                db = dir.join("meta.db").to_str().unwrap(),
                key = hex::encode(sha2::Sha256::digest(ADMIN_KEY.as_bytes())),
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
            .arg("--config")
            .arg(&cfg)
            .arg("serve")
            .env("IMGORIGIN__SERVER__LISTEN", &addr)
            .env("IMGORIGIN__SERVER__METRICS_LISTEN", &metrics)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("server.err")).unwrap())
            .spawn()
            .expect("start imgorigin");
        Proc { child, addr, log }
    }

    fn output(&self) -> String {
        let mut out = String::new();
        for f in [self.log.clone(), self.log.with_extension("err")] {
            let mut s = String::new();
            if let Ok(mut file) = std::fs::File::open(f) {
                let _ = file.read_to_string(&mut s);
            }
            out.push_str(&s);
        }
        out
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{}/healthz", self.addr)).await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("imgorigin exited early ({st}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "imgorigin did not become healthy:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    c
}

/// SIGTERM while an upload is still streaming in: the upload completes (201), a new
/// connection is refused, the process exits 0 within `server.shutdown_grace_s`.
#[tokio::test]
async fn sigterm_finishes_in_flight_request_and_exits_zero() {
    let grace_s = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(dir.path(), grace_s);
    p.wait_ready().await;

    let png = solid_png(64, 48, [10, 200, 30, 255]);
    let (first, rest) = png.split_at(png.len() / 2);
    let mut sock = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/images?level=public&filename=slow.png HTTP/1.1\r\nHost: t\r\nX-Api-Key: {ADMIN_KEY}\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&chunk(first)).await.unwrap();
    // The handler is now reading a body that is not complete: a slow in-flight request.
    tokio::time::sleep(Duration::from_millis(300)).await;

    p.signal("TERM");
    let signalled = Instant::now();
    // The listener closes promptly; from then on connections are refused.
    let mut refused = false;
    while signalled.elapsed() < Duration::from_secs(3) {
        if tokio::net::TcpStream::connect(&p.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "new connections still accepted after SIGTERM:\n{}",
        p.output()
    );
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    // Finish the upload slowly; the response must still arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sock.write_all(&chunk(rest)).await.unwrap();
    sock.write_all(b"0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf))
        .await
        .expect("response to the in-flight upload")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 201"),
        "{text}\n---\n{}",
        p.output()
    );

    let status = loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(grace_s),
            "still running {grace_s}s after SIGTERM:\n{}",
            p.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}:\n{}", p.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(grace_s),
        "took {:?}",
        signalled.elapsed()
    );
    let out = p.output();
    assert!(out.contains("shutdown signal received"), "{out}");
    assert!(out.contains("\"status\":201"), "{out}");
}

/// deploy/config.production.toml passes `imgorigin check-config` once the files it names
/// exist (here: in a temporary folder instead of /run/imgorigin and /etc/imgorigin).
#[test]
fn production_example_config_passes_check_config() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    std::fs::write(
        dir.path().join("cf-signing-key.pem"),
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cf-public.pem"),
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("origin-secret"),
        "origin-secret-0123456789\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("edge-verified-secret"),
        "edge-secret-0123456789\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.production.toml"
    ))
    .unwrap();
    assert!(text.contains("/run/imgorigin/") && text.contains("/etc/imgorigin/"));
    let text = text
        .replace("/run/imgorigin/", &format!("{d}/"))
        .replace("/etc/imgorigin/", &format!("{d}/"));
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env_remove("IMGORIGIN__METADATA__URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("postgres://"), "{stdout}");

    // Without the secret files it must refuse to start, naming the keys.
    let missing = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
        .arg("--config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/config.production.toml"
        ))
        .arg("check-config")
        .output()
        .unwrap();
    if !Path::new("/run/imgorigin/origin-secret").exists() {
        assert_eq!(missing.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("cloudfront.origin_secret_file"));
    }
}

/// deploy/docker-entrypoint.sh, as ECS runs it: secrets arrive as environment variables,
/// become 0600 files, the key pair id and the database password reach the config, and the
/// production example config checks out.
#[test]
fn container_entrypoint_turns_secrets_into_a_valid_config() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.production.toml"
    ))
    .unwrap()
    .replace("/run/imgorigin/", &format!("{d}/"));
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/docker-entrypoint.sh"
        ))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env("IMGORIGIN_SECRETS_DIR", d)
        .env("IMGORIGIN_BIN", env!("CARGO_BIN_EXE_imgorigin"))
        .env(
            "IMGORIGIN_ORIGIN_SECRET",
            "Abcdefghij0123456789Abcdefghij01",
        )
        .env("IMGORIGIN_SIGNING_KEY_PEM", private.trim_end())
        .env("IMGORIGIN_PUBLIC_KEY_PEM", public.trim_end())
        .env("IMGORIGIN_KEY_PAIR_ID", "K1ENTRYPOINTTEST")
        .env(
            "IMGORIGIN_DB_URL",
            "postgres://imgorigin@db.example.internal:5432/imgorigin?sslmode=require",
        )
        .env("IMGORIGIN_DB_PASSWORD", "dbpassword0123456789")
        .env_remove("IMGORIGIN__METADATA__URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("postgres://imgorigin:***@db.example.internal:5432/imgorigin"),
        "{stdout}"
    );
    assert!(!stdout.contains("dbpassword0123456789"), "{stdout}");
    for (file, want) in [
        (
            "origin-secret",
            "Abcdefghij0123456789Abcdefghij01\n".to_string(),
        ),
        ("cf-signing-key.pem", format!("{}\n", private.trim_end())),
        ("cf-public.pem", format!("{}\n", public.trim_end())),
    ] {
        let p = dir.path().join(file);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), want, "{file}");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

/// `/metrics` speaks both expositions, each under its own content type: text 0.0.4 by
/// default, which Prometheus's own linter (`promtool check metrics`, Debian's prometheus
/// package) accepts, and OpenMetrics 1.0 to a scraper that asks for it, as Prometheus does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_negotiate_openmetrics() {
    let s = TestServer::start("").await;
    assert_eq!(s.get("/public/quad.jpg?w=8").await.status(), 200);
    assert_eq!(s.get("/public/missing.png").await.status(), 404);
    let url = format!("{}/metrics", s.metrics_base);

    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(!text.contains("# EOF"));
    assert!(
        text.contains("# TYPE imgorigin_requests_total counter"),
        "{text}"
    );
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What Prometheus 2.x sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = reqwest::Client::new()
        .get(&url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE imgorigin_requests counter"));
    assert!(om.contains("imgorigin_requests_total{route=\"image\",status=\"200\"} 1"));
}

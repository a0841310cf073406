//! Test harness: a real server on 127.0.0.1:0 over a temporary originals folder, plus
//! helpers to fetch, decode and sample pixels. The folder is either the fs backend's root or,
//! for `Backend::S3`, a prefix inside a bucket served by an in-process S3 server (s3s +
//! s3s-fs, SigV4 checked), so fixtures are written to disk the same way for both.

use hyper::body::Incoming;
use imgorigin::config::Config;
use imgorigin::{App, AppState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which storage backend a `TestServer` reads originals from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
}

/// Runs a test body against both backends. Put `both_backends!(name);` where
/// `#[tokio::test]` would go, above `async fn name(backend: Backend)`; the tests are then
/// `name::fs` and `name::s3`.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn fs() {
                super::$name($crate::support::Backend::Fs).await
            }
            #[tokio::test]
            async fn s3() {
                super::$name($crate::support::Backend::S3).await
            }
        }
    };
}
pub(crate) use both_backends;

pub const S3_BUCKET: &str = "test-bucket";
pub const S3_PREFIX: &str = "originals/";
pub const S3_ACCESS_KEY: &str = "AKIAIMGORIGINTEST";
pub const S3_SECRET_KEY: &str = "imgorigin-test-secret-key";

/// What the in-process S3 server does with the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Serve them (s3s + s3s-fs).
    None = 0,
    /// Answer every request with an empty 500.
    Status500 = 1,
    /// Read the request and never answer.
    Hang = 2,
}

/// One request the S3 server received.
#[derive(Clone, Debug)]
pub struct S3Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub if_none_match: Option<String>,
}

/// An S3 server on 127.0.0.1:0: s3s over s3s-fs (buckets are sub-folders of `root`), with
/// SigV4 checked against `S3_ACCESS_KEY` / `S3_SECRET_KEY`, a log of every request and a
/// switchable fault.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    calls: Arc<Mutex<Vec<S3Call>>>,
    fault: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    pub async fn start(root: &Path) -> S3Server {
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let calls: Arc<Mutex<Vec<S3Call>>> = Arc::default();
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let (c, f) = (calls.clone(), fault.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (service, calls, fault) = (service.clone(), c.clone(), f.clone());
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (service, calls, fault) = (service.clone(), calls.clone(), fault.clone());
                    async move {
                        calls.lock().unwrap().push(S3Call {
                            method: req.method().to_string(),
                            path: req.uri().path().to_string(),
                            query: req.uri().query().unwrap_or("").to_string(),
                            if_none_match: req
                                .headers()
                                .get("if-none-match")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        });
                        match fault.load(Ordering::SeqCst) {
                            1 => Ok(hyper::Response::builder()
                                .status(500)
                                .body(s3s::Body::empty())
                                .unwrap()),
                            2 => std::future::pending().await,
                            _ => service.call(req.map(s3s::Body::from)).await,
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
                });
            }
        });
        S3Server {
            endpoint,
            root: root.to_path_buf(),
            calls,
            fault,
            task,
        }
    }

    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(S3_BUCKET)
    }

    pub fn set_fault(&self, f: Fault) {
        self.fault.store(f as u8, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<S3Call> {
        self.calls.lock().unwrap().clone()
    }

    /// GetObject requests for `key` (below the test prefix).
    pub fn get_object_calls(&self, key: &str) -> usize {
        let path = format!("/{S3_BUCKET}/{S3_PREFIX}{key}");
        self.calls()
            .iter()
            // The Rust SDK tags the operation (`?x-id=GetObject`); a plain GET is one too.
            .filter(|c| {
                c.method == "GET"
                    && c.path == path
                    && (c.query.is_empty() || c.query == "x-id=GetObject")
            })
            .count()
    }

    /// The `[storage.s3]` section pointing at this server.
    pub fn config_toml(&self) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = {S3_BUCKET:?}\nendpoint_url = {:?}\nforce_path_style = true\nprefix = {S3_PREFIX:?}\naccess_key_id = {S3_ACCESS_KEY:?}\nsecret_access_key = {S3_SECRET_KEY:?}\n",
            self.endpoint
        )
    }

    /// An SDK client with the right credentials, for changing objects behind the server's back.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                S3_ACCESS_KEY,
                S3_SECRET_KEY,
                None,
                None,
                "test",
            ))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub struct TestServer {
    pub base: String,
    pub metrics_base: String,
    pub state: Arc<AppState>,
    /// Where the originals are on disk: the fs root, or the key prefix inside the S3 bucket.
    pub root: PathBuf,
    pub backend: Backend,
    /// The S3 server behind `Backend::S3`.
    pub s3: Option<S3Server>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Every fixture, under `public/` (and a few copies under other prefixes).
fn populate(root: &Path) {
    let public = root.join("public");
    std::fs::create_dir_all(&public).unwrap();
    for e in std::fs::read_dir(FIXTURES).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        // Not the generator, nor folders (the fuzz regressions).
        if name.ends_with(".py") || e.path().is_dir() {
            continue;
        }
        std::fs::copy(e.path(), public.join(&name)).unwrap();
    }
    for dir in ["private/alice", "protected/alice", "other"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::copy(public.join("quad.png"), root.join(dir).join("quad.png")).unwrap();
    }
    std::fs::write(public.join("notes.txt"), b"this is not an image\n").unwrap();
    let jpeg = fixture("quad.jpg");
    std::fs::write(public.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(public.join("bomb.png"), png_header_only(60_000, 60_000)).unwrap();
}

/// A PNG with a valid signature and IHDR claiming `w`x`h` RGBA, and no pixel data.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |ty: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = ty.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32fast::hash(&c).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

impl TestServer {
    /// Starts a server on the fs backend whose config is `extra` TOML on top of test defaults.
    pub async fn start(extra: &str) -> TestServer {
        Self::start_on(Backend::Fs, extra).await
    }

    /// Like `start`, on the given backend.
    pub async fn start_on(backend: Backend, extra: &str) -> TestServer {
        Self::start_with_env(backend, extra, &[]).await
    }

    /// Like `start_on`, plus `IMGORIGIN__…` overrides (these can replace the test defaults,
    /// e.g. `IMGORIGIN__STORAGE__S3__READ_TIMEOUT_S`).
    pub async fn start_with_env(backend: Backend, extra: &str, env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let (root, storage, s3) = match backend {
            Backend::Fs => {
                let root = dir.path().join("originals");
                populate(&root);
                let toml = format!("[storage.fs]\nroot = {:?}\n", root.to_str().unwrap());
                (root, toml, None)
            }
            Backend::S3 => {
                let s3_root = dir.path().join("s3");
                let root = s3_root.join(S3_BUCKET).join(S3_PREFIX);
                populate(&root);
                let server = S3Server::start(&s3_root).await;
                (root, server.config_toml(), Some(server))
            }
        };
        let wm = dir.path().join("wm.png");
        std::fs::write(&wm, solid_png(40, 20, [0, 0, 0, 255])).unwrap();
        // Each server gets its own metadata database unless the test names one.
        let metadata = if extra.contains("[metadata]") {
            String::new()
        } else {
            format!(
                "[metadata]\nurl = \"sqlite://{}\"\n",
                dir.path().join("meta.db").to_str().unwrap()
            )
        };
        let toml = format!(
            "{storage}{metadata}[watermarks.logo]\nfile = {wm:?}\nposition = \"se\"\nopacity = 1.0\nscale = 0.25\n{extra}",
            wm = wm.to_str().unwrap(),
        );
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::from_toml_and_env(&toml, env).expect("test config");
        let mut s = Self::start_with(config, dir, root).await;
        s.backend = backend;
        s.s3 = s3;
        s
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir, root: PathBuf) -> TestServer {
        let app: App = App::builder(config).build().await.expect("build app");
        Self::serve(app, dir, root).await
    }

    pub async fn serve(app: App, dir: tempfile::TempDir, root: PathBuf) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
        let state = app.state.clone();
        app.start_background();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, Some(metrics), async {
            let _ = rx.await;
        }));
        TestServer {
            base,
            metrics_base,
            state,
            root,
            backend: Backend::Fs,
            s3: None,
            client: reqwest::Client::new(),
            _dir: dir,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut rb = self.client.get(self.url(path_and_query));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.unwrap()
    }

    /// GET expecting 200; returns the body.
    pub async fn ok_bytes(&self, path_and_query: &str) -> Vec<u8> {
        let r = self.get(path_and_query).await;
        let status = r.status();
        let body = r.bytes().await.unwrap().to_vec();
        assert_eq!(
            status,
            200,
            "{path_and_query}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// GET expecting 200; decodes the image.
    pub async fn image(&self, path_and_query: &str) -> image::RgbaImage {
        let body = self.ok_bytes(path_and_query).await;
        image::load_from_memory(&body)
            .unwrap_or_else(|e| panic!("{path_and_query}: not decodable: {e}"))
            .to_rgba8()
    }

    /// A raw HTTP/1.1 request, for paths an HTTP client would normalise (`..`, `//`).
    pub async fn raw(&self, request_target: &str) -> (u16, String) {
        let addr = self.base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET {request_target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Value of one metric line (exact name with labels), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Asks the server to stop and waits for it.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }
}

pub fn solid_png(w: u32, h: u32, rgba: [u8; 4]) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(w, h, image::Rgba(rgba));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Colour names for the quadrant fixtures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum C {
    Red,
    Green,
    Blue,
    Yellow,
    White,
    Black,
}

pub fn classify(p: [u8; 4]) -> Option<C> {
    let [r, g, b, _] = p;
    let hi = |v: u8| v > 180;
    let lo = |v: u8| v < 80;
    match (hi(r), hi(g), hi(b), lo(r), lo(g), lo(b)) {
        (true, _, _, _, true, true) => Some(C::Red),
        (_, true, _, true, _, true) => Some(C::Green),
        (_, _, true, true, true, _) => Some(C::Blue),
        (true, true, _, _, _, true) => Some(C::Yellow),
        (true, true, true, _, _, _) => Some(C::White),
        (_, _, _, true, true, true) => Some(C::Black),
        _ => None,
    }
}

/// Colour at a relative position (0..1, 0..1) of the image.
pub fn at(img: &image::RgbaImage, fx: f32, fy: f32) -> Option<C> {
    let x = ((img.width() as f32 * fx) as u32).min(img.width() - 1);
    let y = ((img.height() as f32 * fy) as u32).min(img.height() - 1);
    classify(img.get_pixel(x, y).0)
}

/// Colours of the four quadrant centres: TL, TR, BL, BR.
pub fn quads(img: &image::RgbaImage) -> [Option<C>; 4] {
    [
        at(img, 0.25, 0.25),
        at(img, 0.75, 0.25),
        at(img, 0.25, 0.75),
        at(img, 0.75, 0.75),
    ]
}

pub const QUADS: [Option<C>; 4] = [Some(C::Red), Some(C::Green), Some(C::Blue), Some(C::Yellow)];

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Everything the server logs in this test process (JSON lines), captured once globally.
pub fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let b2 = buf.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || W(b2.clone()))
            .try_init();
        buf
    })
    .clone()
}

/// A Python with the independent decoders (Pillow, pillow-heif, blurhash) that
/// scripts/test installs (`ensure_test_venv`). Fixtures are made and outputs read back by
/// tools that are not ours. `IMGORIGIN_TEST_PYTHON` names it; the default is the venv that
/// scripts/test makes under the build cache.
pub fn independent_python() -> std::process::Command {
    let python = std::env::var_os("IMGORIGIN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/imgorigin/venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} missing: run scripts/test once (it installs Pillow, pillow-heif, blurhash) or set IMGORIGIN_TEST_PYTHON",
        python.display()
    );
    std::process::Command::new(python)
}

/// Runs `script` with the independent Python, `input` on stdin; returns stdout. Panics with
/// the script's stderr when it fails.
pub fn run_python(script: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = independent_python()
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input)
        .expect("write to python");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// moto (PyPI) in server mode: real AWS wire protocols (SQS, DynamoDB, Cognito, Rekognition,
/// CloudFront, …) for the services that have no Rust test server. One process per test on a
/// free port, stopped when dropped. scripts/test installs it in the test venv.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        imgorigin::app::install_crypto_provider();
        let python = independent_python().get_program().to_owned();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto (run scripts/test once to install it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        moto.wait_ready().await;
        moto
    }

    /// One moto for the whole test binary (each test uses its own table, pool or queue
    /// names): starting one costs about a second. It runs inside a Python process that
    /// stops when its stdin closes, i.e. when the test binary exits, since statics are never
    /// dropped. It serves one request at a time (see below).
    pub async fn shared() -> &'static Moto {
        static SHARED: tokio::sync::OnceCell<Moto> = tokio::sync::OnceCell::const_new();
        SHARED
            .get_or_init(|| async {
                imgorigin::app::install_crypto_provider();
                let port = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
                    l.local_addr().unwrap().port()
                };
                // Requests are served one at a time: moto's TransactWriteItems deep-copies
                // the table without a lock, and concurrent transactions then fail with
                // "dictionary changed size during iteration" (a 500). DynamoDB itself
                // evaluates conditions per item, so serialising changes no outcome.
                let script = r#"
import sys, threading
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))
srv = make_server("127.0.0.1", int(sys.argv[1]), serial, True, request_handler=MotoRequestHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
sys.stdin.read()
srv.shutdown()
"#;
                let child = independent_python()
                    .args(["-c", script, &port.to_string()])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start moto (run scripts/test once to install it)");
                // The child keeps its stdin pipe open for as long as this process lives.
                let moto = Moto {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
                moto.wait_ready().await;
                moto
            })
            .await
    }

    async fn wait_ready(&self) {
        let probe = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(r) = probe
                .get(format!("{}/moto-api/data.json", self.endpoint))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto did not answer on {}",
                self.endpoint
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// An AWS SDK config pointed at this server (any credentials; moto checks none).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Test harness: a real server on 127.0.0.1:0 over a temporary originals folder, plus
//! helpers to fetch, decode and sample pixels.

use imgorigin::config::Config;
use imgorigin::{App, AppState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub struct TestServer {
    pub base: String,
    pub metrics_base: String,
    pub state: Arc<AppState>,
    pub root: PathBuf,
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
        if name.ends_with(".py") {
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
    /// Starts a server whose config is `extra` TOML on top of test defaults.
    pub async fn start(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("originals");
        populate(&root);
        let wm = dir.path().join("wm.png");
        std::fs::write(&wm, solid_png(40, 20, [0, 0, 0, 255])).unwrap();
        let toml = format!(
            "[storage.fs]\nroot = {root:?}\n[watermarks.logo]\nfile = {wm:?}\nposition = \"se\"\nopacity = 1.0\nscale = 0.25\n{extra}",
            root = root.to_str().unwrap(),
            wm = wm.to_str().unwrap(),
        );
        let config = Config::from_toml_and_env(&toml, std::iter::empty()).expect("test config");
        Self::start_with(config, dir, root).await
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir, root: PathBuf) -> TestServer {
        let app: App = imgorigin::build_app(config).await.expect("build app");
        Self::serve(app, dir, root).await
    }

    pub async fn serve(app: App, dir: tempfile::TempDir, root: PathBuf) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, Some(metrics), async {
            let _ = rx.await;
        }));
        TestServer {
            base,
            metrics_base,
            state,
            root,
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

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

// ---- Decoder bombs (security review, issue 11: findings 2, 4 and 5) ----

use crate::api::{Api, Db, Req, Who};

/// An API server (uploads need one) whose originals folder also has `public/quad.png`.
async fn api_with_quad() -> Api {
    let api = Api::start(Db::Sqlite, "").await.unwrap();
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    std::fs::write(api.root.join("public/quad.png"), fixture("quad.png")).unwrap();
    api
}

/// Resets this process's peak RSS (VmHWM) and returns the current RSS. A decode frees its
/// buffers before the response arrives, so only the peak shows what it cost.
fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset peak RSS");
    rss_bytes()
}

/// Peak RSS since `reset_peak_rss`, in bytes (Linux).
fn peak_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Uploads `bytes` as the admin; the status and the problem `detail` (if any).
async fn upload_as_admin(api: &Api, content_type: &'static str, bytes: Vec<u8>) -> (u16, String) {
    let (status, v) = api
        .call(
            "POST",
            "/api/v1/images?level=public",
            Who::Admin,
            Req::Raw(content_type, bytes),
        )
        .await;
    (status, v["detail"].as_str().unwrap_or_default().to_string())
}

/// Bits written LSB first, as deflate wants them.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, which deflate stores most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        let rev = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
        self.put(rev, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A zlib stream inflating to `1 + 258 * pairs` zero bytes at deflate's best ratio: one
/// dynamic-Huffman block where "length 258, distance 1" costs 2 bits (about 1:1000).
fn zlib_zeros(pairs: u64) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(1, 1); // final block
    b.put(2, 2); // dynamic Huffman
    b.put(286 - 257, 5); // literal/length codes
    b.put(2 - 1, 5); // distance codes
    b.put(18 - 4, 4); // code length codes, in the order below up to symbol 1
    for sym in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
        // Code length alphabet: 18 (zero run) = "0", 1 = "10", 2 = "11".
        let len = match sym {
            18 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        b.put(len, 3);
    }
    let (cl1, cl2, zeros) = ((0b10, 2), (0b11, 2), |b: &mut Bits, n: u64| {
        b.code(0, 1);
        b.put(n - 11, 7);
    });
    // Literal 0: 2 bits, 1..=255: none, 256 (end): 2 bits, 257..=284: none, 285 (258): 1 bit.
    b.code(cl2.0, cl2.1);
    zeros(&mut b, 138);
    zeros(&mut b, 117);
    b.code(cl2.0, cl2.1);
    zeros(&mut b, 28);
    b.code(cl1.0, cl1.1);
    // Distances 1 and 2: 1 bit each.
    b.code(cl1.0, cl1.1);
    b.code(cl1.0, cl1.1);
    // Canonical codes: 285 = "0", literal 0 = "10", end = "11"; distance 1 = "0".
    b.code(0b10, 2);
    let mut left = pairs * 2; // "0" + "0" per pair
    while left > 0 {
        let n = left.min(32);
        b.put(0, n as u32);
        left -= n;
    }
    b.code(0b11, 2);
    let mut z = vec![0x78, 0x01];
    z.extend_from_slice(&b.finish());
    let total = 1 + 258 * pairs;
    let adler = ((total % 65521) << 16) | 1;
    z.extend_from_slice(&(adler as u32).to_be_bytes());
    z
}

/// A 1x1 PNG whose iCCP chunk inflates to about `inflated` bytes of zeros.
fn png_with_iccp_bomb(inflated: u64) -> Vec<u8> {
    let png = solid_png(1, 1, [10, 20, 30, 255]);
    let mut data = b"bomb\0\0".to_vec();
    data.extend_from_slice(&zlib_zeros(inflated / 258));
    let mut chunk = b"iCCP".to_vec();
    chunk.extend_from_slice(&data);
    let mut out = png[..33].to_vec(); // signature + IHDR
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    out.extend_from_slice(&png[33..]);
    out
}

#[test]
fn iccp_bomb_generator_is_valid() {
    use image::ImageDecoder;
    let png = png_with_iccp_bomb(258 * 1000);
    let mut dec = image::codecs::png::PngDecoder::new(std::io::Cursor::new(png)).unwrap();
    assert_eq!(dec.icc_profile().unwrap(), Some(vec![0; 1 + 258 * 1000]));
}

/// Finding 2: an 815 KB 1x1 PNG whose iCCP inflates to 800 MiB cost +1.6 GiB per decode
/// (inflated by the decoder up to its allocation limit, then copied). Now the profile is
/// inflated by us to at most 4 MiB and, being larger, ignored: the image renders as if it
/// had no profile, on GET and on upload.
#[tokio::test]
async fn png_iccp_bomb_is_not_inflated() {
    let api = api_with_quad().await;
    let s = &api.s;
    let bomb = png_with_iccp_bomb(800 << 20);
    assert!(bomb.len() < 900 << 10, "{} bytes", bomb.len());
    std::fs::write(s.root.join("public/iccp-bomb.png"), &bomb).unwrap();
    let _ = s.get("/public/quad.png?w=10").await;
    let before = reset_peak_rss();
    let img = s.image("/public/iccp-bomb.png?fm=png").await;
    assert_eq!(img.dimensions(), (1, 1));
    assert_eq!(img.get_pixel(0, 0).0, [10, 20, 30, 255]);
    let (status, detail) = upload_as_admin(&api, "image/png", bomb).await;
    assert_eq!(status, 201, "{detail}");
    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!("peak RSS growth: {} KiB", grown >> 10);
    assert!(grown < 50 << 20, "peak RSS grew by {} MB", grown >> 20);
    assert_eq!(s.get("/public/quad.png?w=12").await.status(), 200);
}

/// GIF LZW data for `pixels` pixels of colour index 0, with 12-bit codes from the start
/// (minimum code size 11) and a clear code every 2000 codes, so the code width never
/// changes: each code covers one pixel more than the previous one.
fn lzw_zeros(pixels: u64) -> Vec<u8> {
    let (clear, end) = (2048, 2049);
    let code = |run: u64| if run == 1 { 0 } else { 2048 + run };
    let mut b = Bits::default();
    b.put(clear, 12);
    let (mut left, mut longest) = (pixels, 1);
    while left > 0 {
        let run = longest.min(left);
        b.put(code(run), 12);
        left -= run;
        longest += 1;
        if longest > 2000 && left > 0 {
            b.put(clear, 12);
            longest = 1;
        }
    }
    b.put(end, 12);
    b.finish()
}

/// A GIF with a `screen` logical screen and one black `frame` at its top left.
fn gif_with_frame(screen: (u16, u16), frame: (u16, u16)) -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&screen.0.to_le_bytes());
    g.extend_from_slice(&screen.1.to_le_bytes());
    g.extend_from_slice(&[0xF0, 0, 0, 0, 0, 0, 255, 255, 255]); // 2-colour table
    g.extend_from_slice(&[0x2C, 0, 0, 0, 0]);
    g.extend_from_slice(&frame.0.to_le_bytes());
    g.extend_from_slice(&frame.1.to_le_bytes());
    g.extend_from_slice(&[0, 11]); // no local table; LZW minimum code size
    for block in lzw_zeros(u64::from(frame.0) * u64::from(frame.1)).chunks(255) {
        g.push(block.len() as u8);
        g.extend_from_slice(block);
    }
    g.extend_from_slice(&[0, 0x3B]);
    g
}

/// Finding 4: the pixel limit read the logical screen only; a 1x1 screen with a 12000x12000
/// first frame (144 MP, over the 100 MP default) was decoded (+532 MiB). Every frame now
/// counts: 422 from the header walk, on GET and upload. A frame larger than the screen but
/// within the limit is still decoded (clipped to the screen, as browsers do).
#[tokio::test]
async fn gif_frame_larger_than_screen_counts_against_pixel_limit() {
    let api = api_with_quad().await;
    let s = &api.s;
    let bomb = gif_with_frame((1, 1), (12000, 12000));
    assert!(bomb.len() < 300 << 10, "{} bytes", bomb.len());
    std::fs::write(s.root.join("public/frame-bomb.gif"), &bomb).unwrap();
    let _ = s.get("/public/quad.png?w=10").await;
    let before = reset_peak_rss();
    let r = s.get("/public/frame-bomb.gif?fm=png").await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("12000x12000"),
        "{body}"
    );
    let (status, detail) = upload_as_admin(&api, "image/gif", bomb).await;
    assert_eq!(status, 422, "{detail}");
    assert!(detail.contains("12000x12000"), "{detail}");
    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!("peak RSS growth: {} KiB", grown >> 10);
    assert!(grown < 50 << 20, "peak RSS grew by {} MB", grown >> 20);

    std::fs::write(
        s.root.join("public/big-frame.gif"),
        gif_with_frame((2, 2), (40, 30)),
    )
    .unwrap();
    let img = s.image("/public/big-frame.gif?fm=png").await;
    assert_eq!(img.dimensions(), (2, 2));
    assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0, 255]);
    assert_eq!(s.get("/public/quad.png?w=12").await.status(), 200);
}

/// `jpeg` with its last scan (SOS up to EOI) repeated `extra` more times.
fn repeat_last_scan(jpeg: &[u8], extra: usize) -> Vec<u8> {
    let eoi = jpeg.len() - 2;
    assert_eq!(&jpeg[eoi..], [0xFF, 0xD9]);
    let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let mut out = jpeg[..eoi].to_vec();
    for _ in 0..extra {
        out.extend_from_slice(&jpeg[last..eoi]);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Finding 5: a progressive JPEG with its last scan repeated 29,032 times held a worker for
/// 50 s (upload: 422 after 68 s). Scans are now counted before decoding; more than 100 is
/// a 422 naming the scans, at once, on GET and upload. Real progressive files still work.
#[tokio::test]
async fn progressive_jpeg_scan_bomb_is_refused_before_decoding() {
    let api = api_with_quad().await;
    let s = &api.s;
    let jpeg = fixture("quad-progressive.jpg");
    std::fs::write(s.root.join("public/quad-progressive.jpg"), &jpeg).unwrap();
    let bomb = repeat_last_scan(&jpeg, 30_000);
    std::fs::write(s.root.join("public/scan-bomb.jpg"), &bomb).unwrap();
    let _ = s.get("/public/quad.png?w=10").await;
    let before = reset_peak_rss();
    let r = s.get("/public/scan-bomb.jpg?w=10").await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("100 scans"),
        "{body}"
    );
    let (status, detail) = upload_as_admin(&api, "image/jpeg", bomb).await;
    assert_eq!(status, 422, "{detail}");
    assert!(detail.contains("100 scans"), "{detail}");
    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!("peak RSS growth: {} KiB", grown >> 10);
    assert!(grown < 50 << 20, "peak RSS grew by {} MB", grown >> 20);

    // At the limit the scan count is no reason to refuse (libjpeg-turbo still judges the
    // redundant scans).
    let at_limit = repeat_last_scan(&jpeg, 90);
    std::fs::write(s.root.join("public/many-scans.jpg"), &at_limit).unwrap();
    let r = s.get("/public/many-scans.jpg?w=10").await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status == 200 || status == 422, "{status}");
    assert!(!body.contains("scans"), "{body}");
    let img = s.image("/public/quad-progressive.jpg?w=32&fm=png").await;
    assert_eq!(quads(&img), QUADS);
}

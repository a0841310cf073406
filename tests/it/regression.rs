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

// ---- security review (issue 11): access, shares, registration -------------------------

use crate::api::{Api, Db, Req, Who, presigned_put};
use serde_json::json;

/// Finding 13: the shipped CloudFront default behavior forwards `share` to the origin but
/// keeps the signature away (it is not in that behavior's cache key), so a share link to
/// a `public/` image arrived unsigned and got 400. The origin now checks the share itself
/// for public images: valid → 200 cached no longer than `share_max_age`; revoked or for
/// another key → 403. Non-public images still need the signature.
#[tokio::test]
async fn public_share_link_behind_the_default_behavior() {
    let api = Api::start(Db::Sqlite, "").await.unwrap();
    let alice = Who::User("alice");
    let rec = api.upload(alice, "public", fixture("quad.png")).await;
    let other = api
        .upload(alice, "public", solid_png(3, 3, [0, 0, 255, 255]))
        .await;
    let id = rec["id"].as_str().unwrap();
    let key = rec["key"].as_str().unwrap();
    let (st, share) = api
        .call(
            "POST",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Json(json!({"expires_in": 3600, "params": "w=4&fm=png"})),
        )
        .await;
    assert_eq!(st, 201, "{share}");
    let sid = share["id"].as_str().unwrap();
    // What CloudFront's default behavior sends: the URL without its signature parameters.
    let unsigned = format!("/{key}?w=4&fm=png&share={sid}");
    let r = api.s.get(&unsigned).await;
    assert_eq!(r.status(), 200);
    let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
    let max_age: u64 = cc.trim_start_matches("public, max-age=").parse().unwrap();
    assert!(
        max_age <= 300,
        "{cc}: capped by cache_control.share_max_age"
    );
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.width(), 4);
    // The share of one image does not vouch for another, nor does an unknown id.
    let okey = other["key"].as_str().unwrap();
    assert_eq!(
        api.s.get(&format!("/{okey}?share={sid}")).await.status(),
        403
    );
    assert_eq!(
        api.s
            .get(&format!("/{key}?share=nosuchshare"))
            .await
            .status(),
        403
    );
    // Revoked: the same URL is refused.
    let (st, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/shares/{sid}"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(api.s.get(&unsigned).await.status(), 403);
    // The image itself stays public.
    assert_eq!(api.s.get(&format!("/{key}?w=4&fm=png")).await.status(), 200);
}

/// An API server on SQLite whose originals live in an in-process S3 bucket.
async fn api_on_s3(extra: &str) -> (Api, S3Server, tempfile::TempDir) {
    let s3dir = tempfile::tempdir().unwrap();
    let s3_root = s3dir.path().join("s3");
    let objects = s3_root.join(S3_BUCKET).join(S3_PREFIX);
    std::fs::create_dir_all(&objects).unwrap();
    let s3 = S3Server::start(&s3_root).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("meta.db").to_str().unwrap());
    let api = Api::build(
        dir,
        crate::api::Setup {
            db_url,
            storage: (s3.config_toml(), objects),
            extra: extra.to_string(),
            signing: true,
            wrap: None,
        },
    )
    .await;
    (api, s3, s3dir)
}

/// Finding 1 (data loss): any signed-in user could register an unrecorded `public/`
/// object, become its owner and delete it from storage. Now: an unrecorded public object
/// is registered only by an admin (owner none); a presigned key only by the caller it was
/// reserved for, once; the presigned URL cannot overwrite the registered object; an
/// upload that fails validation at register is removed; an object recreated after its
/// record was deleted is swept once the URL has expired.
#[tokio::test]
async fn register_claims_only_what_was_reserved() {
    let (api, _s3, _s3dir) = api_on_s3("[limits]\nmax_upload_bytes = \"64KiB\"\n").await;
    let (alice, bob) = (Who::User("alice"), Who::User("bob"));
    let reg = |key: &str| Req::Json(json!({"key": key}));
    let register = "/api/v1/images/register";

    // An object put into the bucket by ops: users cannot claim it, admins record it.
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    let ops = fixture("quad.png");
    std::fs::write(api.root.join("public/ops.png"), &ops).unwrap();
    let (st, v) = api
        .call("POST", register, alice, reg("public/ops.png"))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, rec) = api
        .call("POST", register, Who::Admin, reg("public/ops.png"))
        .await;
    assert_eq!(st, 201, "{rec}");
    assert_eq!(rec["owner"], serde_json::Value::Null);
    let ops_id = rec["id"].as_str().unwrap();
    let (st, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/images/{ops_id}"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(std::fs::read(api.root.join("public/ops.png")).unwrap(), ops);

    // A presigned public upload: only Alice, once.
    let api = &api;
    let presign = |who| async move {
        let (st, up) = api
            .call(
                "POST",
                "/api/v1/uploads",
                who,
                Req::Json(json!({"level": "public", "content_type": "image/png"})),
            )
            .await;
        assert_eq!(st, 200, "{up}");
        up
    };
    let up = presign(alice).await;
    let key = up["key"].as_str().unwrap().to_string();
    let mine = solid_png(5, 4, [255, 0, 0, 255]);
    assert_eq!(presigned_put(&up, mine.clone()).await, 200);
    assert_eq!(api.call("POST", register, bob, reg(&key)).await.0, 403);
    let (st, rec) = api.call("POST", register, alice, reg(&key)).await;
    assert_eq!(st, 201, "{rec}");
    assert_eq!(rec["owner"], "alice");
    assert_eq!(rec["width"], 5);
    assert_eq!(api.call("POST", register, alice, reg(&key)).await.0, 409);
    // The URL cannot replace the registered object.
    assert_eq!(
        presigned_put(&up, solid_png(9, 9, [0, 0, 0, 255])).await,
        412
    );
    assert_eq!(std::fs::read(api.root.join(&key)).unwrap(), mine);

    // Deleted, then recreated with the still-valid URL: nobody can register it, and the
    // reservation sweep removes it once the URL has expired.
    let id = rec["id"].as_str().unwrap();
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 204);
    assert!(!api.root.join(&key).exists());
    assert_eq!(presigned_put(&up, mine.clone()).await, 200);
    assert_eq!(api.call("POST", register, alice, reg(&key)).await.0, 409);
    assert_eq!(api.call("POST", register, bob, reg(&key)).await.0, 403);
    let far = imgorigin::metadata::now_micros() + 10 * 24 * 3600 * 1_000_000;
    api.s.state.library().sweep_reservations(far).await;
    assert!(!api.root.join(&key).exists(), "recreated object swept");

    // Too large or not an image at register: refused and removed.
    let big = presign(alice).await;
    let big_key = big["key"].as_str().unwrap().to_string();
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(presigned_put(&big, noise).await, 200);
    assert_eq!(
        api.call("POST", register, alice, reg(&big_key)).await.0,
        413
    );
    assert!(!api.root.join(&big_key).exists());
    let txt = presign(alice).await;
    let txt_key = txt["key"].as_str().unwrap().to_string();
    assert_eq!(
        presigned_put(&txt, b"<html>not an image</html>".to_vec()).await,
        200
    );
    assert_eq!(
        api.call("POST", register, alice, reg(&txt_key)).await.0,
        415
    );
    assert!(!api.root.join(&txt_key).exists());
    assert_eq!(
        api.call("POST", register, alice, reg(&txt_key)).await.0,
        409,
        "spent"
    );
}

// render cost (finding 3)

/// Holds `n` workers until the returned sender is dropped or fires `n` times.
async fn hold_workers(s: &TestServer, n: usize) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for _ in 0..n {
        let state = s.state.clone();
        let rx = rx.clone();
        tokio::spawn(async move {
            let _ = state
                .workers
                .run(move || rx.lock().unwrap().recv().ok())
                .await;
        });
    }
    wait_for("workers held", || async { s.state.workers.running() == n }).await;
    tx
}

/// Polls `cond` every 20 ms; panics after a minute (a guard, not a timing assertion).
async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

async fn refused(s: &TestServer, q: &str, accept: &str) -> String {
    let r = s.get_with(q, &[("accept", accept)]).await;
    assert_eq!(r.status(), 400, "{q}");
    r.text().await.unwrap()
}

/// Output size is capped per format from the plan, before a worker is taken: a full-size
/// AVIF/JPEG of a huge original, or `enlarge=1` to 8192x8192, used to render for seconds
/// and GiBs. The untouched original is still served.
#[tokio::test]
async fn output_over_the_pixel_cap_is_refused_without_a_worker() {
    let s = TestServer::start("").await;
    // Headers only (no pixel data): a decode would fail with 422, so a 400 shows that
    // nothing was decoded.
    std::fs::write(
        s.root.join("public/huge.png"),
        png_header_only(12_000, 8_250),
    )
    .unwrap();
    std::fs::write(
        s.root.join("public/12mp.png"),
        png_header_only(4_000, 3_000),
    )
    .unwrap();
    std::fs::write(
        s.root.join("public/tiny.png"),
        solid_png(2, 2, [9, 9, 9, 255]),
    )
    .unwrap();
    for (q, param) in [
        // 99 MP full size: over the 40 MP cap of every format; the size is to change.
        ("/public/huge.png?fm=avif", "`w`"),
        ("/public/huge.png?fm=jpeg", "`w`"),
        ("/public/huge.png?q=50", "`w`"),
        ("/public/huge.png?h=8000", "`h`"),
        // From a 2 KB image.
        (
            "/public/tiny.png?w=8192&h=8192&fit=fill&enlarge=1&fm=avif",
            "`w`",
        ),
        (
            "/public/tiny.png?w=8192&h=8192&fit=fill&enlarge=1&fm=jpeg",
            "`w`",
        ),
        // 12 MP: fine for JPEG, over the AVIF cap (8 Mi pixels), which names `fm`.
        ("/public/12mp.png?fm=avif", "`fm`"),
        (
            "/public/tiny.png?w=4000&h=3000&fit=fill&enlarge=1&fm=avif",
            "`fm`",
        ),
    ] {
        let body = refused(&s, q, "*/*").await;
        assert!(body.contains(param), "{q}: {body}");
        assert!(body.contains("more than the limit"), "{q}: {body}");
    }
    // fm=auto for an AVIF-accepting browser falls back to another format, whose cap the
    // 99 MP output still exceeds.
    let body = refused(&s, "/public/huge.png?fm=auto", "image/avif,image/webp").await;
    assert!(body.contains("webp"), "{body}");
    assert_eq!(s.metric("imgorigin_renders_total").await, 0.0);
    assert_eq!(
        s.metric("imgorigin_transform_duration_seconds_count{stage=\"queue\"}")
            .await,
        0.0,
        "no job was queued"
    );
    // No parameters: the original, untouched, is not a render and not capped.
    let r = s.get("/public/huge.png").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        png_header_only(12_000, 8_250).as_slice()
    );
}

/// `fm=auto` prefers falling back from AVIF (the tighter cap) to WebP, or JPEG/PNG, over
/// refusing; an explicit `fm=avif` is refused naming `fm`.
#[tokio::test]
async fn auto_format_over_the_avif_cap_falls_back() {
    let s = TestServer::start("[limits]\nmax_avif_output_pixels = 1000\n").await;
    let avif_webp = "image/avif,image/webp,*/*";
    // 64x48 = 3072 pixels > 1000.
    let r = s
        .get_with("/public/quad.png?fm=auto&w=64", &[("accept", avif_webp)])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert_eq!(r.headers()["vary"], "Accept");
    let r = s
        .get_with("/public/quad.jpg?fm=auto&w=64", &[("accept", "image/avif")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    // 30x23 = 690 pixels: AVIF as before.
    let r = s
        .get_with("/public/quad.png?fm=auto&w=30", &[("accept", avif_webp)])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/avif");
    let body = refused(&s, "/public/quad.png?fm=avif&w=64", "*/*").await;
    assert!(body.contains("`fm`"), "{body}");
    assert_eq!(s.metric("imgorigin_renders_total").await, 3.0);
}

/// A render that outlives `request_timeout_s` answers 504 but no longer loses its work:
/// it finishes into the cache, and the retry is a hit (one render, not two).
#[tokio::test]
async fn timed_out_render_finishes_into_the_cache() {
    let s =
        TestServer::start("[server]\nrequest_timeout_s = 1\n[limits]\ntransform_concurrency = 1\n")
            .await;
    // The render waits behind a held worker until well after the request gave up.
    let release = hold_workers(&s, 1).await;
    let r = s.get("/public/quad.png?w=21&fm=png").await;
    assert_eq!(r.status(), 504);
    assert_eq!(s.metric("imgorigin_renders_total").await, 0.0);
    release.send(()).unwrap();
    wait_for("the timed-out render to finish", || async {
        s.metric("imgorigin_renders_total").await == 1.0
    })
    .await;
    wait_for("the variant in the cache", || async {
        s.state.caches.variants.iter().next().is_some()
    })
    .await;
    let hits = "imgorigin_cache_hits_total{tier=\"variant\"}";
    assert_eq!(s.metric(hits).await, 0.0);
    let img = s.image("/public/quad.png?w=21&fm=png").await;
    assert_eq!(img.dimensions(), (21, 16));
    assert_eq!(s.metric(hits).await, 1.0);
    assert_eq!(s.metric("imgorigin_renders_total").await, 1.0);
}

/// 4 clients retrying slow renders on 504 used to keep every worker busy re-rendering
/// (each retry restarted the dropped render), so other renders 504ed too. Now each slow
/// variant renders once, the retries become hits, and small renders get through.
#[tokio::test]
async fn retried_slow_renders_do_not_starve_small_ones() {
    let s = std::sync::Arc::new(
        TestServer::start("[server]\nrequest_timeout_s = 1\n[limits]\ntransform_concurrency = 2\n")
            .await,
    );
    // Slow in this (unoptimised) build: a blur over 1.4 MP; small on disk.
    std::fs::write(
        s.root.join("public/slow.png"),
        solid_png(1200, 1200, [10, 200, 30, 255]),
    )
    .unwrap();
    let mut slow = Vec::new();
    for i in 0..4 {
        let s = s.clone();
        slow.push(tokio::spawn(async move {
            let q = format!("/public/slow.png?blur={}&fm=png", 50 + i);
            for _ in 0..300 {
                let r = s.get(&q).await;
                match r.status().as_u16() {
                    504 => continue,
                    200 => return,
                    other => panic!("{q}: {other}"),
                }
            }
            panic!("{q}: never answered 200");
        }));
    }
    wait_for("the four slow renders", || async {
        s.metric("imgorigin_renders_total").await >= 4.0
    })
    .await;
    let mut small = Vec::new();
    for w in [9, 10, 11] {
        let s = s.clone();
        small.push(tokio::spawn(async move {
            s.get(&format!("/public/quad.png?w={w}&fm=png"))
                .await
                .status()
        }));
    }
    for t in small {
        assert_eq!(t.await.unwrap(), 200);
    }
    for t in slow {
        t.await.unwrap();
    }
    // Each slow variant was rendered once, whatever the number of retries.
    assert_eq!(s.metric("imgorigin_renders_total").await, 7.0);
}

// ---- Decoder bombs (security review, issue 11: findings 2, 4 and 5) ----

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

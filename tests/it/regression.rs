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

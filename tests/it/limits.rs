//! Limits before work, the bounded worker pool, single flight.

use crate::support::*;
use std::sync::Arc;
use std::time::Duration;

both_backends!(pixel_bomb_is_refused_from_the_header);
async fn pixel_bomb_is_refused_from_the_header(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    // Warm up allocator and code paths so the RSS comparison measures only the bomb.
    let _ = s.get("/public/quad.png?w=10").await;
    let before = rss_bytes();
    for _ in 0..3 {
        let r = s.get("/public/bomb.png?w=100").await;
        assert_eq!(r.status(), 422);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("60000x60000"),
            "{body}"
        );
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 50 << 20, "RSS grew by {} MB", grown >> 20);
    // Served raw it is just bytes; no decode happens.
    assert_eq!(s.get("/public/bomb.png").await.status(), 200);
}

both_backends!(pixel_limit_is_configurable);
async fn pixel_limit_is_configurable(backend: Backend) {
    let s = TestServer::start_on(backend, "[limits]\nmax_source_pixels = 3000\n").await;
    assert_eq!(s.get("/public/quad.png?w=10").await.status(), 422); // 64x48 = 3072
    let s = TestServer::start_on(backend, "[limits]\nmax_source_pixels = 3072\n").await;
    assert_eq!(s.get("/public/quad.png?w=10").await.status(), 200);
}

both_backends!(source_size_limit_is_413);
async fn source_size_limit_is_413(backend: Backend) {
    let s = TestServer::start_on(backend, "[limits]\nmax_source_bytes = 500\n").await;
    let r = s.get("/public/quad.jpg?w=10").await; // 816 bytes
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(s.get("/public/quad.jpg").await.status(), 413);
    assert_eq!(s.get("/public/quad.png?w=10").await.status(), 200);
}

both_backends!(max_dimension_limits_cap_dpr);
async fn max_dimension_limits_cap_dpr(backend: Backend) {
    let s = TestServer::start_on(backend, "[limits]\nmax_width = 100\nmax_height = 100\n").await;
    assert_eq!(s.get("/public/quad.png?w=101").await.status(), 400);
    let img = s
        .image("/public/quad.png?w=80&dpr=2&enlarge=1&fm=png")
        .await;
    assert_eq!(img.width(), 100, "dpr result capped by max_width");
}

/// Holds the only worker until the returned sender fires.
async fn occupy_worker(s: &TestServer) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let state = s.state.clone();
    tokio::spawn(async move {
        let _ = state.workers.run(move || rx.recv().ok()).await;
    });
    for _ in 0..500 {
        if s.state.workers.running() == 1 {
            return tx;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("worker never started");
}

both_backends!(concurrent_identical_misses_render_once);
async fn concurrent_identical_misses_render_once(backend: Backend) {
    let s = Arc::new(
        TestServer::start_on(
            backend,
            "[limits]\ntransform_concurrency = 1\ntransform_queue = 64\n",
        )
        .await,
    );
    let release = occupy_worker(&s).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.get("/public/quad.jpg?w=17&fm=webp").await;
            (r.status(), r.bytes().await.unwrap())
        }));
    }
    // All 32 are in: each counted a variant miss while the worker is busy.
    for _ in 0..1000 {
        if s.metric("imgorigin_cache_misses_total{tier=\"variant\"}")
            .await
            >= 32.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        s.metric("imgorigin_cache_misses_total{tier=\"variant\"}")
            .await,
        32.0
    );
    assert_eq!(s.metric("imgorigin_renders_total").await, 0.0);
    release.send(()).unwrap();
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(s.metric("imgorigin_renders_total").await, 1.0);
    // And the original was fetched from storage once.
    assert_eq!(s.metric("imgorigin_storage_fetches_total").await, 1.0);
}

both_backends!(full_queue_is_503_while_hits_are_served);
async fn full_queue_is_503_while_hits_are_served(backend: Backend) {
    let s = TestServer::start_on(
        backend,
        "[limits]\ntransform_concurrency = 1\ntransform_queue = 0\n",
    )
    .await;
    assert_eq!(s.get("/public/quad.jpg?w=10").await.status(), 200);
    let release = occupy_worker(&s).await;
    let r = s.get("/public/quad.jpg?w=11").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = s.get("/public/quad.jpg?w=10").await;
    assert_eq!(r.status(), 200, "cache hit still served");
    assert_eq!(
        s.get("/public/quad.jpg").await.status(),
        200,
        "originals still served"
    );
    assert!(
        s.metric("imgorigin_rejected_total{reason=\"queue_full\"}")
            .await
            >= 1.0
    );
    release.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        s.get("/public/quad.jpg?w=11").await.status(),
        200,
        "recovers"
    );
}

both_backends!(graceful_shutdown_finishes_in_flight_requests);
async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    let s = TestServer::start_on(backend, "[limits]\ntransform_concurrency = 1\n").await;
    let release = occupy_worker(&s).await;
    let url = s.url("/public/quad.jpg?w=13");
    let client = s.client.clone();
    let inflight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = s.base.clone();
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused once shutdown began.
    let fresh = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(fresh.is_err(), "new connection accepted during shutdown");
    release.send(()).unwrap();
    assert_eq!(inflight.await.unwrap().unwrap(), 200);
    stopping.await.unwrap().unwrap();
}

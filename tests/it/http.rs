//! HTTP semantics: originals, ETags, 304, HEAD, error bodies, key validation.

use crate::support::*;

both_backends!(no_params_serves_original_bytes_with_storage_etag);
async fn no_params_serves_original_bytes_with_storage_etag(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let r = s.get("/public/quad.jpg").await;
    assert_eq!(r.status(), 200);
    let stored = s.state.storage.head("public/quad.jpg").await.unwrap();
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", stored.etag)
    );
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(r.headers().get("last-modified").is_some());
    assert_eq!(r.bytes().await.unwrap().to_vec(), fixture("quad.jpg"));
    // `v` and nothing else is still the original.
    assert_eq!(
        s.ok_bytes("/public/quad.jpg?v=42").await,
        fixture("quad.jpg")
    );
}

both_backends!(equivalent_requests_share_one_etag);
async fn equivalent_requests_share_one_etag(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
    let a = etag(&s.get("/public/quad.jpg?w=32&fit=inside").await);
    for q in [
        "fit=inside&w=32",
        "w=16&dpr=2",
        "w=32&q=80",
        "w=32&fm=jpeg",
        "w=32&fm=jpeg&q=80",
        "w=32&enlarge=0",
        "w=32&g=center",
        "w=32&fit=cover",
        "w=32&v=7",
        "w=32&bg=ffffff&fm=jpeg",
        "w=32&rot=0",
        "w=32&blur=1&blur=2",
    ] {
        let r = s.get(&format!("/public/quad.jpg?{q}")).await;
        if q.contains("blur=1&blur=2") {
            assert_eq!(r.status(), 400);
            continue;
        }
        assert_eq!(etag(&r), a, "{q}");
    }
    for q in [
        "w=33",
        "w=32&q=81",
        "w=32&fm=png",
        "w=32&h=32&fit=cover",
        "w=32&flip=h",
    ] {
        assert_ne!(
            etag(&s.get(&format!("/public/quad.jpg?{q}")).await),
            a,
            "{q}"
        );
    }
    // Strong ETag, quoted.
    assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
}

both_backends!(conditional_requests_get_304);
async fn conditional_requests_get_304(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for path in ["/public/quad.jpg?w=20", "/public/quad.jpg"] {
        let r = s.get(path).await;
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let lm = r.headers()["last-modified"].to_str().unwrap().to_string();
        let r = s.get_with(path, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), 304, "{path}");
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert!(r.headers().get("cache-control").is_some());
        assert!(r.bytes().await.unwrap().is_empty());
        let r = s
            .get_with(path, &[("if-none-match", &format!("W/{etag}, \"x\""))])
            .await;
        assert_eq!(r.status(), 304, "{path} weak");
        let r = s.get_with(path, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(r.status(), 200, "{path} other etag");
        let r = s.get_with(path, &[("if-modified-since", &lm)]).await;
        assert_eq!(r.status(), 304, "{path} IMS");
        let r = s
            .get_with(
                path,
                &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            )
            .await;
        assert_eq!(r.status(), 200, "{path} old IMS");
        // If-None-Match decides when both are present.
        let r = s
            .get_with(
                path,
                &[("if-none-match", "\"other\""), ("if-modified-since", &lm)],
            )
            .await;
        assert_eq!(r.status(), 200, "{path} INM wins");
    }
}

both_backends!(a_304_does_not_render);
async fn a_304_does_not_render(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let r = s.get("/public/quad.jpg?w=21").await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    s.state.caches.variants.invalidate_all();
    s.state.caches.variants.run_pending_tasks().await;
    let before = s.metric("imgorigin_renders_total").await;
    let r = s
        .get_with("/public/quad.jpg?w=21", &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(s.metric("imgorigin_renders_total").await, before);
}

both_backends!(head_has_headers_and_no_body);
async fn head_has_headers_and_no_body(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for path in ["/public/quad.jpg?w=20&fm=webp", "/public/quad.jpg"] {
        let g = s.get(path).await;
        let h = s.client.head(s.url(path)).send().await.unwrap();
        assert_eq!(h.status(), 200);
        for name in [
            "etag",
            "content-type",
            "content-length",
            "cache-control",
            "last-modified",
        ] {
            assert_eq!(h.headers()[name], g.headers()[name], "{path} {name}");
        }
        assert!(h.bytes().await.unwrap().is_empty());
    }
    let r = s
        .client
        .post(s.url("/public/quad.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

both_backends!(traversal_and_bad_keys_are_400);
async fn traversal_and_bad_keys_are_400(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for target in [
        "/public/../public/quad.jpg",
        "/public/%2e%2e/public/quad.jpg",
        "/public/%2E%2E/x",
        "/public/./quad.jpg",
        "//public/quad.jpg",
        "/public//quad.jpg",
        "/public%5cquad.jpg",
        "/public/quad.jpg%00.png",
        "/public/a%0d%0aSet-Cookie:x",
        "/public/%ff.jpg",
        "/..%2f..%2fetc%2fpasswd",
    ] {
        let (status, text) = s.raw(target).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(text.contains("application/problem+json"), "{target}");
    }
}

both_backends!(errors_are_problem_json);
async fn errors_are_problem_json(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let r = s.get("/public/missing.jpg?w=10").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert!(body["type"].is_string() && body["detail"].is_string());

    let r = s.get("/public/notes.txt?w=10").await;
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = s.get("/public/notes.txt").await;
    assert_eq!(r.status(), 415, "non-images are not served raw either");

    let r = s.get("/public/truncated.jpg?w=10").await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["cache-control"], "no-store");

    // Private keys: 403 for a guest whether or not the key exists, so existence is not revealed.
    assert_eq!(s.get("/private/alice/quad.png?w=10").await.status(), 403);
    assert_eq!(s.get("/private/alice/nothing.png?w=10").await.status(), 403);
    assert_eq!(s.get("/protected/alice/quad.png").await.status(), 403);
    assert_eq!(s.get("/other/quad.png").await.status(), 403);
    // Body never echoes a key the caller may not read.
    let text = s
        .get("/private/alice/secret-name.png")
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("secret-name"), "{text}");
}

both_backends!(access_other_public_opens_other_keys_only);
async fn access_other_public_opens_other_keys_only(backend: Backend) {
    let s = TestServer::start_on(backend, "[access]\nother = \"public\"\n").await;
    assert_eq!(s.get("/other/quad.png?w=10").await.status(), 200);
    assert_eq!(s.get("/private/alice/quad.png?w=10").await.status(), 403);
}

#[tokio::test]
async fn health_and_ready() {
    let s = TestServer::start("").await;
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert_eq!(s.get("/readyz").await.status(), 200);
    std::fs::remove_dir_all(&s.root).unwrap();
    let r = s.get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(s.get("/healthz").await.status(), 200);
    // The API prefix is never a key: unknown API routes are 404 problems.
    assert_eq!(s.get("/api/v1/nothing-here").await.status(), 404);
    assert_eq!(s.get("/api/v1/openapi.json").await.status(), 200);
}

both_backends!(request_id_is_echoed_or_generated);
async fn request_id_is_echoed_or_generated(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let r = s.get_with("/healthz", &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.get("/healthz").await;
    assert!(!r.headers()["x-request-id"].is_empty());
}

both_backends!(replaced_original_is_picked_up_after_source_ttl);
async fn replaced_original_is_picked_up_after_source_ttl(backend: Backend) {
    let s = TestServer::start_on(backend, "[cache]\nsource_ttl_s = 0\n").await;
    let path = s.root.join("public/swap.png");
    std::fs::write(&path, solid_png(8, 8, [255, 0, 0, 255])).unwrap();
    let a = s.get("/public/swap.png?w=4&fm=png").await;
    let etag_a = a.headers()["etag"].to_str().unwrap().to_string();
    let img = image::load_from_memory(&a.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0, 255]);
    std::fs::write(&path, solid_png(9, 9, [0, 0, 255, 255])).unwrap();
    let b = s.get("/public/swap.png?w=4&fm=png").await;
    assert_ne!(b.headers()["etag"].to_str().unwrap(), etag_a);
    let img = image::load_from_memory(&b.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0, [0, 0, 255, 255]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.get("/public/swap.png?w=4&fm=png").await.status(), 404);
}

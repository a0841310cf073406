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

use crate::api::{Api, Db, Req, Who};
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

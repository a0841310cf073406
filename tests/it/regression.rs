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

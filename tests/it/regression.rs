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

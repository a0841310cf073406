//! Pins what delivery answers for a set of URLs covering every fit, gravity, output format
//! and effect: status, ETag and a hash of the bytes, against `tests/golden/delivery.tsv`.
//! Written before the structural refactor so that moving code cannot change a response.
//! The S3 backend is used because its ETags come from the content (the folder backend's
//! include the file's mtime and inode).
//!
//! `IMGORIGIN_BLESS=1 cargo test --test it golden` rewrites the file; review the diff.
//! Output bytes depend on the encoders' and resampler's SIMD paths; the file was made on
//! x86-64 with AVX2. On another CPU family bless it and check that only hashes moved.

use crate::support::*;
use sha2::{Digest, Sha256};

const URLS: &[&str] = &[
    "/public/quad.jpg",
    "/public/quad.jpg?w=40",
    "/public/quad.jpg?h=30",
    "/public/quad.jpg?w=40&h=40&fit=cover",
    "/public/quad.jpg?w=40&h=20&fit=cover&g=n",
    "/public/quad.jpg?w=20&h=40&fit=cover&g=se",
    "/public/quad.jpg?w=40&h=20&fit=cover&g=entropy",
    "/public/quad.jpg?w=40&h=40&fit=contain&bg=ff0000",
    "/public/quad.jpg?w=40&h=20&fit=fill",
    "/public/quad.jpg?w=40&h=40&fit=outside",
    "/public/quad.jpg?w=200&enlarge=1",
    "/public/quad.jpg?w=20&dpr=2",
    "/public/quad.jpg?w=40&fm=png",
    "/public/quad.jpg?w=40&fm=webp",
    "/public/quad.jpg?w=40&fm=webp&q=30",
    "/public/quad.jpg?w=40&fm=avif",
    "/public/quad.jpg?w=40&fm=auto",
    "/public/quad.jpg?w=40&q=50",
    "/public/quad.jpg?w=40&blur=2",
    "/public/quad.jpg?w=40&sharpen=1.5",
    "/public/quad.jpg?w=40&rot=90",
    "/public/quad.jpg?w=40&flip=h",
    "/public/quad.jpg?w=40&flip=hv&rot=270",
    "/public/quad.jpg?crop=8,8,32,24&w=16",
    "/public/quad.png?fm=png&wm=logo",
    "/public/orient6.jpg?w=30",
    "/public/alpha.png?w=30",
    "/public/alpha.png?w=30&fm=jpeg&bg=00ff00",
    "/public/alpha.webp?w=30&fm=webp",
    "/public/quad-cmyk.jpg?w=30",
    "/public/quad-progressive.jpg?w=30&fm=png",
    "/public/quad-16bit-gray.png?w=30",
    "/public/anim.gif?w=20&fm=png",
    "/public/quad.webp?w=30&h=10&fit=cover&g=w",
];

#[tokio::test]
async fn delivery_responses_are_pinned() {
    let s = TestServer::start_on(Backend::S3, "").await;
    let mut lines = Vec::new();
    for url in URLS {
        let r = s
            .get_with(url, &[("accept", "image/avif,image/webp,*/*")])
            .await;
        let status = r.status().as_u16();
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.bytes().await.unwrap();
        let hash = hex::encode(&Sha256::digest(&body)[..12]);
        lines.push(format!("{url}\t{status}\t{ct}\t{etag}\t{hash}"));
    }
    let actual = lines.join("\n") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/delivery.tsv");
    if std::env::var_os("IMGORIGIN_BLESS").is_some() {
        std::fs::write(path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).expect("tests/golden/delivery.tsv (bless it)");
    let diffs: Vec<String> = expected
        .lines()
        .zip(actual.lines())
        .filter(|(e, a)| e != a)
        .map(|(e, a)| format!("- {e}\n+ {a}"))
        .collect();
    assert!(
        diffs.is_empty() && expected.lines().count() == actual.lines().count(),
        "delivery changed:\n{}",
        diffs.join("\n")
    );
}

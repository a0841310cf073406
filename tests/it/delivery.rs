//! Transform semantics: parameters, geometry, formats, orientation, pixels.

use crate::support::*;

both_backends!(invalid_parameters_are_400_naming_the_parameter);
async fn invalid_parameters_are_400_naming_the_parameter(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let cases = [
        ("w=0", "w"),
        ("w=-1", "w"),
        ("w=abc", "w"),
        ("w=9000", "w"),
        ("w=1.5", "w"),
        ("h=0", "h"),
        ("h=99999", "h"),
        ("dpr=0.5", "dpr"),
        ("dpr=5", "dpr"),
        ("dpr=x", "dpr"),
        ("dpr=NaN", "dpr"),
        ("fit=stretch", "fit"),
        ("g=up", "g"),
        ("enlarge=2", "enlarge"),
        ("enlarge=yes", "enlarge"),
        ("fm=bmp", "fm"),
        ("fm=JPEG", "fm"),
        ("q=0", "q"),
        ("q=101", "q"),
        ("q=high", "q"),
        ("bg=fff", "bg"),
        ("bg=zzzzzz", "bg"),
        ("bg=1234567", "bg"),
        ("blur=0.1", "blur"),
        ("blur=101", "blur"),
        ("sharpen=0", "sharpen"),
        ("sharpen=11", "sharpen"),
        ("rot=45", "rot"),
        ("rot=-90", "rot"),
        ("flip=x", "flip"),
        ("crop=1,2,3", "crop"),
        ("crop=0,0,0,5", "crop"),
        ("crop=a,b,c,d", "crop"),
        ("crop=-1,0,5,5", "crop"),
        ("wm=nope", "wm"),
        ("w=10&w=20", "w"),
        ("w=", "w"),
        ("bogus=1", "bogus"),
        ("crop=100,100,10,10", "crop"),
    ];
    for (q, name) in cases {
        let r = s.get(&format!("/public/quad.png?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{q}"
        );
        assert_eq!(r.headers()["cache-control"], "no-store", "{q}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], 400);
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{name}`")), "{q}: {detail}");
    }
}

both_backends!(valid_parameters_are_accepted);
async fn valid_parameters_are_accepted(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for q in [
        "w=10",
        "h=10",
        "w=10&dpr=2.5",
        "w=10&h=10&fit=cover&g=entropy",
        "fit=fill&w=5&h=5",
        "fm=png",
        "fm=webp&q=50",
        "fm=jpeg&q=1",
        "bg=ff000080&fm=png",
        "blur=0.3",
        "sharpen=10",
        "rot=270",
        "flip=hv",
        "crop=0,0,10,10",
        "wm=logo&w=60",
        "v=abc123&w=10",
        "enlarge=1&w=100",
        "g=sw&w=10&h=10&fit=contain",
    ] {
        let r = s.get(&format!("/public/quad.png?{q}")).await;
        assert_eq!(r.status(), 200, "{q}: {}", r.text().await.unwrap());
    }
}

both_backends!(output_dimensions_for_every_fit);
/// Source is 64x48.
async fn output_dimensions_for_every_fit(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let cases: &[(&str, (u32, u32))] = &[
        ("w=32", (32, 24)),
        ("h=24", (32, 24)),
        ("w=32&fit=cover", (32, 24)),
        ("w=32&h=32", (32, 24)),
        ("w=32&h=32&fit=inside", (32, 24)),
        ("w=32&h=32&fit=cover", (32, 32)),
        ("w=32&h=32&fit=contain", (32, 32)),
        ("w=32&h=32&fit=fill", (32, 32)),
        ("w=32&h=32&fit=outside", (43, 32)),
        ("w=16&dpr=2", (32, 24)),
        ("w=16&h=16&fit=cover&dpr=1.5", (24, 24)),
        ("w=10&h=30&fit=fill", (10, 30)),
        // Without enlarge a larger box yields at most the source size, box ratio kept.
        ("w=128", (64, 48)),
        ("h=480", (64, 48)),
        ("w=128&h=128&fit=cover", (48, 48)),
        ("w=128&h=128&fit=contain", (64, 64)),
        ("w=128&h=64&fit=fill", (64, 32)),
        ("w=128&h=128&fit=outside", (64, 48)),
        ("w=100&dpr=2", (64, 48)),
        // With enlarge.
        ("w=128&enlarge=1", (128, 96)),
        ("w=128&h=128&fit=cover&enlarge=1", (128, 128)),
        ("w=128&h=128&fit=inside&enlarge=1", (128, 96)),
        ("w=100&dpr=2&enlarge=1", (200, 150)),
        ("w=128&h=64&fit=fill&enlarge=1", (128, 64)),
        // Crop first, then fit.
        ("crop=0,0,32,24", (32, 24)),
        ("crop=0,0,32,24&w=16", (16, 12)),
        ("rot=90", (48, 64)),
        ("rot=90&w=24", (24, 32)),
    ];
    for (q, want) in cases {
        let img = s.image(&format!("/public/quad.png?{q}&fm=png")).await;
        assert_eq!((img.width(), img.height()), *want, "{q}");
    }
}

both_backends!(each_output_format_by_magic_and_decoding);
async fn each_output_format_by_magic_and_decoding(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for (fm, ct) in [
        ("jpeg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
        ("avif", "image/avif"),
    ] {
        let r = s.get(&format!("/public/quad.jpg?w=32&fm={fm}")).await;
        assert_eq!(r.status(), 200, "{fm}");
        assert_eq!(r.headers()["content-type"], ct);
        let len: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), len);
        match fm {
            "jpeg" => assert!(body.starts_with(&[0xFF, 0xD8, 0xFF])),
            "png" => assert!(body.starts_with(b"\x89PNG")),
            "webp" => assert!(&body[0..4] == b"RIFF" && &body[8..12] == b"WEBP"),
            _ => assert!(&body[4..12] == b"ftypavif", "{:?}", &body[..16]),
        }
        if fm != "avif" {
            let img = image::load_from_memory(&body).unwrap().to_rgba8();
            assert_eq!((img.width(), img.height()), (32, 24), "{fm}");
            assert_eq!(quads(&img), QUADS, "{fm}");
        }
    }
}

both_backends!(every_input_kind_decodes);
async fn every_input_kind_decodes(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for f in [
        "quad.jpg",
        "quad-progressive.jpg",
        "quad-cmyk.jpg",
        "quad.png",
        "quad-palette.png",
        "quad.webp",
        "quad-lossless.webp",
        "anim.gif",
    ] {
        let img = s.image(&format!("/public/{f}?w=32&fm=png")).await;
        assert_eq!((img.width(), img.height()), (32, 24), "{f}");
        assert_eq!(quads(&img), QUADS, "{f}");
    }
    // Grayscale inputs: dims and four distinct grey levels in the right order.
    for f in ["quad-gray.jpg", "quad-16bit-gray.png"] {
        let img = s.image(&format!("/public/{f}?w=32&fm=png")).await;
        assert_eq!((img.width(), img.height()), (32, 24), "{f}");
        let l = |x, y| img.get_pixel(x, y).0[0] as i32;
        // Luma of red < green, blue darkest, yellow brightest (BT.601).
        let (r, g, b, y) = (l(8, 6), l(24, 6), l(8, 18), l(24, 18));
        assert!(b < r && r < g && g < y, "{f}: {r} {g} {b} {y}");
    }
}

both_backends!(alpha_inputs_keep_or_flatten_alpha);
async fn alpha_inputs_keep_or_flatten_alpha(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for f in ["alpha.png", "alpha.webp"] {
        let img = s.image(&format!("/public/{f}?w=32&fm=png")).await;
        assert_eq!(img.get_pixel(4, 8).0, [255, 0, 0, 255], "{f}");
        assert_eq!(
            img.get_pixel(28, 8).0[3],
            0,
            "{f}: right half stays transparent"
        );
        // No colour fringe from the transparent (green) pixels at the edge.
        let edge = img.get_pixel(15, 8).0;
        assert!(edge[1] < 40, "{f}: green bled into the edge: {edge:?}");
        // JPEG: flattened onto white by default, onto bg when given.
        let img = s.image(&format!("/public/{f}?w=32&fm=jpeg")).await;
        assert_eq!(at(&img, 0.75, 0.5), Some(C::White), "{f}");
        assert_eq!(at(&img, 0.2, 0.5), Some(C::Red), "{f}");
        let img = s
            .image(&format!("/public/{f}?w=32&fm=jpeg&bg=0000ff"))
            .await;
        assert_eq!(at(&img, 0.75, 0.5), Some(C::Blue), "{f}");
    }
}

both_backends!(exif_orientations_1_to_8);
async fn exif_orientations_1_to_8(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for n in 1..=8 {
        let img = s.image(&format!("/public/orient{n}.jpg?fm=png")).await;
        assert_eq!((img.width(), img.height()), (64, 48), "orientation {n}");
        assert_eq!(quads(&img), QUADS, "orientation {n}");
        // Also through the shrink-on-load path.
        let img = s.image(&format!("/public/orient{n}.jpg?w=32&fm=png")).await;
        assert_eq!(
            (img.width(), img.height()),
            (32, 24),
            "orientation {n}, resized"
        );
        assert_eq!(quads(&img), QUADS, "orientation {n}, resized");
    }
}

both_backends!(crop_rot_flip_by_pixels);
async fn crop_rot_flip_by_pixels(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    use C::*;
    let img = s.image("/public/quad.png?crop=32,0,32,24&fm=png").await;
    assert_eq!((img.width(), img.height()), (32, 24));
    assert_eq!(quads(&img), [Some(Green); 4]);
    let img = s.image("/public/quad.png?crop=16,12,32,24&fm=png").await;
    assert_eq!(
        quads(&img),
        [Some(Red), Some(Green), Some(Blue), Some(Yellow)]
    );
    // Clamped to the image.
    let img = s.image("/public/quad.png?crop=32,24,100,100&fm=png").await;
    assert_eq!((img.width(), img.height()), (32, 24));
    assert_eq!(quads(&img), [Some(Yellow); 4]);
    let cases = [
        ("rot=90", [Blue, Red, Yellow, Green]),
        ("rot=180", [Yellow, Blue, Green, Red]),
        ("rot=270", [Green, Yellow, Red, Blue]),
        ("flip=h", [Green, Red, Yellow, Blue]),
        ("flip=v", [Blue, Yellow, Red, Green]),
        ("flip=hv", [Yellow, Blue, Green, Red]),
        ("rot=90&flip=h", [Red, Blue, Green, Yellow]),
        // Crop applies after rotation: the top-left quarter of the rotated image is blue.
        ("rot=90&crop=0,0,24,32", [Blue, Blue, Blue, Blue]),
    ];
    for (q, want) in cases {
        let img = s.image(&format!("/public/quad.png?{q}&fm=png")).await;
        assert_eq!(quads(&img), want.map(Some), "{q}");
    }
}

both_backends!(cover_gravity_and_contain_padding);
async fn cover_gravity_and_contain_padding(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    use C::*;
    // 64x48 → cover 48x12: keeps a horizontal strip.
    let img = s
        .image("/public/quad.png?w=64&h=12&fit=cover&g=n&fm=png")
        .await;
    assert_eq!((img.width(), img.height()), (64, 12));
    assert_eq!(
        (at(&img, 0.25, 0.5), at(&img, 0.75, 0.5)),
        (Some(Red), Some(Green))
    );
    let img = s
        .image("/public/quad.png?w=64&h=12&fit=cover&g=s&fm=png")
        .await;
    assert_eq!(
        (at(&img, 0.25, 0.5), at(&img, 0.75, 0.5)),
        (Some(Blue), Some(Yellow))
    );
    let img = s
        .image("/public/quad.png?w=12&h=48&fit=cover&g=e&fm=png")
        .await;
    assert_eq!(
        (at(&img, 0.5, 0.25), at(&img, 0.5, 0.75)),
        (Some(Green), Some(Yellow))
    );
    let img = s
        .image("/public/quad.png?w=12&h=48&fit=cover&g=w&fm=png")
        .await;
    assert_eq!(
        (at(&img, 0.5, 0.25), at(&img, 0.5, 0.75)),
        (Some(Red), Some(Blue))
    );
    // contain pads with bg (transparent by default for PNG, white for JPEG).
    let img = s
        .image("/public/quad.png?w=64&h=64&fit=contain&fm=png")
        .await;
    assert_eq!((img.width(), img.height()), (64, 64));
    assert_eq!(img.get_pixel(32, 1).0[3], 0);
    assert_eq!(quads(&img), QUADS);
    let img = s
        .image("/public/quad.png?w=64&h=64&fit=contain&fm=jpeg")
        .await;
    assert_eq!(at(&img, 0.5, 0.02), Some(White));
    let img = s
        .image("/public/quad.png?w=64&h=64&fit=contain&fm=png&bg=000000")
        .await;
    assert_eq!(img.get_pixel(32, 1).0, [0, 0, 0, 255]);
}

both_backends!(entropy_gravity_picks_the_busy_side);
async fn entropy_gravity_picks_the_busy_side(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    // Left half flat grey, right half noise.
    let mut img = image::RgbImage::from_pixel(64, 32, image::Rgb([128, 128, 128]));
    let mut seed = 12345u32;
    for y in 0..32 {
        for x in 32..64 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let v = (seed >> 16) as u8;
            img.put_pixel(x, y, image::Rgb([v, v.wrapping_mul(7), v.wrapping_mul(13)]));
        }
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
    std::fs::write(s.root.join("public/busy.png"), buf.into_inner()).unwrap();
    let out = s
        .image("/public/busy.png?w=32&h=32&fit=cover&g=entropy&fm=png")
        .await;
    let flat = out.pixels().filter(|p| p.0[..3] == [128, 128, 128]).count();
    assert!(
        flat < 32 * 32 / 10,
        "entropy crop kept the flat side: {flat} flat pixels"
    );
    let out = s
        .image("/public/busy.png?w=32&h=32&fit=cover&g=w&fm=png")
        .await;
    let flat = out.pixels().filter(|p| p.0[..3] == [128, 128, 128]).count();
    assert!(flat > 32 * 32 * 9 / 10, "west crop should be flat: {flat}");
}

both_backends!(blur_sharpen_and_watermark_change_pixels);
async fn blur_sharpen_and_watermark_change_pixels(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let plain = s.image("/public/quad.png?fm=png").await;
    let blurred = s.image("/public/quad.png?fm=png&blur=3").await;
    // At the red/green border the blur mixes colours; far from it, colours stay.
    let p = blurred.get_pixel(31, 6).0;
    assert!(p[0] > 60 && p[1] > 60, "no mixing at the border: {p:?}");
    assert_eq!(at(&blurred, 0.1, 0.1), Some(C::Red));
    assert_eq!(plain.get_pixel(31, 6).0, [255, 0, 0, 255]);
    let sharp = s.ok_bytes("/public/quad.jpg?fm=png&sharpen=2").await;
    let soft = s.ok_bytes("/public/quad.jpg?fm=png").await;
    assert_ne!(sharp, soft);
    // The test watermark is a black box in the south-east corner.
    let wm = s.image("/public/quad.png?fm=png&wm=logo").await;
    assert_eq!(at(&wm, 0.9, 0.9), Some(C::Black));
    assert_eq!(at(&wm, 0.1, 0.1), Some(C::Red));
    assert_eq!(at(&plain, 0.9, 0.9), Some(C::Yellow));
}

both_backends!(fm_auto_negotiates_with_vary);
async fn fm_auto_negotiates_with_vary(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let cases = [
        (
            "image/avif,image/webp,*/*",
            "/public/quad.jpg",
            "image/avif",
        ),
        ("image/webp,*/*", "/public/quad.jpg", "image/webp"),
        (
            "image/avif;q=0,image/webp",
            "/public/quad.jpg",
            "image/webp",
        ),
        ("*/*", "/public/quad.jpg", "image/jpeg"),
        ("*/*", "/public/alpha.png", "image/png"),
        ("", "/public/quad.jpg", "image/jpeg"),
    ];
    for (accept, path, want) in cases {
        let r = s
            .get_with(&format!("{path}?w=16&fm=auto"), &[("accept", accept)])
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], want, "Accept: {accept}");
        assert_eq!(r.headers()["vary"], "Accept", "Accept: {accept}");
    }
    // No negotiation, no Vary.
    let r = s
        .get_with("/public/quad.jpg?w=16&fm=webp", &[("accept", "image/avif")])
        .await;
    assert!(r.headers().get("vary").is_none());
    assert_eq!(r.headers()["content-type"], "image/webp");
}

both_backends!(avif_can_be_disabled);
async fn avif_can_be_disabled(backend: Backend) {
    let s = TestServer::start_on(backend, "[format]\navif = false\n").await;
    let r = s
        .get_with(
            "/public/quad.jpg?w=16&fm=auto",
            &[("accept", "image/avif,image/webp")],
        )
        .await;
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert_eq!(s.get("/public/quad.jpg?w=16&fm=avif").await.status(), 400);
}

both_backends!(default_format_keeps_the_source_format);
async fn default_format_keeps_the_source_format(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    for (f, ct) in [
        ("quad.jpg", "image/jpeg"),
        ("quad.png", "image/png"),
        ("quad.webp", "image/webp"),
        // Animated: kept as GIF (tests/it/animation.rs).
        ("anim.gif", "image/gif"),
    ] {
        let r = s.get(&format!("/public/{f}?w=16")).await;
        assert_eq!(r.headers()["content-type"], ct, "{f}");
    }
    let s = TestServer::start_on(backend, "[format]\ndefault = \"webp\"\n").await;
    let r = s.get("/public/quad.png?w=16").await;
    assert_eq!(r.headers()["content-type"], "image/webp");
}

both_backends!(quality_changes_size_but_not_for_png);
async fn quality_changes_size_but_not_for_png(backend: Backend) {
    let s = TestServer::start_on(backend, "").await;
    let lo = s.ok_bytes("/public/orient1.jpg?w=64&fm=jpeg&q=5").await;
    let hi = s.ok_bytes("/public/orient1.jpg?w=64&fm=jpeg&q=100").await;
    assert!(lo.len() < hi.len(), "{} vs {}", lo.len(), hi.len());
    let a = s.get("/public/quad.png?w=64&fm=png&q=5").await;
    let b = s.get("/public/quad.png?w=64&fm=png").await;
    assert_eq!(a.headers()["etag"], b.headers()["etag"]);
}

both_backends!(allowed_widths_round_up);
async fn allowed_widths_round_up(backend: Backend) {
    let s = TestServer::start_on(backend, "[limits]\nallowed_widths = [20, 40, 100]\n").await;
    let img = s.image("/public/quad.png?w=21&enlarge=1&fm=png").await;
    assert_eq!(img.width(), 40);
    let img = s.image("/public/quad.png?w=500&enlarge=1&fm=png").await;
    assert_eq!(img.width(), 100);
    let a = s.get("/public/quad.png?w=21&fm=png").await;
    let b = s.get("/public/quad.png?w=40&fm=png").await;
    assert_eq!(a.headers()["etag"], b.headers()["etag"]);
}

/// The decoded-originals tier: a second width of one original starts from the kept pixels
/// (a decoded-tier hit in /metrics) and gives exactly what a fresh decode gives.
#[tokio::test]
async fn a_new_width_starts_from_kept_pixels_with_the_same_result() {
    let kept = TestServer::start("").await;
    let fresh = TestServer::start("[cache]\ndecoded_bytes = 0\n").await;
    let decoded = |what: &'static str| format!("imgorigin_cache_{what}_total{{tier=\"decoded\"}}");
    for input in ["quad.jpg", "quad.png", "quad-cmyk.jpg", "orient6.jpg"] {
        let warm = kept.get(&format!("/public/{input}?w=40&fm=png")).await;
        assert_eq!(warm.status(), 200, "{input}");
        let url = format!("/public/{input}?w=30&fm=png");
        let from_kept = kept.ok_bytes(&url).await;
        let from_fresh = fresh.ok_bytes(&url).await;
        assert_eq!(
            from_kept, from_fresh,
            "{input}: kept pixels changed the result"
        );
        let img = image::load_from_memory(&from_kept).unwrap().to_rgba8();
        assert_eq!(img.width(), 30, "{input}");
        if input != "orient6.jpg" {
            assert_eq!(quads(&img), QUADS, "{input}");
        }
    }
    assert_eq!(kept.metric(&decoded("misses")).await, 4.0);
    assert_eq!(kept.metric(&decoded("hits")).await, 4.0);
    assert_eq!(fresh.metric(&decoded("hits")).await, 0.0);
    assert!(kept.metric("imgorigin_cache_bytes{tier=\"decoded\"}").await > 0.0);
}

both_backends!(kept_pixels_follow_a_replaced_original);
/// Kept pixels belong to one version of an original: after it is replaced, a width never
/// rendered before shows the new content.
async fn kept_pixels_follow_a_replaced_original(backend: Backend) {
    let s = TestServer::start_on(backend, "[cache]\nsource_ttl_s = 0\n").await;
    let path = s.root.join("public/swap2.png");
    std::fs::write(&path, solid_png(8, 8, [255, 0, 0, 255])).unwrap();
    let red = s.image("/public/swap2.png?w=4&fm=png").await;
    assert_eq!(red.get_pixel(0, 0).0, [255, 0, 0, 255]);
    std::fs::write(&path, solid_png(9, 9, [0, 0, 255, 254])).unwrap();
    let blue = s.image("/public/swap2.png?w=3&fm=png").await;
    assert_eq!(blue.get_pixel(0, 0).0, [0, 0, 255, 254]);
}

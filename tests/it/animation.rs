//! Animated GIF and WebP (SPEC §9): fixtures made by Pillow (and libwebp's gif2webp) at
//! test time, outputs read back with Pillow: frame count, per-frame durations, loop count,
//! dimensions and the colours of every frame.

use crate::support::*;

/// Writes an animation of 80x60 frames to stdout: frame i has its left half in
/// COLOURS[i] and its right half white. argv: format (GIF/WEBP), durations (ms, comma
/// separated), loop ("none" = no loop entry), and optionally "alpha": the colour on the
/// left in even frames and on the right in odd ones, the other half transparent, and a
/// half-transparent grey strip at the top (without partial alpha libwebp's encoder marks
/// the file opaque, leaving transparency to frame disposal, and Pillow then reads black).
const MAKE: &str = r#"
import io, sys
from PIL import Image
fmt, durations, loop = sys.argv[1], [int(d) for d in sys.argv[2].split(",")], sys.argv[3]
alpha = sys.argv[4:] == ["alpha"]
colours = [(230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 240, 20)]
frames = []
for i in range(len(durations)):
    if alpha:
        im = Image.new("RGBA", (80, 60), (0, 0, 0, 0))
        x = 0 if i % 2 == 0 else 40
        im.paste(colours[i % 4] + (255,), (x, 0, x + 40, 60))
        im.paste((128, 128, 128, 128), (0, 0, 80, 8))
    else:
        im = Image.new("RGB", (80, 60), (255, 255, 255))
        im.paste(colours[i % 4], (0, 0, 40, 60))
    frames.append(im)
extra = {} if loop == "none" else {"loop": int(loop)}
if fmt == "WEBP":
    extra["lossless"] = not alpha
if fmt == "GIF" and alpha:
    extra["disposal"] = 2
out = io.BytesIO()
frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=durations, **extra)
sys.stdout.buffer.write(out.getvalue())
"#;

/// Reads an image from stdin and prints JSON: format, size, loop (null when absent) and per
/// frame its duration and the RGB at the middle of its left and right halves.
const READ: &str = r#"
import io, json, sys
from PIL import Image
im = Image.open(io.BytesIO(sys.stdin.buffer.read()))
w, h = im.size
frames = []
for i in range(getattr(im, "n_frames", 1)):
    im.seek(i)
    im.load()
    rgb = im.convert("RGB")
    rgba = im.convert("RGBA")
    frames.append({
        "alpha": [rgba.getpixel((w // 4, h // 2))[3], rgba.getpixel((3 * w // 4, h // 2))[3]],
        "duration": im.info.get("duration"),
        "left": list(rgb.getpixel((w // 4, h // 2))),
        "right": list(rgb.getpixel((3 * w // 4, h // 2))),
        "corner": list(rgb.getpixel((w - 1 - w // 12, h - 1 - h // 12))),
    })
print(json.dumps({"format": im.format, "size": [w, h], "loop": im.info.get("loop"), "frames": frames}))
"#;

const COLOURS: [C; 4] = [C::Red, C::Green, C::Blue, C::Yellow];
const DURATIONS: [u64; 4] = [100, 200, 300, 400];

fn make(format: &str, durations: &[u64], looping: Option<u32>) -> Vec<u8> {
    let d: Vec<String> = durations.iter().map(u64::to_string).collect();
    let looping = looping.map_or("none".to_string(), |l| l.to_string());
    run_python(MAKE, &[format, &d.join(","), &looping], b"")
}

/// The "alpha" variant of [`MAKE`], looping forever.
fn make_transparent(format: &str, durations: &[u64]) -> Vec<u8> {
    let d: Vec<String> = durations.iter().map(u64::to_string).collect();
    run_python(MAKE, &[format, &d.join(","), "0", "alpha"], b"")
}

#[derive(Debug)]
struct Anim {
    format: String,
    size: (u32, u32),
    /// Pillow's `loop`: the GIF NETSCAPE repeat count / the WebP ANIM loop count.
    looping: Option<u64>,
    durations: Vec<u64>,
    /// Alpha at the middle of the left and the right half.
    alpha: Vec<[u8; 2]>,
    /// Colour classes of the left half, the right half and near the bottom-right corner.
    left: Vec<Option<C>>,
    right: Vec<Option<C>>,
    corner: Vec<Option<C>>,
}

fn read(bytes: &[u8]) -> Anim {
    let out = run_python(READ, &[], bytes);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json from the reader");
    let frames = v["frames"].as_array().expect("frames");
    let colour = |f: &serde_json::Value, k: &str| {
        let c: Vec<u8> = f[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        classify([c[0], c[1], c[2], 255])
    };
    Anim {
        format: v["format"].as_str().unwrap().to_string(),
        size: (
            v["size"][0].as_u64().unwrap() as u32,
            v["size"][1].as_u64().unwrap() as u32,
        ),
        looping: v["loop"].as_u64(),
        durations: frames
            .iter()
            .map(|f| f["duration"].as_u64().unwrap_or(0))
            .collect(),
        alpha: frames
            .iter()
            .map(|f| {
                let a = |i: usize| f["alpha"][i].as_u64().unwrap() as u8;
                [a(0), a(1)]
            })
            .collect(),
        left: frames.iter().map(|f| colour(f, "left")).collect(),
        right: frames.iter().map(|f| colour(f, "right")).collect(),
        corner: frames.iter().map(|f| colour(f, "corner")).collect(),
    }
}

/// GET with an `Accept` header, expecting 200 of `content_type`; the decoded animation.
async fn get_anim(s: &TestServer, path: &str, accept: &str, content_type: &str) -> Anim {
    let r = s.get_with(path, &[("accept", accept)]).await;
    let status = r.status();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    assert_eq!(ct, content_type, "{path}");
    read(&body)
}

fn colours(n: usize) -> Vec<Option<C>> {
    (0..n).map(|i| Some(COLOURS[i % 4])).collect()
}

fn all(n: usize, c: C) -> Vec<Option<C>> {
    vec![Some(c); n]
}

async fn server_with(files: &[(&str, Vec<u8>)], extra: &str) -> TestServer {
    let s = TestServer::start(extra).await;
    for (name, bytes) in files {
        std::fs::write(s.root.join("public").join(name), bytes).unwrap();
    }
    s
}

#[tokio::test]
async fn animations_keep_frames_durations_and_loop_count() {
    let gif = make("GIF", &DURATIONS, Some(2));
    let webp = make("WEBP", &DURATIONS, Some(0));
    // The fixtures are what we think they are.
    let src = read(&gif);
    assert_eq!((src.format.as_str(), src.looping), ("GIF", Some(2)));
    assert_eq!(src.durations, DURATIONS);
    assert_eq!(src.left, colours(4));
    let src = read(&webp);
    assert_eq!((src.format.as_str(), src.looping), ("WEBP", Some(0)));
    assert_eq!(src.durations, DURATIONS);

    let s = server_with(&[("a.gif", gif), ("a.webp", webp)], "").await;
    // (path, Accept, content type, Pillow's loop value of the output)
    // A GIF repeat count n plays n + 1 times, a WebP loop count n plays n times: GIF's 2
    // becomes WebP's 3 and WebP's 0 (forever) stays 0.
    let cases = [
        ("/public/a.gif?w=40&fm=webp", "*/*", "image/webp", Some(3)),
        ("/public/a.gif?w=40&fm=gif", "*/*", "image/gif", Some(2)),
        ("/public/a.gif?w=40", "*/*", "image/gif", Some(2)),
        (
            "/public/a.gif?w=40&fm=auto",
            "image/avif,image/webp,*/*",
            "image/webp",
            Some(3),
        ),
        // No WebP in Accept: the animation is kept as GIF.
        (
            "/public/a.gif?w=40&fm=auto",
            "image/png,image/*;q=0.8",
            "image/gif",
            Some(2),
        ),
        ("/public/a.webp?w=40&fm=webp", "*/*", "image/webp", Some(0)),
        ("/public/a.webp?w=40", "*/*", "image/webp", Some(0)),
        ("/public/a.webp?w=40&fm=gif", "*/*", "image/gif", Some(0)),
        (
            "/public/a.webp?w=40&fm=auto",
            "image/avif,image/webp",
            "image/webp",
            Some(0),
        ),
    ];
    for (path, accept, ct, looping) in cases {
        let a = get_anim(&s, path, accept, ct).await;
        assert_eq!(a.size, (40, 30), "{path}");
        assert_eq!(a.looping, looping, "{path}");
        assert_eq!(a.durations, DURATIONS, "{path}");
        assert_eq!(a.left, colours(4), "{path}");
        assert_eq!(a.right, all(4, C::White), "{path}");
    }
    // Effects apply to every frame, in order.
    for (path, ct) in [
        ("/public/a.gif?w=40&flip=h&fm=webp", "image/webp"),
        ("/public/a.webp?w=40&flip=h&fm=gif", "image/gif"),
    ] {
        let a = get_anim(&s, path, "*/*", ct).await;
        assert_eq!(a.left, all(4, C::White), "{path}");
        assert_eq!(a.right, colours(4), "{path}");
        assert_eq!(a.durations, DURATIONS, "{path}");
    }
}

#[tokio::test]
async fn gif_without_loop_extension_plays_once() {
    let gif = make("GIF", &DURATIONS[..3], None);
    assert_eq!(read(&gif).looping, None);
    let webp = make("WEBP", &DURATIONS[..3], Some(1));
    let s = server_with(&[("once.gif", gif), ("once.webp", webp)], "").await;
    // Played once: WebP loop count 1; a GIF without the NETSCAPE extension.
    let a = get_anim(&s, "/public/once.gif?w=20&fm=webp", "*/*", "image/webp").await;
    assert_eq!(
        (a.looping, a.durations.as_slice()),
        (Some(1), &DURATIONS[..3])
    );
    let a = get_anim(&s, "/public/once.gif?w=20&fm=gif", "*/*", "image/gif").await;
    assert_eq!((a.looping, a.durations.len()), (None, 3));
    let a = get_anim(&s, "/public/once.webp?w=20&fm=gif", "*/*", "image/gif").await;
    assert_eq!((a.looping, a.left), (None, colours(3)));
}

#[tokio::test]
async fn first_frame_only_for_still_formats_and_frame_first() {
    let gif = make("GIF", &DURATIONS, Some(0));
    let webp = make("WEBP", &DURATIONS, Some(0));
    let s = server_with(&[("a.gif", gif), ("a.webp", webp)], "").await;
    for (path, ct) in [
        ("/public/a.gif?w=40&fm=jpeg", "image/jpeg"),
        ("/public/a.gif?w=40&fm=png", "image/png"),
        ("/public/a.gif?w=40&frame=first", "image/png"),
        ("/public/a.gif?w=40&fm=gif&frame=first", "image/gif"),
        ("/public/a.webp?w=40&frame=first", "image/webp"),
        ("/public/a.webp?w=40&fm=jpeg", "image/jpeg"),
    ] {
        let a = get_anim(&s, path, "*/*", ct).await;
        assert_eq!(a.size, (40, 30), "{path}");
        assert_eq!(a.left, vec![Some(C::Red)], "{path}");
        assert_eq!(a.right, vec![Some(C::White)], "{path}");
    }
    // `frame=first` is its own variant where it changes the output, and none where not.
    let etag = |r: reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
    let anim = etag(s.get("/public/a.gif?w=40&fm=gif").await);
    let first = etag(s.get("/public/a.gif?w=40&fm=gif&frame=first").await);
    assert_ne!(anim, first);
    let jpeg = etag(s.get("/public/a.gif?w=40&fm=jpeg").await);
    let jpeg_first = etag(s.get("/public/a.gif?w=40&fm=jpeg&frame=first").await);
    assert_eq!(jpeg, jpeg_first);
    assert_eq!(s.get("/public/a.gif?frame=last").await.status(), 400);
    // A still source is unaffected by `frame=first`, and `fm=gif` writes a still GIF.
    let img = s.image("/public/quad.png?w=32&fm=gif&frame=first").await;
    assert_eq!(quads(&img), QUADS);
}

#[tokio::test]
async fn watermark_and_cover_crop_on_every_frame() {
    let gif = make("GIF", &DURATIONS, Some(0));
    let s = server_with(&[("a.gif", gif)], "").await;
    // The `logo` watermark (black, a quarter of the width, bottom right) on every frame.
    let a = get_anim(&s, "/public/a.gif?w=80&wm=logo&fm=gif", "*/*", "image/gif").await;
    assert_eq!(a.corner, all(4, C::Black));
    assert_eq!(a.left, colours(4));
    // A cover crop to the left 30x60 of each frame: the whole output is the frame colour.
    let a = get_anim(
        &s,
        "/public/a.gif?w=30&h=60&fit=cover&g=w&fm=webp",
        "*/*",
        "image/webp",
    )
    .await;
    assert_eq!(a.size, (30, 60));
    assert_eq!((a.left, a.right), (colours(4), colours(4)));
}

/// gif2webp (libwebp's own converter, independent of ours) writes frames as sub-rectangles
/// with blending: they must be composited onto the canvas before resizing.
#[tokio::test]
async fn webp_from_gif2webp_is_composited() {
    let gif = make("GIF", &DURATIONS, Some(0));
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("a.gif"), dir.path().join("a.webp"));
    std::fs::write(&src, &gif).unwrap();
    let status = std::process::Command::new("gif2webp")
        .args(["-quiet", "-lossy", "-q", "90"])
        .arg(&src)
        .arg("-o")
        .arg(&dst)
        .status()
        .expect("gif2webp (Debian package webp; scripts/build-tools.sh installs it)");
    assert!(status.success());
    let webp = std::fs::read(&dst).unwrap();
    let s = server_with(&[("g2w.webp", webp)], "").await;
    let a = get_anim(&s, "/public/g2w.webp?w=40&fm=gif", "*/*", "image/gif").await;
    assert_eq!(a.durations, DURATIONS);
    assert_eq!(a.left, colours(4));
    assert_eq!(a.right, all(4, C::White));
}

/// Transparent areas stay transparent and never show the previous frame (Pillow writes
/// the WebP with libwebp's encoder: sub-rectangles with "dispose to background").
#[tokio::test]
async fn transparent_frames_do_not_show_the_previous_frame() {
    let gif = make_transparent("GIF", &DURATIONS);
    let webp = make_transparent("WEBP", &DURATIONS);
    let expected_alpha: Vec<[u8; 2]> = (0..4)
        .map(|i| if i % 2 == 0 { [255, 0] } else { [0, 255] })
        .collect();
    for src in [&gif, &webp] {
        assert_eq!(read(src).alpha, expected_alpha);
    }
    let s = server_with(&[("t.gif", gif), ("t.webp", webp)], "").await;
    for (path, ct) in [
        ("/public/t.gif?w=40&fm=webp", "image/webp"),
        ("/public/t.gif?w=40&fm=gif", "image/gif"),
        ("/public/t.webp?w=40&fm=webp", "image/webp"),
        ("/public/t.webp?w=40&fm=gif", "image/gif"),
    ] {
        let a = get_anim(&s, path, "*/*", ct).await;
        assert_eq!(a.alpha, expected_alpha, "{path}");
        assert_eq!(a.durations, DURATIONS, "{path}");
        // The opaque half of each frame has that frame's colour.
        let opaque: Vec<Option<C>> = (0..4)
            .map(|i| if i % 2 == 0 { a.left[i] } else { a.right[i] })
            .collect();
        assert_eq!(opaque, colours(4), "{path}");
    }
}

/// A GIF of `n` 1x1 frames (a few bytes each), black and white by turns, on a `w`x`h`
/// logical screen, by hand: the declared sizes are what the limits read, before any frame
/// is decoded.
fn tiny_frames_gif(n: usize, (w, h): (u16, u16)) -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&w.to_le_bytes());
    g.extend_from_slice(&h.to_le_bytes());
    g.extend_from_slice(&[0x80, 0, 0]); // global table of 2 colours
    g.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    g.extend_from_slice(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00");
    for i in 0..n {
        g.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]); // 100 ms
        g.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        // LZW, minimum code size 2: clear (4), the pixel's index, end (5), 3 bits each.
        let code = if i % 2 == 0 { 0x44 } else { 0x4C };
        g.extend_from_slice(&[2, 2, code, 0x01, 0]);
    }
    g.push(0x3B);
    g
}

/// An animated WebP of `n` tiny frames whose VP8X canvas is patched to `w`x`h`.
fn webp_with_canvas(n: usize, (w, h): (u32, u32)) -> Vec<u8> {
    let durations = vec![100; n];
    let mut webp = make("WEBP", &durations, Some(0));
    assert_eq!(&webp[12..16], b"VP8X");
    webp[24..27].copy_from_slice(&(w - 1).to_le_bytes()[..3]);
    webp[27..30].copy_from_slice(&(h - 1).to_le_bytes()[..3]);
    webp
}

#[tokio::test]
async fn animation_limits_are_422_from_the_header() {
    // 301 frames (300 is the default limit), and 5 frames of a 10000x10000 canvas: 500 MP
    // decoded over the default 400 MP (4 x max_source_pixels), each frame within it.
    let many = tiny_frames_gif(301, (1, 1));
    assert!(many.len() < 8 << 10, "{} bytes", many.len());
    let huge_gif = tiny_frames_gif(5, (10000, 10000));
    let huge_webp = webp_with_canvas(5, (10000, 10000));
    assert!(huge_webp.len() < 4 << 10, "{} bytes", huge_webp.len());
    let s = server_with(
        &[
            ("many.gif", many),
            ("huge.gif", huge_gif),
            ("huge.webp", huge_webp),
            ("ok.gif", tiny_frames_gif(300, (1, 1))),
        ],
        "",
    )
    .await;
    let _ = s.get("/public/ok.gif?w=1&fm=webp").await;
    let before = rss_bytes();
    for (path, detail) in [
        ("/public/many.gif?w=1&fm=webp", "301 frames"),
        ("/public/many.gif?w=1&fm=gif", "301 frames"),
        ("/public/many.gif?w=1", "301 frames"),
        ("/public/huge.gif?w=10&fm=webp", "500000000 pixels"),
        ("/public/huge.webp?w=10", "500000000 pixels"),
        ("/public/huge.webp?w=10&fm=gif", "500000000 pixels"),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 422, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        let text = body["detail"].as_str().unwrap();
        assert!(text.contains(detail), "{path}: {text}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 50 << 20, "RSS grew by {} MB", grown >> 20);
    // At the limit it renders, with every frame.
    let a = get_anim(&s, "/public/ok.gif?w=1&fm=webp", "*/*", "image/webp").await;
    assert_eq!(a.durations.len(), 300);
    // Only the first frame counts when only the first frame is used.
    for path in [
        "/public/many.gif?w=1&fm=png",
        "/public/many.gif?w=1&frame=first",
    ] {
        assert_eq!(s.get(path).await.status(), 200, "{path}");
    }
    let s = TestServer::start("[limits]\nmax_animation_frames = 3\n").await;
    std::fs::write(
        s.root.join("public/four.gif"),
        make("GIF", &DURATIONS, None),
    )
    .unwrap();
    assert_eq!(s.get("/public/four.gif?w=8&fm=gif").await.status(), 422);
    assert_eq!(s.get("/public/four.gif?w=8&fm=jpeg").await.status(), 200);
}

#[tokio::test]
async fn animated_output_counts_every_frame_against_the_output_cap() {
    let gif = make("GIF", &DURATIONS, Some(0));
    let s = server_with(&[("a.gif", gif)], "[limits]\nmax_output_pixels = 10000\n").await;
    // 4 frames of 40x30 = 4800 pixels fit; 4 of 80x60 = 19200 do not.
    assert_eq!(s.get("/public/a.gif?w=40&fm=webp").await.status(), 200);
    let r = s.get("/public/a.gif?w=80&fm=webp").await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    let text = body["detail"].as_str().unwrap();
    assert!(text.contains("4 frames of 80x60"), "{text}");
    assert_eq!(
        s.get("/public/a.gif?w=80&fm=webp&frame=first")
            .await
            .status(),
        200
    );
}

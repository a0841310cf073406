//! Pipeline benchmarks: decode (JPEG at full and DCT-scaled sizes, PNG, WebP), resize,
//! encode per output format, a whole `render`, and animated GIF/WebP renders.
//!
//! Inputs come from `../shared/corpus` (relative to the crate root) when it exists; without
//! it, generated images are used so the repository stands alone.
//!
//! Quick subset: `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3 'encode|render'`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use imgorigin::cache::Decoded;
use imgorigin::media::OutputFormat;
use imgorigin::params::Transform;
use imgorigin::pipeline::bench::{self, Pixels};
use imgorigin::pipeline::{AvifEncoder, AvifSettings, RenderOptions, render, render_with};

/// The server's default AVIF encoder and speed.
const AVIF: AvifSettings = AvifSettings {
    encoder: AvifEncoder::Aom,
    speed: AvifEncoder::Aom.default_speed(),
};
const AVIF_RAV1E: AvifSettings = AvifSettings {
    encoder: AvifEncoder::Rav1e,
    speed: 9,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// A corpus file, or `fallback` (encoded in the same format) when it is missing.
fn input(name: &str, fallback: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    match std::fs::read(corpus_dir().join(name)) {
        Ok(bytes) => bytes,
        Err(_) => {
            println!("note: {name} not found in ../shared/corpus; using a generated image");
            fallback()
        }
    }
}

fn pattern(w: u32, h: u32, alpha: bool) -> image::DynamicImage {
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 7;
        image::Rgb([(x / 8) as u8, (y / 8) as u8, v as u8])
    });
    let img = image::DynamicImage::ImageRgb8(rgb);
    if alpha {
        let mut rgba = img.to_rgba8();
        for (x, _, p) in rgba.enumerate_pixels_mut() {
            p.0[3] = (x % 256) as u8;
        }
        image::DynamicImage::ImageRgba8(rgba)
    } else {
        img
    }
}

fn encoded(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if img.write_to(&mut out, format).is_err() {
        // JPEG cannot hold alpha: drop it.
        let rgb = image::DynamicImage::ImageRgb8(img.to_rgb8());
        out = std::io::Cursor::new(Vec::new());
        rgb.write_to(&mut out, format)
            .expect("encode fallback input");
    }
    out.into_inner()
}

fn camera_jpeg() -> Vec<u8> {
    input("camera-12mp-olympus-ep3.jpg", || {
        encoded(&pattern(4032, 3024, false), image::ImageFormat::Jpeg)
    })
}

fn decode_benches(c: &mut Criterion) {
    let jpeg = camera_jpeg();
    let png = input("alpha-2048.png", || {
        encoded(&pattern(2048, 1536, true), image::ImageFormat::Png)
    });
    let webp = input("input-1024.webp", || {
        encoded(&pattern(1024, 772, false), image::ImageFormat::WebP)
    });
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for shrink in [1u32, 2, 4, 8] {
        g.bench_function(format!("jpeg-12mp-1/{shrink}"), |b| {
            b.iter(|| bench::decode(black_box(&jpeg), shrink).expect("decode"))
        });
    }
    g.bench_function("png-2048-rgba", |b| {
        b.iter(|| bench::decode(black_box(&png), 1).expect("decode"))
    });
    g.bench_function("webp-1024", |b| {
        b.iter(|| bench::decode(black_box(&webp), 1).expect("decode"))
    });
    g.finish();
}

fn resize_benches(c: &mut Criterion) {
    let jpeg = camera_jpeg();
    let full = bench::decode(&jpeg, 1).expect("decode");
    let quarter = bench::decode(&jpeg, 4).expect("decode");
    let mut g = c.benchmark_group("resize");
    g.sample_size(10);
    g.bench_function(
        format!("lanczos3-{}x{}-to-400", full.width(), full.height()),
        |b| b.iter(|| bench::resize(black_box(&full), 400).expect("resize")),
    );
    g.bench_function(
        format!("lanczos3-{}x{}-to-400", quarter.width(), quarter.height()),
        |b| b.iter(|| bench::resize(black_box(&quarter), 400).expect("resize")),
    );
    g.finish();
}

fn encode_benches(c: &mut Criterion) {
    // A real photo scaled to 400×300 when available: encoders behave differently on
    // photos than on synthetic patterns.
    let jpeg = camera_jpeg();
    let img: Pixels = bench::decode(&jpeg, 8)
        .and_then(|p| bench::resize(&p, 400))
        .unwrap_or_else(|_| bench::synthetic(400, 300));
    let mut g = c.benchmark_group("encode");
    g.sample_size(10);
    for (name, format, q, avif) in [
        ("jpeg-q80", OutputFormat::Jpeg, 80, AVIF),
        ("png", OutputFormat::Png, 0, AVIF),
        ("webp-q80", OutputFormat::Webp, 80, AVIF),
        ("avif-aom-q60", OutputFormat::Avif, 60, AVIF),
        ("avif-rav1e-q60", OutputFormat::Avif, 60, AVIF_RAV1E),
    ] {
        g.bench_function(format!("{name}-{}x{}", img.width(), img.height()), |b| {
            b.iter(|| bench::encode(black_box(&img), format, q, avif).expect("encode"))
        });
    }
    g.finish();
}

fn render_benches(c: &mut Criterion) {
    let jpeg = camera_jpeg();
    let mut t = Transform::for_format(OutputFormat::Webp, 80);
    t.width = Some(400);
    let opts = RenderOptions {
        max_output: (8192, 8192),
        max_source_pixels: 100_000_000,
        max_output_pixels: 40_000_000,
        max_avif_output_pixels: 8_388_608,
        max_animation_frames: 300,
        max_animation_pixels: 400_000_000,
        avif: AVIF,
        watermark: None,
    };
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    g.bench_function("jpeg-12mp-to-webp-w400", |b| {
        b.iter(|| render(black_box(&jpeg), &t, &opts).expect("render"))
    });
    // A miss-jpeg request: decode at the shrink-on-load scale, resize, encode; and the same
    // with the decode already kept by the decoded-originals tier (another width of the
    // same original was rendered before).
    let mut t = Transform::for_format(OutputFormat::Jpeg, 80);
    t.width = Some(800);
    g.bench_function("jpeg-12mp-to-jpeg-w800", |b| {
        b.iter(|| render(black_box(&jpeg), &t, &opts).expect("render"))
    });
    let tier = Decoded::new(256 << 20);
    let kept = tier.of("camera.jpg", "etag");
    render_with(&jpeg, &t, &opts, Some(&kept)).expect("render");
    g.bench_function("jpeg-12mp-to-jpeg-w800-kept-decode", |b| {
        b.iter(|| render_with(black_box(&jpeg), &t, &opts, Some(&kept)).expect("render"))
    });
    g.finish();
}

/// A generated animation like a typical web GIF: 480x270, 48 frames of 40 ms, a smooth
/// background that drifts and a moving block (so neighbouring frames differ everywhere a
/// little and somewhere a lot).
fn animated_gif() -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let (w, h) = (480u32, 270u32);
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut out, 10);
        enc.set_repeat(Repeat::Infinite).expect("repeat");
        for f in 0..48u32 {
            let frame = image::RgbaImage::from_fn(w, h, |x, y| {
                let (bx, by) = (f * 8, 100 + f);
                if x >= bx && x < bx + 60 && y >= by && y < by + 60 {
                    image::Rgba([230, 30, 30, 255])
                } else {
                    image::Rgba([((x + f * 2) / 2) as u8, (y / 2) as u8, 128, 255])
                }
            });
            let delay = image::Delay::from_numer_denom_ms(40, 1);
            enc.encode_frame(image::Frame::from_parts(frame, 0, 0, delay))
                .expect("frame");
        }
    }
    out
}

fn animation_benches(c: &mut Criterion) {
    let opts = RenderOptions {
        max_output: (8192, 8192),
        max_source_pixels: 100_000_000,
        max_output_pixels: 40_000_000,
        max_avif_output_pixels: 8_388_608,
        max_animation_frames: 300,
        max_animation_pixels: 400_000_000,
        avif: AVIF,
        watermark: None,
    };
    let gif = animated_gif();
    let webp = render(&gif, &Transform::for_format(OutputFormat::Webp, 80), &opts)
        .expect("animated webp")
        .bytes;
    let mut g = c.benchmark_group("animation");
    g.sample_size(10);
    for (name, input) in [("gif", &gif), ("webp", &webp)] {
        for fm in [OutputFormat::Webp, OutputFormat::Gif] {
            let mut t = Transform::for_format(fm, 80);
            t.width = Some(240);
            g.bench_function(format!("{name}-480x270x48-to-{}-w240", fm.name()), |b| {
                b.iter(|| render(black_box(input), &t, &opts).expect("render"))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = decode_benches, resize_benches, encode_benches, render_benches, animation_benches
}
criterion_main!(benches);

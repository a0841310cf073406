//! End-to-end tests of `render`/`probe` on small images generated here.
#![allow(clippy::disallowed_methods)] // tests decode outputs to check pixels

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, Frame, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

use super::*;
use crate::params::{CropRect, Fit, Gravity, OutputFormat, Transform};

const RED: [u8; 3] = [230, 20, 20];
const GREEN: [u8; 3] = [20, 200, 20];
const BLUE: [u8; 3] = [20, 20, 230];
const YELLOW: [u8; 3] = [240, 240, 20];
const PALETTE: [[u8; 3]; 4] = [RED, GREEN, BLUE, YELLOW];

/// TL red, TR green, BL blue, BR yellow. Not square, so axis swaps show.
fn quadrants(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb(match (x < w / 2, y < h / 2) {
            (true, true) => RED,
            (false, true) => GREEN,
            (true, false) => BLUE,
            (false, false) => YELLOW,
        })
    })
}

/// Index into PALETTE of the nearest colour.
fn classify(p: [u8; 3]) -> usize {
    let dist = |c: [u8; 3]| -> u32 {
        (0..3)
            .map(|i| (i32::from(p[i]) - i32::from(c[i])).unsigned_abs().pow(2))
            .sum()
    };
    (0..4).min_by_key(|&i| dist(PALETTE[i])).unwrap_or(0)
}

/// Colour classes at the centres of the four quadrants: [TL, TR, BL, BR].
fn sample_quadrants(img: &RgbImage) -> [usize; 4] {
    let (w, h) = img.dimensions();
    let at = |x: u32, y: u32| classify(img.get_pixel(x, y).0);
    [
        at(w / 4, h / 4),
        at(3 * w / 4, h / 4),
        at(w / 4, 3 * h / 4),
        at(3 * w / 4, 3 * h / 4),
    ]
}

fn encode_jpeg(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(img)
        .expect("jpeg");
    out
}

fn encode_png(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .expect("png");
    out
}

fn encode_webp(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .expect("webp");
    out
}

fn encode_gif(frames: &[RgbaImage]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        enc.encode_frames(frames.iter().map(|f| Frame::new(f.clone())))
            .expect("gif");
    }
    out
}

fn encode_as(img: &DynamicImage, f: SourceFormat) -> Vec<u8> {
    match f {
        SourceFormat::Jpeg => encode_jpeg(img),
        SourceFormat::Png => encode_png(img),
        SourceFormat::Webp => encode_webp(img),
        SourceFormat::Gif => encode_gif(&[img.to_rgba8()]),
    }
}

fn opts() -> RenderOptions<'static> {
    RenderOptions {
        max_output: (8192, 8192),
        max_source_pixels: 50_000_000,
        max_output_pixels: 40_000_000,
        max_avif_output_pixels: 8_388_608,
        avif_speed: 10,
        watermark: None,
    }
}

fn png_out() -> Transform {
    Transform::for_format(OutputFormat::Png, 0)
}

fn render_rgb(input: &[u8], t: &Transform) -> RgbImage {
    let out = render(input, t, &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("decode output");
    assert_eq!((img.width(), img.height()), (out.width, out.height));
    img.to_rgb8()
}

#[test]
fn every_input_to_every_output() {
    let src = DynamicImage::ImageRgb8(quadrants(64, 48));
    let inputs = [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Webp,
        SourceFormat::Gif,
    ];
    let outputs = [
        (OutputFormat::Jpeg, 80),
        (OutputFormat::Png, 0),
        (OutputFormat::Webp, 90),
        (OutputFormat::Avif, 60),
    ];
    for input in inputs {
        let bytes = encode_as(&src, input);
        let info = probe(&bytes).expect("probe");
        assert_eq!((info.format, info.width, info.height), (input, 64, 48));
        for (fm, q) in outputs {
            let mut t = Transform::for_format(fm, q);
            t.width = Some(32);
            let out = render(&bytes, &t, &opts()).expect("render");
            assert_eq!((out.width, out.height, out.format), (32, 24, fm));
            let magic_ok = match fm {
                OutputFormat::Jpeg => out.bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
                OutputFormat::Png => out.bytes.starts_with(b"\x89PNG"),
                OutputFormat::Webp => out.bytes.get(8..12) == Some(b"WEBP"),
                OutputFormat::Avif => out.bytes.get(4..12) == Some(b"ftypavif"),
            };
            assert!(magic_ok, "{input:?} -> {fm:?}: bad magic");
            if fm == OutputFormat::Avif {
                assert!(out.bytes.len() > 100);
                continue;
            }
            let img = image::load_from_memory(&out.bytes).expect("decode output");
            assert_eq!((img.width(), img.height()), (32, 24));
            assert_eq!(
                sample_quadrants(&img.to_rgb8()),
                [0, 1, 2, 3],
                "{input:?} -> {fm:?}"
            );
        }
    }
}

#[test]
fn input_variants_decode() {
    let q = quadrants(40, 30);
    let gray = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(q.clone()).to_luma8());
    let rgb16 = DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(q.clone()).to_rgb16());
    let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
        40,
        30,
        image::LumaA([100, 128]),
    ));
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("gray jpeg", encode_jpeg(&gray), false),
        ("gray png", encode_png(&gray), false),
        ("16-bit png", encode_png(&rgb16), false),
        ("gray+alpha png", encode_png(&la), true),
        (
            "rgba webp",
            encode_webp(&DynamicImage::ImageRgba8(
                DynamicImage::ImageRgb8(q.clone()).to_rgba8(),
            )),
            true,
        ),
    ];
    for (name, bytes, alpha) in cases {
        let info = probe(&bytes).expect(name);
        assert_eq!(
            (info.width, info.height, info.has_alpha),
            (40, 30, alpha),
            "{name}"
        );
        let img = render_rgb(&bytes, &png_out());
        assert_eq!(img.dimensions(), (40, 30), "{name}");
    }
    // The 16-bit PNG keeps its colours when reduced to 8 bits.
    let img = render_rgb(&encode_png(&rgb16), &png_out());
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
}

#[test]
fn palette_png_with_transparency() {
    // Hand-encode an indexed PNG with a tRNS chunk through the png crate's API via image:
    // image has no palette encoder, so build the file from parts.
    let bytes = palette_png();
    let info = probe(&bytes).expect("probe");
    assert_eq!((info.width, info.height, info.has_alpha), (2, 1, true));
    let mut t = png_out();
    t.format = OutputFormat::Png;
    let out = render(&bytes, &t, &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes)
        .expect("decode")
        .to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0[3], 0);
    assert_eq!(img.get_pixel(1, 0).0, [0, 0, 255, 255]);
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn ihdr(w: u32, h: u32, depth: u8, color: u8) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&w.to_be_bytes());
    d.extend_from_slice(&h.to_be_bytes());
    d.extend_from_slice(&[depth, color, 0, 0, 0]);
    d
}

fn palette_png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(2, 1, 8, 3));
    png_chunk(&mut out, b"PLTE", &[255, 0, 0, 0, 0, 255]);
    png_chunk(&mut out, b"tRNS", &[0, 255]);
    // Filter byte 0, indices 0 and 1; zlib stored block.
    let raw = [0u8, 0, 1];
    let mut z = vec![0x78, 0x01, 0x01, 3, 0, 0xFC, 0xFF];
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn huge_png_header_fails_fast() {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut bytes, b"IHDR", &ihdr(60_000, 60_000, 8, 6));
    let start = std::time::Instant::now();
    let err = render(&bytes, &png_out(), &opts()).expect_err("must fail");
    assert!(
        matches!(
            err,
            PipelineError::TooManyPixels {
                width: 60_000,
                height: 60_000,
                limit: 50_000_000
            }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(50));
    // probe still answers: it never decodes.
    let info = probe(&bytes).expect("probe");
    assert_eq!(
        (info.width, info.height, info.has_alpha),
        (60_000, 60_000, true)
    );
}

#[test]
fn pixel_limit_applies_to_every_format() {
    let src = DynamicImage::ImageRgb8(quadrants(64, 48));
    for f in [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Webp,
        SourceFormat::Gif,
    ] {
        let o = RenderOptions {
            max_output: (8192, 8192),
            max_source_pixels: 64 * 48 - 1,
            ..opts()
        };
        let err = render(&encode_as(&src, f), &png_out(), &o).expect_err("limit");
        assert!(
            matches!(err, PipelineError::TooManyPixels { .. }),
            "{f:?}: {err:?}"
        );
    }
}

#[test]
fn truncated_and_garbage_inputs() {
    let noise = RgbImage::from_fn(64, 64, |x, y| {
        Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, (x ^ y) as u8])
    });
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(noise.clone()));
    for cut in [jpeg.len() * 6 / 10, jpeg.len() - 2, 40, 3] {
        let err = render(&jpeg[..cut], &png_out(), &opts()).expect_err("truncated jpeg");
        assert!(
            matches!(err, PipelineError::Corrupt(_)),
            "cut {cut}: {err:?}"
        );
    }
    let png = encode_png(&DynamicImage::ImageRgb8(noise.clone()));
    let err = render(&png[..png.len() / 2], &png_out(), &opts()).expect_err("truncated png");
    assert!(matches!(err, PipelineError::Corrupt(_)), "{err:?}");
    let webp = encode_webp(&DynamicImage::ImageRgb8(noise));
    let err = render(&webp[..webp.len() / 2], &png_out(), &opts()).expect_err("truncated webp");
    assert!(matches!(err, PipelineError::Corrupt(_)), "{err:?}");

    let mut state = 0x1234_5678u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    for bytes in [
        &random[..],
        b"",
        b"BM\x36\x00\x00\x00",
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
        b"II*\x00\x08\x00\x00\x00",
    ] {
        let err = render(bytes, &png_out(), &opts()).expect_err("garbage");
        assert!(matches!(err, PipelineError::Unsupported(_)), "{err:?}");
        assert!(matches!(probe(bytes), Err(PipelineError::Unsupported(_))));
    }
}

/// (rot, flip_h, flip_v, expected quadrant classes, expected size)
type OrientCase = (u16, bool, bool, [usize; 4], (u32, u32));

#[test]
fn rotate_flip_crop_quadrants() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    // Expected [TL, TR, BL, BR] classes (0 red, 1 green, 2 blue, 3 yellow).
    let cases: &[OrientCase] = &[
        (0, false, false, [0, 1, 2, 3], (64, 48)),
        (90, false, false, [2, 0, 3, 1], (48, 64)),
        (180, false, false, [3, 2, 1, 0], (64, 48)),
        (270, false, false, [1, 3, 0, 2], (48, 64)),
        (0, true, false, [1, 0, 3, 2], (64, 48)),
        (0, false, true, [2, 3, 0, 1], (64, 48)),
        (0, true, true, [3, 2, 1, 0], (64, 48)),
        (90, true, false, [0, 2, 1, 3], (48, 64)),
    ];
    for &(rot, fh, fv, want, dims) in cases {
        let mut t = png_out();
        t.rotate = rot;
        t.flip_h = fh;
        t.flip_v = fv;
        let img = render_rgb(&png, &t);
        assert_eq!(img.dimensions(), dims, "rot {rot} h {fh} v {fv}");
        assert_eq!(sample_quadrants(&img), want, "rot {rot} h {fh} v {fv}");
        // The same with a resize (crop/resize happen before orientation internally).
        t.width = Some(dims.0 / 2);
        let img = render_rgb(&png, &t);
        assert_eq!(img.dimensions(), (dims.0 / 2, dims.1 / 2));
        assert_eq!(
            sample_quadrants(&img),
            want,
            "resized rot {rot} h {fh} v {fv}"
        );
    }

    // Crop is in coordinates after rotation: the top-right quadrant of the 90°-rotated image
    // (48×64) is the source's top-left (red) quadrant.
    let mut t = png_out();
    t.rotate = 90;
    t.crop = Some(CropRect {
        x: 24,
        y: 0,
        width: 24,
        height: 32,
    });
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (24, 32));
    assert!(img.pixels().all(|p| classify(p.0) == 0));
    // Crop + resize.
    t.width = Some(12);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (12, 16));
    assert!(img.pixels().all(|p| classify(p.0) == 0));

    // Clamped crop.
    let mut t = png_out();
    t.crop = Some(CropRect {
        x: 40,
        y: 30,
        width: 1000,
        height: 1000,
    });
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (24, 18));
    assert!(img.pixels().all(|p| classify(p.0) == 3));

    // Outside or empty.
    for c in [
        CropRect {
            x: 64,
            y: 0,
            width: 5,
            height: 5,
        },
        CropRect {
            x: 0,
            y: 0,
            width: 0,
            height: 5,
        },
    ] {
        t.crop = Some(c);
        let err = render(&png, &t, &opts()).expect_err("crop outside");
        assert!(
            matches!(err, PipelineError::InvalidParam { param: "crop", .. }),
            "{err:?}"
        );
    }
}

/// Splices an APP1 Exif segment with orientation `o` right after SOI.
fn with_exif_orientation(jpeg: &[u8], o: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&o.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_all_eight() {
    let src = quadrants(64, 48);
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(src.clone()));
    for o in 1..=8u16 {
        let input = with_exif_orientation(&jpeg, o);
        // What a viewer shows.
        let mut expected = DynamicImage::ImageRgb8(src.clone());
        expected.apply_orientation(Orientation::from_exif(o as u8).expect("valid orientation"));
        let expected = expected.to_rgb8();
        let info = probe(&input).expect("probe");
        assert_eq!((info.width, info.height), (64, 48), "stored size");

        let img = render_rgb(&input, &png_out());
        assert_eq!(img.dimensions(), expected.dimensions(), "orientation {o}");
        assert_eq!(
            sample_quadrants(&img),
            sample_quadrants(&expected),
            "orientation {o}"
        );

        // With shrink-on-load (target ≤ half the source) and a crop of the top-left
        // quadrant in displayed coordinates.
        let (ew, eh) = expected.dimensions();
        let mut t = png_out();
        t.width = Some(ew / 4);
        let img = render_rgb(&input, &t);
        assert_eq!(img.dimensions(), (ew / 4, eh / 4), "orientation {o} shrunk");
        assert_eq!(
            sample_quadrants(&img),
            sample_quadrants(&expected),
            "orientation {o} shrunk"
        );
        t.crop = Some(CropRect {
            x: 0,
            y: 0,
            width: ew / 2,
            height: eh / 2,
        });
        t.width = Some(ew / 8);
        let img = render_rgb(&input, &t);
        let want = classify(expected.get_pixel(0, 0).0);
        assert!(
            img.pixels().all(|p| classify(p.0) == want),
            "orientation {o} crop"
        );
    }
}

#[test]
fn jpeg_shrink_on_load_keeps_quality() {
    // 256×192 JPEG to 32 px wide: decoded at 1/4 then resampled.
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(quadrants(256, 192)));
    let mut t = png_out();
    t.width = Some(32);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (32, 24));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
    // Fully inside a quadrant the colour is close to the original.
    let p = img.get_pixel(4, 4).0;
    assert!(p.iter().zip(RED).all(|(a, b)| a.abs_diff(b) < 12), "{p:?}");
}

#[test]
fn flatten_onto_red_background() {
    let src = RgbaImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([20, 20, 230, 255])
        }
    });
    let png = encode_png(&DynamicImage::ImageRgba8(src));
    let mut t = Transform::for_format(OutputFormat::Jpeg, 90);
    t.background = Some([255, 0, 0, 255]);
    let img = render_rgb(&png, &t);
    let left = img.get_pixel(5, 10).0;
    let right = img.get_pixel(35, 10).0;
    assert!(left[0] > 240 && left[1] < 15 && left[2] < 15, "{left:?}");
    assert_eq!(classify(right), 2);
    // Default JPEG background is white.
    let img = render_rgb(&png, &Transform::for_format(OutputFormat::Jpeg, 90));
    assert!(img.get_pixel(5, 10).0.iter().all(|&c| c > 245));
    // PNG output keeps the transparency.
    let out = render(&png, &png_out(), &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(5, 10).0[3], 0);
}

#[test]
fn cover_north_keeps_top_and_contain_pads() {
    let src = RgbImage::from_fn(40, 80, |_, y| Rgb(if y < 40 { RED } else { BLUE }));
    let png = encode_png(&DynamicImage::ImageRgb8(src));
    let mut t = png_out();
    t.width = Some(20);
    t.height = Some(20);
    t.fit = Fit::Cover;
    t.gravity = Gravity::North;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (20, 20));
    assert!(img.pixels().all(|p| classify(p.0) == 0), "top must be red");
    t.gravity = Gravity::South;
    let img = render_rgb(&png, &t);
    assert!(
        img.pixels().all(|p| classify(p.0) == 2),
        "bottom must be blue"
    );

    // Contain: 40×80 into 40×40 → 20×40 centred, padded with green.
    t.width = Some(40);
    t.height = Some(40);
    t.fit = Fit::Contain;
    t.gravity = Gravity::Center;
    t.background = Some([20, 200, 20, 255]);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 40));
    assert_eq!(classify(img.get_pixel(2, 20).0), 1);
    assert_eq!(classify(img.get_pixel(37, 20).0), 1);
    assert_eq!(classify(img.get_pixel(20, 5).0), 0);
    assert_eq!(classify(img.get_pixel(20, 35).0), 2);
    // Contain to PNG with the default (transparent) background.
    t.background = None;
    let out = render(&png, &t, &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(2, 20).0[3], 0);
    assert_eq!(img.get_pixel(20, 20).0[3], 255);
}

#[test]
fn entropy_gravity_picks_texture() {
    let src = RgbImage::from_fn(120, 40, |x, y| {
        if x < 60 {
            Rgb([128, 128, 128])
        } else {
            let v = ((x * 7919 + y * 104_729) ^ (x * y * 31)) as u8;
            Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
        }
    });
    let png = encode_png(&DynamicImage::ImageRgb8(src));
    let mut t = png_out();
    t.width = Some(40);
    t.height = Some(40);
    t.fit = Fit::Cover;
    t.gravity = Gravity::Entropy;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 40));
    let flat = img.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    assert!(
        flat < 40,
        "window should be on the noisy half, {flat} flat pixels"
    );
}

#[test]
fn enlarge_rules_end_to_end() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(40, 30)));
    let mut t = png_out();
    t.width = Some(400);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 30));
    t.enlarge = true;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (400, 300));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
}

#[test]
fn animated_gif_uses_first_frame() {
    let red = RgbaImage::from_pixel(16, 16, Rgba([RED[0], RED[1], RED[2], 255]));
    let blue = RgbaImage::from_pixel(16, 16, Rgba([BLUE[0], BLUE[1], BLUE[2], 255]));
    let gif = encode_gif(&[red, blue]);
    let img = render_rgb(&gif, &png_out());
    assert_eq!(img.dimensions(), (16, 16));
    assert!(img.pixels().all(|p| classify(p.0) == 0));
}

#[test]
fn cmyk_jpeg_decodes() {
    // libjpeg-turbo writes an Adobe (inverted) CMYK JPEG from CMYK pixels.
    let (w, h) = (32usize, 16usize);
    let pixels = vec![0u8; w * h * 4];
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 4,
        height: h,
        format: turbojpeg::PixelFormat::CMYK,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(90).expect("quality");
    let jpeg = c.compress_to_vec(image).expect("cmyk jpeg");
    let img = render_rgb(&jpeg, &png_out());
    assert_eq!(img.dimensions(), (32, 16));
    let mut t = png_out();
    t.width = Some(8);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (8, 4));
}

#[test]
fn blur_and_sharpen_run() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    let mut t = png_out();
    t.blur = Some(3.0);
    let img = render_rgb(&png, &t);
    // The boundary between red and green gets mixed.
    let mid = img.get_pixel(32, 12).0;
    assert!(mid[0] > 60 && mid[1] > 60, "{mid:?}");
    let mut t = png_out();
    t.sharpen = Some(1.0);
    t.blur = Some(50.0);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (64, 48));
}

#[test]
fn watermark_bottom_right() {
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 80, Rgb([255, 255, 255])));
    let png = encode_png(&white);
    let mark = encode_png(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        10,
        10,
        Rgb([0, 0, 0]),
    )));
    let wm = Watermark::from_bytes(&mark, Gravity::SouthEast, 1.0, 0.2).expect("wm");
    let o = RenderOptions {
        max_output: (8192, 8192),
        watermark: Some(&wm),
        ..opts()
    };
    let out = render(&png, &png_out(), &o).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgb8();
    // 20×20 black square, 2 px (2% of 100) from the bottom-right corner.
    assert_eq!(img.get_pixel(88, 68).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(78, 58).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(98, 78).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(10, 10).0, [255, 255, 255]);
    // Half opacity gives grey.
    let wm = Watermark::from_bytes(&mark, Gravity::NorthWest, 0.5, 0.2).expect("wm");
    let o = RenderOptions {
        max_output: (8192, 8192),
        watermark: Some(&wm),
        ..opts()
    };
    let out = render(&png, &png_out(), &o).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgb8();
    let p = img.get_pixel(10, 10).0;
    assert!(p[0].abs_diff(128) <= 2, "{p:?}");
    // Bad parameters.
    assert!(Watermark::from_bytes(&mark, Gravity::Center, 1.5, 0.2).is_err());
    assert!(Watermark::from_bytes(&mark, Gravity::Center, 1.0, 0.0).is_err());
    assert!(matches!(
        Watermark::from_bytes(b"nope", Gravity::Center, 1.0, 0.5),
        Err(PipelineError::Unsupported(_))
    ));
}

#[test]
fn probe_reads_headers_only() {
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(7, 5, Rgba([1, 2, 3, 4])));
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 5, Rgb([1, 2, 3])));
    let cases = [
        (encode_png(&rgba), SourceFormat::Png, true),
        (encode_png(&rgb), SourceFormat::Png, false),
        (encode_webp(&rgba), SourceFormat::Webp, true),
        (encode_webp(&rgb), SourceFormat::Webp, false),
        (encode_jpeg(&rgb), SourceFormat::Jpeg, false),
        (encode_gif(&[rgb.to_rgba8()]), SourceFormat::Gif, false),
    ];
    for (bytes, format, alpha) in cases {
        let info = probe(&bytes).expect("probe");
        assert_eq!(
            info,
            SourceInfo {
                format,
                width: 7,
                height: 5,
                has_alpha: alpha,
                frames: 1,
            }
        );
        // Headers survive losing the pixel data.
        let head = &bytes[..bytes.len().min(64)];
        if format != SourceFormat::Jpeg {
            assert_eq!(probe(head).map(|i| i.width).ok(), Some(7), "{format:?}");
        }
    }
    // Lossy WebP header (VP8).
    let lossy = webp::Encoder::from_rgb(rgb.as_bytes(), 7, 5)
        .encode_simple(false, 80.0)
        .expect("lossy webp")
        .to_vec();
    let info = probe(&lossy).expect("probe");
    assert_eq!((info.width, info.height, info.has_alpha), (7, 5, false));
}

#[test]
fn progressive_jpeg_and_embedded_icc() {
    // Progressive JPEG from libjpeg-turbo, with shrink-on-load.
    let q = quadrants(128, 96);
    let image = turbojpeg::Image {
        pixels: q.as_raw().as_slice(),
        width: 128,
        pitch: 128 * 3,
        height: 96,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(90).expect("quality");
    c.set_progressive(true).expect("progressive");
    let jpeg = c.compress_to_vec(image).expect("progressive jpeg");
    let mut t = png_out();
    t.width = Some(32);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (32, 24));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);

    // A PNG tagged Display P3 is converted to sRGB; one tagged sRGB is left alone.
    let px = RgbImage::from_pixel(8, 8, Rgb([40, 200, 60]));
    for (profile, changed) in [
        (moxcms::ColorProfile::new_display_p3(), true),
        (moxcms::ColorProfile::new_srgb(), false),
    ] {
        let mut bytes = Vec::new();
        let mut enc = PngEncoder::new(&mut bytes);
        enc.set_icc_profile(profile.encode().expect("icc"))
            .expect("icc supported");
        enc.write_image(px.as_raw(), 8, 8, image::ExtendedColorType::Rgb8)
            .expect("png");
        let out = render_rgb(&bytes, &png_out());
        assert_eq!(out.get_pixel(4, 4).0 != [40, 200, 60], changed);
        // Output carries no ICC profile.
        let raw = render(&bytes, &png_out(), &opts()).expect("render").bytes;
        assert!(!raw.windows(4).any(|w| w == b"iCCP"));
    }
}

#[test]
fn animated_and_lossy_alpha_webp() {
    let red = RgbaImage::from_pixel(16, 16, Rgba([RED[0], RED[1], RED[2], 255]));
    let blue = RgbaImage::from_pixel(16, 16, Rgba([BLUE[0], BLUE[1], BLUE[2], 255]));
    let config = webp::WebPConfig::new().expect("config");
    let mut enc = webp::AnimEncoder::new(16, 16, &config);
    enc.add_frame(webp::AnimFrame::from_rgba(red.as_raw(), 16, 16, 0));
    enc.add_frame(webp::AnimFrame::from_rgba(blue.as_raw(), 16, 16, 100));
    let anim = enc.try_encode().expect("animated webp").to_vec();
    let info = probe(&anim).expect("probe");
    assert_eq!(
        (info.format, info.width, info.height),
        (SourceFormat::Webp, 16, 16)
    );
    let img = render_rgb(&anim, &png_out());
    assert!(
        img.pixels().all(|p| classify(p.0) == 0),
        "first frame is red"
    );

    // Lossy WebP with an alpha plane (VP8X + ALPH + VP8).
    let half = RgbaImage::from_fn(16, 16, |x, _| {
        if x < 8 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([BLUE[0], BLUE[1], BLUE[2], 255])
        }
    });
    let lossy = webp::Encoder::from_rgba(half.as_raw(), 16, 16)
        .encode_simple(false, 90.0)
        .expect("lossy alpha webp")
        .to_vec();
    assert!(probe(&lossy).expect("probe").has_alpha);
    let out = render(&lossy, &png_out(), &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(2, 8).0[3], 0);
    assert_eq!(img.get_pixel(13, 8).0[3], 255);
}

/// Minimal big-endian TIFF with one Orientation entry.
fn exif_tiff(o: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&o.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff
}

/// `src` as an extended WebP with an EXIF orientation of `o`.
fn webp_with_exif(src: &RgbImage, o: u16) -> Vec<u8> {
    let simple = encode_webp(&DynamicImage::ImageRgb8(src.clone()));
    // Rewrap as extended WebP: VP8X (EXIF flag) + the image chunk + an EXIF chunk.
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x08, 0, 0, 0]);
    body.extend_from_slice(&63u32.to_le_bytes()[..3]);
    body.extend_from_slice(&47u32.to_le_bytes()[..3]);
    body.extend_from_slice(&simple[12..]);
    let tiff = exif_tiff(o);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(tiff.len() as u32).to_le_bytes());
    body.extend_from_slice(&tiff);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend_from_slice(&body);
    webp
}

#[test]
fn webp_exif_orientation() {
    let src = quadrants(64, 48);
    let webp = webp_with_exif(&src, 6);

    let info = probe(&webp).expect("probe");
    assert_eq!((info.width, info.height), (64, 48));
    let img = render_rgb(&webp, &png_out());
    let mut expected = DynamicImage::ImageRgb8(src);
    expected.apply_orientation(Orientation::Rotate90);
    assert_eq!(img.dimensions(), (48, 64));
    assert_eq!(
        sample_quadrants(&img),
        sample_quadrants(&expected.to_rgb8())
    );
}

// Render cost (finding 3): output pixel caps, decided from the plan before decoding.

fn capped(pixels: u64, avif_pixels: u64) -> RenderOptions<'static> {
    RenderOptions {
        max_output_pixels: pixels,
        max_avif_output_pixels: avif_pixels,
        ..opts()
    }
}

fn param_of(e: PipelineError) -> &'static str {
    match e {
        PipelineError::InvalidParam { param, .. } => param,
        other => panic!("not a parameter error: {other:?}"),
    }
}

#[test]
fn output_pixel_caps_per_format() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    let o = capped(1000, 500);
    let sized = |w: Option<u32>, h: Option<u32>, fit: Fit, format: OutputFormat| Transform {
        width: w,
        height: h,
        fit,
        ..Transform::for_format(format, 60)
    };
    // Full size (3072 px) is over the cap: the size is what to change.
    let full = png_out();
    assert_eq!(param_of(check_output(&png, &full, &o).unwrap_err()), "w");
    assert_eq!(param_of(render(&png, &full, &o).unwrap_err()), "w");
    let h_only = sized(None, Some(40), Fit::Inside, OutputFormat::Png);
    assert_eq!(param_of(check_output(&png, &h_only, &o).unwrap_err()), "h");
    // 30x23 = 690 px: fine for PNG, over the AVIF cap, which names `fm`.
    let t = sized(Some(30), None, Fit::Inside, OutputFormat::Png);
    check_output(&png, &t, &o).expect("png fits");
    assert_eq!(render_rgb_with(&png, &t, &o).dimensions(), (30, 23));
    let t = sized(Some(30), None, Fit::Inside, OutputFormat::Avif);
    let err = check_output(&png, &t, &o).unwrap_err();
    assert!(err.to_string().contains("30x23 (690 pixels)"), "{err}");
    assert_eq!(param_of(err), "fm");
    assert_eq!(param_of(render(&png, &t, &o).unwrap_err()), "fm");
    let t = sized(Some(20), None, Fit::Inside, OutputFormat::Avif);
    check_output(&png, &t, &o).expect("20x15 avif fits");
    // A cover crop's resampled intermediate (53x40 for a 10x40 box) counts too.
    let t = sized(Some(10), Some(40), Fit::Cover, OutputFormat::Png);
    assert_eq!(param_of(check_output(&png, &t, &o).unwrap_err()), "w");
    // Contain pads: the canvas is the output.
    let t = sized(Some(40), Some(40), Fit::Contain, OutputFormat::Png);
    check_output(&png, &t, &capped(1600, 1600)).expect("40x40 fits");
    assert_eq!(
        param_of(check_output(&png, &t, &capped(1599, 1599)).unwrap_err()),
        "w"
    );
}

#[test]
fn output_cap_is_checked_before_decoding() {
    // A header claiming 10000x5000 with no pixel data: refused for its size, not as corrupt.
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut bytes, b"IHDR", &ihdr(10_000, 5_000, 8, 6));
    let err = render(&bytes, &png_out(), &opts()).unwrap_err();
    assert_eq!(param_of(err), "w");
}

#[test]
fn output_cap_pre_check_allows_either_axis_order_without_jpeg_exif() {
    // 64x48 stored, shown 48x64 (EXIF in the WebP): a 10x10 crop at y=50 exists only in
    // the displayed orientation. The header-only check cannot know that, so it must not
    // refuse; the render, which knows, succeeds.
    let webp = webp_with_exif(&quadrants(64, 48), 6);
    let t = Transform {
        crop: Some(CropRect {
            x: 0,
            y: 50,
            width: 10,
            height: 10,
        }),
        ..png_out()
    };
    check_output(&webp, &t, &opts()).expect("pre-check");
    assert_eq!(render_rgb(&webp, &t).dimensions(), (10, 10));
    // With JPEG the orientation is in the header: exact before decoding.
    let jpeg = with_exif_orientation(&encode_jpeg(&DynamicImage::ImageRgb8(quadrants(64, 48))), 6);
    check_output(&jpeg, &t, &opts()).expect("rotated jpeg");
    let outside = Transform {
        crop: Some(CropRect {
            x: 50,
            y: 0,
            width: 10,
            height: 10,
        }),
        ..png_out()
    };
    assert_eq!(
        param_of(check_output(&jpeg, &outside, &opts()).unwrap_err()),
        "crop"
    );
}

fn render_rgb_with(input: &[u8], t: &Transform, o: &RenderOptions) -> RgbImage {
    let out = render(input, t, o).expect("render");
    image::load_from_memory(&out.bytes)
        .expect("decode output")
        .to_rgb8()
}

// ---- Decoder bombs (security review, issue 11): caps and counts read from headers ----

/// A JPEG with `chunks` ICC_PROFILE APP2 segments of `len` bytes each, in reverse order.
fn jpeg_with_icc_chunks(chunks: u8, len: usize) -> Vec<u8> {
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        8,
        8,
        Rgb([1, 2, 3]),
    )));
    let mut out = jpeg[..2].to_vec();
    for seq in (1..=chunks).rev() {
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((len + 16) as u16).to_be_bytes());
        out.extend_from_slice(b"ICC_PROFILE\0");
        out.extend_from_slice(&[seq, chunks]);
        out.extend(std::iter::repeat_n(seq, len));
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn jpeg_icc_profile_is_capped_and_borrowed() {
    let one = jpeg_with_icc_chunks(1, 1000);
    let h = detect::read_header(&one).expect("header");
    let icc = h.jpeg.as_ref().and_then(|m| m.icc_profile()).expect("icc");
    assert!(matches!(icc, std::borrow::Cow::Borrowed(_)));
    assert_eq!(icc.len(), 1000);

    let two = jpeg_with_icc_chunks(2, 1000);
    let h = detect::read_header(&two).expect("header");
    let icc = h.jpeg.as_ref().and_then(|m| m.icc_profile()).expect("icc");
    assert_eq!((icc[0], icc[1999]), (1, 2), "reassembled in sequence order");

    // 70 x 60000 bytes > 4 MiB: ignored, and the image still decodes.
    let big = jpeg_with_icc_chunks(70, 60_000);
    let h = detect::read_header(&big).expect("header");
    let meta = h.jpeg.as_ref().expect("meta");
    assert!(meta.icc_profile().is_none());
    assert!(meta.icc_chunks.is_empty());
    assert_eq!(render_rgb(&big, &png_out()).dimensions(), (8, 8));
}

#[test]
fn png_iccp_is_inflated_with_a_cap() {
    let zlib = |data: &[u8]| {
        let mut png = Vec::new();
        let mut enc = PngEncoder::new(&mut png);
        enc.set_icc_profile(data.to_vec()).expect("icc");
        enc.write_image(&[0, 0, 0], 1, 1, image::ExtendedColorType::Rgb8)
            .expect("png");
        let h = detect::read_header(&png).expect("header");
        h.png_iccp.expect("iCCP").to_vec()
    };
    let small = zlib(&[7; 1000]);
    assert_eq!(decode::png_icc(&small), Some(vec![7; 1000]));
    let at_cap = zlib(&vec![7; detect::MAX_ICC_BYTES]);
    assert_eq!(
        decode::png_icc(&at_cap).map(|p| p.len()),
        Some(detect::MAX_ICC_BYTES)
    );
    let over = zlib(&vec![7; detect::MAX_ICC_BYTES + 1]);
    assert_eq!(decode::png_icc(&over), None);
    assert_eq!(decode::png_icc(b"\0\0garbage"), None, "empty keyword");
}

#[test]
fn jpeg_scans_are_counted() {
    let q = quadrants(64, 48);
    let image = turbojpeg::Image {
        pixels: q.as_raw().as_slice(),
        width: 64,
        pitch: 64 * 3,
        height: 48,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_progressive(true).expect("progressive");
    let jpeg = c.compress_to_vec(image).expect("jpeg");
    let h = detect::read_header(&jpeg).expect("header");
    let scan = h.jpeg.as_ref().expect("meta").scan_offset;
    let naive = jpeg.windows(2).filter(|w| w == &[0xFF, 0xDA]).count() as u32;
    assert!(naive > 3, "{naive}");
    assert_eq!(detect::jpeg_scan_count(&jpeg, scan, 1000), naive);
    let baseline = encode_jpeg(&q.into());
    let h = detect::read_header(&baseline).expect("header");
    let at = h.jpeg.as_ref().expect("meta").scan_offset;
    assert_eq!(detect::jpeg_scan_count(&baseline, at, 1000), 1);

    // The last scan repeated: counted, and counting stops just past the limit.
    let eoi = jpeg.len() - 2;
    let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let mut bomb = jpeg[..eoi].to_vec();
    for _ in 0..500 {
        bomb.extend_from_slice(&jpeg[last..eoi]);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(detect::jpeg_scan_count(&bomb, scan, 1000), naive + 500);
    assert_eq!(detect::jpeg_scan_count(&bomb, scan, 100), 101);
    let err = render(&bomb, &png_out(), &opts()).expect_err("refused");
    assert!(err.to_string().contains("100 scans"), "{err}");

    // 0xFF 0xDA inside a segment payload is not a scan.
    let mut com = jpeg[..eoi].to_vec();
    com.extend_from_slice(&[0xFF, 0xFE, 0, 6, 0xFF, 0xDA, 0xFF, 0xDA, 0xFF, 0xD9]);
    assert_eq!(detect::jpeg_scan_count(&com, scan, 1000), naive);
}

#[test]
fn gif_frames_are_counted_and_checked() {
    let frames: Vec<RgbaImage> = (0..3)
        .map(|i| RgbaImage::from_pixel(4, 4, Rgba([i * 80, 0, 0, 255])))
        .collect();
    let gif = encode_gif(&frames);
    assert_eq!(probe(&gif).expect("probe").frames, 3);

    // The logical screen patched down to 2x2: the 4x4 frame is what counts.
    let mut small_screen = encode_gif(&frames[..1]);
    small_screen[6..10].copy_from_slice(&[2, 0, 2, 0]);
    let h = detect::read_header(&small_screen).expect("header");
    assert_eq!((h.width, h.height, h.largest_frame), (2, 2, (4, 4)));
    let tight = RenderOptions {
        max_source_pixels: 15,
        ..opts()
    };
    let err = render(&small_screen, &png_out(), &tight).expect_err("refused");
    assert!(
        matches!(
            err,
            PipelineError::TooManyPixels {
                width: 4,
                height: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        check(&small_screen, 15),
        Err(PipelineError::TooManyPixels { .. })
    ));
    // Within the limit it decodes, clipped to the screen.
    assert_eq!(render_rgb(&small_screen, &png_out()).dimensions(), (2, 2));
}

#[test]
fn animated_webp_frames_are_counted() {
    let config = webp::WebPConfig::new().expect("config");
    let mut enc = webp::AnimEncoder::new(16, 16, &config);
    let px = RgbaImage::from_pixel(16, 16, Rgba([1, 2, 3, 255]));
    let px2 = RgbaImage::from_pixel(16, 16, Rgba([200, 2, 3, 255]));
    for (i, f) in [&px, &px2, &px].into_iter().enumerate() {
        enc.add_frame(webp::AnimFrame::from_rgba(
            f.as_raw(),
            16,
            16,
            i as i32 * 100,
        ));
    }
    let anim = enc.try_encode().expect("animated webp").to_vec();
    let h = detect::read_header(&anim).expect("header");
    assert_eq!(h.frames, 3);
    assert!(h.largest_frame.0 <= 16 && h.largest_frame.1 <= 16);
    assert_eq!(probe(&encode_webp(&px.into())).expect("probe").frames, 1);
}

//! End-to-end tests of `render`/`probe` on small images generated here, by subject in
//! the child files; the image builders and encoders they share are here.
#![allow(clippy::disallowed_methods)] // tests decode outputs to check pixels

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, Frame, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

use super::*;
use crate::media::OutputFormat;
use crate::params::{CropRect, Fit, Gravity, Transform};
use libheif_rs::CompressionFormat;

mod animation;
mod decoders;
mod effects;
mod formats;
mod geometry;
mod limits;

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
        SourceFormat::Heic | SourceFormat::Heif => encode_heif(img, CompressionFormat::Hevc),
        SourceFormat::Avif => encode_heif(img, CompressionFormat::Av1),
    }
}

/// HEIC (x265) or AVIF (libaom) through libheif at high quality; 4:2:0 like phones write.
fn encode_heif(img: &DynamicImage, format: libheif_rs::CompressionFormat) -> Vec<u8> {
    use libheif_rs::{Channel, ColorSpace, EncoderQuality, HeifContext, Image, LibHeif, RgbChroma};
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut image = Image::new(w, h, ColorSpace::Rgb(RgbChroma::Rgba)).expect("image");
    image
        .create_plane(Channel::Interleaved, w, h, 8)
        .expect("plane");
    {
        let plane = image.planes_mut().interleaved.expect("interleaved");
        for (dst, src) in plane
            .data
            .chunks_mut(plane.stride)
            .zip(rgba.as_raw().chunks_exact(w as usize * 4))
        {
            dst[..src.len()].copy_from_slice(src);
        }
    }
    let lib = LibHeif::new();
    let mut enc = lib.encoder_for_format(format).expect("encoder");
    enc.set_quality(EncoderQuality::Lossy(95)).expect("quality");
    let mut ctx = HeifContext::new().expect("context");
    ctx.encode_image(&image, &mut enc, None).expect("encode");
    ctx.write_to_bytes().expect("write")
}

/// Render options of the pipeline's unit tests (plan tests use them too).
pub(super) fn opts() -> RenderOptions<'static> {
    RenderOptions {
        max_output: (8192, 8192),
        max_source_pixels: 50_000_000,
        max_output_pixels: 40_000_000,
        max_avif_output_pixels: 8_388_608,
        max_animation_frames: 300,
        max_animation_pixels: 200_000_000,
        avif: AvifSettings {
            encoder: AvifEncoder::Rav1e,
            speed: 10,
        },
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

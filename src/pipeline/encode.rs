//! Encoders: 8-bit sRGB pixels in, file bytes out, no metadata written.
//!
//! JPEG uses libjpeg-turbo (baseline, 4:2:0, optimised Huffman tables), markedly faster than `image`'s encoder; PNG
//! uses `image` with fast compression and adaptive filtering (the usual speed/size balance
//! for on-the-fly output); WebP uses libwebp (lossy, method 4); AVIF uses libaom (as sharp
//! does) through libavif, or rav1e through ravif (`format.avif_encoder`).

use image::{DynamicImage, ImageEncoder};

use super::effects::{flatten, is_opaque};
use super::{AvifEncoder, AvifSettings, PipelineError};
use crate::media::OutputFormat;

/// Largest side libwebp can encode.
const WEBP_MAX: u32 = 16383;
/// Largest side a JPEG header can declare.
const JPEG_MAX: u32 = 65535;

pub(crate) fn encode(
    img: DynamicImage,
    format: OutputFormat,
    quality: u8,
    avif: AvifSettings,
) -> Result<Vec<u8>, PipelineError> {
    // Drop an all-opaque alpha channel: smaller PNG/WebP and fewer bytes to push around.
    let img = if img.color().has_alpha() && is_opaque(&img) {
        flatten(img, [0, 0, 0, 255])
    } else {
        img
    };
    let (w, h) = (img.width(), img.height());
    let (bytes, alpha) = match &img {
        DynamicImage::ImageRgb8(b) => (b.as_raw().as_slice(), false),
        DynamicImage::ImageRgba8(b) => (b.as_raw().as_slice(), true),
        _ => return Err(PipelineError::Encode("unexpected pixel layout".into())),
    };
    let quality = quality.clamp(1, 100);
    match format {
        OutputFormat::Jpeg => jpeg(bytes, w, h, alpha, quality),
        OutputFormat::Png => png(bytes, w, h, alpha),
        OutputFormat::Webp => webp(bytes, w, h, alpha, quality),
        OutputFormat::Avif => match avif.encoder {
            AvifEncoder::Aom => {
                super::avif::encode(bytes, w, h, alpha, aom_cq_level(quality), avif.speed)
            }
            AvifEncoder::Rav1e => avif_rav1e(bytes, w, h, alpha, quality, avif.speed),
        },
        OutputFormat::Gif => super::animation::gif_still(bytes, w, h, alpha),
    }
}

fn err(format: &str) -> PipelineError {
    PipelineError::Encode(format!("failed to encode {format}"))
}

fn jpeg(bytes: &[u8], w: u32, h: u32, alpha: bool, q: u8) -> Result<Vec<u8>, PipelineError> {
    if w > JPEG_MAX || h > JPEG_MAX {
        return Err(PipelineError::InvalidParam {
            param: "fm",
            detail: format!("JPEG output is limited to {JPEG_MAX} pixels per side"),
        });
    }
    let format = if alpha {
        // Callers flatten before JPEG; tolerate RGBA anyway (alpha is ignored).
        turbojpeg::PixelFormat::RGBX
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let image = turbojpeg::Image {
        pixels: bytes,
        width: w as usize,
        pitch: w as usize * format.size(),
        height: h as usize,
        format,
    };
    let mut c = turbojpeg::Compressor::new().map_err(|_| err("JPEG"))?;
    c.set_quality(i32::from(q)).map_err(|_| err("JPEG"))?;
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .map_err(|_| err("JPEG"))?;
    // Huffman tables fitted to the image (a second pass over the coefficients): about 5 %
    // fewer bytes for a few per cent more encode time; sharp does the same by default.
    c.set_optimize(true).map_err(|_| err("JPEG"))?;
    c.compress_to_vec(image).map_err(|_| err("JPEG"))
}

fn png(bytes: &[u8], w: u32, h: u32, alpha: bool) -> Result<Vec<u8>, PipelineError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    let color = if alpha {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(bytes, w, h, color)
        .map_err(|_| err("PNG"))?;
    Ok(out)
}

fn webp(bytes: &[u8], w: u32, h: u32, alpha: bool, q: u8) -> Result<Vec<u8>, PipelineError> {
    if w > WEBP_MAX || h > WEBP_MAX {
        return Err(PipelineError::InvalidParam {
            param: "fm",
            detail: format!("WebP output is limited to {WEBP_MAX} pixels per side"),
        });
    }
    let enc = if alpha {
        webp::Encoder::from_rgba(bytes, w, h)
    } else {
        webp::Encoder::from_rgb(bytes, w, h)
    };
    // `encode` unwraps internally; `encode_simple` reports failure instead of panicking.
    let mem = enc
        .encode_simple(false, f32::from(q))
        .map_err(|_| err("WebP"))?;
    Ok(mem.to_vec())
}

/// `q` → libaom's cq-level (0 best .. 63), so that a `q` scores the SSIMULACRA2 sharp's
/// libaom gives at that `q`: the 7 large corpus photos at 450 px through the server, sharp
/// 0.35.5 (libaom 3.15, 8-bit 4:4:4, speed 5) at q 20..90 against ours (libaom 3.6 through
/// libavif then, 10-bit 4:4:4, speed 6; libaom 3.11 scores within 0.2 points of it at every
/// q), each q's cq-level read off our measured score curve (2026-12-08, `AVIF_QS="20 30 40
/// 50 52 54 56 58 60 63 67 70 80 90" scripts/bench-quality`): q60 lands between cq-levels
/// 31 (0.8 points under sharp's score) and 30 (1.0 over) and takes 31. Between the points
/// the map is linear; q100 is cq-level 0.
fn aom_cq_level(q: u8) -> u8 {
    const POINTS: [(f32, f32); 10] = [
        (1.0, 62.0),
        (20.0, 49.0),
        (30.0, 45.0),
        (40.0, 40.0),
        (50.0, 35.0),
        (60.0, 30.6),
        (70.0, 27.0),
        (80.0, 24.5),
        (90.0, 22.0),
        (100.0, 0.0),
    ];
    map_quality(&POINTS, q).round() as u8
}

/// `q` → ravif's quality, so that a `q` looks as good as sharp's (libaom) AVIF at the same
/// `q`: the SSIMULACRA2 both reach on 7 corpus photos at 450 px (scripts/bench-quality).
/// ravif's own scale runs low at the bottom (its 60 scores like sharp's 48) and high at the
/// top; between the points the map is linear.
fn avif_quality(q: u8) -> f32 {
    const POINTS: [(f32, f32); 8] = [
        (1.0, 1.0),
        (40.0, 48.0),
        (50.0, 63.0),
        (60.0, 77.5),
        (70.0, 83.0),
        (80.0, 85.5),
        (90.0, 87.5),
        (100.0, 100.0),
    ];
    map_quality(&POINTS, q)
}

/// `q` (1..=100) through a piecewise-linear map given as `(q, mapped)` points in increasing
/// `q`.
fn map_quality(points: &[(f32, f32)], q: u8) -> f32 {
    let q = f32::from(q.clamp(1, 100));
    points.windows(2).find(|w| q <= w[1].0).map_or(100.0, |w| {
        let ((q0, r0), (q1, r1)) = (w[0], w[1]);
        r0 + (q - q0) * (r1 - r0) / (q1 - q0)
    })
}

fn avif_rav1e(
    bytes: &[u8],
    w: u32,
    h: u32,
    alpha: bool,
    q: u8,
    speed: u8,
) -> Result<Vec<u8>, PipelineError> {
    use ravif::{BitDepth, Encoder, Img, RGB8, RGBA8};
    // ravif asserts on out-of-range settings.
    let enc = Encoder::new()
        .with_quality(avif_quality(q))
        .with_speed(speed.clamp(1, 10))
        // Our pixels are 8-bit: a 10-bit AV1 stream (ravif's default) took about twice the
        // time at speed 9 for ~1 % fewer bytes at equal SSIMULACRA2.
        .with_bit_depth(BitDepth::Eight);
    let (w, h) = (w as usize, h as usize);
    // ravif wants typed pixels; this copy is small next to AV1 encoding itself.
    let res = if alpha {
        let px: Vec<RGBA8> = bytes
            .chunks_exact(4)
            .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        enc.encode_rgba(Img::new(px.as_slice(), w, h))
    } else {
        let px: Vec<RGB8> = bytes
            .chunks_exact(3)
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        enc.encode_rgb(Img::new(px.as_slice(), w, h))
    };
    res.map(|e| e.avif_file).map_err(|_| err("AVIF"))
}

#[cfg(test)]
mod tests {
    use super::{aom_cq_level, avif_quality};

    #[test]
    fn aom_cq_level_falls_as_q_rises_and_stays_in_range() {
        let mapped: Vec<u8> = (0..=100u8).map(aom_cq_level).collect();
        assert!(mapped.windows(2).all(|w| w[0] >= w[1]), "{mapped:?}");
        assert_eq!(
            (aom_cq_level(0), aom_cq_level(1), aom_cq_level(100)),
            (62, 62, 0)
        );
        assert_eq!((aom_cq_level(60), aom_cq_level(80)), (31, 25));
    }

    #[test]
    fn avif_quality_map_is_monotonic_and_stays_in_range() {
        let mapped: Vec<f32> = (0..=100u8).map(avif_quality).collect();
        assert!(mapped.windows(2).all(|w| w[0] <= w[1]), "{mapped:?}");
        assert!(
            mapped.iter().all(|r| (1.0..=100.0).contains(r)),
            "{mapped:?}"
        );
        assert_eq!(avif_quality(1), 1.0);
        assert_eq!(avif_quality(100), 100.0);
        assert_eq!(avif_quality(60), 77.5);
        assert_eq!(avif_quality(45), 55.5);
    }
}

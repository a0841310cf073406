//! Decoding to 8-bit RGB/RGBA plus the metadata later steps need (orientation, ICC).
//!
//! JPEGs (YCbCr, gray and CMYK) go through libjpeg-turbo, which can scale by 1/2, 1/4 or
//! 1/8 inside the IDCT: a 12 MP photo destined for a 400 px thumbnail never exists at full
//! size. PNG, WebP and GIF use the `image` crate with limits set to the dimensions
//! already read from the header, as a second guard against a decoder disagreeing with our
//! header parser.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, Limits};

use super::detect::{Header, corrupt};
use super::{PipelineError, SourceFormat};

/// A decoded image, always `ImageRgb8` or `ImageRgba8`.
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub orientation: Orientation,
    pub icc: Option<Vec<u8>>,
}

/// Decodes `input`. `shrink` (1, 2, 4 or 8) is honoured for JPEGs only; callers
/// compare the decoded size with the header to learn the factor actually applied.
pub(crate) fn decode(
    input: &[u8],
    header: &Header<'_>,
    shrink: u32,
    max_pixels: u64,
) -> Result<Decoded, PipelineError> {
    match header.format {
        SourceFormat::Jpeg => {
            let meta = header.jpeg.as_ref();
            let orientation = Orientation::from_exif(meta.map_or(1, |m| m.orientation()))
                .unwrap_or(Orientation::NoTransforms);
            let icc = meta.and_then(|m| m.icc_profile());
            let (image, cmyk) = decode_turbo(input, header, shrink)?;
            let (image, icc) = match cmyk {
                // The CMYK profile (if any) was consumed by the CMYK → RGB conversion.
                Some((w, h, px)) => (super::color::cmyk_to_rgb(w, h, px, icc.as_deref()), None),
                None => (image, icc),
            };
            Ok(Decoded {
                image,
                orientation,
                icc,
            })
        }
        SourceFormat::Png => {
            let limits = limits(header, max_pixels);
            let dec = image::codecs::png::PngDecoder::with_limits(Cursor::new(input), limits)
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, orientation, icc) = with_image_crate(dec, header, max_pixels)?;
            Ok(Decoded {
                image,
                orientation,
                icc,
            })
        }
        SourceFormat::Webp => {
            let animated = webp::BitstreamFeatures::new(input)
                .ok_or_else(|| corrupt(SourceFormat::Webp))?
                .has_animation();
            if !animated {
                return decode_libwebp(input, header);
            }
            // libwebp's simple API has no animation support; image-webp composites the
            // first frame.
            let dec = image::codecs::webp::WebPDecoder::new(Cursor::new(input))
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, orientation, icc) = with_image_crate(dec, header, max_pixels)?;
            Ok(Decoded {
                image,
                orientation,
                icc,
            })
        }
        SourceFormat::Gif => {
            // GIF decodes the first frame composited onto the logical screen.
            let dec = image::codecs::gif::GifDecoder::new(Cursor::new(input))
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, orientation, icc) = with_image_crate(dec, header, max_pixels)?;
            Ok(Decoded {
                image,
                orientation,
                icc,
            })
        }
    }
}

fn limits(header: &Header<'_>, max_pixels: u64) -> Limits {
    let mut limits = Limits::no_limits();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    // 16-bit RGBA frame plus headroom for decoder internals.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    limits
}

fn map_image_error(e: ImageError, header: &Header<'_>, max_pixels: u64) -> PipelineError {
    match e {
        ImageError::Limits(_) => PipelineError::TooManyPixels {
            width: header.width,
            height: header.height,
            limit: max_pixels,
        },
        ImageError::Unsupported(_) => {
            PipelineError::Unsupported(format!("unsupported {} variant", header.format.name()))
        }
        _ => corrupt(header.format),
    }
}

fn with_image_crate(
    mut dec: impl ImageDecoder,
    header: &Header<'_>,
    max_pixels: u64,
) -> Result<(DynamicImage, Orientation, Option<Vec<u8>>), PipelineError> {
    dec.set_limits(limits(header, max_pixels))
        .map_err(|e| map_image_error(e, header, max_pixels))?;
    // Broken metadata must not make an otherwise readable image fail.
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = dec.icc_profile().ok().flatten();
    let image =
        DynamicImage::from_decoder(dec).map_err(|e| map_image_error(e, header, max_pixels))?;
    Ok((to_rgb_or_rgba(image), orientation, icc))
}

/// Normalises to 8-bit RGB or RGBA, the only layouts later steps handle.
pub(crate) fn to_rgb_or_rgba(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

/// Still WebP through libwebp: about 5× faster than the pure-Rust decoder on lossy
/// images. libwebp returns its own allocation, so the pixels are copied once into a Vec.
fn decode_libwebp(input: &[u8], header: &Header<'_>) -> Result<Decoded, PipelineError> {
    let bad = || corrupt(SourceFormat::Webp);
    let img = webp::Decoder::new(input).decode().ok_or_else(bad)?;
    // Our header parse decided the pixel limit; refuse if libwebp disagrees.
    if (img.width(), img.height()) != (header.width, header.height) {
        return Err(bad());
    }
    let (w, h) = (img.width(), img.height());
    let image = if img.is_alpha() {
        image::RgbaImage::from_raw(w, h, img.to_vec()).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(w, h, img.to_vec()).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(bad)?;
    let (icc, exif) = super::detect::webp_metadata(input);
    let orientation = exif
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(Decoded {
        image,
        orientation,
        icc: icc.map(<[u8]>::to_vec),
    })
}

/// Raw CMYK samples as libjpeg-turbo returns them: width, height, 4 bytes per pixel.
type Cmyk = (u32, u32, Vec<u8>);

/// Decodes with libjpeg-turbo at 1/`shrink` scale. YCbCr, RGB and gray JPEGs come back as
/// an RGB image; CMYK/YCCK ones (which libjpeg-turbo only decodes to CMYK) as raw samples
/// for the colour step, with an empty placeholder image.
fn decode_turbo(
    input: &[u8],
    header: &Header<'_>,
    shrink: u32,
) -> Result<(DynamicImage, Option<Cmyk>), PipelineError> {
    let bad = || corrupt(SourceFormat::Jpeg);
    let mut dec = turbojpeg::Decompressor::new()
        .map_err(|_| PipelineError::Encode("JPEG decoder unavailable".into()))?;
    let tj = dec.read_header(input).map_err(|_| bad())?;
    // Our own header parse decided the pixel limit; refuse if libjpeg-turbo disagrees.
    if (tj.width, tj.height) != (header.width as usize, header.height as usize) {
        return Err(bad());
    }
    if tj.is_lossless || !matches!(shrink, 2 | 4 | 8) {
        dec.set_scaling_factor(turbojpeg::ScalingFactor::ONE)
    } else {
        dec.set_scaling_factor(turbojpeg::ScalingFactor::new(1, shrink as usize))
    }
    .map_err(|_| bad())?;
    let cmyk = matches!(
        tj.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    );
    let format = if cmyk {
        turbojpeg::PixelFormat::CMYK
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let scaled = tj.scaled(dec.scaling_factor());
    let (w, h) = (scaled.width, scaled.height);
    let len = w
        .checked_mul(h)
        .and_then(|p| p.checked_mul(format.size()))
        .ok_or_else(bad)?;
    let mut pixels = vec![0u8; len];
    let out = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    if let Err(e) = dec.decompress(input, out) {
        // libjpeg-turbo reports recoverable warnings as errors too, after having written
        // every row. Accept "Corrupt JPEG data: ..." warnings (e.g. extraneous bytes, common
        // in camera files) when the stream is complete; anything else, including a
        // truncated stream, is corrupt.
        let msg = e.to_string();
        let scan = header.jpeg.as_ref().map_or(0, |m| m.scan_offset);
        if !(msg.contains("Corrupt JPEG data") && has_eoi(input, scan)) {
            return Err(bad());
        }
    }
    let (w, h) = (
        u32::try_from(w).map_err(|_| bad())?,
        u32::try_from(h).map_err(|_| bad())?,
    );
    if cmyk {
        return Ok((DynamicImage::new_rgb8(0, 0), Some((w, h, pixels))));
    }
    let image = image::RgbImage::from_raw(w, h, pixels)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(bad)?;
    Ok((image, None))
}

/// Whether an EOI marker follows the first scan (at `scan_offset`, found by the header
/// parser, so an EXIF thumbnail's EOI does not count). Entropy-coded data escapes 0xFF as
/// 0xFF00, so 0xFFD9 there can only be the real end of the stream.
fn has_eoi(input: &[u8], scan_offset: usize) -> bool {
    input
        .get(scan_offset..)
        .is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, 0xD9]))
}

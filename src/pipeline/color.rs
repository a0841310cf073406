//! Embedded ICC profile → sRGB, so every output is sRGB and can be served without a
//! profile (we strip metadata).
//!
//! Fallback: the conversion is skipped silently, leaving the pixels as decoded, when the
//! profile cannot be parsed, is not an RGB profile (gray or CMYK profiles: those images
//! have already been converted to RGB by the decoder, so an RGB transform cannot apply),
//! moxcms cannot build a transform for it, or it is sRGB-equivalent. A broken or exotic
//! profile then costs some colour accuracy instead of failing the request, which is what
//! browsers do too.

use image::DynamicImage;
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// Converts `img` (RGB8 or RGBA8) from the `icc` profile to sRGB in place.
pub(crate) fn to_srgb(img: &mut DynamicImage, icc: &[u8]) {
    let Ok(src) = ColorProfile::new_from_slice(icc) else {
        return;
    };
    if src.color_space != DataColorSpace::Rgb {
        return;
    }
    let (w, data, ch) = match img {
        DynamicImage::ImageRgb8(b) => (b.width() as usize, &mut **b, 3),
        DynamicImage::ImageRgba8(b) => (b.width() as usize, &mut **b, 4),
        _ => return,
    };
    let layout = if ch == 4 { Layout::Rgba } else { Layout::Rgb };
    let srgb = ColorProfile::new_srgb();
    let Ok(xf) = src.create_transform_8bit(layout, &srgb, layout, TransformOptions::default())
    else {
        return;
    };
    // Cheaper than comparing profile tags: run a 6×6×6 colour grid through the transform
    // and skip the full pass when nothing moves by more than one level.
    let mut grid = Vec::with_capacity(216 * ch);
    for r in (0..=255u8).step_by(51) {
        for g in (0..=255u8).step_by(51) {
            for b in (0..=255u8).step_by(51) {
                grid.extend_from_slice(&[r, g, b, 255][..ch]);
            }
        }
    }
    let mut out = vec![0u8; grid.len()];
    if xf.transform(&grid, &mut out).is_err()
        || grid.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 1)
    {
        return;
    }
    // Row by row through one scratch row (moxcms has no in-place 8-bit transform here).
    let row_len = w * ch;
    if row_len == 0 {
        return;
    }
    let mut tmp = vec![0u8; row_len];
    for row in data.chunks_exact_mut(row_len) {
        if xf.transform(row, &mut tmp).is_ok() {
            row.copy_from_slice(&tmp);
        }
    }
}

/// Converts raw CMYK samples from libjpeg-turbo to RGB, reusing their buffer.
///
/// CMYK JPEGs in the wild (Photoshop and everything copying it, libjpeg-turbo included)
/// store inverted values (255 = no ink) under an Adobe marker; that convention is assumed,
/// as libvips and browsers do. With a parsable CMYK ICC profile the profile maps ink to
/// sRGB; otherwise (or if moxcms cannot build the transform) the naive
/// `R = (1-C)(1-K)` formula is used.
pub(crate) fn cmyk_to_rgb(w: u32, h: u32, mut px: Vec<u8>, icc: Option<&[u8]>) -> DynamicImage {
    let width = w as usize;
    let transform = icc
        .and_then(|icc| ColorProfile::new_from_slice(icc).ok())
        .filter(|p| p.color_space == DataColorSpace::Cmyk)
        .and_then(|p| {
            p.create_transform_8bit(
                Layout::Rgba, // CMYK uses the four-channel layout
                &ColorProfile::new_srgb(),
                Layout::Rgb,
                TransformOptions::default(),
            )
            .ok()
        });
    let mut ink = vec![0u8; width * 4];
    let mut rgb = vec![0u8; width * 3];
    for y in 0..h as usize {
        // Row y's RGB output ends at (y+1)*3w, before row y+1's CMYK input starts at
        // (y+1)*4w, so converting front to back in one buffer never clobbers unread input.
        let src = &px[y * width * 4..(y + 1) * width * 4];
        let converted = match &transform {
            Some(xf) => {
                for (i, s) in ink.iter_mut().zip(src) {
                    *i = 255 - s;
                }
                xf.transform(&ink, &mut rgb).is_ok()
            }
            None => false,
        };
        if !converted {
            for (o, s) in rgb.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                let k = u32::from(s[3]);
                for c in 0..3 {
                    o[c] = ((u32::from(s[c]) * k + 127) / 255) as u8;
                }
            }
        }
        px[y * width * 3..(y + 1) * width * 3].copy_from_slice(&rgb);
    }
    px.truncate(width * h as usize * 3);
    match image::RgbImage::from_raw(w, h, px) {
        Some(img) => DynamicImage::ImageRgb8(img),
        None => DynamicImage::new_rgb8(w, h), // unreachable: length is w*h*3
    }
}

/// An ICC profile for nclx/CICP colour information (HEIF, AVIF), so those images go
/// through the same sRGB step as ones with an embedded profile. `None` when it is sRGB
/// already, unspecified, or has no profile form (PQ/HLG transfer: HDR is left as decoded).
pub(crate) fn icc_from_cicp(primaries: u8, transfer: u8) -> Option<Vec<u8>> {
    use moxcms::{CicpColorPrimaries, CicpProfile, MatrixCoefficients, TransferCharacteristics};
    // 1 = BT.709 primaries, 13 = sRGB transfer, 2 = unspecified (taken as sRGB).
    let primaries = if primaries == 2 { 1 } else { primaries };
    let transfer = if transfer == 2 { 13 } else { transfer };
    if (primaries, transfer) == (1, 13) {
        return None;
    }
    let cicp = CicpProfile {
        color_primaries: CicpColorPrimaries::try_from(primaries).ok()?,
        transfer_characteristics: TransferCharacteristics::try_from(transfer).ok()?,
        matrix_coefficients: MatrixCoefficients::Identity,
        full_range: true,
    };
    let mut profile = ColorProfile::new_srgb();
    if !profile.update_rgb_colorimetry_from_cicp(cicp) {
        return None;
    }
    profile.encode().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(profile: &ColorProfile) -> [u8; 3] {
        let icc = profile.encode().expect("encode profile");
        let mut img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 2, image::Rgb([40, 200, 60])));
        to_srgb(&mut img, &icc);
        img.to_rgb8().get_pixel(3, 1).0
    }

    #[test]
    fn srgb_profile_is_a_no_op() {
        assert_eq!(sample(&ColorProfile::new_srgb()), [40, 200, 60]);
    }

    #[test]
    fn display_p3_is_converted() {
        // A saturated P3 green is more saturated than sRGB can show: red goes to 0-ish,
        // green stays high; at minimum the value must change.
        let out = sample(&ColorProfile::new_display_p3());
        assert_ne!(out, [40, 200, 60]);
        assert!(out[1] > 150, "{out:?}");
    }

    #[test]
    fn garbage_profile_is_ignored() {
        let mut img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3])));
        to_srgb(&mut img, b"not a profile");
        assert_eq!(img.to_rgb8().get_pixel(0, 0).0, [1, 2, 3]);
    }
}

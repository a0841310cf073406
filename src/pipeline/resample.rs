//! Resampling through `fast_image_resize` (Lanczos3, SIMD).
//!
//! The source crop is passed as the resizer's crop box, so cutting and scaling are one
//! pass over the pixels and the crop is never copied out; after JPEG shrink-on-load the box
//! is fractional, which the resizer handles exactly. For RGBA the resizer multiplies colour
//! by alpha before filtering and divides after (`mul_div_alpha`, on by default), so the
//! colour of fully transparent pixels cannot bleed into visible ones.

use fast_image_resize::images::CroppedImage;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::PipelineError;
use super::geometry::RectF;

thread_local! {
    /// One resizer per worker thread: it keeps its scratch buffers (the horizontal pass of
    /// a 12 MP source is megabytes) between renders instead of mapping fresh pages each time.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

fn with_resizer<T>(f: impl FnOnce(&mut Resizer) -> T) -> T {
    RESIZER.with(|r| f(&mut r.borrow_mut()))
}

/// Resamples `crop` of `src` (the whole image when `None`) to `dst` pixels.
pub(crate) fn resample(
    src: &DynamicImage,
    crop: Option<RectF>,
    dst: (u32, u32),
) -> Result<DynamicImage, PipelineError> {
    if src.width() == 0 || src.height() == 0 || dst.0 == 0 || dst.1 == 0 {
        return Err(PipelineError::Encode("resize failed".into()));
    }
    let mut out = if src.color().has_alpha() {
        DynamicImage::new_rgba8(dst.0, dst.1)
    } else {
        DynamicImage::new_rgb8(dst.0, dst.1)
    };
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .use_alpha(true);
    let fail = |_| PipelineError::Encode("resize failed".into());
    let Some(r) = crop else {
        with_resizer(|r| r.resize(src, &mut out, &opts)).map_err(fail)?;
        return Ok(out);
    };
    // The integer hull of the crop becomes a view, so the filter treats the crop's edges
    // as image edges (a crop box alone would let Lanczos taps read pixels outside the
    // crop); only the sub-pixel remainder is left to the crop box.
    let (sw, sh) = (f64::from(src.width()), f64::from(src.height()));
    let (l, t) = (
        r.x.floor().clamp(0.0, sw - 1.0),
        r.y.floor().clamp(0.0, sh - 1.0),
    );
    let right = (r.x + r.w).ceil().clamp(l + 1.0, sw);
    let bottom = (r.y + r.h).ceil().clamp(t + 1.0, sh);
    let (vw, vh) = (right - l, bottom - t);
    let view = CroppedImage::new(src, l as u32, t as u32, vw as u32, vh as u32)
        .map_err(|_| PipelineError::Encode("resize failed".into()))?;
    // Clamp float noise from the orientation mapping; the resizer rejects boxes that
    // leave the view.
    let x = (r.x - l).clamp(0.0, vw);
    let y = (r.y - t).clamp(0.0, vh);
    let opts = opts.crop(x, y, r.w.min(vw - x), r.h.min(vh - y));
    with_resizer(|r| r.resize(&view, &mut out, &opts)).map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    #[test]
    fn transparent_colour_does_not_bleed() {
        // Transparent red next to opaque blue: without premultiplication the edge pixels
        // of the upscaled result would turn purple.
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([255, 0, 0, 0]));
        img.put_pixel(1, 0, Rgba([0, 0, 255, 255]));
        let src = DynamicImage::ImageRgba8(img);
        for dst in [(8, 1), (16, 4), (1, 1), (3, 2)] {
            let out = resample(&src, None, dst).expect("resize").to_rgba8();
            for p in out.pixels() {
                if p.0[3] > 0 {
                    assert!(p.0[0] <= 2, "red fringe {p:?} at {dst:?}");
                }
            }
        }
    }

    #[test]
    fn fractional_crop() {
        // Left half black, right half white; resampling the right half gives white only.
        let img = image::RgbImage::from_fn(8, 4, |x, _| {
            if x < 4 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let src = DynamicImage::ImageRgb8(img);
        let crop = RectF {
            x: 4.0,
            y: 0.0,
            w: 4.0,
            h: 4.0,
        };
        let out = resample(&src, Some(crop), (2, 2))
            .expect("resize")
            .to_rgb8();
        assert!(out.pixels().all(|p| p.0 == [255, 255, 255]), "{out:?}");
    }
}

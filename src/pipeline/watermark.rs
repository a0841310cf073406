//! Watermark overlay: a configured image decoded once at startup, scaled per request to a
//! fraction of the output width and composited source-over at a gravity.

use image::{DynamicImage, RgbaImage};

use super::geometry::{Orient, gravity_offset};
use super::resample::resample;
use super::{PipelineError, decode, detect};
use crate::params::Gravity;

/// Watermark images are operator-provided; this only bounds a misconfiguration.
const MAX_WATERMARK_PIXELS: u64 = 40_000_000;

/// A decoded watermark (RGBA, oriented) and where/how to draw it.
#[derive(Debug, Clone)]
pub struct Watermark {
    image: DynamicImage,
    position: Gravity,
    opacity: f32,
    scale: f32,
}

impl Watermark {
    /// Decodes a watermark image (any supported input format). `opacity` is 0..=1 and
    /// multiplies the image's own alpha; `scale` (0 < scale <= 1) is the watermark width as
    /// a fraction of the output width.
    pub fn from_bytes(
        bytes: &[u8],
        position: Gravity,
        opacity: f32,
        scale: f32,
    ) -> Result<Watermark, PipelineError> {
        if !(0.0..=1.0).contains(&opacity) {
            return Err(PipelineError::InvalidParam {
                param: "opacity",
                detail: "must be between 0 and 1".into(),
            });
        }
        if !(scale > 0.0 && scale <= 1.0) {
            return Err(PipelineError::InvalidParam {
                param: "scale",
                detail: "must be greater than 0 and at most 1".into(),
            });
        }
        let header = detect::read_header(bytes)?;
        super::check_pixels(&header, MAX_WATERMARK_PIXELS, false)?;
        let decoded = decode::decode(bytes, &header, 1, MAX_WATERMARK_PIXELS)?;
        let mut image = DynamicImage::ImageRgba8(decoded.image.into_rgba8());
        image.apply_orientation(Orient::from_image(decoded.orientation).to_image());
        Ok(Watermark {
            image,
            position,
            opacity,
            scale,
        })
    }

    /// Size and top-left position of the watermark on a `w`×`h` output.
    fn placement(&self, w: u32, h: u32) -> ((u32, u32), (u32, u32)) {
        let (iw, ih) = (
            f64::from(self.image.width()),
            f64::from(self.image.height()),
        );
        let mut tw = ((f64::from(w) * f64::from(self.scale)).round() as u32).clamp(1, w);
        let mut th = ((f64::from(tw) * ih / iw).round() as u32).max(1);
        if th > h {
            th = h;
            tw = ((f64::from(th) * iw / ih).round() as u32).clamp(1, w);
        }
        // 2% of the output width as margin, reduced when the watermark would not fit.
        let margin = (f64::from(w) * 0.02).round() as u32;
        let mx = margin.min((w - tw) / 2);
        let my = margin.min((h - th) / 2);
        let (x, y) = gravity_offset((w - 2 * mx, h - 2 * my), (tw, th), self.position);
        ((tw, th), (x + mx, y + my))
    }

    /// Draws the watermark onto `img` (RGB or RGBA).
    pub(crate) fn apply(&self, img: &mut DynamicImage) -> Result<(), PipelineError> {
        let (w, h) = (img.width(), img.height());
        if w == 0 || h == 0 {
            return Ok(());
        }
        let ((tw, th), (x0, y0)) = self.placement(w, h);
        let mark = resample(&self.image, None, (tw, th))?.into_rgba8();
        match img {
            DynamicImage::ImageRgb8(dst) => {
                for (x, y, p) in mark.enumerate_pixels() {
                    let d = dst.get_pixel_mut(x0 + x, y0 + y);
                    let a = f32::from(p.0[3]) / 255.0 * self.opacity;
                    for c in 0..3 {
                        d.0[c] = mix(p.0[c], d.0[c], a);
                    }
                }
            }
            DynamicImage::ImageRgba8(dst) => composite_rgba(dst, &mark, x0, y0, self.opacity),
            _ => {}
        }
        Ok(())
    }
}

fn mix(src: u8, dst: u8, a: f32) -> u8 {
    (f32::from(src) * a + f32::from(dst) * (1.0 - a))
        .round()
        .clamp(0.0, 255.0) as u8
}

/// Source-over with straight (non-premultiplied) alpha on both sides.
fn composite_rgba(dst: &mut RgbaImage, mark: &RgbaImage, x0: u32, y0: u32, opacity: f32) {
    for (x, y, p) in mark.enumerate_pixels() {
        let d = dst.get_pixel_mut(x0 + x, y0 + y);
        let sa = f32::from(p.0[3]) / 255.0 * opacity;
        let da = f32::from(d.0[3]) / 255.0;
        let oa = sa + da * (1.0 - sa);
        if oa <= 0.0 {
            continue;
        }
        for c in 0..3 {
            let v = (f32::from(p.0[c]) * sa + f32::from(d.0[c]) * da * (1.0 - sa)) / oa;
            d.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
        d.0[3] = (oa * 255.0).round().clamp(0.0, 255.0) as u8;
    }
}

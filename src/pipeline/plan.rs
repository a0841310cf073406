//! The plan of one render: every geometric decision, made from header facts, the
//! [`Transform`] and the [`RenderOptions`] limits before any pixel exists.
//!
//! A pure value, so each rule is table-tested (`plan/tests.rs`); [`super::render_with`]
//! only executes it. The plan works at full resolution in the stored orientation: crop
//! and resize are one resampling pass of `source_rect` to `target_stored`, and
//! orientation is applied to the (small) result. For JPEG the EXIF orientation is in our
//! header parse, so the plan made before decoding is final; other formats carry it in
//! metadata only the decoder reads, so their plan assumes upright and is redone
//! ([`Plan::for_orientation`]) in the rare case the decoder reports another orientation.

use image::metadata::Orientation;

use super::detect::Header;
use super::geometry::{self, Canvas, FitPlan, Orient, Rect, RectF};
use super::{AvifEncoder, PipelineError, RenderOptions, SourceFormat};
use crate::media::OutputFormat;
use crate::params::{Gravity, Transform};

/// What the header tells the planner about a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Size as stored, before orientation.
    pub stored: (u32, u32),
    pub format: SourceFormat,
    /// EXIF orientation, when the header holds it (JPEG); `None` when only the decoder
    /// can tell.
    pub exif: Option<Orientation>,
}

impl Facts {
    pub fn of(header: &Header<'_>) -> Facts {
        Facts {
            stored: (header.width, header.height),
            format: header.format,
            exif: header.jpeg.as_ref().map(|m| {
                Orientation::from_exif(m.orientation()).unwrap_or(Orientation::NoTransforms)
            }),
        }
    }
}

/// The step after resampling and orientation that reaches the requested box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CanvasStep {
    /// The oriented image is the output.
    None,
    /// Cut a `w`×`h` window at `at`; `None` means at the most detailed window
    /// (`g=entropy`), found from the pixels.
    Cut {
        w: u32,
        h: u32,
        at: Option<(u32, u32)>,
    },
    /// Pad to `w`×`h` with the background at the gravity (contain).
    Pad { w: u32, h: u32 },
}

/// The geometry of one render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Plan {
    /// The EXIF orientation this plan was made for.
    pub exif: Orientation,
    /// EXIF orientation, then `rot`, then `flip`, as one move of the pixels.
    pub orient: Orient,
    /// Full-resolution size after orientation.
    pub oriented: (u32, u32),
    /// The crop region in oriented full-resolution coordinates (the whole image without
    /// `crop`).
    pub region: Rect,
    /// The `fit` rules' outcome; `None` without `w` and `h`.
    pub fit: Option<FitPlan>,
    /// Size the region is resampled to, in oriented axes.
    pub target: (u32, u32),
    /// `target` in the stored axes: what the resampling pass produces.
    pub target_stored: (u32, u32),
    /// `region` mapped into the stored full-resolution image: what is resampled.
    pub source_rect: RectF,
    /// Whether there is anything to resample (a crop, or a size other than the source's).
    pub resample: bool,
    /// JPEG shrink-on-load factor: 1, 2, 4 or 8 (always 1 for other formats).
    pub shrink: u32,
    pub canvas: CanvasStep,
    /// Size of the encoded output.
    pub output: (u32, u32),
}

impl Plan {
    /// Plans a render of a source whose EXIF orientation is `exif`, and applies the output
    /// limits: per axis (`max_output`) and in pixels, per format.
    pub fn new(
        facts: Facts,
        exif: Orientation,
        t: &Transform,
        opts: &RenderOptions,
    ) -> Result<Plan, PipelineError> {
        let (sw, sh) = facts.stored;
        let orient = full_orientation(exif, t)?;
        let oriented = orient.output_dims(sw, sh);
        let region = crop_region(t, oriented)?;
        let fit = geometry::plan_fit(region.w, region.h, t.width, t.height, t.fit, t.enlarge);
        let target = fit.map_or((region.w, region.h), |p| p.resize);
        check_enlarge(target, (region.w, region.h), opts)?;
        let canvas = match fit.map(|p| p.canvas) {
            None | Some(Canvas::Exact) => CanvasStep::None,
            Some(Canvas::Crop { w, h }) => {
                let (w, h) = (w.min(target.0), h.min(target.1));
                let at = (t.gravity != Gravity::Entropy)
                    .then(|| geometry::gravity_offset(target, (w, h), t.gravity));
                CanvasStep::Cut { w, h, at }
            }
            Some(Canvas::Pad { w, h }) => CanvasStep::Pad { w, h },
        };
        let output = match canvas {
            CanvasStep::None => target,
            CanvasStep::Cut { w, h, .. } | CanvasStep::Pad { w, h } => (w, h),
        };
        check_output_pixels(t, (region.w, region.h), target, output, opts)?;

        let target_stored = if orient.swaps_axes() {
            (target.1, target.0)
        } else {
            target
        };
        let whole = region.x == 0 && region.y == 0 && (region.w, region.h) == oriented;
        let source_rect = orient.unmap_rect(
            f64::from(sw),
            f64::from(sh),
            RectF {
                x: f64::from(region.x),
                y: f64::from(region.y),
                w: f64::from(region.w),
                h: f64::from(region.h),
            },
        );
        let shrink = match (facts.format, fit) {
            (SourceFormat::Jpeg, Some(p)) => {
                let d = geometry::jpeg_shrink((region.w, region.h), p.resize);
                // libaom spends bits on the softness a coarse DCT-domain shrink leaves:
                // at most 1/2 took 1.7 % fewer AVIF bytes for the same score
                // (scripts/avif-sweep), worth the larger decode next to AV1's cost.
                if t.format == OutputFormat::Avif && opts.avif.encoder == AvifEncoder::Aom {
                    d.min(2)
                } else {
                    d
                }
            }
            _ => 1,
        };
        Ok(Plan {
            exif,
            orient,
            oriented,
            region,
            fit,
            target,
            target_stored,
            source_rect,
            resample: !(whole && target_stored == facts.stored),
            shrink,
            canvas,
            output,
        })
    }

    /// The plan before decoding. With the orientation in the header (JPEG) it is exact;
    /// otherwise it assumes upright, and when that fails it succeeds if the other axis
    /// order fits (the decoder may still report a rotation), returning the upright error
    /// when neither does.
    pub fn before_decode(
        facts: Facts,
        t: &Transform,
        opts: &RenderOptions,
    ) -> Result<Plan, PipelineError> {
        match facts.exif {
            Some(exif) => Plan::new(facts, exif, t, opts),
            None => Plan::new(facts, Orientation::NoTransforms, t, opts)
                .or_else(|e| Plan::new(facts, Orientation::Rotate90, t, opts).map_err(|_| e)),
        }
    }

    /// This plan if it was made for the decoder's `exif` orientation, else a new one.
    pub fn for_orientation(
        self,
        facts: Facts,
        exif: Orientation,
        t: &Transform,
        opts: &RenderOptions,
    ) -> Result<Plan, PipelineError> {
        if self.exif == exif {
            Ok(self)
        } else {
            Plan::new(facts, exif, t, opts)
        }
    }
}

/// EXIF orientation followed by the request's `rot` and `flip`.
fn full_orientation(exif: Orientation, t: &Transform) -> Result<Orient, PipelineError> {
    let quarters = match t.rotate {
        0 => 0,
        90 => 1,
        180 => 2,
        270 => 3,
        _ => {
            return Err(PipelineError::InvalidParam {
                param: "rot",
                detail: "must be 0, 90, 180 or 270".into(),
            });
        }
    };
    let mut o = Orient::from_image(exif).then_rotate(quarters);
    if t.flip_h {
        o = o.then_flip_h();
    }
    if t.flip_v {
        o = o.then_flip_v();
    }
    Ok(o)
}

/// The crop region in oriented full-resolution coordinates (the whole image without crop).
fn crop_region(t: &Transform, (w, h): (u32, u32)) -> Result<Rect, PipelineError> {
    match t.crop {
        None => Ok(Rect { x: 0, y: 0, w, h }),
        Some(c) => geometry::clamp_crop(c, w, h).ok_or_else(|| PipelineError::InvalidParam {
            param: "crop",
            detail: format!("rectangle is empty or outside the {w}x{h} image"),
        }),
    }
}

/// An output never needs to be larger than both `max_output` and the region.
fn check_enlarge(
    target: (u32, u32),
    region: (u32, u32),
    opts: &RenderOptions,
) -> Result<(), PipelineError> {
    let limit = (
        opts.max_output.0.max(region.0),
        opts.max_output.1.max(region.1),
    );
    if target.0 > limit.0 || target.1 > limit.1 {
        return Err(PipelineError::InvalidParam {
            param: "enlarge",
            detail: format!(
                "the result would be {}x{}, larger than the {}x{} limit",
                target.0, target.1, limit.0, limit.1
            ),
        });
    }
    Ok(())
}

/// Output pixel caps. The encoded output is held to the cap of its format; a resampled
/// intermediate larger than the output (`fit=cover`) to the general cap, unless it is the
/// source region itself (nothing to resample; bounded by `max_source_pixels`).
fn check_output_pixels(
    t: &Transform,
    region: (u32, u32),
    target: (u32, u32),
    output: (u32, u32),
    opts: &RenderOptions,
) -> Result<(), PipelineError> {
    let px = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
    let cap = opts.output_pixel_cap(t.format);
    let (size, pixels, limit) = if px(output) > cap {
        (output, px(output), cap)
    } else if target != region && px(target) > opts.max_output_pixels {
        (target, px(target), opts.max_output_pixels)
    } else {
        return Ok(());
    };
    // Name what the client can change: the format when only its tighter cap is exceeded,
    // else the size.
    let (param, hint) = if pixels <= opts.max_output_pixels {
        ("fm", "ask for a smaller `w`/`h` or another format")
    } else {
        match (t.width, t.height) {
            (Some(_), _) => ("w", "ask for a smaller `w`/`h`"),
            (None, Some(_)) => ("h", "ask for a smaller `h`"),
            (None, None) => ("w", "ask for a smaller size with `w` or `h`"),
        }
    };
    Err(PipelineError::InvalidParam {
        param,
        detail: format!(
            "the {} result would be {}x{} ({pixels} pixels), more than the limit of {limit}; {hint}",
            t.format.name(),
            size.0,
            size.1,
        ),
    })
}

#[cfg(test)]
mod tests;

//! The image pipeline: source bytes + a resolved [`Transform`] → encoded output bytes.
//!
//! It exists to keep everything that touches pixels in one synchronous, pure place (no
//! I/O, no async): the server runs [`render`] on a blocking thread and maps
//! [`PipelineError`] to HTTP statuses. The steps, in order:
//!
//! 1. **detect** – magic bytes and header only; the pixel limit is enforced here, before
//!    any pixel buffer exists.
//! 2. **decode** – to 8-bit RGB/RGBA; JPEGs are shrunk on load (DCT scaling 1/2..1/8)
//!    when the output is much smaller.
//! 3. **colour** – embedded ICC profile → sRGB.
//! 4. **orientation** – EXIF orientation, then `rot`, then `flip`, composed into one
//!    transform.
//! 5. **crop** – `crop` rectangle in oriented coordinates.
//! 6. **resize** – `fit` rules, Lanczos3 with premultiplied alpha.
//! 7. **canvas** – cover cut (gravity or entropy) / contain padding.
//! 8. **effects** – blur, then sharpen.
//! 9. **watermark**.
//! 10. **flatten** – onto the background when the output has no alpha.
//! 11. **encode** – sRGB, 8-bit, no metadata.
//!
//! Crop and resize run in the stored orientation (the crop rectangle is mapped back), and
//! orientation is applied to the already-resized image: rotating a thumbnail instead of a
//! 12 MP frame, with an identical result since both steps commute with the square's
//! symmetries.

mod color;
mod decode;
mod detect;
mod effects;
mod encode;
mod entropy;
mod geometry;
mod resample;
mod watermark;

#[cfg(test)]
mod tests;

pub use watermark::Watermark;

use std::sync::Arc;

use image::DynamicImage;
use image::metadata::Orientation;

use crate::params::{Gravity, OutputFormat, Transform};
use geometry::{Canvas, Orient, Rect, RectF};

/// Entry points into single steps, for `benches/pipeline.rs` only (not a stable API).
#[doc(hidden)]
pub mod bench {
    use image::DynamicImage;

    use super::{PipelineError, decode, detect, encode, resample};
    use crate::params::OutputFormat;

    /// Decoded pixels (8-bit RGB or RGBA).
    #[derive(Clone)]
    pub struct Pixels(DynamicImage);

    impl Pixels {
        pub fn width(&self) -> u32 {
            self.0.width()
        }
        pub fn height(&self) -> u32 {
            self.0.height()
        }
    }

    /// A generated RGB test pattern.
    pub fn synthetic(width: u32, height: u32) -> Pixels {
        Pixels(DynamicImage::ImageRgb8(image::RgbImage::from_fn(
            width,
            height,
            |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8]),
        )))
    }

    /// Decodes without orientation or colour conversion; `shrink` (1, 2, 4, 8) applies to
    /// JPEG only.
    pub fn decode(input: &[u8], shrink: u32) -> Result<Pixels, PipelineError> {
        let header = detect::read_header(input)?;
        Ok(Pixels(
            decode::decode(input, &header, shrink, u64::MAX)?.image,
        ))
    }

    /// Lanczos3 resize to `width`, keeping the ratio.
    pub fn resize(p: &Pixels, width: u32) -> Result<Pixels, PipelineError> {
        let h = (u64::from(p.height()) * u64::from(width) / u64::from(p.width().max(1))).max(1);
        let h = u32::try_from(h).unwrap_or(u32::MAX);
        Ok(Pixels(resample::resample(&p.0, None, (width, h))?))
    }

    pub fn encode(
        p: &Pixels,
        format: OutputFormat,
        quality: u8,
        avif_speed: u8,
    ) -> Result<Vec<u8>, PipelineError> {
        encode::encode(p.0.clone(), format, quality, avif_speed)
    }
}

/// Formats we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "JPEG",
            SourceFormat::Png => "PNG",
            SourceFormat::Webp => "WebP",
            SourceFormat::Gif => "GIF",
        }
    }
}

/// What [`probe`] reads from a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    pub format: SourceFormat,
    /// As stored, before EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
}

/// Header-only: magic bytes + dimensions (as stored, before orientation) + alpha; never
/// decodes pixels.
pub fn probe(input: &[u8]) -> Result<SourceInfo, PipelineError> {
    let h = detect::read_header(input)?;
    Ok(SourceInfo {
        format: h.format,
        width: h.width,
        height: h.height,
        has_alpha: h.has_alpha,
    })
}

/// Upload validation: the header (format, dimensions, at most `max_pixels`) and then a
/// full decode with the decoders delivery uses (JPEG scaled by 1/8 in the IDCT: every
/// entropy-coded byte is still read, so truncation is found, at a fraction of the cost).
pub fn check(input: &[u8], max_pixels: u64) -> Result<SourceInfo, PipelineError> {
    let h = detect::read_header(input)?;
    check_pixels(&h, max_pixels)?;
    decode::decode(input, &h, 8, max_pixels)?;
    Ok(SourceInfo {
        format: h.format,
        width: h.width,
        height: h.height,
        has_alpha: h.has_alpha,
    })
}

/// Server-side settings for one render.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions<'a> {
    /// Sources with more pixels (width × height as stored) are refused before decoding.
    pub max_source_pixels: u64,
    /// rav1e speed 1 (slow, small) ..= 10 (fast); clamped to that range.
    pub avif_speed: u8,
    pub watermark: Option<&'a Watermark>,
    /// Largest output (and intermediate) width and height when upscaling; an output never
    /// needs to be larger than both this and the source. Guards against `enlarge=1` with an
    /// extreme aspect ratio planning a gigantic buffer.
    pub max_output: (u32, u32),
    /// Most pixels an output (and a resampled intermediate) may have, whatever the source
    /// size: encode and effect cost grow with it. Checked from the plan, before decoding.
    pub max_output_pixels: u64,
    /// The same for AVIF output, the slowest encoder per pixel.
    pub max_avif_output_pixels: u64,
}

impl RenderOptions<'_> {
    /// The output pixel cap for `format`.
    pub fn output_pixel_cap(&self, format: OutputFormat) -> u64 {
        match format {
            OutputFormat::Avif => self.max_avif_output_pixels.min(self.max_output_pixels),
            _ => self.max_output_pixels,
        }
    }
}

/// An encoded output image.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub format: OutputFormat,
}

/// Why a render failed. Messages are meant for clients: short, no internals.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PipelineError {
    /// Not an image format we decode (→ 415).
    #[error("{0}")]
    Unsupported(String),
    /// Truncated or corrupt data (→ 422).
    #[error("{0}")]
    Corrupt(String),
    /// The source header declares more pixels than allowed (→ 422).
    #[error("image is too large: {width}x{height} exceeds the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// A transform parameter does not fit this image (→ 400).
    #[error("invalid {param}: {detail}")]
    InvalidParam { param: &'static str, detail: String },
    /// Our failure (→ 500).
    #[error("{0}")]
    Encode(String),
}

/// One original's pixels after decoding and colour conversion, at 1/`scale` of the stored
/// size (JPEG shrink-on-load) and in stored orientation: where every transform of that
/// original starts, so it can be kept between renders.
pub struct DecodedSource {
    image: DynamicImage,
    orientation: Orientation,
}

impl DecodedSource {
    /// Bytes of pixel data held.
    pub fn pixel_bytes(&self) -> usize {
        self.image.as_bytes().len()
    }
}

/// Where [`render_with`] keeps decoded sources between renders of the same original.
pub trait DecodedSources {
    /// The decode at 1/`scale` (1, 2, 4 or 8) or a finer kept one; otherwise `decode()`'s,
    /// which may be kept for later renders. `estimate` is its size in bytes.
    fn get_or_decode(
        &self,
        scale: u32,
        estimate: u64,
        decode: &mut dyn FnMut() -> Result<DecodedSource, PipelineError>,
    ) -> Result<Arc<DecodedSource>, PipelineError>;
}

/// Refuses headers declaring more than `limit` pixels.
fn check_pixels(header: &detect::Header<'_>, limit: u64) -> Result<(), PipelineError> {
    check_source_pixels(header.width, header.height, limit)
}

/// The source pixel limit. Delivery and upload call it on a probed header to refuse
/// before taking a worker slot; every decode here checks it again.
pub fn check_source_pixels(width: u32, height: u32, limit: u64) -> Result<(), PipelineError> {
    if u64::from(width) * u64::from(height) > limit {
        return Err(PipelineError::TooManyPixels {
            width,
            height,
            limit,
        });
    }
    Ok(())
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

/// The geometry of one render, decided from the header and the transform before any
/// pixel exists.
struct Planned {
    orient: Orient,
    /// Full-resolution size after orientation.
    oriented: (u32, u32),
    region: Rect,
    plan: Option<geometry::FitPlan>,
    /// Size the region is resampled to (in oriented axes).
    target: (u32, u32),
}

/// Plans a render of a `stored`-size source whose EXIF orientation is `exif`, and applies
/// the output limits: per-axis (`max_output`) and in pixels, per format.
fn plan_render(
    stored: (u32, u32),
    exif: Orientation,
    t: &Transform,
    opts: &RenderOptions,
) -> Result<Planned, PipelineError> {
    let orient = full_orientation(exif, t)?;
    let oriented = orient.output_dims(stored.0, stored.1);
    let region = crop_region(t, oriented)?;
    let plan = geometry::plan_fit(region.w, region.h, t.width, t.height, t.fit, t.enlarge);
    let target = plan.map_or((region.w, region.h), |p| p.resize);
    let limit = (
        opts.max_output.0.max(region.w),
        opts.max_output.1.max(region.h),
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
    let output = match plan.map(|p| p.canvas) {
        None | Some(Canvas::Exact) => target,
        Some(Canvas::Crop { w, h }) => (w.min(target.0), h.min(target.1)),
        Some(Canvas::Pad { w, h }) => (w, h),
    };
    check_output_pixels(t, (region.w, region.h), target, output, opts)?;
    Ok(Planned {
        orient,
        oriented,
        region,
        plan,
        target,
    })
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

/// Whether `t` on `input` fits the limits of `opts` (source pixels, output size and output
/// pixels per format), from the header alone: lets the server refuse before taking a
/// worker. For JPEG the EXIF orientation is known from the header, so this is exactly the
/// check [`render_with`] makes; other formats carry it (rarely) in metadata the decoder
/// reads, so both axis orders are tried and only a request failing with either is refused
/// here; the render checks again with the real orientation.
pub fn check_output(
    input: &[u8],
    t: &Transform,
    opts: &RenderOptions,
) -> Result<(), PipelineError> {
    let header = detect::read_header(input)?;
    check_pixels(&header, opts.max_source_pixels)?;
    pre_decode_plan(&header, t, opts).map(|_| ())
}

/// [`plan_render`] before decoding: with the JPEG header's orientation, or, for other
/// formats, succeeding when either axis order fits (the plan of the upright one is
/// returned; its error when neither fits).
fn pre_decode_plan(
    header: &detect::Header<'_>,
    t: &Transform,
    opts: &RenderOptions,
) -> Result<Planned, PipelineError> {
    let stored = (header.width, header.height);
    match &header.jpeg {
        Some(meta) => {
            let exif =
                Orientation::from_exif(meta.orientation()).unwrap_or(Orientation::NoTransforms);
            plan_render(stored, exif, t, opts)
        }
        None => plan_render(stored, Orientation::NoTransforms, t, opts)
            .or_else(|e| plan_render(stored, Orientation::Rotate90, t, opts).map_err(|_| e)),
    }
}

/// Decodes `input`, applies `t` and encodes the result.
pub fn render(
    input: &[u8],
    t: &Transform,
    opts: &RenderOptions,
) -> Result<Rendered, PipelineError> {
    render_with(input, t, opts, None)
}

/// [`render`], starting from a decode kept in `sources` when there is one.
pub fn render_with(
    input: &[u8],
    t: &Transform,
    opts: &RenderOptions,
    sources: Option<&dyn DecodedSources>,
) -> Result<Rendered, PipelineError> {
    let header = detect::read_header(input)?;
    check_pixels(&header, opts.max_source_pixels)?;

    // Shrink-on-load needs the final geometry before decoding; for JPEG the orientation is
    // already known from our own header parse. Output limits are enforced here too, before
    // any pixel buffer exists.
    let pre = pre_decode_plan(&header, t, opts)?;
    let shrink = match (&header.jpeg, pre.plan) {
        (Some(_), Some(p)) => geometry::jpeg_shrink((pre.region.w, pre.region.h), p.resize),
        _ => 1,
    };

    let mut decode = || {
        let decoded = decode::decode(input, &header, shrink, opts.max_source_pixels)?;
        let mut image = decoded.image;
        if let Some(icc) = &decoded.icc {
            color::to_srgb(&mut image, icc);
        }
        Ok(DecodedSource {
            image,
            orientation: decoded.orientation,
        })
    };
    let source = match sources {
        Some(kept) => {
            let channels = if header.has_alpha { 4 } else { 3 };
            let estimate = u64::from(header.width.div_ceil(shrink))
                * u64::from(header.height.div_ceil(shrink))
                * channels;
            kept.get_or_decode(shrink, estimate, &mut decode)?
        }
        None => Arc::new(decode()?),
    };
    let src = &source.image;

    let Planned {
        orient,
        oriented,
        region,
        plan,
        target,
    } = plan_render((header.width, header.height), source.orientation, t, opts)?;

    // Crop + resize in one resampling pass, in the stored orientation and at the decoded
    // (possibly shrunk) scale.
    let target_stored = if orient.swaps_axes() {
        (target.1, target.0)
    } else {
        target
    };
    let whole = region.x == 0 && region.y == 0 && (region.w, region.h) == oriented;
    let mut img = if whole && target_stored == (src.width(), src.height()) {
        // Nothing to resample: take the pixels, copying only when they are kept.
        Arc::try_unwrap(source).map_or_else(|kept| kept.image.clone(), |own| own.image)
    } else {
        let (sw, sh) = (f64::from(header.width), f64::from(header.height));
        let r = orient.unmap_rect(
            sw,
            sh,
            RectF {
                x: f64::from(region.x),
                y: f64::from(region.y),
                w: f64::from(region.w),
                h: f64::from(region.h),
            },
        );
        let (fx, fy) = (f64::from(src.width()) / sw, f64::from(src.height()) / sh);
        let r = RectF {
            x: r.x * fx,
            y: r.y * fy,
            w: r.w * fx,
            h: r.h * fy,
        };
        resample::resample(src, Some(r), target_stored)?
    };
    img.apply_orientation(orient.to_image());

    let bg = t.background.unwrap_or(if t.format.supports_alpha() {
        [0, 0, 0, 0]
    } else {
        [255, 255, 255, 255]
    });
    match plan.map(|p| p.canvas) {
        None | Some(Canvas::Exact) => {}
        Some(Canvas::Crop { w, h }) => {
            let (w, h) = (w.min(img.width()), h.min(img.height()));
            let (x, y) = if t.gravity == Gravity::Entropy {
                entropy::entropy_window(&img, (w, h))
            } else {
                geometry::gravity_offset((img.width(), img.height()), (w, h), t.gravity)
            };
            img = img.crop_imm(x, y, w, h);
        }
        Some(Canvas::Pad { w, h }) => img = effects::pad(img, (w, h), t.gravity, bg),
    }

    if let Some(sigma) = t.blur.filter(|s| s.is_finite() && *s > 0.0) {
        effects::blur(&mut img, sigma.min(1000.0));
    }
    if let Some(sigma) = t.sharpen.filter(|s| s.is_finite() && *s > 0.0) {
        effects::sharpen(&mut img, sigma.min(100.0));
    }
    if let Some(wm) = opts.watermark {
        wm.apply(&mut img)?;
    }
    if !t.format.supports_alpha() {
        img = effects::flatten(img, bg);
    }

    let (width, height) = (img.width(), img.height());
    let bytes = encode::encode(img, t.format, t.quality, opts.avif_speed)?;
    Ok(Rendered {
        bytes,
        width,
        height,
        format: t.format,
    })
}

//! The image pipeline: source bytes + a resolved [`Transform`] → encoded output bytes.
//!
//! It exists to keep everything that touches pixels in one synchronous, pure place (no
//! I/O, no async): the server runs [`render`] on a blocking thread and maps
//! [`PipelineError`] to HTTP statuses.
//!
//! A render first makes its plan (`plan::Plan`) from the header, the transform and the limits:
//! orientation, crop region, `fit`, shrink-on-load factor, canvas and the output limits,
//! before any pixel buffer exists. [`render_with`] then executes it:
//!
//! 1. **detect** – magic bytes and header only; the pixel limit is enforced here.
//! 2. **plan** – every geometric decision, and the output size and pixel limits.
//! 3. **decode** – to 8-bit RGB/RGBA, then embedded ICC profile → sRGB; JPEGs are shrunk
//!    on load (DCT scaling 1/2..1/8) when the output is much smaller.
//! 4. **crop + resize** – one Lanczos3 pass (premultiplied alpha) of the crop region,
//!    in the stored orientation.
//! 5. **orient** – EXIF orientation, then `rot`, then `flip`, as one move.
//! 6. **canvas** – cover cut (gravity or entropy) / contain padding.
//! 7. **effects** – blur, then sharpen.
//! 8. **watermark**.
//! 9. **flatten** – onto the background when the output has no alpha.
//! 10. **encode** – sRGB, 8-bit, no metadata.
//!
//! An animated GIF or WebP asked as GIF or WebP (without `frame=first`) goes through
//! `animation`: the same plan and steps 4–9 for every frame, then one animated encode.
//!
//! Crop and resize run in the stored orientation (the crop rectangle is mapped back), and
//! orientation is applied to the already-resized image: rotating a thumbnail instead of a
//! 12 MP frame, with an identical result since both steps commute with the square's
//! symmetries.

mod animation;
mod avif;
mod color;
mod decode;
mod describe;
mod detect;
mod effects;
mod encode;
mod entropy;
mod geometry;
mod heif;
mod plan;
mod resample;
mod watermark;

#[cfg(test)]
mod tests;

use crate::media::SourceFormat;
pub use watermark::Watermark;

use std::sync::Arc;

use image::DynamicImage;
use image::metadata::Orientation;

use crate::media::OutputFormat;
use crate::params::{Gravity, Transform};
use geometry::RectF;
use plan::{CanvasStep, Facts, Plan};

/// Entry points into single steps, for `benches/pipeline.rs` only (not a stable API).
#[doc(hidden)]
pub mod bench {
    use image::DynamicImage;

    use super::{AvifSettings, PipelineError, decode, detect, encode, resample};
    use crate::media::OutputFormat;

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
        avif: AvifSettings,
    ) -> Result<Vec<u8>, PipelineError> {
        encode::encode(p.0.clone(), format, quality, avif)
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
    /// Frames in the file (1 for still images); see `detect::Header::frames`.
    pub frames: u32,
}

impl SourceInfo {
    /// An animated GIF or WebP: more than one frame, in a format whose animation we keep.
    pub fn animated(&self) -> bool {
        self.frames > 1 && matches!(self.format, SourceFormat::Gif | SourceFormat::Webp)
    }
}

/// Header-only: magic bytes + dimensions (as stored, before orientation) + alpha; never
/// decodes pixels.
pub fn probe(input: &[u8]) -> Result<SourceInfo, PipelineError> {
    detect::read_header(input).map(|h| SourceInfo::of(&h))
}

impl SourceInfo {
    fn of(h: &detect::Header<'_>) -> Self {
        SourceInfo {
            format: h.format,
            width: h.width,
            height: h.height,
            has_alpha: h.has_alpha,
            frames: h.frames,
        }
    }
}

/// Upload validation: the header (format, dimensions, at most `max_pixels`) and then a
/// full decode with the decoders delivery uses (JPEG scaled by 1/8 in the IDCT: every
/// entropy-coded byte is still read, so truncation is found, at a fraction of the cost).
pub fn check(input: &[u8], max_pixels: u64) -> Result<SourceInfo, PipelineError> {
    let h = detect::read_header(input)?;
    // Every frame: a stored animation may later be rendered whole.
    check_pixels(&h, max_pixels, true)?;
    decode::decode(input, &h, 8, max_pixels)?;
    Ok(SourceInfo::of(&h))
}

/// The AV1 encoder behind AVIF output (`format.avif_encoder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvifEncoder {
    /// libaom through libavif (10-bit 4:4:4): fewer bytes at equal quality.
    Aom,
    /// rav1e through ravif: faster at its top speeds.
    Rav1e,
}

impl AvifEncoder {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "aom" => Some(AvifEncoder::Aom),
            "rav1e" => Some(AvifEncoder::Rav1e),
            _ => None,
        }
    }

    /// The speeds the encoder takes: libaom's cpu-used 0..=9, rav1e's 1..=10.
    pub fn speeds(self) -> std::ops::RangeInclusive<u8> {
        match self {
            AvifEncoder::Aom => 0..=9,
            AvifEncoder::Rav1e => 1..=10,
        }
    }

    /// The default speed (`format.avif_speed` unset), measured in scripts/bench-quality.
    pub const fn default_speed(self) -> u8 {
        match self {
            AvifEncoder::Aom => 6,
            AvifEncoder::Rav1e => 9,
        }
    }
}

/// Which AV1 encoder and how fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvifSettings {
    pub encoder: AvifEncoder,
    /// In the encoder's own range ([`AvifEncoder::speeds`]); clamped to it.
    pub speed: u8,
}

/// Upload validation (as [`check`]) plus the image's facts (SPEC §10), from the same
/// small decode: JPEG at 1/8 in the IDCT, other formats at full size.
pub fn inspect(
    input: &[u8],
    max_pixels: u64,
) -> Result<(SourceInfo, crate::facts::Facts), PipelineError> {
    describe::describe(input, max_pixels, None)
}

/// The facts of an original, starting from a decode kept in `sources` when there is one.
pub fn facts_with(
    input: &[u8],
    max_pixels: u64,
    sources: Option<&dyn DecodedSources>,
) -> Result<crate::facts::Facts, PipelineError> {
    describe::describe(input, max_pixels, sources).map(|(_, f)| f)
}

/// The EXIF facts (time taken, camera, GPS) of a TIFF-structured EXIF payload, as
/// [`inspect`] reads them; for the fuzz targets (`crate::fuzzing`), not an API.
#[doc(hidden)]
pub fn exif_facts(
    tiff: &[u8],
) -> (
    Option<String>,
    Option<crate::facts::Camera>,
    Option<crate::facts::Gps>,
) {
    describe::exif_facts(tiff)
}

/// Server-side settings for one render.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions<'a> {
    /// Sources with more pixels (width × height as stored) are refused before decoding.
    pub max_source_pixels: u64,
    pub avif: AvifSettings,
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
    /// Animated renders (every frame decoded): most frames, from the header.
    pub max_animation_frames: u32,
    /// Animated renders: most frames × canvas pixels, from the header.
    pub max_animation_pixels: u64,
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
    /// An animation with more frames or frame pixels than allowed (→ 422).
    #[error("{0}")]
    AnimationTooLarge(String),
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

/// Refuses headers declaring more than `limit` pixels, for the image and its first frame,
/// or with `all_frames` any of its frames (a GIF frame can be larger than its logical
/// screen). A still render decodes only the first frame.
fn check_pixels(
    header: &detect::Header<'_>,
    limit: u64,
    all_frames: bool,
) -> Result<(), PipelineError> {
    let frame = if all_frames {
        header.largest_frame
    } else {
        header.first_frame
    };
    for (width, height) in [(header.width, header.height), frame] {
        check_source_pixels(width, height, limit)?;
    }
    Ok(())
}

/// The source pixel limit. Delivery and upload call it on a probed header to refuse
/// before taking a worker slot; every decode here checks it again (frames included).
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
    plan_before_decode(input, t, opts).map(|_| ())
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
    let (header, facts, plan) = plan_before_decode(input, t, opts)?;
    if animation::applies(&header, t) {
        return animation::render(input, &header, facts, plan, t, opts);
    }
    let source = decode_source(input, &header, plan.shrink, opts.max_source_pixels, sources)?;
    let plan = plan.for_orientation(facts, source.orientation, t, opts)?;

    let img = resize_and_orient(source, &plan, facts.stored)?;
    let img = finish(img, plan.canvas, t, opts)?;

    let (width, height) = (img.width(), img.height());
    let bytes = encode::encode(img, t.format, t.quality, opts.avif)?;
    Ok(Rendered {
        bytes,
        width,
        height,
        format: t.format,
    })
}

/// The header and the plan made from it: every refusal that needs no pixels (source
/// pixels, animation limits, parameters, output size and pixel caps), before any pixel
/// buffer exists.
fn plan_before_decode<'a>(
    input: &'a [u8],
    t: &Transform,
    opts: &RenderOptions,
) -> Result<(detect::Header<'a>, Facts, Plan), PipelineError> {
    let header = detect::read_header(input)?;
    let animated = animation::applies(&header, t);
    check_pixels(&header, opts.max_source_pixels, animated)?;
    if animated {
        animation::check_source(&header, opts)?;
    }
    let facts = Facts::of(&header);
    let plan = Plan::before_decode(facts, t, opts)?;
    if animated {
        animation::check_output(&plan, header.frames, t, opts)?;
    }
    Ok((header, facts, plan))
}

/// Decodes at 1/`shrink` and converts to sRGB, or takes a kept decode from `sources`.
fn decode_source(
    input: &[u8],
    header: &detect::Header<'_>,
    shrink: u32,
    max_pixels: u64,
    sources: Option<&dyn DecodedSources>,
) -> Result<Arc<DecodedSource>, PipelineError> {
    let mut decode = || {
        let decoded = decode::decode(input, header, shrink, max_pixels)?;
        let mut image = decoded.image;
        if let Some(icc) = &decoded.icc {
            color::to_srgb(&mut image, icc);
        }
        Ok(DecodedSource {
            image,
            orientation: decoded.orientation,
        })
    };
    match sources {
        Some(kept) => {
            let channels = if header.has_alpha { 4 } else { 3 };
            let estimate = u64::from(header.width.div_ceil(shrink))
                * u64::from(header.height.div_ceil(shrink))
                * channels;
            kept.get_or_decode(shrink, estimate, &mut decode)
        }
        None => Ok(Arc::new(decode()?)),
    }
}

/// Crop and resize, then orientation (`rot`, `flip` and EXIF).
fn resize_and_orient(
    source: Arc<DecodedSource>,
    plan: &Plan,
    stored: (u32, u32),
) -> Result<DynamicImage, PipelineError> {
    let mut img = crop_and_resize(source, plan, stored)?;
    img.apply_orientation(plan.orient.to_image());
    Ok(img)
}

/// The steps after orientation: canvas, effects, watermark, and flattening for formats
/// without alpha.
fn finish(
    img: DynamicImage,
    step: CanvasStep,
    t: &Transform,
    opts: &RenderOptions,
) -> Result<DynamicImage, PipelineError> {
    let bg = background(t);
    let mut img = canvas(img, step, t.gravity, bg);
    apply_effects(&mut img, t);
    if let Some(wm) = opts.watermark {
        wm.apply(&mut img)?;
    }
    if !t.format.supports_alpha() {
        img = effects::flatten(img, bg);
    }
    Ok(img)
}

/// Crop + resize in one resampling pass, in the stored orientation and at the decoded
/// scale (which may be finer than the plan's shrink when a kept decode is used).
fn crop_and_resize(
    source: Arc<DecodedSource>,
    plan: &Plan,
    stored: (u32, u32),
) -> Result<DynamicImage, PipelineError> {
    let src = &source.image;
    let decoded = (src.width(), src.height());
    if !plan.resample && decoded == stored {
        // Nothing to resample: take the pixels, copying only when they are kept.
        return Ok(Arc::try_unwrap(source).map_or_else(|kept| kept.image.clone(), |own| own.image));
    }
    let (fx, fy) = (
        f64::from(decoded.0) / f64::from(stored.0),
        f64::from(decoded.1) / f64::from(stored.1),
    );
    let r = plan.source_rect;
    let r = RectF {
        x: r.x * fx,
        y: r.y * fy,
        w: r.w * fx,
        h: r.h * fy,
    };
    resample::resample(src, Some(r), plan.target_stored)
}

/// The padding / flattening colour: the request's, else transparent when the output
/// format has alpha and white when not.
fn background(t: &Transform) -> [u8; 4] {
    t.background.unwrap_or(if t.format.supports_alpha() {
        [0, 0, 0, 0]
    } else {
        [255, 255, 255, 255]
    })
}

/// Cover cut or contain padding of the oriented image.
fn canvas(img: DynamicImage, step: CanvasStep, gravity: Gravity, bg: [u8; 4]) -> DynamicImage {
    match step {
        CanvasStep::None => img,
        CanvasStep::Cut { w, h, at } => {
            let (x, y) = at.unwrap_or_else(|| entropy::entropy_window(&img, (w, h)));
            img.crop_imm(x, y, w, h)
        }
        CanvasStep::Pad { w, h } => effects::pad(img, (w, h), gravity, bg),
    }
}

/// Blur, then sharpen.
fn apply_effects(img: &mut DynamicImage, t: &Transform) {
    if let Some(sigma) = t.blur.filter(|s| s.is_finite() && *s > 0.0) {
        effects::blur(img, sigma.min(1000.0));
    }
    if let Some(sigma) = t.sharpen.filter(|s| s.is_finite() && *s > 0.0) {
        effects::sharpen(img, sigma.min(100.0));
    }
}

//! Animated GIF and WebP sources rendered as animations (SPEC §9): every frame through the
//! still pipeline's steps, then one animated encode (libwebp's animation encoder, or GIF
//! with a palette per frame), keeping each frame's duration and the loop count.
//!
//! Bounded before any frame is decoded: the frame count and frames × canvas pixels from
//! the header (`max_animation_frames`, `max_animation_pixels`), and frames × output pixels
//! against `max_output_pixels`, since every output frame is held until the WebP encoder
//! runs. Frames are decoded one at a time and composited onto the canvas (GIF by the
//! `image` crate, WebP by `webp_frames`), so only one canvas exists at once; the
//! decoded-originals tier is not used.

mod webp_frames;

use std::borrow::Cow;
use std::io::Cursor;
use std::sync::Arc;

use image::metadata::Orientation;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, RgbaImage};
use webp_frames::WebpFrames;

use super::decode::{self, map_image_error};
use super::detect::{Header, MAX_ICC_BYTES, corrupt};
use super::plan::{CanvasStep, Facts, Plan};
use super::{DecodedSource, PipelineError, RenderOptions, Rendered, SourceFormat, color, entropy};
use crate::media::OutputFormat;
use crate::params::Transform;

/// Largest side libwebp can encode.
const WEBP_MAX: u32 = 16383;
/// NeuQuant sampling factor for GIF palettes, 1 (best) ..= 30 (fastest); 10 is the
/// gif crate's and NeuQuant's usual default balance.
const GIF_SPEED: i32 = 10;
/// Longest frame duration a WebP `ANMF` chunk can hold (24 bits of milliseconds).
const WEBP_MAX_DURATION: u32 = 0xFF_FFFF;

/// Whether `t` on this source is rendered as an animation: an animated GIF or WebP,
/// an output format that animates, and no `frame=first`. (APNG renders its first frame.)
pub(super) fn applies(header: &Header<'_>, t: &Transform) -> bool {
    header.frames > 1
        && matches!(header.format, SourceFormat::Gif | SourceFormat::Webp)
        && t.format.supports_animation()
        && !t.first_frame
}

/// The source limits of an animated render, from the header alone: frame count, and
/// frames × canvas pixels (every composited frame is a canvas).
pub(super) fn check_source(header: &Header<'_>, opts: &RenderOptions) -> Result<(), PipelineError> {
    let frames = header.frames;
    if frames > opts.max_animation_frames {
        return Err(PipelineError::AnimationTooLarge(format!(
            "the animation has {frames} frames, more than the limit of {}",
            opts.max_animation_frames
        )));
    }
    let pixels = u64::from(frames) * u64::from(header.width) * u64::from(header.height);
    if pixels > opts.max_animation_pixels {
        return Err(PipelineError::AnimationTooLarge(format!(
            "the animation has {frames} frames of {}x{} ({pixels} pixels), more than the limit of {}",
            header.width, header.height, opts.max_animation_pixels
        )));
    }
    Ok(())
}

/// An animated output holds every frame: frames × output pixels against the output pixel
/// cap of the format (400, like any output cap).
pub(super) fn check_output(
    plan: &Plan,
    frames: u32,
    t: &Transform,
    opts: &RenderOptions,
) -> Result<(), PipelineError> {
    let (w, h) = plan.output;
    let pixels = u64::from(frames) * u64::from(w) * u64::from(h);
    let limit = opts.output_pixel_cap(t.format);
    if pixels > limit {
        return Err(PipelineError::InvalidParam {
            param: if t.height.is_some() && t.width.is_none() {
                "h"
            } else {
                "w"
            },
            detail: format!(
                "the animated {} result would be {frames} frames of {w}x{h} ({pixels} pixels), \
                 more than the limit of {limit}; ask for a smaller `w`/`h` or `frame=first`",
                t.format.name()
            ),
        });
    }
    Ok(())
}

/// Decodes every frame, applies the plan to each and encodes the animation.
pub(super) fn render(
    input: &[u8],
    header: &Header<'_>,
    facts: Facts,
    plan: Plan,
    t: &Transform,
    opts: &RenderOptions,
) -> Result<Rendered, PipelineError> {
    let max_pixels = opts.max_source_pixels;
    let Opened {
        mut frames,
        icc,
        orientation,
    } = open(input, header, max_pixels)?;
    let mut plan = plan.for_orientation(facts, orientation, t, opts)?;
    check_output(&plan, header.frames, t, opts)?;
    let mut sink = Sink::new(t, plan.output, header.plays)?;
    let mut count = 0u32;
    while let Some(frame) = frames.next(header, max_pixels) {
        count += 1;
        // Our header walk decided the limits; refuse if the decoder finds more frames.
        if count > header.frames {
            return Err(corrupt(header.format));
        }
        let (canvas, delay_ms) = frame?;
        let mut image = DynamicImage::ImageRgba8(canvas);
        if let Some(icc) = &icc {
            color::to_srgb(&mut image, icc);
        }
        let source = Arc::new(DecodedSource { image, orientation });
        let img = super::resize_and_orient(source, &plan, facts.stored)?;
        // `g=entropy` is decided on the first frame; every frame is cut at that window.
        if let CanvasStep::Cut { w, h, at: None } = plan.canvas {
            let at = entropy::entropy_window(&img, (w, h));
            plan.canvas = CanvasStep::Cut { w, h, at: Some(at) };
        }
        let img = super::finish(img, plan.canvas, t, opts)?;
        sink.push(img, delay_ms)?;
    }
    if count == 0 {
        return Err(corrupt(header.format));
    }
    let (width, height) = plan.output;
    Ok(Rendered {
        bytes: sink.finish()?,
        width,
        height,
        format: t.format,
    })
}

/// An animation ready to decode.
struct Opened<'a> {
    frames: Frames<'a>,
    /// At most `MAX_ICC_BYTES`.
    icc: Option<Cow<'a, [u8]>>,
    orientation: Orientation,
}

fn open<'a>(
    input: &'a [u8],
    header: &Header<'_>,
    max_pixels: u64,
) -> Result<Opened<'a>, PipelineError> {
    let limits = decode::limits(header, max_pixels);
    let err = |e| map_image_error(e, header, max_pixels);
    match header.format {
        SourceFormat::Gif => {
            let mut dec = image::codecs::gif::GifDecoder::new(Cursor::new(input)).map_err(err)?;
            dec.set_limits(limits).map_err(err)?;
            let icc = dec
                .icc_profile()
                .ok()
                .flatten()
                .filter(|p| p.len() <= MAX_ICC_BYTES);
            Ok(Opened {
                frames: Frames::Gif(dec.into_frames()),
                icc: icc.map(Cow::Owned),
                orientation: Orientation::NoTransforms,
            })
        }
        SourceFormat::Webp => {
            // Metadata from our own capped chunk walk, as for still WebP.
            let (icc, orientation) = decode::webp_metadata(input);
            Ok(Opened {
                frames: Frames::Webp(WebpFrames::new(input, header.width, header.height)),
                icc,
                orientation,
            })
        }
        _ => Err(PipelineError::Unsupported(format!(
            "animated {} is not supported",
            header.format.name()
        ))),
    }
}

/// Composited frames, canvas-sized RGBA, decoded one at a time, with their durations (ms).
enum Frames<'a> {
    Gif(image::Frames<'a>),
    Webp(WebpFrames<'a>),
}

impl Frames<'_> {
    fn next(
        &mut self,
        header: &Header<'_>,
        max_pixels: u64,
    ) -> Option<Result<(RgbaImage, u32), PipelineError>> {
        match self {
            Frames::Gif(frames) => frames.next().map(|frame| {
                let frame = frame.map_err(|e| map_image_error(e, header, max_pixels))?;
                let (num, den) = frame.delay().numer_denom_ms();
                Ok((frame.into_buffer(), num.checked_div(den).unwrap_or(0)))
            }),
            Frames::Webp(frames) => frames.next(),
        }
    }
}

/// Where rendered frames go: GIF frames are encoded as they come; WebP frames are kept
/// for libwebp's animation encoder, which compares neighbouring frames.
enum Sink {
    Gif {
        size: (u32, u32),
        enc: gif::Encoder<Vec<u8>>,
    },
    Webp {
        size: (u32, u32),
        quality: u8,
        plays: u32,
        frames: Vec<(RgbaImage, u32)>,
    },
}

impl Sink {
    fn new(t: &Transform, (w, h): (u32, u32), plays: u32) -> Result<Sink, PipelineError> {
        match t.format {
            OutputFormat::Gif => Ok(Sink::Gif {
                size: (w, h),
                enc: gif_encoder(w, h, plays)?,
            }),
            OutputFormat::Webp => {
                if w > WEBP_MAX || h > WEBP_MAX {
                    return Err(PipelineError::InvalidParam {
                        param: "fm",
                        detail: format!("WebP output is limited to {WEBP_MAX} pixels per side"),
                    });
                }
                Ok(Sink::Webp {
                    size: (w, h),
                    quality: t.quality,
                    plays,
                    frames: Vec::new(),
                })
            }
            other => Err(PipelineError::Encode(format!(
                "{} output has no animation",
                other.name()
            ))),
        }
    }

    fn push(&mut self, img: DynamicImage, delay_ms: u32) -> Result<(), PipelineError> {
        let size = (img.width(), img.height());
        let mut rgba = match img {
            DynamicImage::ImageRgba8(b) => b,
            other => other.to_rgba8(),
        };
        match self {
            Sink::Gif { size: want, enc } => {
                if size != *want {
                    return Err(frame_size_error());
                }
                // Sizes fit u16: checked by `gif_encoder`.
                let (w, h) = (size.0 as u16, size.1 as u16);
                let mut frame = gif::Frame::from_rgba_speed(w, h, &mut rgba, GIF_SPEED);
                // GIF delays are centiseconds.
                frame.delay = u16::try_from(delay_ms.saturating_add(5) / 10).unwrap_or(u16::MAX);
                // Every frame is a whole canvas: clear it before the next, so transparent
                // pixels do not show the previous frame.
                frame.dispose = gif::DisposalMethod::Background;
                enc.write_frame(&frame).map_err(|_| gif_error())
            }
            Sink::Webp {
                size: want, frames, ..
            } => {
                if size != *want {
                    return Err(frame_size_error());
                }
                frames.push((rgba, delay_ms.min(WEBP_MAX_DURATION)));
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<Vec<u8>, PipelineError> {
        match self {
            Sink::Gif { enc, .. } => enc.into_inner().map_err(|_| gif_error()),
            Sink::Webp {
                size,
                quality,
                plays,
                frames,
            } => webp_animation(size, quality, plays, &frames),
        }
    }
}

fn frame_size_error() -> PipelineError {
    PipelineError::Encode("animation frames differ in size".into())
}

fn gif_error() -> PipelineError {
    PipelineError::Encode("failed to encode GIF".into())
}

fn webp_error() -> PipelineError {
    PipelineError::Encode("failed to encode WebP".into())
}

/// A GIF encoder for a `w`×`h` canvas that plays `plays` times (0 = forever): no
/// `NETSCAPE2.0` extension plays once, one with repeat count n plays n + 1 times.
fn gif_encoder(w: u32, h: u32, plays: u32) -> Result<gif::Encoder<Vec<u8>>, PipelineError> {
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(PipelineError::InvalidParam {
            param: "fm",
            detail: format!("GIF output is limited to {} pixels per side", u16::MAX),
        });
    };
    let mut enc = gif::Encoder::new(Vec::new(), w16, h16, &[]).map_err(|_| gif_error())?;
    let repeat = match plays {
        0 => Some(gif::Repeat::Infinite),
        1 => None,
        n => Some(gif::Repeat::Finite(
            u16::try_from(n - 1).unwrap_or(u16::MAX),
        )),
    };
    if let Some(r) = repeat {
        enc.set_repeat(r).map_err(|_| gif_error())?;
    }
    Ok(enc)
}

/// One still image as a GIF (palette quantised when it has more than 256 colours).
pub(super) fn gif_still(
    bytes: &[u8],
    w: u32,
    h: u32,
    alpha: bool,
) -> Result<Vec<u8>, PipelineError> {
    let mut enc = gif_encoder(w, h, 1)?;
    // Sizes fit u16: checked by `gif_encoder`.
    let (w, h) = (w as u16, h as u16);
    let frame = if alpha {
        gif::Frame::from_rgba_speed(w, h, &mut bytes.to_vec(), GIF_SPEED)
    } else {
        gif::Frame::from_rgb_speed(w, h, bytes, GIF_SPEED)
    };
    enc.write_frame(&frame).map_err(|_| gif_error())?;
    enc.into_inner().map_err(|_| gif_error())
}

/// Animated WebP through libwebp's `WebPAnimEncoder` (lossy at `quality`, method 4 as
/// for stills), which encodes only what changes between frames.
fn webp_animation(
    (w, h): (u32, u32),
    quality: u8,
    plays: u32,
    frames: &[(RgbaImage, u32)],
) -> Result<Vec<u8>, PipelineError> {
    let mut config = webp::WebPConfig::new().map_err(|_| webp_error())?;
    config.lossless = 0;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = 4;
    let mut enc = webp::AnimEncoder::new(w, h, &config);
    enc.set_loop_count(i32::from(u16::try_from(plays).unwrap_or(u16::MAX)));
    let mut timestamp: i32 = 0;
    let mut total: u64 = 0;
    for (img, delay) in frames {
        // The binding imports each frame as `w`×`h` without checking its length.
        if img.dimensions() != (w, h) {
            return Err(frame_size_error());
        }
        enc.add_frame(webp::AnimFrame::from_rgba(img.as_raw(), w, h, timestamp));
        timestamp = timestamp
            .checked_add_unsigned(*delay)
            .ok_or_else(|| PipelineError::AnimationTooLarge("the animation is too long".into()))?;
        total += u64::from(*delay);
    }
    let mut out = enc.try_encode().map_err(|_| webp_error())?.to_vec();
    set_last_duration(&mut out, total);
    Ok(out)
}

/// libwebp takes the last frame's duration from a closing call, which the `webp` crate
/// makes with timestamp 0 (refused by libwebp as going backwards); the last frame then gets
/// the average of the others. Rewrites it so the durations add up to `total_ms` again.
/// (libwebp may have merged identical frames into one `ANMF`, with their durations summed:
/// counting from the total keeps that right too.)
pub(super) fn set_last_duration(webp: &mut [u8], total_ms: u64) {
    let le24 = |b: &[u8], at: usize| {
        u64::from(b[at]) | u64::from(b[at + 1]) << 8 | u64::from(b[at + 2]) << 16
    };
    let mut pos = 12usize;
    let mut last: Option<usize> = None;
    let mut before_last = 0u64;
    while let Some(head) = webp.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        // The duration is at offset 12 of the ANMF payload.
        if &head[..4] == b"ANMF" && len >= 16 && webp.len() >= pos + 8 + 16 {
            if let Some(prev) = last {
                before_last += le24(webp, prev + 8 + 12);
            }
            last = Some(pos);
        }
        pos = pos
            .saturating_add(8)
            .saturating_add(len)
            .saturating_add(len & 1);
    }
    if let Some(at) = last {
        let d = total_ms
            .saturating_sub(before_last)
            .min(u64::from(WEBP_MAX_DURATION));
        webp[at + 20..at + 23].copy_from_slice(&(d as u32).to_le_bytes()[..3]);
    }
}

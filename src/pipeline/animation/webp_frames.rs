//! Animated WebP frames, decoded by libwebp and composited as libwebp's `WebPAnimDecoder`
//! does (and browsers): the canvas starts transparent, a frame is alpha-blended onto it or
//! replaces its rectangle, and "dispose to background" clears that rectangle to transparent
//! before the next frame (the `ANIM` background colour is only a hint, ignored as libwebp
//! ignores it).
//!
//! Why not a ready decoder: image-webp 0.2 clears a disposed rectangle with the wrong
//! stride when the next frame has no alpha (the previous frame shows through, corrupted),
//! and the `webp` crate's `AnimDecoder` keeps every decoded frame in memory at once. Here
//! one frame at a time is decoded with libwebp's still decoder (about 5× faster than
//! image-webp on lossy data) from the frame's own chunks.

use image::RgbaImage;

use super::super::detect::{corrupt, webp_chunks};
use super::super::{PipelineError, SourceFormat};

/// The composited frames of an animated WebP, with their durations in milliseconds.
pub(super) struct WebpFrames<'a> {
    chunks: Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a>,
    width: u32,
    height: u32,
    /// RGBA; allocated with the first frame.
    canvas: Vec<u8>,
    /// The previous frame's rectangle when it is to be disposed to background.
    dispose: Option<Rect>,
}

#[derive(Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

impl<'a> WebpFrames<'a> {
    /// Frames of `input`, whose canvas (`VP8X`) is `width`×`height`, as read by the header
    /// walk that checked the limits.
    pub(super) fn new(input: &'a [u8], width: u32, height: u32) -> Self {
        WebpFrames {
            chunks: Box::new(webp_chunks(input)),
            width,
            height,
            canvas: Vec::new(),
            dispose: None,
        }
    }

    fn frame(&mut self, anmf: &[u8]) -> Result<(RgbaImage, u32), PipelineError> {
        let bad = || corrupt(SourceFormat::Webp);
        let le24 = |at: usize| -> Result<usize, PipelineError> {
            let b = anmf.get(at..at + 3).ok_or_else(bad)?;
            Ok(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
        };
        let rect = Rect {
            x: le24(0)? * 2,
            y: le24(3)? * 2,
            w: le24(6)? + 1,
            h: le24(9)? + 1,
        };
        let duration = le24(12)? as u32;
        let flags = *anmf.get(15).ok_or_else(bad)?;
        let (blend, dispose) = (flags & 2 == 0, flags & 1 == 1);
        let (cw, ch) = (self.width as usize, self.height as usize);
        if rect.x + rect.w > cw || rect.y + rect.h > ch {
            return Err(bad());
        }
        let pixels = decode_frame(&anmf[16..], rect.w, rect.h).ok_or_else(bad)?;

        if self.canvas.is_empty() {
            self.canvas = vec![0; cw * ch * 4];
        }
        if let Some(r) = self.dispose.take() {
            for row in r.y..r.y + r.h {
                let start = (row * cw + r.x) * 4;
                self.canvas[start..start + r.w * 4].fill(0);
            }
        }
        for (row, src) in pixels.chunks_exact(rect.w * 4).enumerate() {
            let start = ((rect.y + row) * cw + rect.x) * 4;
            let dst = &mut self.canvas[start..start + rect.w * 4];
            if blend {
                for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                    blend_pixel(d, s);
                }
            } else {
                dst.copy_from_slice(src);
            }
        }
        if dispose {
            self.dispose = Some(rect);
        }
        let frame =
            RgbaImage::from_raw(self.width, self.height, self.canvas.clone()).ok_or_else(bad)?;
        Ok((frame, duration))
    }
}

impl Iterator for WebpFrames<'_> {
    type Item = Result<(RgbaImage, u32), PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, anmf) = self.chunks.by_ref().find(|(kind, _)| *kind == b"ANMF")?;
        Some(self.frame(anmf))
    }
}

/// libwebp's non-premultiplied "source over" (`BlendPixelNonPremult` in anim_decode.c).
fn blend_pixel(dst: &mut [u8], src: &[u8]) {
    let src_a = u32::from(src[3]);
    if src_a == 0 {
        return;
    }
    let dst_a = u32::from(dst[3]);
    let dst_factor_a = (dst_a * (256 - src_a)) >> 8;
    let blend_a = src_a + dst_factor_a;
    let scale = (1u32 << 24) / blend_a;
    for c in 0..3 {
        let v = u32::from(src[c]) * src_a + u32::from(dst[c]) * dst_factor_a;
        dst[c] = ((v * scale) >> 24) as u8;
    }
    dst[3] = blend_a as u8;
}

/// One frame's bitstream (an optional `ALPH` chunk, then `VP8 ` or `VP8L`) wrapped as a
/// still WebP file and decoded by libwebp to `w`×`h` RGBA; `None` when broken or of
/// another size.
fn decode_frame(data: &[u8], w: usize, h: usize) -> Option<Vec<u8>> {
    let mut alph = None;
    let mut image = None;
    let mut pos = 0usize;
    while let Some(head) = data.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let chunk = data.get(pos..(pos + 8).checked_add(len)?)?;
        match &head[..4] {
            b"ALPH" => alph = Some(chunk),
            b"VP8 " | b"VP8L" => {
                image = Some(chunk);
                break;
            }
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    let image = image?;
    let lossless = image.starts_with(b"VP8L");
    let mut file = b"RIFF\0\0\0\0WEBP".to_vec();
    let put = |file: &mut Vec<u8>, chunk: &[u8]| {
        file.extend_from_slice(chunk);
        if chunk.len() % 2 == 1 {
            file.push(0);
        }
    };
    match alph {
        // Lossless frames carry their own alpha.
        Some(alph) if !lossless => {
            let mut vp8x = b"VP8X\x0a\0\0\0\x10\0\0\0".to_vec();
            vp8x.extend_from_slice(&u32::try_from(w - 1).ok()?.to_le_bytes()[..3]);
            vp8x.extend_from_slice(&u32::try_from(h - 1).ok()?.to_le_bytes()[..3]);
            put(&mut file, &vp8x);
            put(&mut file, alph);
        }
        _ => {}
    }
    put(&mut file, image);
    let riff = u32::try_from(file.len() - 8).ok()?;
    file[4..8].copy_from_slice(&riff.to_le_bytes());
    let decoded = webp::Decoder::new(&file).decode()?;
    if (decoded.width() as usize, decoded.height() as usize) != (w, h) {
        return None;
    }
    if decoded.is_alpha() {
        Some(decoded.to_vec())
    } else {
        let mut rgba = Vec::with_capacity(w * h * 4);
        for p in decoded.chunks_exact(3) {
            rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
        }
        Some(rgba)
    }
}

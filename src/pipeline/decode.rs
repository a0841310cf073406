//! Decoding to 8-bit RGB/RGBA plus the metadata later steps need (orientation, ICC).
//!
//! JPEGs (YCbCr, gray and CMYK) go through libjpeg-turbo, which can scale by 1/2, 1/4 or
//! 1/8 inside the IDCT: a 12 MP photo destined for a 400 px thumbnail never exists at full
//! size. PNG, WebP and GIF use the `image` crate with limits set to the dimensions
//! already read from the header, as a second guard against a decoder disagreeing with our
//! header parser.
//!
//! Embedded ICC profiles are read by us, never by the decoders, with a size cap
//! (`detect::MAX_ICC_BYTES`): PNG's iCCP is compressed, and a few hundred KiB can inflate
//! to gigabytes inside a decoder that only stops at its allocation limit.

use std::borrow::Cow;
use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, Limits};

use super::detect::{Header, MAX_ICC_BYTES, MAX_JPEG_SCANS, MAX_METADATA_BYTES, corrupt};
use super::{PipelineError, SourceFormat};

/// A decoded image, always `ImageRgb8` or `ImageRgba8`.
pub(crate) struct Decoded<'a> {
    pub image: DynamicImage,
    pub orientation: Orientation,
    /// At most `MAX_ICC_BYTES`, borrowed from the input where it is stored uncompressed.
    pub icc: Option<Cow<'a, [u8]>>,
}

/// Decodes `input`. `shrink` (1, 2, 4 or 8) is honoured for JPEGs only; callers
/// compare the decoded size with the header to learn the factor actually applied.
pub(crate) fn decode<'a>(
    input: &'a [u8],
    header: &'a Header<'a>,
    shrink: u32,
    max_pixels: u64,
) -> Result<Decoded<'a>, PipelineError> {
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
            // The decoder never sees iCCP (we inflate it ourselves, capped) nor text chunks
            // (unused; it would keep them in memory).
            let dec = image::codecs::png::PngDecoder::with_limits(PngWithout::new(input), limits)
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, orientation, _) = with_image_crate(dec, header, max_pixels, false)?;
            Ok(Decoded {
                image,
                orientation,
                icc: header.png_iccp.and_then(png_icc).map(Cow::Owned),
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
            // first frame. Metadata comes from our own (capped) chunk walk.
            let dec = image::codecs::webp::WebPDecoder::new(Cursor::new(input))
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, _, _) = with_image_crate(dec, header, max_pixels, false)?;
            let (icc, orientation) = webp_metadata(input);
            Ok(Decoded {
                image,
                orientation,
                icc,
            })
        }
        SourceFormat::Heic | SourceFormat::Heif | SourceFormat::Avif => {
            super::heif::decode(input, header)
        }
        SourceFormat::Gif => {
            // GIF decodes the first frame composited onto the logical screen. Its ICC
            // profile (an application extension) is stored uncompressed, so it is bounded
            // by the file size; a too large one is dropped all the same.
            let dec = image::codecs::gif::GifDecoder::new(Cursor::new(input))
                .map_err(|e| map_image_error(e, header, max_pixels))?;
            let (image, orientation, icc) = with_image_crate(dec, header, max_pixels, true)?;
            Ok(Decoded {
                image,
                orientation,
                icc: icc.map(Cow::Owned),
            })
        }
    }
}

/// Inflates PNG iCCP chunk data (keyword, NUL, compression method 0, zlib stream) to at
/// most `MAX_ICC_BYTES`; `None` (no colour conversion) when larger or broken.
pub(super) fn png_icc(chunk: &[u8]) -> Option<Vec<u8>> {
    let nul = chunk.iter().take(80).position(|&b| b == 0)?;
    if nul == 0 || *chunk.get(nul + 1)? != 0 {
        return None;
    }
    fdeflate::decompress_to_vec_bounded(chunk.get(nul + 2..)?, MAX_ICC_BYTES).ok()
}

/// ICC profile and orientation of an extended WebP from our chunk walk.
pub(super) fn webp_metadata(input: &[u8]) -> (Option<Cow<'_, [u8]>>, Orientation) {
    let (icc, exif) = super::detect::webp_metadata(input);
    let orientation = exif
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    (icc.map(Cow::Borrowed), orientation)
}

/// A PNG stream read in place with some ancillary chunks left out: `iCCP` (which the png
/// crate would inflate up to the whole allocation limit, then `icc_profile()` copy),
/// `tEXt`/`zTXt`/`iTXt` (kept in memory, never used) and `eXIf` larger than
/// `MAX_METADATA_BYTES`. Whole chunks go, each with its own CRC, so the rest stays valid.
struct PngWithout<'a> {
    input: &'a [u8],
    pos: usize,
    /// End of the bytes passed through; a chunk header starts here.
    kept_end: usize,
    emitted: u64,
}

impl<'a> PngWithout<'a> {
    fn new(input: &'a [u8]) -> Self {
        PngWithout {
            input,
            pos: 0,
            kept_end: input.len().min(8), // signature
            emitted: 0,
        }
    }

    /// At a chunk boundary: skips dropped chunks and marks the next kept one.
    fn next_chunk(&mut self) {
        while self.pos == self.kept_end && self.pos < self.input.len() {
            let header = self.input.get(self.pos..self.pos + 8);
            let Some((len, kind)) = header.map(|h| (be32(&h[..4]) as usize, &h[4..])) else {
                // A truncated chunk header: pass it on for the decoder to report.
                self.kept_end = self.input.len();
                return;
            };
            let end = self.pos.saturating_add(12).saturating_add(len);
            let dropped = matches!(kind, b"iCCP" | b"tEXt" | b"zTXt" | b"iTXt")
                || (kind == b"eXIf" && len > MAX_METADATA_BYTES);
            if dropped && end <= self.input.len() {
                self.pos = end;
            }
            self.kept_end = end.min(self.input.len());
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Read for PngWithout<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for PngWithout<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.next_chunk();
        Ok(&self.input[self.pos..self.kept_end])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.kept_end);
        self.emitted += n as u64;
    }
}

/// The png crate requires `Seek` but only reads forward; position queries are answered,
/// anything else is refused (and would surface as a corrupt image, caught by the tests).
impl Seek for PngWithout<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match pos {
            SeekFrom::Current(0) => Ok(self.emitted),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "PNG input is read forward only",
            )),
        }
    }
}

pub(super) fn limits(header: &Header<'_>, max_pixels: u64) -> Limits {
    let mut limits = Limits::no_limits();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    // 16-bit RGBA frame plus headroom for decoder internals.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    limits
}

pub(super) fn map_image_error(
    e: ImageError,
    header: &Header<'_>,
    max_pixels: u64,
) -> PipelineError {
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

/// Decodes through the `image` crate; the decoder's ICC profile only with `want_icc`,
/// and only when at most `MAX_ICC_BYTES`.
fn with_image_crate(
    mut dec: impl ImageDecoder,
    header: &Header<'_>,
    max_pixels: u64,
    want_icc: bool,
) -> Result<(DynamicImage, Orientation, Option<Vec<u8>>), PipelineError> {
    dec.set_limits(limits(header, max_pixels))
        .map_err(|e| map_image_error(e, header, max_pixels))?;
    // Broken metadata must not make an otherwise readable image fail.
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = if want_icc {
        dec.icc_profile()
            .ok()
            .flatten()
            .filter(|p| p.len() <= MAX_ICC_BYTES)
    } else {
        None
    };
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
fn decode_libwebp<'a>(input: &'a [u8], header: &Header<'_>) -> Result<Decoded<'a>, PipelineError> {
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
    let (icc, orientation) = webp_metadata(input);
    Ok(Decoded {
        image,
        orientation,
        icc,
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
    // Before anything is allocated: each scan costs a pass over all coefficients.
    let scan = header.jpeg.as_ref().map_or(0, |m| m.scan_offset);
    if super::detect::jpeg_scan_count(input, scan, MAX_JPEG_SCANS) > MAX_JPEG_SCANS {
        return Err(too_many_scans());
    }
    let mut dec = turbojpeg::Decompressor::new()
        .map_err(|_| PipelineError::Encode("JPEG decoder unavailable".into()))?;
    // libjpeg-turbo's own count, in case it sees scans our walk did not.
    dec.set_scan_limit(MAX_JPEG_SCANS)
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
        if msg.contains("more than") && msg.contains("scans") {
            return Err(too_many_scans());
        }
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

fn too_many_scans() -> PipelineError {
    PipelineError::Corrupt(format!(
        "JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes)"
    ))
}

/// Whether an EOI marker follows the first scan (at `scan_offset`, found by the header
/// parser, so an EXIF thumbnail's EOI does not count). Entropy-coded data escapes 0xFF as
/// 0xFF00, so 0xFFD9 there can only be the real end of the stream.
fn has_eoi(input: &[u8], scan_offset: usize) -> bool {
    input
        .get(scan_offset..)
        .is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, 0xD9]))
}

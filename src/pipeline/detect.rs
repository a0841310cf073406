//! Format sniffing and header parsing without touching pixel data.
//!
//! The pixel limit has to be enforced before any decoder allocates a frame buffer, and
//! JPEG shrink-on-load has to be planned before decoding, so the few header fields we need
//! (dimensions, alpha, JPEG orientation and ICC profile) are read here by hand. Only
//! fixed-size fields are read and nothing is allocated in proportion to the image size.
//!
//! The pixel limit covers every frame a decoder may allocate, so GIF and animated WebP
//! frames are walked here too: a GIF frame can be larger than its logical screen.

use std::borrow::Cow;

use super::{PipelineError, SourceFormat};

/// Largest embedded ICC profile we use (after inflating, for PNG). Real profiles are well
/// under 1 MiB; a larger one is ignored like a broken one (decoded without colour
/// conversion), which is also what browsers do.
pub(crate) const MAX_ICC_BYTES: usize = 4 << 20;

/// Largest metadata chunk (EXIF) a decoder is allowed to keep; larger ones are skipped.
pub(crate) const MAX_METADATA_BYTES: usize = 4 << 20;

/// Most scans (SOS markers) a JPEG may have. Every scan of a progressive JPEG is a pass
/// over all coefficients, so repeated scans multiply decode time without adding pixels.
/// Encoders write about 10 (jpegtran, mozjpeg, jpegli, Photoshop: 3-5); libjpeg-turbo's
/// tools stop at 500.
pub(crate) const MAX_JPEG_SCANS: u32 = 100;

/// What the header tells us.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    /// Frames in the file: GIF image descriptors, animated WebP `ANMF` chunks, APNG's
    /// declared `acTL` count; 1 for still images.
    pub frames: u32,
    /// Size of the frame with the most pixels (the image size for still images): what a
    /// decoder allocates, which for GIF can exceed the logical screen.
    pub largest_frame: (u32, u32),
    /// Size of the first frame (the image size for still images): all a still render
    /// decodes of an animation.
    pub first_frame: (u32, u32),
    /// How many times an animation plays, 0 = forever: WebP's `ANIM` loop count as is;
    /// for GIF, 1 without a `NETSCAPE2.0` extension and its repeat count + 1 with one (0
    /// stays 0), which is how browsers play them. 0 for still images.
    pub plays: u32,
    /// Only for JPEG: metadata segments found before the first scan.
    pub jpeg: Option<JpegMeta<'a>>,
    /// Only for PNG: the data of the `iCCP` chunk the decoder would read (the first one,
    /// before IDAT), still compressed.
    pub png_iccp: Option<&'a [u8]>,
}

impl Header<'_> {
    pub(crate) fn still(format: SourceFormat, width: u32, height: u32, has_alpha: bool) -> Self {
        Header {
            format,
            width,
            height,
            has_alpha,
            frames: 1,
            largest_frame: (width, height),
            first_frame: (width, height),
            plays: 0,
            jpeg: None,
            png_iccp: None,
        }
    }
}

/// JPEG metadata collected while walking the marker segments.
#[derive(Debug, Default)]
pub(crate) struct JpegMeta<'a> {
    /// TIFF payload of the first `Exif` APP1 segment (after `Exif\0\0`).
    pub exif: Option<&'a [u8]>,
    /// `ICC_PROFILE` APP2 chunks as `(sequence number, payload)`, at most 255 of them
    /// (sequence numbers are one byte) holding at most `MAX_ICC_BYTES` together.
    pub icc_chunks: Vec<(u8, &'a [u8])>,
    /// More ICC chunks or bytes than that: the profile is ignored.
    pub icc_too_large: bool,
    /// Offset of the first SOS marker (start of entropy-coded data).
    pub scan_offset: usize,
}

impl JpegMeta<'_> {
    /// The ICC profile reassembled from its chunks, if any and not too large; borrowed
    /// when it is a single chunk (the common case).
    pub fn icc_profile(&self) -> Option<Cow<'_, [u8]>> {
        match self.icc_chunks.as_slice() {
            _ if self.icc_too_large => None,
            [] => None,
            [(_, one)] => Some(Cow::Borrowed(one)),
            chunks => {
                let mut chunks = chunks.to_vec();
                chunks.sort_by_key(|(seq, _)| *seq);
                Some(Cow::Owned(
                    chunks.iter().flat_map(|(_, d)| d.iter().copied()).collect(),
                ))
            }
        }
    }

    /// EXIF orientation 1..=8, 1 when absent or invalid.
    pub fn orientation(&self) -> u8 {
        self.exif
            .and_then(image::metadata::Orientation::from_exif_chunk)
            .map_or(1, |o| o.to_exif())
    }
}

/// Identifies the format from the magic bytes.
pub(crate) fn sniff(input: &[u8]) -> Result<SourceFormat, PipelineError> {
    SourceFormat::sniff(input).ok_or_else(|| {
        PipelineError::Unsupported("not a JPEG, PNG, WebP, GIF, HEIC/HEIF or AVIF image".into())
    })
}

/// Sniffs the format and parses its header.
pub(crate) fn read_header(input: &[u8]) -> Result<Header<'_>, PipelineError> {
    let format = sniff(input)?;
    let header = match format {
        SourceFormat::Jpeg => jpeg_header(input),
        SourceFormat::Png => png_header(input),
        SourceFormat::Webp => webp_header(input),
        SourceFormat::Gif => gif_header(input),
        SourceFormat::Heic | SourceFormat::Heif | SourceFormat::Avif => {
            super::heif::header(input, format)
        }
    }
    .ok_or_else(|| corrupt(format))?;
    if header.width == 0 || header.height == 0 {
        return Err(corrupt(format));
    }
    Ok(header)
}

pub(crate) fn corrupt(format: SourceFormat) -> PipelineError {
    PipelineError::Corrupt(format!("corrupt or truncated {} data", format.name()))
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Walks the marker segments up to the first SOS. `None` means truncated or malformed.
fn jpeg_header(input: &[u8]) -> Option<Header<'_>> {
    let mut meta = JpegMeta::default();
    let mut dims = None;
    let mut pos = 2; // after SOI
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if *input.get(pos)? != 0xFF {
            return None;
        }
        while *input.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *input.get(pos)?;
        pos += 1;
        match marker {
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return None, // EOI before any scan
            _ => {}
        }
        let len = be16(input, pos)? as usize;
        if len < 2 {
            return None;
        }
        let data = input.get(pos + 2..pos + len)?;
        match marker {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let height = be16(data, 1)?;
                let width = be16(data, 3)?;
                dims = Some((width, height));
            }
            0xE1 if data.starts_with(b"Exif\0\0") && meta.exif.is_none() => {
                meta.exif = Some(&data[6..]);
            }
            0xE2 if data.starts_with(b"ICC_PROFILE\0") && data.len() > 14 => {
                // Bounded so that thousands of tiny APP2 segments cannot grow the list.
                let total: usize = meta.icc_chunks.iter().map(|(_, d)| d.len()).sum();
                if meta.icc_chunks.len() >= 255 || total + data.len() - 14 > MAX_ICC_BYTES {
                    meta.icc_too_large = true;
                    meta.icc_chunks.clear();
                } else if !meta.icc_too_large {
                    meta.icc_chunks.push((data[12], &data[14..]));
                }
            }
            0xDA => {
                let (width, height) = dims?;
                meta.scan_offset = pos - 2;
                return Some(Header {
                    jpeg: Some(meta),
                    ..Header::still(SourceFormat::Jpeg, width, height, false)
                });
            }
            _ => {}
        }
        pos += len;
    }
}

/// Counts the scans (SOS markers) from the first one at `scan_offset`, stopping once the
/// count passes `stop_after`. Linear in the input and allocation-free: outside marker
/// segments a 0xFF byte is followed by 0x00 (stuffing), a restart marker, fill or a real
/// marker, so 0xFF 0xDA there is always a scan; segment payloads are skipped by length.
pub(crate) fn jpeg_scan_count(input: &[u8], scan_offset: usize, stop_after: u32) -> u32 {
    let mut scans = 0;
    let mut pos = scan_offset;
    while let Some(off) = input.get(pos..).and_then(|rest| memchr::memchr(0xFF, rest)) {
        pos += off + 1;
        let Some(&marker) = input.get(pos) else {
            break;
        };
        match marker {
            0xFF => {}                             // fill byte; the next 0xFF is found again
            0x00 | 0x01 | 0xD0..=0xD7 => pos += 1, // no length
            0xD9 => break,                         // EOI
            _ => {
                if marker == 0xDA {
                    scans += 1;
                    if scans > stop_after {
                        break;
                    }
                }
                let Some(len) = be16(input, pos + 1) else {
                    break;
                };
                pos += 1 + len as usize;
            }
        }
    }
    scans
}

/// IHDR gives the size; alpha is an alpha colour type or a tRNS chunk before IDAT.
fn png_header(input: &[u8]) -> Option<Header<'_>> {
    if input.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = be32(input, 16)?;
    let height = be32(input, 20)?;
    let color_type = *input.get(25)?;
    let mut header = Header::still(
        SourceFormat::Png,
        width,
        height,
        matches!(color_type, 4 | 6),
    );
    // Walk chunk headers until the first IDAT, reading only the few small chunks we need.
    let mut pos = 8usize;
    while let Some(len) = be32(input, pos) {
        let kind = input.get(pos + 4..pos + 8)?;
        let data = || input.get(pos + 8..pos + 8 + len as usize);
        match kind {
            b"IDAT" => break,
            // Entries are RGB triples. png 0.18.1 panics on a PLTE whose length is not a
            // multiple of 3 (image-rs/image-png#694, found by our fuzzing): refuse it here.
            b"PLTE" if len % 3 != 0 => return None,
            b"tRNS" => header.has_alpha = true,
            // The decoder reads the first iCCP only (later ones are duplicates).
            b"iCCP" if header.png_iccp.is_none() => header.png_iccp = data(),
            // APNG: the declared frame count (frames must fit in the IHDR size).
            b"acTL" => header.frames = be32(input, pos + 8)?.max(1),
            _ => {}
        }
        pos = pos.checked_add(12)?.checked_add(len as usize)?;
    }
    Some(header)
}

/// The first chunk after `WEBP` is VP8 (lossy), VP8L (lossless) or VP8X (extended).
fn webp_header(input: &[u8]) -> Option<Header<'_>> {
    let kind = input.get(12..16)?;
    let data = input.get(20..)?;
    let (width, height, has_alpha) = match kind {
        b"VP8 " => {
            if data.get(3..6)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            (le16(data, 6)? & 0x3FFF, le16(data, 8)? & 0x3FFF, false)
        }
        b"VP8L" => {
            if *data.first()? != 0x2F {
                return None;
            }
            let bits = le32(data, 1)?;
            (
                (bits & 0x3FFF) + 1,
                ((bits >> 14) & 0x3FFF) + 1,
                (bits >> 28) & 1 == 1,
            )
        }
        b"VP8X" => {
            let flags = *data.first()?;
            let (width, height) = (le24(data, 4)? + 1, le24(data, 7)? + 1);
            let mut header = Header::still(SourceFormat::Webp, width, height, flags & 0x10 != 0);
            if flags & 0x02 != 0 {
                webp_frames(input, &mut header);
            }
            return Some(header);
        }
        _ => return None,
    };
    Some(Header::still(SourceFormat::Webp, width, height, has_alpha))
}

/// RIFF chunks of a WebP as `(fourcc, payload)`, stopping at the first truncated one.
pub(crate) fn webp_chunks(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 12usize;
    std::iter::from_fn(move || {
        let kind = input.get(pos..pos + 4)?;
        let len = le32(input, pos + 4)? as usize;
        let data = input.get(pos + 8..(pos + 8).checked_add(len)?)?;
        // Chunks are padded to an even size.
        pos += 8 + len + (len & 1);
        Some((kind, data))
    })
}

/// Counts the `ANMF` frames of an animated WebP, finds the first and the largest, and
/// reads the loop count from `ANIM`. A frame must lie within the canvas, which the decoder
/// checks; counting it here keeps the limit in one place whatever the decoder does.
fn webp_frames(input: &[u8], header: &mut Header<'_>) {
    let mut frames = 0u32;
    for (kind, data) in webp_chunks(input) {
        if kind == b"ANIM" {
            header.plays = le16(data, 4).unwrap_or(0);
        }
        if kind != b"ANMF" {
            continue;
        }
        frames = frames.saturating_add(1);
        if let (Some(w), Some(h)) = (le24(data, 6), le24(data, 9)) {
            let (w, h) = (w + 1, h + 1);
            if frames == 1 {
                header.first_frame = (w, h);
            }
            let (lw, lh) = header.largest_frame;
            if u64::from(w) * u64::from(h) > u64::from(lw) * u64::from(lh) {
                header.largest_frame = (w, h);
            }
        }
    }
    header.frames = frames.max(1);
}

/// ICC profile and EXIF (TIFF) payloads of an extended WebP, from its RIFF chunks; each
/// is ignored when larger than `MAX_ICC_BYTES` / `MAX_METADATA_BYTES`.
pub(crate) fn webp_metadata(input: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut icc, mut exif) = (None, None);
    for (kind, data) in webp_chunks(input) {
        match kind {
            b"ICCP" => icc = Some(data).filter(|d| d.len() <= MAX_ICC_BYTES),
            // Some writers keep JPEG's "Exif\0\0" prefix.
            b"EXIF" => {
                exif = Some(data.strip_prefix(b"Exif\0\0").unwrap_or(data))
                    .filter(|d| d.len() <= MAX_METADATA_BYTES)
            }
            _ => {}
        }
    }
    (icc, exif)
}

/// Logical screen size; alpha when the first frame has a transparent index or does not
/// cover the whole screen (the uncovered area decodes as transparent).
///
/// All blocks are walked (without reading pixel data) to count the frames and find the
/// largest one: a frame may be larger than the screen, and the decoder allocates the
/// frame. A file cut short after the first frame's descriptor still parses (its pixel
/// data is checked when decoded); walking stops there, or at the trailer or an unknown
/// block.
fn gif_header(input: &[u8]) -> Option<Header<'_>> {
    let width = le16(input, 6)?;
    let height = le16(input, 8)?;
    let packed = *input.get(10)?;
    let mut pos = 13usize;
    if packed & 0x80 != 0 {
        pos += 3 * (1usize << ((packed & 7) + 1));
    }
    let mut header = Header::still(SourceFormat::Gif, width, height, false);
    let mut frames = 0u32;
    // The repeat count of the first NETSCAPE2.0 (or ANIMEXTS1.0) application extension.
    let mut repeat: Option<u32> = None;
    // Skips data sub-blocks; `None` when truncated.
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let n = *input.get(pos)? as usize;
            pos += 1 + n;
            if n == 0 {
                return Some(pos);
            }
        }
    };
    while let Some(&block) = input.get(pos) {
        match block {
            0x21 => {
                if frames == 0 {
                    let label = *input.get(pos + 1)?;
                    if label == 0xF9 && *input.get(pos + 3)? & 1 == 1 {
                        header.has_alpha = true;
                    }
                }
                if repeat.is_none() {
                    repeat = gif_repeat(input, pos);
                }
                match skip_sub_blocks(pos + 2) {
                    Some(next) => pos = next,
                    None if frames == 0 => return None,
                    None => break,
                }
            }
            0x2C => {
                let descriptor = (|| {
                    let (l, t) = (le16(input, pos + 1)?, le16(input, pos + 3)?);
                    Some((l, t, le16(input, pos + 5)?, le16(input, pos + 7)?))
                })();
                let Some((l, t, w, h)) = descriptor else {
                    if frames == 0 {
                        return None;
                    }
                    break;
                };
                let local = input.get(pos + 9).copied().unwrap_or(0);
                if frames == 0 {
                    header.first_frame = (w, h);
                    if l > 0 || t > 0 || w < width || h < height {
                        header.has_alpha = true;
                    }
                }
                frames = frames.saturating_add(1);
                let (lw, lh) = header.largest_frame;
                if u64::from(w) * u64::from(h) > u64::from(lw) * u64::from(lh) {
                    header.largest_frame = (w, h);
                }
                pos += 10;
                if local & 0x80 != 0 {
                    pos += 3 * (1usize << ((local & 7) + 1));
                }
                // LZW minimum code size, then the image data sub-blocks.
                match skip_sub_blocks(pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
            _ if frames == 0 => return None,
            _ => break, // 0x3B trailer, or trailing garbage after complete frames
        }
    }
    if frames == 0 {
        return None;
    }
    header.frames = frames;
    header.plays = match repeat {
        None => 1,
        Some(0) => 0,
        Some(n) => n + 1,
    };
    Some(header)
}

/// The repeat count of a GIF application extension at `pos` when it is the looping one:
/// `21 FF 0B "NETSCAPE2.0"` then the sub-block `03 01 <u16 LE>`.
fn gif_repeat(input: &[u8], pos: usize) -> Option<u32> {
    if input.get(pos + 1..pos + 3)? != [0xFF, 11] {
        return None;
    }
    let app = input.get(pos + 3..pos + 14)?;
    if app != b"NETSCAPE2.0" && app != b"ANIMEXTS1.0" {
        return None;
    }
    if input.get(pos + 14..pos + 16)? != [3, 1] {
        return None;
    }
    le16(input, pos + 16)
}

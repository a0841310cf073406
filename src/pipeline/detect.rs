//! Format sniffing and header parsing without touching pixel data.
//!
//! The pixel limit has to be enforced before any decoder allocates a frame buffer, and
//! JPEG shrink-on-load has to be planned before decoding, so the few header fields we need
//! (dimensions, alpha, JPEG orientation and ICC profile) are read here by hand. Only
//! fixed-size fields are read and nothing is allocated in proportion to the image size.

use super::{PipelineError, SourceFormat};

/// What the header tells us.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    /// Only for JPEG: metadata segments found before the first scan.
    pub jpeg: Option<JpegMeta<'a>>,
}

/// JPEG metadata collected while walking the marker segments.
#[derive(Debug, Default)]
pub(crate) struct JpegMeta<'a> {
    /// TIFF payload of the first `Exif` APP1 segment (after `Exif\0\0`).
    pub exif: Option<&'a [u8]>,
    /// `ICC_PROFILE` APP2 chunks as `(sequence number, payload)`.
    pub icc_chunks: Vec<(u8, &'a [u8])>,
    /// Offset of the first SOS marker (start of entropy-coded data).
    pub scan_offset: usize,
}

impl JpegMeta<'_> {
    /// The ICC profile reassembled from its chunks, if any.
    pub fn icc_profile(&self) -> Option<Vec<u8>> {
        if self.icc_chunks.is_empty() {
            return None;
        }
        let mut chunks = self.icc_chunks.clone();
        chunks.sort_by_key(|(seq, _)| *seq);
        Some(chunks.iter().flat_map(|(_, d)| d.iter().copied()).collect())
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
    if input.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(SourceFormat::Jpeg)
    } else if input.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(SourceFormat::Png)
    } else if input.len() >= 12 && &input[0..4] == b"RIFF" && &input[8..12] == b"WEBP" {
        Ok(SourceFormat::Webp)
    } else if input.starts_with(b"GIF87a") || input.starts_with(b"GIF89a") {
        Ok(SourceFormat::Gif)
    } else {
        Err(PipelineError::Unsupported(
            "not a JPEG, PNG, WebP or GIF image".into(),
        ))
    }
}

/// Sniffs the format and parses its header.
pub(crate) fn read_header(input: &[u8]) -> Result<Header<'_>, PipelineError> {
    let format = sniff(input)?;
    let header = match format {
        SourceFormat::Jpeg => jpeg_header(input),
        SourceFormat::Png => png_header(input),
        SourceFormat::Webp => webp_header(input),
        SourceFormat::Gif => gif_header(input),
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
                meta.icc_chunks.push((data[12], &data[14..]));
            }
            0xDA => {
                let (width, height) = dims?;
                meta.scan_offset = pos - 2;
                return Some(Header {
                    format: SourceFormat::Jpeg,
                    width,
                    height,
                    has_alpha: false,
                    jpeg: Some(meta),
                });
            }
            _ => {}
        }
        pos += len;
    }
}

/// IHDR gives the size; alpha is an alpha colour type or a tRNS chunk before IDAT.
fn png_header(input: &[u8]) -> Option<Header<'_>> {
    if input.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = be32(input, 16)?;
    let height = be32(input, 20)?;
    let color_type = *input.get(25)?;
    let mut has_alpha = matches!(color_type, 4 | 6);
    // Walk chunk headers only (no data is read) until the first IDAT.
    let mut pos = 8usize;
    while let Some(len) = be32(input, pos) {
        let kind = input.get(pos + 4..pos + 8)?;
        if kind == b"IDAT" {
            break;
        }
        if kind == b"tRNS" {
            has_alpha = true;
        }
        pos = pos.checked_add(12)?.checked_add(len as usize)?;
    }
    Some(Header {
        format: SourceFormat::Png,
        width,
        height,
        has_alpha,
        jpeg: None,
    })
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
            (le24(data, 4)? + 1, le24(data, 7)? + 1, flags & 0x10 != 0)
        }
        _ => return None,
    };
    Some(Header {
        format: SourceFormat::Webp,
        width,
        height,
        has_alpha,
        jpeg: None,
    })
}

/// ICC profile and EXIF (TIFF) payloads of an extended WebP, from its RIFF chunks.
pub(crate) fn webp_metadata(input: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut icc, mut exif) = (None, None);
    let mut pos = 12usize;
    while let (Some(kind), Some(len)) = (input.get(pos..pos + 4), le32(input, pos + 4)) {
        let Some(data) = input.get(pos + 8..pos + 8 + len as usize) else {
            break;
        };
        match kind {
            b"ICCP" => icc = Some(data),
            // Some writers keep JPEG's "Exif\0\0" prefix.
            b"EXIF" => exif = Some(data.strip_prefix(b"Exif\0\0").unwrap_or(data)),
            _ => {}
        }
        // Chunks are padded to an even size.
        pos += 8 + len as usize + (len as usize & 1);
    }
    (icc, exif)
}

/// Logical screen size; alpha when the first frame has a transparent index or does not
/// cover the whole screen (the uncovered area decodes as transparent).
fn gif_header(input: &[u8]) -> Option<Header<'_>> {
    let width = le16(input, 6)?;
    let height = le16(input, 8)?;
    let packed = *input.get(10)?;
    let mut pos = 13usize;
    if packed & 0x80 != 0 {
        pos += 3 * (1usize << ((packed & 7) + 1));
    }
    let mut has_alpha = false;
    loop {
        match *input.get(pos)? {
            0x21 => {
                let label = *input.get(pos + 1)?;
                if label == 0xF9 && *input.get(pos + 3)? & 1 == 1 {
                    has_alpha = true;
                }
                pos += 2;
                // Skip data sub-blocks.
                loop {
                    let n = *input.get(pos)? as usize;
                    pos += 1 + n;
                    if n == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let (l, t) = (le16(input, pos + 1)?, le16(input, pos + 3)?);
                let (w, h) = (le16(input, pos + 5)?, le16(input, pos + 7)?);
                if l > 0 || t > 0 || w < width || h < height {
                    has_alpha = true;
                }
                break;
            }
            _ => return None,
        }
    }
    Some(Header {
        format: SourceFormat::Gif,
        width,
        height,
        has_alpha,
        jpeg: None,
    })
}

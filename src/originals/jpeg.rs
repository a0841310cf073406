//! JPEG: every marker segment is kept except the metadata ones. Kept: APP0 `JFIF` (without
//! its thumbnail), APP2 `ICC_PROFILE`, APP14 `Adobe` (it tells decoders the colour
//! transform) and all non-APP segments (tables, frame, scans). Left out: APP1 (Exif, XMP,
//! extended XMP), other APP2 (MPF, FlashPix), APP3..APP13 (IPTC in APP13, vendor blocks),
//! APP15, other APP0 (JFXX thumbnails), COM, and whatever follows EOI (MPF's second
//! images, vendor trailers). The first Exif's orientation, when not 1, comes back as an
//! APP1 holding only that tag, where the Exif block was.

use super::exif::{orientation, orientation_only};
use super::{Builder, StripError, Stripped, be16};

const CORRUPT: StripError = StripError("JPEG");

pub(super) fn strip(input: &[u8]) -> Result<Stripped, StripError> {
    let mut out = Builder::new();
    if !input.starts_with(&[0xFF, 0xD8]) {
        return Err(CORRUPT);
    }
    out.keep(0..2);
    let mut pos = 2;
    let mut exif_seen = false;
    // Header segments, up to and including the first SOS.
    loop {
        let start = pos;
        if input.get(pos) != Some(&0xFF) {
            return Err(CORRUPT);
        }
        while input.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *input.get(pos).ok_or(CORRUPT)?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => {
                out.keep(start..pos);
                continue;
            }
            // EOI before any scan: no image data; what is left is kept as it is.
            0xD9 => {
                out.keep(start..pos);
                if pos < input.len() {
                    out.drop();
                }
                return Ok(out.finish());
            }
            0xD8 => return Err(CORRUPT),
            _ => {}
        }
        let len = be16(input, pos).ok_or(CORRUPT)?;
        if len < 2 {
            return Err(CORRUPT);
        }
        let end = pos + len;
        let data = input.get(pos + 2..end).ok_or(CORRUPT)?;
        match marker {
            0xE0 if data.starts_with(b"JFIF\0") => jfif(&mut out, start..end, data),
            0xE2 if data.starts_with(b"ICC_PROFILE\0") => out.keep(start..end),
            0xEE if data.starts_with(b"Adobe") => out.keep(start..end),
            0xE1 if !exif_seen && data.starts_with(b"Exif\0\0") => {
                exif_seen = true;
                let o = orientation(&data[6..]);
                if o != 1 {
                    let seg = app1_orientation(o);
                    if input[start..end] == seg[..] {
                        out.keep(start..end);
                    } else {
                        out.new_bytes(seg);
                    }
                } else {
                    out.drop();
                }
            }
            0xE0..=0xEF | 0xFE => out.drop(),
            _ => out.keep(start..end),
        }
        pos = end;
        if marker == 0xDA {
            break;
        }
    }
    scans(&mut out, input, pos);
    Ok(out.finish())
}

/// From the first scan's data on: entropy-coded data and the segments between scans are
/// kept up to EOI; APPn and COM segments between scans and anything after EOI are not.
/// Segment payloads are skipped by their length, so a 0xFF inside one is never taken for
/// a marker; in entropy-coded data 0xFF is always followed by 0x00 (stuffing), a restart
/// marker, fill or a real marker.
fn scans(out: &mut Builder, input: &[u8], mut pos: usize) {
    let mut kept_from = pos;
    while let Some(off) = input.get(pos..).and_then(|rest| memchr::memchr(0xFF, rest)) {
        let at = pos + off;
        let Some(&marker) = input.get(at + 1) else {
            break;
        };
        match marker {
            0xFF => pos = at + 1, // fill byte: the marker follows
            0x00 | 0x01 | 0xD0..=0xD7 => pos = at + 2,
            0xD9 => {
                out.keep(kept_from..at + 2);
                if at + 2 < input.len() {
                    out.drop();
                }
                return;
            }
            _ => {
                let Some(len) = be16(input, at + 2) else {
                    break;
                };
                let end = (at + 2 + len).min(input.len());
                if matches!(marker, 0xE0..=0xEF | 0xFE) {
                    out.keep(kept_from..at);
                    out.drop();
                    kept_from = end;
                }
                pos = end;
            }
        }
    }
    // No EOI (a truncated file): the rest is scan data, kept for the decoder to judge.
    out.keep(kept_from..input.len());
}

/// APP0 JFIF: kept, unless it carries a thumbnail (which may show what the photo looked
/// like before it was edited); then a JFIF header without one.
fn jfif(out: &mut Builder, seg: std::ops::Range<usize>, data: &[u8]) {
    // "JFIF\0", version (2), units (1), densities (4), thumbnail width and height (1 + 1).
    match data.get(..14) {
        Some(head) if head[12] == 0 && head[13] == 0 => out.keep(seg),
        Some(head) => {
            let mut s = vec![0xFF, 0xE0, 0x00, 16];
            s.extend_from_slice(&head[..12]);
            s.extend_from_slice(&[0, 0]);
            out.new_bytes(s);
        }
        None => out.keep(seg),
    }
}

/// An APP1 segment with `Exif\0\0` and the orientation-only TIFF block.
fn app1_orientation(o: u8) -> Vec<u8> {
    let tiff = orientation_only(o);
    let len = 2 + 6 + tiff.len();
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}

//! PNG: critical chunks and the ancillary chunks that change how the image looks (colour,
//! transparency, gamma, physical size, animation) are kept; every other ancillary chunk is
//! left out (`tEXt`, `zTXt`, `iTXt` with XMP, `eXIf`, `tIME`, C2PA's `caBX`, vendor
//! chunks), and so is anything after IEND. Ancillary chunks are by definition not needed
//! to decode the image. An `eXIf` with an orientation other than 1 comes back holding only
//! that tag. Apple's `iDOT` (file offsets of the IDAT chunks, a decoding shortcut) is left
//! out whenever anything else is, since its offsets would no longer hold.

use super::exif::{orientation, orientation_only};
use super::{Builder, StripError, Stripped, be32};

const CORRUPT: StripError = StripError("PNG");

/// Ancillary chunks that affect the decoded image or its display.
const KEPT_ANCILLARY: [&[u8; 4]; 16] = [
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"bKGD", b"hIST", b"pHYs", b"sPLT",
    b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCv", b"cLLi",
];

pub(super) fn strip(input: &[u8]) -> Result<Stripped, StripError> {
    match walk(input, false)? {
        Stripped::Unchanged => Ok(Stripped::Unchanged),
        _ => walk(input, true),
    }
}

fn walk(input: &[u8], drop_idot: bool) -> Result<Stripped, StripError> {
    if !input.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(CORRUPT);
    }
    let mut out = Builder::new();
    out.keep(0..8);
    let mut pos = 8;
    let mut exif_seen = false;
    loop {
        let head = be32(input, pos).zip(input.get(pos + 4..pos + 8));
        let Some((len, kind)) = head.and_then(|(l, k)| Some((l, <[u8; 4]>::try_from(k).ok()?)))
        else {
            // A few bytes too short for a chunk header: nothing in them to read.
            out.keep(pos..input.len());
            break;
        };
        let Some(end) = pos
            .checked_add(12)
            .and_then(|e| e.checked_add(len))
            .filter(|e| *e <= input.len())
        else {
            // A chunk cut short: image data is passed on for the decoder to judge;
            // anything else cannot be read and is left out.
            if kind[0].is_ascii_uppercase() || KEPT_ANCILLARY.contains(&&kind) {
                out.keep(pos..input.len());
            } else {
                out.drop();
            }
            break;
        };
        let critical = kind[0].is_ascii_uppercase();
        match &kind {
            b"eXIf" if !exif_seen => {
                exif_seen = true;
                let data = &input[pos + 8..pos + 8 + len];
                let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
                match orientation(tiff) {
                    1 => out.drop(),
                    o => {
                        let chunk = chunk(b"eXIf", &orientation_only(o));
                        if input[pos..end] == chunk[..] {
                            out.keep(pos..end);
                        } else {
                            out.new_bytes(chunk);
                        }
                    }
                }
            }
            b"iDOT" if !drop_idot => out.keep(pos..end),
            k if critical || KEPT_ANCILLARY.contains(&k) => out.keep(pos..end),
            _ => out.drop(),
        }
        pos = end;
        if &kind == b"IEND" {
            if pos < input.len() {
                out.drop();
            }
            break;
        }
    }
    Ok(out.finish())
}

/// A PNG chunk: length, type, data, CRC of type and data.
pub(super) fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(12 + data.len());
    c.extend_from_slice(&(data.len() as u32).to_be_bytes());
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&c[4..]);
    c.extend_from_slice(&crc.finalize().to_be_bytes());
    c
}

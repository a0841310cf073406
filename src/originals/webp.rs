//! WebP: the RIFF chunks that make the image (`VP8X`, `ICCP`, `ANIM`, `ANMF`, `ALPH`,
//! `VP8 `, `VP8L`) are kept; `EXIF`, `XMP ` and unknown chunks are left out, and so is
//! anything after the RIFF chunk. The `VP8X` flags and the RIFF size are rewritten to
//! match. WebP has no orientation of its own: an EXIF orientation other than 1 comes back
//! as an `EXIF` chunk holding only that tag (in place of the old one).

use super::exif::{orientation, orientation_only};
use super::{Builder, StripError, Stripped, le32};
use std::ops::Range;

const CORRUPT: StripError = StripError("WebP");

const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;

/// Chunks that make up the image.
const IMAGE_CHUNKS: [&[u8; 4]; 7] = [
    b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L",
];

enum Piece {
    Keep(Range<usize>),
    New(Vec<u8>),
}

pub(super) fn strip(input: &[u8]) -> Result<Stripped, StripError> {
    if input.len() < 12 || &input[..4] != b"RIFF" || &input[8..12] != b"WEBP" {
        return Err(CORRUPT);
    }
    let riff_end = le32(input, 4)
        .and_then(|n| n.checked_add(8))
        .ok_or(CORRUPT)?
        .min(input.len());
    let mut changed = riff_end < input.len();
    let mut pieces = Vec::new();
    let mut vp8x_at = None;
    let mut exif_kept = false;
    let mut exif_seen = false;
    let mut pos = 12;
    while pos < riff_end {
        let head = input.get(pos..pos + 4).zip(le32(input, pos + 4));
        let Some((kind, len)) = head.filter(|_| pos + 8 <= riff_end) else {
            // A few trailing bytes, too short for a chunk header.
            changed = true;
            break;
        };
        let data_end = pos + 8 + len;
        if data_end > riff_end {
            // Cut short: image data goes on for the decoder to judge; metadata does not.
            if IMAGE_CHUNKS.iter().any(|k| &k[..] == kind) {
                pieces.push(Piece::Keep(pos..riff_end));
            } else {
                changed = true;
            }
            break;
        }
        let end = (data_end + (len & 1)).min(riff_end);
        match kind {
            b"EXIF" if !exif_seen => {
                exif_seen = true;
                let data = &input[pos + 8..data_end];
                let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
                match orientation(tiff) {
                    1 => changed = true,
                    o => {
                        let new = chunk(b"EXIF", &orientation_only(o));
                        exif_kept = true;
                        if input[pos..end] == new[..] {
                            pieces.push(Piece::Keep(pos..end));
                        } else {
                            changed = true;
                            pieces.push(Piece::New(new));
                        }
                    }
                }
            }
            b"VP8X" if vp8x_at.is_none() && pos == 12 && len >= 10 => {
                vp8x_at = Some(pieces.len());
                pieces.push(Piece::Keep(pos..end));
            }
            k if IMAGE_CHUNKS.iter().any(|i| &i[..] == k) && k != b"VP8X" => {
                pieces.push(Piece::Keep(pos..end))
            }
            _ => changed = true,
        }
        pos = end;
    }
    if !changed {
        return Ok(Stripped::Unchanged);
    }
    if let Some(i) = vp8x_at {
        let at = 12;
        let flags = input[at + 8];
        let flags = (flags & !(FLAG_EXIF | FLAG_XMP)) | if exif_kept { FLAG_EXIF } else { 0 };
        let mut new = input[at..at + 18].to_vec();
        new[4..8].copy_from_slice(&10u32.to_le_bytes());
        new[8] = flags;
        pieces[i] = Piece::New(new);
    }
    let body: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Keep(r) => r.len(),
            Piece::New(b) => b.len(),
        })
        .sum();
    let mut out = Builder::new();
    let mut header = b"RIFF".to_vec();
    header.extend_from_slice(&u32::try_from(body + 4).map_err(|_| CORRUPT)?.to_le_bytes());
    header.extend_from_slice(b"WEBP");
    out.new_bytes(header);
    for p in pieces {
        match p {
            Piece::Keep(r) => out.keep(r),
            Piece::New(b) => out.new_bytes(b),
        }
    }
    Ok(out.finish())
}

/// A RIFF chunk: type, little-endian length, data, a pad byte when the length is odd.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(9 + data.len());
    c.extend_from_slice(kind);
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

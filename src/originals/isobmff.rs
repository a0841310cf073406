//! HEIF/AVIF (ISOBMFF): the hook for removing Exif and XMP items.
//!
//! Not written yet. Today this only tells whether there is anything to remove: a file
//! whose `meta` box lists no `Exif`, `mime` (XMP) or `uri ` items and that has no other
//! top-level boxes than `ftyp`, `meta`, `mdat`, `free`, `skip` is served as stored
//! (`Unchanged`); anything else is `Unsupported`, and delivery does not hand those bytes
//! to callers who must get a stripped copy. Removing the items losslessly means
//! overwriting their payloads (which `iloc` points at) in place, or dropping them from
//! `iinf`/`iloc`/`iref` and fixing the offsets; either yields a [`super::Layout`].

use super::{StripError, Stripped, be32};

/// Item types that carry metadata.
const METADATA_ITEMS: [&[u8; 4]; 3] = [b"Exif", b"mime", b"uri "];

const TOP_LEVEL_IMAGE_BOXES: [&[u8; 4]; 5] = [b"ftyp", b"meta", b"mdat", b"free", b"skip"];

pub(super) fn strip(input: &[u8], label: &'static str) -> Result<Stripped, StripError> {
    let corrupt = StripError(label);
    let mut metadata = false;
    for b in boxes(input, 0, input.len()) {
        let (kind, body) = b.ok_or(corrupt.clone())?;
        if !TOP_LEVEL_IMAGE_BOXES.iter().any(|k| &k[..] == kind) {
            metadata = true;
        }
        if kind == b"meta" {
            metadata |= meta_has_metadata_items(input, body).ok_or(corrupt.clone())?;
        }
    }
    Ok(if metadata {
        Stripped::Unsupported(label)
    } else {
        Stripped::Unchanged
    })
}

/// Whether the `meta` box (payload range `body`, a full box) lists metadata items.
fn meta_has_metadata_items(input: &[u8], body: std::ops::Range<usize>) -> Option<bool> {
    for b in boxes(input, body.start + 4, body.end) {
        let (kind, iinf) = b?;
        if kind != b"iinf" {
            continue;
        }
        let version = *input.get(iinf.start)?;
        let entries_at = iinf.start + 4 + if version == 0 { 2 } else { 4 };
        for e in boxes(input, entries_at, iinf.end) {
            let (kind, infe) = e?;
            if kind != b"infe" {
                continue;
            }
            let version = *input.get(infe.start)?;
            if version < 2 {
                // Versions 0 and 1 name no item type; treated as possibly metadata.
                return Some(true);
            }
            let type_at = infe.start + 4 + if version == 2 { 2 } else { 4 } + 2;
            let item_type = input.get(type_at..type_at + 4)?;
            if METADATA_ITEMS.iter().any(|k| &k[..] == item_type) {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// The boxes in `input[from..to]` as `(type, payload range)`; an item is `None` (and the
/// last) when a box header is malformed or runs past `to`.
fn boxes(
    input: &[u8],
    from: usize,
    to: usize,
) -> impl Iterator<Item = Option<(&[u8], std::ops::Range<usize>)>> {
    let mut pos = from;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || pos >= to {
            return None;
        }
        let item = (|| {
            let size = be32(input, pos)?;
            let kind = input.get(pos + 4..pos + 8)?;
            let (header, size) = match size {
                0 => (8, to - pos),
                1 => {
                    let s = input.get(pos + 8..pos + 16)?;
                    let large = u64::from_be_bytes(s.try_into().ok()?);
                    (16, usize::try_from(large).ok()?)
                }
                n => (8, n),
            };
            let end = pos
                .checked_add(size)
                .filter(|e| *e <= to && size >= header)?;
            let body = pos + header..end;
            pos = end;
            Some((kind, body))
        })();
        done = item.is_none();
        Some(item)
    })
}

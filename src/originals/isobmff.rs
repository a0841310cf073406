//! HEIF/AVIF (ISOBMFF): Exif and XMP items removed in place.
//!
//! Items are described in the `meta` box and their bytes sit where `iloc` points (usually
//! `mdat`). Removing them from `iinf`/`iloc`/`iref` would change box sizes and every offset
//! after them; instead each metadata item's bytes are overwritten in place and its type is
//! renamed to one no reader knows (`hide`), so the file keeps its size and every offset, and
//! the coded image data is untouched. An Exif item of a primary image whose orientation is
//! in Exif (no `irot`/`imir`, as libheif's `heif-enc` writes) keeps a minimal Exif block with
//! only that orientation; everything after it is zeros.

use std::ops::Range;

use crate::isobmff::Meta;

use super::{Builder, StripError, Stripped, be32, exif};

/// Item types that carry metadata: Exif, XMP (`mime`, `application/rdf+xml`) and URIs.
const METADATA_ITEMS: [&[u8; 4]; 3] = [b"Exif", b"mime", b"uri "];

/// What a removed item's type becomes: unknown to every reader, so the item is skipped.
const HIDDEN_ITEM: &[u8; 4] = b"hide";

const TOP_LEVEL_IMAGE_BOXES: [&[u8; 4]; 5] = [b"ftyp", b"meta", b"mdat", b"free", b"skip"];

pub(super) fn strip(input: &[u8], label: &'static str) -> Result<Stripped, StripError> {
    let corrupt = || StripError(label);
    // Other top-level boxes (a `uuid` XMP box, a `moov` sequence) are not walked: refused.
    for (kind, _, _) in crate::isobmff::boxes(input) {
        if !TOP_LEVEL_IMAGE_BOXES.contains(&&kind) {
            return Ok(Stripped::Unsupported(label));
        }
    }
    let meta = Meta::parse(input).ok_or_else(corrupt)?;
    let primary = meta.primary;
    let oriented_by_exif =
        meta.property(primary, b"irot").is_none() && meta.property(primary, b"imir").is_none();
    // (range, new bytes) edits, in file order once sorted.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    for item in meta
        .items
        .iter()
        .filter(|i| METADATA_ITEMS.contains(&&i.kind))
    {
        let Some(ranges) = meta.item_ranges(input, item.id) else {
            return Ok(Stripped::Unsupported(label));
        };
        let total: usize = ranges.iter().map(|r| r.len()).sum();
        let mut payload = vec![0u8; total];
        let mut keep_type = false;
        if &item.kind == b"Exif" && oriented_by_exif && describes(&meta, item.id, primary) {
            let data: Vec<u8> = ranges
                .iter()
                .flat_map(|r| input[r.clone()].iter().copied())
                .collect();
            let orientation = be32(&data, 0)
                .and_then(|skip| data.get(4usize.checked_add(skip)?..))
                .map_or(1, exif::orientation);
            let block = exif::orientation_only(orientation);
            if orientation != 1 && total >= 4 + block.len() {
                // Offset 0: the TIFF header follows the 4-byte offset field directly.
                payload[4..4 + block.len()].copy_from_slice(&block);
                keep_type = true;
            }
        }
        let mut at = 0;
        for r in ranges {
            let n = r.len();
            edits.push((r, payload[at..at + n].to_vec()));
            at += n;
        }
        if !keep_type {
            edits.push((item.kind_at..item.kind_at + 4, HIDDEN_ITEM.to_vec()));
        }
    }
    if edits.is_empty() {
        return Ok(Stripped::Unchanged);
    }
    edits.sort_by_key(|(r, _)| r.start);
    if edits.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return Err(corrupt());
    }
    let mut out = Builder::new();
    let mut pos = 0;
    for (r, bytes) in edits {
        out.keep(pos..r.start);
        out.new_bytes(bytes);
        pos = r.end;
    }
    out.keep(pos..input.len());
    Ok(out.finish())
}

/// Whether an item describes (`cdsc`) the primary image.
fn describes(meta: &Meta<'_>, item: u32, primary: u32) -> bool {
    meta.referring(b"cdsc", primary).any(|id| id == item)
}

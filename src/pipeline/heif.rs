//! HEIF containers (HEIC, HEIF, AVIF): the header read by hand, pixels by libheif.
//!
//! The header walk reads the `meta` box (ISO/IEC 14496-12 and 23008-12): which item is
//! primary, its `ispe` size, `irot`/`imir`/`clap` transforms, an alpha auxiliary image, and
//! for iPhone-style `grid` images the grid's own output size and tiles. That is enough to
//! apply the pixel limit before libheif allocates anything, and to plan the request with the
//! size libheif will return (it applies `irot`, `imir` and `clap` while decoding).
//!
//! Decoding goes through the system libheif (HEVC via libde265, AV1 via dav1d or libaom):
//! one thread per decode, because images are decoded in our own bounded worker pool.

use std::borrow::Cow;

use image::DynamicImage;
use image::metadata::Orientation;
use libheif_rs::{ColorSpace, HeifContext, HeifErrorCode, LibHeif, RgbChroma};

use super::decode::Decoded;
use super::detect::{Header, MAX_ICC_BYTES, corrupt};
use super::{PipelineError, SourceFormat};

/// Caps on the counts a hostile `meta` box could inflate; real files have a few dozen items
/// (an iPhone photo: 48 tiles, a thumbnail, Exif, depth) and properties.
const MAX_ITEMS: usize = 4096;
const MAX_PROPERTIES: usize = 4096;
const MAX_EXTENTS: usize = 1024;
/// Most tiles in a grid (libheif's own limit is the grid's 8-bit row/column counts).
const MAX_GRID_TILES: usize = 256 * 256;

fn be16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A big-endian unsigned integer of `n` bytes (0, 4 or 8 in `iloc`).
fn be_n(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// Boxes in `data` as `(fourcc, payload, offset of the box in data)`; stops at the first
/// malformed one.
pub(crate) fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8], usize)> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let size = be32(data, pos)? as u64;
        let kind: [u8; 4] = data.get(pos + 4..pos + 8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, (data.len() - pos) as u64),
            1 => (16, be_n(data, pos + 8, 8)?),
            n => (8, n),
        };
        if size < header {
            return None;
        }
        let end = pos.checked_add(usize::try_from(size).ok()?)?;
        let payload = data.get(pos + header as usize..end)?;
        let at = pos;
        pos = end;
        Some((kind, payload, at))
    })
}

fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _, _)| k == kind).map(|(_, p, _)| p)
}

/// One item of `iinf`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    pub id: u32,
    pub kind: [u8; 4],
}

/// One `iref` entry: (reference type, from item, to items).
pub(crate) type Reference = ([u8; 4], u32, Vec<u32>);

/// Where an item's bytes are (`iloc`): in the file (method 0) or in `idat` (method 1).
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub item: u32,
    pub method: u8,
    pub base: u64,
    /// `(offset, length)`; a length of 0 means "to the end".
    pub extents: Vec<(u64, u64)>,
}

/// The parts of `meta` we use.
#[derive(Debug, Default)]
pub(crate) struct Meta<'a> {
    pub primary: u32,
    pub items: Vec<Item>,
    /// `ipco` properties in order (`ipma` indices are 1-based into this).
    pub properties: Vec<([u8; 4], &'a [u8])>,
    /// `ipma`: item → property indices (1-based, 0 = none).
    pub associations: Vec<(u32, Vec<u16>)>,
    pub locations: Vec<Location>,
    pub references: Vec<Reference>,
    pub idat: Option<&'a [u8]>,
}

impl<'a> Meta<'a> {
    pub fn parse(input: &'a [u8]) -> Option<Self> {
        let meta = find_box(input, b"meta")?;
        let children = meta.get(4..)?; // FullBox
        let mut m = Meta::default();
        let mut has_pitm = false;
        for (kind, p, _) in boxes(children) {
            match &kind {
                b"pitm" => {
                    m.primary = if p[0] == 0 { be16(p, 4)? } else { be32(p, 4)? };
                    has_pitm = true;
                }
                b"iinf" => m.items = parse_iinf(p)?,
                b"iloc" => m.locations = parse_iloc(p)?,
                b"iprp" => {
                    for (k, q, _) in boxes(p) {
                        match &k {
                            b"ipco" => {
                                m.properties = boxes(q).map(|(k, q, _)| (k, q)).collect();
                                if m.properties.len() > MAX_PROPERTIES {
                                    return None;
                                }
                            }
                            b"ipma" => m.associations = parse_ipma(q)?,
                            _ => {}
                        }
                    }
                }
                b"iref" => m.references = parse_iref(p)?,
                b"idat" => m.idat = Some(p),
                _ => {}
            }
        }
        has_pitm.then_some(m)
    }

    pub fn item(&self, id: u32) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The properties associated with `item`, in association order.
    pub fn properties_of(&self, item: u32) -> impl Iterator<Item = ([u8; 4], &'a [u8])> + '_ {
        self.associations
            .iter()
            .filter(move |(id, _)| *id == item)
            .flat_map(|(_, idx)| idx.iter())
            .filter_map(|&i| self.properties.get(usize::from(i).checked_sub(1)?).copied())
    }

    pub fn property(&self, item: u32, kind: &[u8; 4]) -> Option<&'a [u8]> {
        self.properties_of(item)
            .find(|(k, _)| k == kind)
            .map(|(_, p)| p)
    }

    /// `ispe` of an item: (width, height) before transforms.
    pub fn ispe(&self, item: u32) -> Option<(u32, u32)> {
        let p = self.property(item, b"ispe")?;
        Some((be32(p, 4)?, be32(p, 8)?))
    }

    /// Items referring to `to` with reference type `kind` (e.g. `auxl`, `cdsc`).
    pub fn referring(&self, kind: &[u8; 4], to: u32) -> impl Iterator<Item = u32> + '_ {
        let kind = *kind;
        self.references
            .iter()
            .filter(move |(k, _, tos)| *k == kind && tos.contains(&to))
            .map(|(_, from, _)| *from)
    }

    /// The bytes of an item stored in one extent (grid descriptors, Exif blocks).
    pub fn item_data(&self, input: &'a [u8], item: u32) -> Option<&'a [u8]> {
        let loc = self.locations.iter().find(|l| l.item == item)?;
        let [(offset, len)] = loc.extents.as_slice() else {
            return None;
        };
        let source = match loc.method {
            0 => input,
            1 => self.idat?,
            _ => return None,
        };
        let start = usize::try_from(loc.base.checked_add(*offset)?).ok()?;
        let end = if *len == 0 {
            source.len()
        } else {
            start.checked_add(usize::try_from(*len).ok()?)?
        };
        source.get(start..end)
    }
}

fn parse_iinf(p: &[u8]) -> Option<Vec<Item>> {
    let (count, start) = if p[0] == 0 {
        (be16(p, 4)? as usize, 6)
    } else {
        (be32(p, 4)? as usize, 8)
    };
    if count > MAX_ITEMS {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    for (kind, e, _) in boxes(p.get(start..)?) {
        if &kind != b"infe" {
            continue;
        }
        let version = *e.first()?;
        let (id, at) = match version {
            2 => (be16(e, 4)?, 8),
            3 => (be32(e, 4)?, 10),
            _ => continue, // versions 0/1 describe files, not image items
        };
        let kind: [u8; 4] = e.get(at..at + 4)?.try_into().ok()?;
        items.push(Item { id, kind });
    }
    Some(items)
}

fn parse_iloc(p: &[u8]) -> Option<Vec<Location>> {
    let version = *p.first()?;
    let sizes = *p.get(4)?;
    let (offset_size, length_size) = (usize::from(sizes >> 4), usize::from(sizes & 15));
    let sizes2 = *p.get(5)?;
    let base_size = usize::from(sizes2 >> 4);
    let index_size = if version >= 1 {
        usize::from(sizes2 & 15)
    } else {
        0
    };
    let (count, mut pos) = if version < 2 {
        (be16(p, 6)? as usize, 8)
    } else {
        (be32(p, 6)? as usize, 10)
    };
    if count > MAX_ITEMS {
        return None;
    }
    let mut locations = Vec::with_capacity(count);
    for _ in 0..count {
        let item = if version < 2 {
            let v = be16(p, pos)?;
            pos += 2;
            v
        } else {
            let v = be32(p, pos)?;
            pos += 4;
            v
        };
        let mut method = 0;
        if version >= 1 {
            method = (be16(p, pos)? & 15) as u8;
            pos += 2;
        }
        pos += 2; // data_reference_index
        let base = be_n(p, pos, base_size)?;
        pos += base_size;
        let extents = be16(p, pos)? as usize;
        pos += 2;
        if extents > MAX_EXTENTS {
            return None;
        }
        let mut loc = Location {
            item,
            method,
            base,
            extents: Vec::with_capacity(extents),
        };
        for _ in 0..extents {
            pos += index_size;
            let offset = be_n(p, pos, offset_size)?;
            pos += offset_size;
            let length = be_n(p, pos, length_size)?;
            pos += length_size;
            loc.extents.push((offset, length));
        }
        locations.push(loc);
    }
    Some(locations)
}

fn parse_ipma(p: &[u8]) -> Option<Vec<(u32, Vec<u16>)>> {
    let version = *p.first()?;
    let wide = be32(p, 0)? & 1 == 1;
    let count = be32(p, 4)? as usize;
    if count > MAX_ITEMS {
        return None;
    }
    let mut pos = 8;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let item = if version < 1 {
            let v = be16(p, pos)?;
            pos += 2;
            v
        } else {
            let v = be32(p, pos)?;
            pos += 4;
            v
        };
        let n = usize::from(*p.get(pos)?);
        pos += 1;
        let mut idx = Vec::with_capacity(n);
        for _ in 0..n {
            if wide {
                idx.push((be16(p, pos)? & 0x7FFF) as u16);
                pos += 2;
            } else {
                idx.push(u16::from(*p.get(pos)? & 0x7F));
                pos += 1;
            }
        }
        out.push((item, idx));
    }
    Some(out)
}

fn parse_iref(p: &[u8]) -> Option<Vec<Reference>> {
    let wide = *p.first()? != 0;
    let mut out = Vec::new();
    for (kind, r, _) in boxes(p.get(4..)?) {
        let id = |at: usize| if wide { be32(r, at) } else { be16(r, at) };
        let step = if wide { 4 } else { 2 };
        let from = id(0)?;
        let count = be16(r, step)? as usize;
        let to = (0..count)
            .map(|i| id(step + 2 + i * step))
            .collect::<Option<Vec<_>>>()?;
        out.push((kind, from, to));
        if out.len() > MAX_ITEMS {
            return None;
        }
    }
    Some(out)
}

/// The header of a HEIF file: the primary item's size as libheif will return it (after
/// `clap`, `irot`), alpha, and the pixels the decode allocates (a grid's tiles included).
pub(crate) fn header(input: &[u8], format: SourceFormat) -> Option<Header<'_>> {
    let meta = Meta::parse(input)?;
    let primary = meta.primary;
    let item = meta.item(primary)?;
    let (mut w, mut h) = meta.ispe(primary)?;
    let mut decoded = (w, h);
    if &item.kind == b"grid" {
        // The grid descriptor: version, flags (bit 0: 32-bit sizes), rows-1, columns-1,
        // output width, output height. The output is what libheif allocates.
        let g = meta.item_data(input, primary)?;
        let (rows, cols) = (u32::from(*g.get(2)?) + 1, u32::from(*g.get(3)?) + 1);
        let (ow, oh) = if g.get(1)? & 1 == 1 {
            (be32(g, 4)?, be32(g, 8)?)
        } else {
            (be16(g, 4)?, be16(g, 6)?)
        };
        let tiles: Vec<u32> = meta
            .references
            .iter()
            .find(|(k, from, _)| k == b"dimg" && *from == primary)
            .map(|(_, _, to)| to.clone())?;
        if tiles.len() != (rows * cols) as usize || tiles.len() > MAX_GRID_TILES {
            return None;
        }
        // Every tile has one size and the tiles cover the output with less than a tile
        // to spare (ISO/IEC 23008-12 6.6.2.3), so the tiles hold about the output's pixels.
        let (tw, th) = meta.ispe(*tiles.first()?)?;
        let uniform = tiles.iter().all(|&t| meta.ispe(t) == Some((tw, th)));
        let covers = |n: u32, t: u32, out: u32| {
            let total = u64::from(n) * u64::from(t);
            total >= u64::from(out) && total < u64::from(out) + u64::from(t)
        };
        if !uniform || !covers(cols, tw, ow) || !covers(rows, th, oh) {
            return None;
        }
        decoded = (ow, oh);
        (w, h) = (ow, oh);
    }
    if let Some(c) = meta.property(primary, b"clap") {
        let frac = |at: usize| -> Option<u32> {
            let (n, d) = (be32(c, at)?, be32(c, at + 4)?);
            (d != 0).then(|| ((f64::from(n) / f64::from(d)).round()) as u32)
        };
        let (cw, ch) = (frac(0)?, frac(8)?);
        if cw == 0 || ch == 0 || cw > w || ch > h {
            return None;
        }
        (w, h) = (cw, ch);
    }
    if let Some(r) = meta.property(primary, b"irot")
        && r.first()? & 1 == 1
    {
        (w, h) = (h, w);
    }
    let has_alpha = meta.referring(b"auxl", primary).any(|aux| {
        meta.property(aux, b"auxC")
            .and_then(|c| c.get(4..))
            .is_some_and(|urn| urn.windows(5).any(|s| s == b"alpha"))
    });
    let mut header = Header::still(format, w, h, has_alpha);
    // The pixel limit is checked on what is allocated: the decoded size before the
    // transforms (a clean aperture can be small while the coded image is huge).
    header.largest_frame = decoded;
    Some(header)
}

/// Decodes the primary image to 8-bit RGB(A) with libheif, transforms (`irot`, `imir`,
/// `clap`) applied; the colour profile (ICC, or nclx turned into one) for the sRGB step.
pub(crate) fn decode<'a>(input: &[u8], header: &Header<'_>) -> Result<Decoded<'a>, PipelineError> {
    let bad = || corrupt(header.format);
    // A codec or feature libheif lacks is "unsupported" (415); anything else in the coded
    // data is a corrupt file (422).
    let failed = |e: libheif_rs::HeifError| match e.code {
        HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType => {
            PipelineError::Unsupported(format!(
                "cannot decode this {} image ({})",
                header.format.name(),
                e.message
            ))
        }
        _ => bad(),
    };
    let ctx = HeifContext::read_from_bytes(input).map_err(|_| bad())?;
    let handle = ctx.primary_image_handle().map_err(|_| bad())?;
    let alpha = handle.has_alpha_channel();
    let depth = handle.luma_bits_per_pixel();
    // Above 8 bits, decode to 16-bit samples and round to 8 ourselves (libheif's own
    // conversion truncates).
    let hdr = depth > 8;
    let chroma = match (alpha, hdr) {
        (false, false) => RgbChroma::Rgb,
        (true, false) => RgbChroma::Rgba,
        (false, true) => RgbChroma::HdrRgbLe,
        (true, true) => RgbChroma::HdrRgbaLe,
    };
    let lib = LibHeif::new();
    let img = lib
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(failed)?;
    let (w, h) = (img.width(), img.height());
    if (w, h) != (header.width, header.height) {
        return Err(bad());
    }
    let planes = img.planes();
    let plane = planes.interleaved.ok_or_else(bad)?;
    let channels = if alpha { 4 } else { 3 };
    let row = w as usize * channels;
    let mut px = Vec::with_capacity(row * h as usize);
    if hdr {
        let max = (1u32 << plane.bits_per_pixel.clamp(9, 16)) - 1;
        for y in 0..h as usize {
            let line = plane.data.get(y * plane.stride..y * plane.stride + row * 2);
            for s in line.ok_or_else(bad)?.chunks_exact(2) {
                let v = u32::from(u16::from_le_bytes([s[0], s[1]])).min(max);
                // Nearest 8-bit level: v * 255 / max, rounded half up.
                px.push(((v * 255 + max / 2) / max) as u8);
            }
        }
    } else {
        for y in 0..h as usize {
            let line = plane.data.get(y * plane.stride..y * plane.stride + row);
            px.extend_from_slice(line.ok_or_else(bad)?);
        }
    }
    let image = if alpha {
        image::RgbaImage::from_raw(w, h, px).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(bad)?;
    Ok(Decoded {
        image,
        orientation: exif_orientation(input),
        icc: colour_profile(&handle).map(Cow::Owned),
    })
}

/// HEIF orientation is `irot`/`imir` (applied by libheif); the Exif orientation tag is
/// used only when the primary image has neither, as pillow-heif and libvips do: iPhones
/// write both (applying both would turn the photo twice), while tools such as libheif's
/// own `heif-enc` 1.15 keep a JPEG's Exif orientation and write no `irot`.
fn exif_orientation(input: &[u8]) -> Orientation {
    let exif = || -> Option<Orientation> {
        let meta = Meta::parse(input)?;
        let primary = meta.primary;
        if meta.property(primary, b"irot").is_some() || meta.property(primary, b"imir").is_some() {
            return None;
        }
        let data = meta
            .referring(b"cdsc", primary)
            .filter(|&id| meta.item(id).is_some_and(|i| &i.kind == b"Exif"))
            .find_map(|id| meta.item_data(input, id))?;
        // A 4-byte offset to the TIFF header, then the Exif payload.
        let skip = usize::try_from(be32(data, 0)?).ok()?;
        let tiff = data.get(4usize.checked_add(skip)?..)?;
        Orientation::from_exif_chunk(tiff)
    };
    exif().unwrap_or(Orientation::NoTransforms)
}

/// The image's ICC profile, or for nclx colour information an ICC profile made from it
/// (so one sRGB step handles both); none when it already is sRGB.
fn colour_profile(handle: &libheif_rs::ImageHandle) -> Option<Vec<u8>> {
    use libheif_rs::ColorProfile;
    use libheif_rs::color_profile_types::{PROF, R_ICC};
    if let Some(raw) = handle.color_profile_raw()
        && [R_ICC, PROF].contains(&raw.profile_type())
    {
        return Some(raw.data).filter(|d| d.len() <= MAX_ICC_BYTES);
    }
    let nclx = handle.color_profile_nclx()?;
    super::color::icc_from_cicp(
        nclx.color_primaries() as u8,
        nclx.transfer_characteristics() as u8,
    )
}

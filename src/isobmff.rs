//! ISO base media file format (ISO/IEC 14496-12) as HEIF images use it (ISO/IEC 23008-12):
//! the boxes of the `meta` box that say which item is the image, its properties, where each
//! item's bytes are and how items refer to each other. Read by the pipeline (HEIC/AVIF
//! headers, Exif orientation) and by `originals` (removing Exif/XMP items in place).
//!
//! A leaf like `media`: it imports nothing from the crate. Every count a hostile file
//! could inflate is capped, and nothing is allocated in proportion to a declared size.

/// Caps on the counts a hostile `meta` box could inflate; real files have a few dozen items
/// (an iPhone photo: 48 tiles, a thumbnail, Exif, depth) and properties.
const MAX_ITEMS: usize = 4096;
const MAX_PROPERTIES: usize = 4096;
const MAX_EXTENTS: usize = 1024;

pub fn be16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([s[0], s[1]])))
}

pub fn be32(b: &[u8], at: usize) -> Option<u32> {
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
pub fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8], usize)> {
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

/// A box as `boxes` yields it: (fourcc, payload, offset of the box).
pub type BoxRef<'a> = ([u8; 4], &'a [u8], usize);

/// The boxes of a container that must hold nothing else: `None` if one is malformed or
/// they do not end where the container does. libheif reads a child that overruns its
/// parent on into what follows (found by fuzzing: an `auxl` reference 78 bytes long in a
/// 26-byte `iref` gave libheif an alpha image this walk did not see, and it allocated
/// 2.2 GB for it), so a walk that stops early would check less than libheif decodes.
pub fn boxes_exact(data: &[u8]) -> Option<Vec<BoxRef<'_>>> {
    let all: Vec<_> = boxes(data).collect();
    let end = all
        .last()
        .map_or(0, |(_, p, _)| offset_in(data, p).unwrap_or(0) + p.len());
    (end == data.len()).then_some(all)
}

fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _, _)| k == kind).map(|(_, p, _)| p)
}

/// One item of `iinf`.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub id: u32,
    pub kind: [u8; 4],
    /// Where the item type is in the file (to rename an item in place).
    pub kind_at: usize,
}

/// One `iref` entry: (reference type, from item, to items).
pub type Reference = ([u8; 4], u32, Vec<u32>);

/// Where an item's bytes are (`iloc`): in the file (method 0) or in `idat` (method 1).
#[derive(Debug, Clone)]
pub struct Location {
    pub item: u32,
    pub method: u8,
    pub base: u64,
    /// `(offset, length)`; a length of 0 means "to the end".
    pub extents: Vec<(u64, u64)>,
}

/// The parts of `meta` we use.
#[derive(Debug, Default)]
pub struct Meta<'a> {
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
        for (kind, p, _) in boxes_exact(children)? {
            match &kind {
                b"pitm" => {
                    // An empty box (found by fuzzing) is malformed, not a panic.
                    m.primary = if *p.first()? == 0 {
                        be16(p, 4)?
                    } else {
                        be32(p, 4)?
                    };
                    has_pitm = true;
                }
                b"iinf" => m.items = parse_iinf(input, p)?,
                b"iloc" => m.locations = parse_iloc(p)?,
                b"iprp" => {
                    for (k, q, _) in boxes_exact(p)? {
                        match &k {
                            b"ipco" => {
                                m.properties = boxes_exact(q)?
                                    .into_iter()
                                    .map(|(k, q, _)| (k, q))
                                    .collect();
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

    /// The images a derived item (`grid`, `iovl`) is made of (its `dimg` references).
    pub fn derived_from(&self, item: u32) -> Option<&[u32]> {
        self.references
            .iter()
            .find(|(k, from, _)| k == b"dimg" && *from == item)
            .map(|(_, _, to)| to.as_slice())
    }

    /// Items referring to `to` with reference type `kind` (e.g. `auxl`, `cdsc`).
    pub fn referring(&self, kind: &[u8; 4], to: u32) -> impl Iterator<Item = u32> + '_ {
        let kind = *kind;
        self.references
            .iter()
            .filter(move |(k, _, tos)| *k == kind && tos.contains(&to))
            .map(|(_, from, _)| *from)
    }

    /// Where each extent of an item is in the file (inside `idat` for construction method
    /// 1); `None` for other methods, an extent "to the end", or one past the end.
    pub fn item_ranges(&self, input: &'a [u8], item: u32) -> Option<Vec<std::ops::Range<usize>>> {
        let loc = self.locations.iter().find(|l| l.item == item)?;
        let (source, at) = match loc.method {
            0 => (input, 0),
            1 => (self.idat?, offset_in(input, self.idat?)?),
            _ => return None,
        };
        loc.extents
            .iter()
            .map(|&(offset, len)| {
                let start = usize::try_from(loc.base.checked_add(offset)?).ok()?;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                (len > 0 && end <= source.len()).then(|| at + start..at + end)
            })
            .collect()
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

fn parse_iinf(input: &[u8], p: &[u8]) -> Option<Vec<Item>> {
    let (count, start) = if *p.first()? == 0 {
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
        let kind_bytes = e.get(at..at + 4)?;
        let kind: [u8; 4] = kind_bytes.try_into().ok()?;
        items.push(Item {
            id,
            kind,
            kind_at: offset_in(input, kind_bytes)?,
        });
    }
    Some(items)
}

/// Where `part` (a subslice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset + part.len() <= whole.len()).then_some(offset)
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
    for (kind, r, _) in boxes_exact(p.get(4..)?)? {
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

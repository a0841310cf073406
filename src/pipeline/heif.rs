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
use crate::isobmff::{Meta, be16, be32};

mod coded;

/// How far a coded picture may exceed its item's `ispe` (an HEVC picture is a whole number
/// of coding blocks, cropped by its conformance window; 64 is the largest block).
const CODED_SLACK: u32 = 64;

/// Most tiles in a grid (libheif's own limit is the grid's 8-bit row/column counts).
const MAX_GRID_TILES: usize = 256 * 256;
use super::detect::{Header, MAX_ICC_BYTES, corrupt};
use super::{PipelineError, SourceFormat};

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
        let tiles = meta.derived_from(primary)?;
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
    } else if &item.kind == b"iovl" {
        // The overlay descriptor: version, flags (bit 0: 32-bit fields), a fill colour of
        // four 16-bit values, output width, output height, then an offset per image.
        // libheif allocates the canvas at the output size, whatever `ispe` says (found by
        // fuzzing: a 64×48 `ispe` over a 29184×26725 canvas took 2.3 GB), and decodes each
        // referenced image at its own size; the largest of these is what the limit sees.
        let o = meta.item_data(input, primary)?;
        let (ow, oh) = if o.get(1)? & 1 == 1 {
            (be32(o, 10)?, be32(o, 14)?)
        } else {
            (be16(o, 10)?, be16(o, 12)?)
        };
        decoded = (ow, oh);
        for &layer in meta.derived_from(primary)? {
            decoded = larger(decoded, meta.ispe(layer)?);
        }
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
    let alpha: Vec<u32> = meta
        .referring(b"auxl", primary)
        .filter(|&aux| {
            meta.property(aux, b"auxC")
                .and_then(|c| c.get(4..))
                .is_some_and(|urn| urn.windows(5).any(|s| s == b"alpha"))
        })
        .collect();
    // libheif decodes the alpha image too, at its own size.
    for &aux in &alpha {
        decoded = larger(decoded, meta.ispe(aux)?);
    }
    // The codecs allocate what the coded pictures declare, not what `ispe` says: each one
    // libheif will decode must fit its item's `ispe`.
    for image in std::iter::once(primary).chain(alpha.iter().copied()) {
        for item in coded_items(&meta, image)? {
            check_coded(&meta, input, item)?;
        }
    }
    let mut header = Header::still(format, w, h, !alpha.is_empty());
    // The pixel limit is checked on what is allocated: the decoded size before the
    // transforms (a clean aperture can be small while the coded image is huge).
    header.largest_frame = decoded;
    Some(header)
}

/// Of two sizes, the one with more pixels.
fn larger(a: (u32, u32), b: (u32, u32)) -> (u32, u32) {
    let pixels = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
    if pixels(b) > pixels(a) { b } else { a }
}

/// The coded images behind an image item: a grid's tiles, an overlay's layers, or itself.
fn coded_items(meta: &Meta<'_>, image: u32) -> Option<Vec<u32>> {
    let derived = |kind: &[u8; 4]| kind == b"grid" || kind == b"iovl";
    if !derived(&meta.item(image)?.kind) {
        return Some(vec![image]);
    }
    // A derived image of derived images is not something libheif 1.15 decodes.
    meta.derived_from(image)?
        .iter()
        .map(|&p| (!derived(&meta.item(p)?.kind)).then_some(p))
        .collect()
}

/// Whether a coded item holds one picture and every picture size in its parameter sets (its
/// configuration box and its data) fits its `ispe`; `None` for anything else, including a
/// codec we cannot size.
fn check_coded(meta: &Meta<'_>, input: &[u8], item: u32) -> Option<()> {
    let (iw, ih) = meta.ispe(item)?;
    let data: Cow<'_, [u8]> = match meta.item_data(input, item) {
        Some(d) => Cow::Borrowed(d),
        // Several extents: libheif reads them as one.
        None => Cow::Owned(
            meta.item_ranges(input, item)?
                .into_iter()
                .flat_map(|r| input[r].iter().copied())
                .collect(),
        ),
    };
    let coded = match &meta.item(item)?.kind {
        b"av01" => coded::av1(meta.property(item, b"av1C")?, &data)?,
        b"hvc1" => coded::hevc(meta.property(item, b"hvcC")?, &data)?,
        _ => return None,
    };
    let fits = |&(w, h): &(u32, u32)| {
        w <= iw.saturating_add(CODED_SLACK) && h <= ih.saturating_add(CODED_SLACK)
    };
    (coded.pictures == 1 && !coded.sizes.is_empty() && coded.sizes.iter().all(fits)).then_some(())
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

/// The TIFF payload of the Exif item describing the primary image (one extent).
pub(crate) fn exif(input: &[u8]) -> Option<&[u8]> {
    let meta = Meta::parse(input)?;
    exif_of(input, &meta)
}

fn exif_of<'a>(input: &'a [u8], meta: &Meta<'a>) -> Option<&'a [u8]> {
    let data = meta
        .referring(b"cdsc", meta.primary)
        .filter(|&id| meta.item(id).is_some_and(|i| &i.kind == b"Exif"))
        .find_map(|id| meta.item_data(input, id))?;
    // A 4-byte offset to the TIFF header, then the Exif payload.
    let skip = usize::try_from(be32(data, 0)?).ok()?;
    data.get(4usize.checked_add(skip)?..)
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
        Orientation::from_exif_chunk(exif_of(input, &meta)?)
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

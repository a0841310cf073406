//! Image facts (SPEC §10) from the header, the EXIF block and one small decode.
//!
//! EXIF is read with `kamadak-exif` (the `exif` crate): pure Rust, bounded by the block
//! it is given (at most `MAX_METADATA_BYTES`), and lenient with the broken fields phones
//! and editors write (`continue_on_error`: one bad field does not lose the others).
//! The decode is the one JPEG shrink-on-load gives at 1/8 (a 12 MP photo decodes to
//! 504×378), or a finer one kept from an earlier render; it is reduced to at most
//! `THUMB` pixels on the long side, converted to sRGB, oriented, and both the dominant
//! colour and the BlurHash (the `blurhash` crate, the reference algorithm) are computed
//! from that.

use image::DynamicImage;

use super::decode;
use super::detect::{self, Header, MAX_METADATA_BYTES};
use super::{DecodedSources, PipelineError, SourceFormat, SourceInfo, geometry::Orient};
use crate::facts::{Camera, Facts, Gps};

/// Longest side of the image the colour facts are computed from: BlurHash and a dominant
/// colour need no more, and it keeps both at a few thousand pixels.
const THUMB: u32 = 64;

/// The header facts and colour facts of `input`; refuses what upload refuses (pixel
/// limit, corrupt data: the decode reads every entropy-coded byte).
pub(crate) fn describe(
    input: &[u8],
    max_pixels: u64,
    sources: Option<&dyn DecodedSources>,
) -> Result<(SourceInfo, Facts), PipelineError> {
    let header = detect::read_header(input)?;
    // Upload validation: every frame counts, as for an animated render.
    super::check_pixels(&header, max_pixels, true)?;
    let (thumb, orientation) = match sources {
        // A kept decode is in sRGB already; a new one is kept for later renders.
        Some(_) => {
            let d = super::decode_source(input, &header, 8, max_pixels, sources)?;
            (thumbnail(&d.image, None, d.orientation)?, d.orientation)
        }
        // Colour conversion of the thumbnail only: the decode itself is not kept.
        None => {
            let d = decode::decode(input, &header, 8, max_pixels)?;
            (
                thumbnail(&d.image, d.icc.as_deref(), d.orientation)?,
                d.orientation,
            )
        }
    };
    let orient = Orient::from_image(orientation);
    let (display_width, display_height) = orient.output_dims(header.width, header.height);
    let (taken_at, camera, gps) = exif_block(input, &header).map_or((None, None, None), exif_facts);
    let info = SourceInfo::of(&header);
    let facts = Facts {
        format: header.format.image_type().name().to_string(),
        display_width,
        display_height,
        orientation: orientation.to_exif(),
        animated: header.frames > 1,
        frames: header.frames,
        has_alpha: header.has_alpha,
        taken_at,
        camera,
        gps,
        dominant_color: dominant_color(&thumb),
        blurhash: blurhash(&thumb),
    };
    Ok((info, facts))
}

/// The facts EXIF gives (time taken, camera, position) from a TIFF-structured payload.
pub(super) fn exif_facts(tiff: &[u8]) -> (Option<String>, Option<Camera>, Option<Gps>) {
    let exif = read_exif(tiff);
    let field = |tag| {
        exif.as_ref()
            .and_then(|e| e.get_field(tag, exif::In::PRIMARY))
    };
    (
        field(exif::Tag::DateTimeOriginal)
            .and_then(|dt| taken_at(dt, field(exif::Tag::OffsetTimeOriginal))),
        camera(
            field(exif::Tag::Make).and_then(ascii),
            field(exif::Tag::Model).and_then(ascii),
        ),
        gps(
            field(exif::Tag::GPSLatitude),
            field(exif::Tag::GPSLatitudeRef),
            field(exif::Tag::GPSLongitude),
            field(exif::Tag::GPSLongitudeRef),
        ),
    )
}

/// The TIFF-structured EXIF payload of a JPEG (APP1), PNG (`eXIf`) or WebP (`EXIF`).
fn exif_block<'a>(input: &'a [u8], header: &Header<'a>) -> Option<&'a [u8]> {
    let block = match header.format {
        SourceFormat::Jpeg => header.jpeg.as_ref()?.exif,
        SourceFormat::Png => png_exif(input),
        SourceFormat::Webp => detect::webp_metadata(input).1,
        SourceFormat::Gif => None,
        SourceFormat::Heic | SourceFormat::Heif | SourceFormat::Avif => super::heif::exif(input),
    }?;
    Some(block.strip_prefix(b"Exif\0\0").unwrap_or(block)).filter(|b| b.len() <= MAX_METADATA_BYTES)
}

/// The first `eXIf` chunk of a PNG (chunk headers only).
fn png_exif(input: &[u8]) -> Option<&[u8]> {
    let mut pos = 8usize;
    loop {
        let len = usize::try_from(u32::from_be_bytes(
            input.get(pos..pos + 4)?.try_into().ok()?,
        ))
        .ok()?;
        let kind = input.get(pos + 4..pos + 8)?;
        let data = pos.checked_add(8)?..pos.checked_add(8)?.checked_add(len)?;
        match kind {
            b"eXIf" => return input.get(data),
            b"IEND" => return None,
            _ => pos = data.end.checked_add(4)?,
        }
    }
}

fn read_exif(tiff: &[u8]) -> Option<exif::Exif> {
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    match reader.read_raw(tiff.to_vec()) {
        Ok(e) => Some(e),
        // The fields that did parse.
        Err(e) => e.distill_partial_result(|_| {}).ok(),
    }
}

/// An ASCII field's first value, trimmed of the NULs and spaces writers pad with.
fn ascii(f: &exif::Field) -> Option<String> {
    let exif::Value::Ascii(v) = &f.value else {
        return None;
    };
    let raw = v.first()?;
    let s = String::from_utf8_lossy(raw);
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty() && s.len() <= 256).then(|| s.to_string())
}

fn camera(make: Option<String>, model: Option<String>) -> Option<Camera> {
    (make.is_some() || model.is_some()).then_some(Camera { make, model })
}

/// `YYYY:MM:DD HH:MM:SS` (+ `±HH:MM`) → `YYYY-MM-DDTHH:MM:SS[±HH:MM]`.
fn taken_at(dt: &exif::Field, offset: Option<&exif::Field>) -> Option<String> {
    let exif::Value::Ascii(v) = &dt.value else {
        return None;
    };
    let mut t = exif::DateTime::from_ascii(v.first()?).ok()?;
    let valid = (1..=12).contains(&t.month)
        && (1..=31).contains(&t.day)
        && t.hour < 24
        && t.minute < 60
        && t.second <= 60;
    if !valid {
        return None;
    }
    if let Some(exif::Value::Ascii(o)) = offset.map(|f| &f.value)
        && let Some(o) = o.first()
    {
        // A blank or malformed offset leaves the time without one.
        let _ = t.parse_offset(o);
    }
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if let Some(m) = t.offset.filter(|m| m.abs() < 24 * 60) {
        let sign = if m < 0 { '-' } else { '+' };
        s.push_str(&format!("{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60));
    }
    Some(s)
}

/// Degrees from three rationals (degrees, minutes, seconds) and the hemisphere letter.
/// No reference letter, a zero denominator or an out-of-range result: no position.
fn gps(
    lat: Option<&exif::Field>,
    lat_ref: Option<&exif::Field>,
    lon: Option<&exif::Field>,
    lon_ref: Option<&exif::Field>,
) -> Option<Gps> {
    fn degrees(f: &exif::Field) -> Option<f64> {
        // RATIONAL as the standard says; some phones (Nokia) write SRATIONAL.
        let parts: Vec<(f64, f64)> = match &f.value {
            exif::Value::Rational(r) => r
                .iter()
                .map(|q| (f64::from(q.num), f64::from(q.denom)))
                .collect(),
            exif::Value::SRational(r) => r
                .iter()
                .map(|q| (f64::from(q.num), f64::from(q.denom)))
                .collect(),
            _ => return None,
        };
        // Negative parts would fight the hemisphere letter: no position.
        if parts.iter().any(|(n, d)| *n < 0.0 || *d < 0.0) {
            return None;
        }
        let part = |i: usize| parts.get(i).filter(|(_, d)| *d != 0.0).map(|(n, d)| n / d);
        let d = part(0)? + part(1).unwrap_or(0.0) / 60.0 + part(2).unwrap_or(0.0) / 3600.0;
        d.is_finite().then_some(d)
    }
    fn sign(f: &exif::Field, negative: u8, positive: u8) -> Option<f64> {
        let exif::Value::Ascii(v) = &f.value else {
            return None;
        };
        match v.first()?.first()?.to_ascii_uppercase() {
            c if c == negative => Some(-1.0),
            c if c == positive => Some(1.0),
            _ => None,
        }
    }
    let lat = degrees(lat?)? * sign(lat_ref?, b'S', b'N')?;
    let lon = degrees(lon?)? * sign(lon_ref?, b'W', b'E')?;
    let round = |v: f64| (v * 1e7).round() / 1e7;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then(|| Gps {
        lat: round(lat),
        lon: round(lon),
    })
}

/// The decode reduced to at most `THUMB` on the long side, converted from `icc` to sRGB,
/// then oriented as shown.
fn thumbnail(
    img: &DynamicImage,
    icc: Option<&[u8]>,
    orientation: image::metadata::Orientation,
) -> Result<image::RgbaImage, PipelineError> {
    let (w, h) = (img.width(), img.height());
    let scale = f64::from(THUMB) / f64::from(w.max(h));
    let mut small = if scale < 1.0 {
        let tw = ((f64::from(w) * scale).round() as u32).max(1);
        let th = ((f64::from(h) * scale).round() as u32).max(1);
        super::resample::resample(img, None, (tw, th))?
    } else {
        img.clone()
    };
    if let Some(icc) = icc {
        super::color::to_srgb(&mut small, icc);
    }
    small.apply_orientation(orientation);
    Ok(small.into_rgba8())
}

/// The mean colour of the most populated cell of a 8×8×8 RGB grid, each pixel weighted
/// by its opacity; `None` for a fully transparent image.
fn dominant_color(img: &image::RgbaImage) -> Option<String> {
    let mut cells = vec![[0f64; 4]; 512];
    for p in img.pixels() {
        let [r, g, b, a] = p.0;
        let w = f64::from(a) / 255.0;
        let i = usize::from(r >> 5) << 6 | usize::from(g >> 5) << 3 | usize::from(b >> 5);
        let c = &mut cells[i];
        c[0] += f64::from(r) * w;
        c[1] += f64::from(g) * w;
        c[2] += f64::from(b) * w;
        c[3] += w;
    }
    let best = cells.iter().max_by(|a, b| a[3].total_cmp(&b[3]))?;
    if best[3] <= 0.0 {
        return None;
    }
    let ch = |v: f64| (v / best[3]).round().clamp(0.0, 255.0) as u8;
    Some(format!(
        "#{:02x}{:02x}{:02x}",
        ch(best[0]),
        ch(best[1]),
        ch(best[2])
    ))
}

/// BlurHash with 4×3 components; transparent areas over white (BlurHash has no alpha).
fn blurhash(img: &image::RgbaImage) -> Option<String> {
    let mut px = img.clone();
    for p in px.pixels_mut() {
        let a = u32::from(p.0[3]);
        for c in &mut p.0[..3] {
            *c = ((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
        p.0[3] = 255;
    }
    blurhash::encode(4, 3, px.width(), px.height(), px.as_raw()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(tag: exif::Tag, value: exif::Value) -> exif::Field {
        exif::Field {
            tag,
            ifd_num: exif::In::PRIMARY,
            value,
        }
    }

    fn ascii_field(tag: exif::Tag, s: &str) -> exif::Field {
        field(tag, exif::Value::Ascii(vec![s.as_bytes().to_vec()]))
    }

    fn dms(d: u32, m: u32, s_num: u32, s_den: u32) -> exif::Field {
        let r = |num, denom| exif::Rational { num, denom };
        field(
            exif::Tag::GPSLatitude,
            exif::Value::Rational(vec![r(d, 1), r(m, 1), r(s_num, s_den)]),
        )
    }

    #[test]
    fn times() {
        let dt = ascii_field(exif::Tag::DateTimeOriginal, "2022:08:14 14:12:31");
        let off = ascii_field(exif::Tag::OffsetTimeOriginal, "+03:00");
        assert_eq!(
            taken_at(&dt, Some(&off)).as_deref(),
            Some("2022-08-14T14:12:31+03:00")
        );
        assert_eq!(taken_at(&dt, None).as_deref(), Some("2022-08-14T14:12:31"));
        let west = ascii_field(exif::Tag::OffsetTimeOriginal, "-07:30");
        assert_eq!(
            taken_at(&dt, Some(&west)).as_deref(),
            Some("2022-08-14T14:12:31-07:30")
        );
        let blank = ascii_field(exif::Tag::OffsetTimeOriginal, "   :  ");
        assert_eq!(
            taken_at(&dt, Some(&blank)).as_deref(),
            Some("2022-08-14T14:12:31")
        );
        for bad in [
            "0000:00:00 00:00:00",
            "    :  :     :  :  ",
            "2022-08-14 14:12:31",
        ] {
            assert_eq!(
                taken_at(&ascii_field(exif::Tag::DateTimeOriginal, bad), None),
                None
            );
        }
    }

    #[test]
    fn positions() {
        let n = ascii_field(exif::Tag::GPSLatitudeRef, "N");
        let w = ascii_field(exif::Tag::GPSLongitudeRef, "W");
        let p = gps(
            Some(&dms(37, 43, 2381, 100)),
            Some(&n),
            Some(&dms(119, 36, 5726, 100)),
            Some(&w),
        )
        .unwrap();
        assert!((p.lat - 37.7232806).abs() < 1e-6, "{p:?}");
        assert!((p.lon + 119.6159056).abs() < 1e-6, "{p:?}");
        assert_eq!(
            gps(
                Some(&dms(37, 0, 0, 1)),
                None,
                Some(&dms(1, 0, 0, 1)),
                Some(&w)
            ),
            None
        );
        assert_eq!(
            gps(
                Some(&dms(37, 0, 1, 0)),
                Some(&n),
                Some(&dms(1, 0, 0, 1)),
                Some(&w)
            )
            .map(|g| g.lat),
            Some(37.0)
        );
        assert_eq!(
            gps(
                Some(&dms(91, 0, 0, 1)),
                Some(&n),
                Some(&dms(1, 0, 0, 1)),
                Some(&w)
            ),
            None
        );
        // SRATIONAL, as a Nokia 8.3 writes it.
        let s = |num, denom| exif::SRational { num, denom };
        let signed = field(
            exif::Tag::GPSLatitude,
            exif::Value::SRational(vec![s(60, 1), s(8, 1), s(4814, 100)]),
        );
        let e = ascii_field(exif::Tag::GPSLongitudeRef, "E");
        let p = gps(
            Some(&signed),
            Some(&n),
            Some(&dms(24, 54, 2438, 100)),
            Some(&e),
        )
        .unwrap();
        assert!(
            (p.lat - 60.1467056).abs() < 1e-6 && (p.lon - 24.9067722).abs() < 1e-6,
            "{p:?}"
        );
        let negative = field(
            exif::Tag::GPSLatitude,
            exif::Value::SRational(vec![s(-60, 1), s(8, 1), s(0, 1)]),
        );
        assert_eq!(
            gps(Some(&negative), Some(&n), Some(&dms(24, 0, 0, 1)), Some(&e)),
            None
        );
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::read(path.join(name)).unwrap()
    }

    #[test]
    fn header_facts_of_fixtures() {
        // Stored 48x64 with orientation 6: shown 64x48.
        let (info, f) = describe(&fixture("orient6.jpg"), 1 << 30, None).unwrap();
        assert_eq!((info.width, info.height), (48, 64));
        assert_eq!(
            (f.display_width, f.display_height, f.orientation),
            (64, 48, 6)
        );
        assert_eq!(
            (f.format.as_str(), f.animated, f.frames),
            ("jpeg", false, 1)
        );
        let (_, f) = describe(&fixture("anim.gif"), 1 << 30, None).unwrap();
        assert!(f.animated && f.frames > 1);
        let (_, f) = describe(&fixture("alpha.webp"), 1 << 30, None).unwrap();
        assert!(f.has_alpha && f.taken_at.is_none() && f.gps.is_none());
        assert!(f.blurhash.is_some() && f.dominant_color.is_some());
        assert!(matches!(
            describe(&fixture("orient6.jpg"), 100, None),
            Err(PipelineError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn colours() {
        let mut img = image::RgbaImage::from_pixel(10, 10, image::Rgba([200, 10, 10, 255]));
        for x in 0..3 {
            img.put_pixel(x, 0, image::Rgba([0, 0, 250, 255]));
        }
        assert_eq!(dominant_color(&img).as_deref(), Some("#c80a0a"));
        let clear = image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 0, 0]));
        assert_eq!(dominant_color(&clear), None);
        let hash = blurhash(&img).unwrap();
        assert_eq!(hash.len(), 4 + 2 * (4 * 3 - 1) + 2);
    }
}

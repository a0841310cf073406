//! Structure-level tests on hand-built files; the integration tests (`tests/it/privacy.rs`)
//! check the same with files written by exiftool and read back by exiftool and Pillow.
// The tests decode outputs directly to compare pixels.
#![allow(clippy::disallowed_methods)]

use super::*;
use image::{DynamicImage, ImageFormat, RgbImage};
use std::io::Cursor;

fn photo() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, ((x + y) * 5) as u8])
    }))
}

fn encoded(format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    photo().write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A TIFF block with Orientation and a Make tag (something to remove besides it).
fn exif_with(orientation: u16) -> Vec<u8> {
    let mut t = b"II\x2a\0\x08\0\0\0".to_vec();
    t.extend_from_slice(&2u16.to_le_bytes());
    // Make (ASCII, 4 bytes inline: "Cam\0")
    t.extend_from_slice(&0x010Fu16.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&4u32.to_le_bytes());
    t.extend_from_slice(b"Cam\0");
    t.extend_from_slice(&0x0112u16.to_le_bytes());
    t.extend_from_slice(&3u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&orientation.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

fn segment(marker: u8, data: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(data);
    s
}

fn stripped(input: &[u8]) -> Vec<u8> {
    match strip(input).unwrap() {
        Stripped::Layout(l) => {
            let out = l.to_vec(&Bytes::copy_from_slice(input));
            assert_eq!(out.len(), l.len());
            out
        }
        other => panic!("expected a layout, got {other:?}"),
    }
}

fn pixels(b: &[u8]) -> Vec<u8> {
    image::load_from_memory(b).unwrap().to_rgba8().into_raw()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn jpeg_keeps_icc_and_orientation_only() {
    let plain = encoded(ImageFormat::Jpeg);
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&exif_with(6));
    let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
    icc.extend_from_slice(b"not really a profile");
    let mut f = plain[..2].to_vec();
    f.extend(segment(0xE1, &exif));
    f.extend(segment(
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>secret</x:xmpmeta>",
    ));
    f.extend(segment(0xE2, &icc));
    f.extend(segment(0xED, b"Photoshop 3.0\08BIM secret"));
    f.extend(segment(0xFE, b"a secret comment"));
    f.extend_from_slice(&plain[2..]);
    f.extend_from_slice(b"trailing secret");
    let out = stripped(&f);
    assert!(!contains(&out, b"secret"));
    assert!(!contains(&out, b"Cam"));
    assert!(contains(&out, b"not really a profile"));
    assert!(out.ends_with(&[0xFF, 0xD9]));
    let mut dec = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&out)).unwrap();
    use image::ImageDecoder as _;
    assert_eq!(
        dec.orientation().unwrap(),
        image::metadata::Orientation::Rotate90
    );
    assert_eq!(pixels(&out), pixels(&f));
    // Stripping again changes nothing: the minimal Exif is recognised as such.
    assert_eq!(strip(&out).unwrap(), Stripped::Unchanged);
}

#[test]
fn jpeg_without_metadata_is_unchanged() {
    let plain = encoded(ImageFormat::Jpeg);
    assert_eq!(strip(&plain).unwrap(), Stripped::Unchanged);
    // Orientation 1 is not kept: the Exif block goes entirely.
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&exif_with(1));
    let mut f = plain[..2].to_vec();
    f.extend(segment(0xE1, &exif));
    f.extend_from_slice(&plain[2..]);
    assert_eq!(stripped(&f), plain);
}

#[test]
fn jpeg_segments_between_scans_and_thumbnails() {
    let plain = encoded(ImageFormat::Jpeg);
    // A COM segment right before EOI (between scan data and EOI) goes too.
    let eoi = plain.len() - 2;
    let mut f = plain[..eoi].to_vec();
    f.extend(segment(0xFE, b"late secret"));
    f.extend_from_slice(&plain[eoi..]);
    assert_eq!(stripped(&f), plain);
    // A JFIF thumbnail is dropped, the JFIF header kept.
    let mut jfif = b"JFIF\0\x01\x02\0\0\x01\0\x01\x02\x01".to_vec();
    jfif.extend_from_slice(b"THUMBS");
    let mut f = plain[..2].to_vec();
    f.extend(segment(0xE0, &jfif));
    f.extend_from_slice(&plain[2..]);
    let out = stripped(&f);
    assert!(contains(&out, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"));
    assert!(!contains(&out, b"THUMBS"));
    assert_eq!(pixels(&out), pixels(&plain));
    // Cut short in the scan data: walked, nothing to remove; in the header: refused.
    let cut = &plain[..plain.len() - 10];
    assert_eq!(strip(cut).unwrap(), Stripped::Unchanged);
    assert!(strip(&plain[..40]).is_err());
    assert!(strip(&[0xFF, 0xD8, 0x00]).is_err());
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    png::chunk(kind, data)
}

#[test]
fn png_drops_text_and_keeps_orientation() {
    let plain = encoded(ImageFormat::Png);
    let idat = 8 + 25; // after the signature and IHDR
    let mut f = plain[..idat].to_vec();
    f.extend(png_chunk(b"iCCP", b"prof\0\0xx"));
    f.extend(png_chunk(b"tEXt", b"Comment\0secret"));
    f.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0secret"));
    f.extend(png_chunk(b"eXIf", &exif_with(3)));
    f.extend(png_chunk(b"tIME", &[7, 230, 1, 1, 0, 0, 0]));
    f.extend_from_slice(&plain[idat..]);
    f.extend_from_slice(b"trailing secret");
    let out = stripped(&f);
    assert!(!contains(&out, b"secret"));
    assert!(!contains(&out, b"Cam"));
    assert!(contains(&out, b"iCCP"));
    let exif = png_chunk(b"eXIf", &exif::orientation_only(3));
    assert!(contains(&out, &exif));
    assert!(out.ends_with(&png_chunk(b"IEND", b"")));
    assert_eq!(strip(&out).unwrap(), Stripped::Unchanged);
    assert_eq!(strip(&plain).unwrap(), Stripped::Unchanged);
}

#[test]
fn png_idot_goes_only_with_something_else() {
    let plain = encoded(ImageFormat::Png);
    let idat = 8 + 25;
    let mut with_idot = plain[..idat].to_vec();
    with_idot.extend(png_chunk(b"iDOT", &[0; 28]));
    with_idot.extend_from_slice(&plain[idat..]);
    assert_eq!(strip(&with_idot).unwrap(), Stripped::Unchanged);
    let mut more = plain[..idat].to_vec();
    more.extend(png_chunk(b"iDOT", &[0; 28]));
    more.extend(png_chunk(b"tEXt", b"Author\0me"));
    more.extend_from_slice(&plain[idat..]);
    assert_eq!(stripped(&more), plain);
}

/// An extended WebP around a simple one's VP8 chunk, with `extra` chunks after it.
fn webp_with(extra: &[Vec<u8>], flags: u8) -> (Vec<u8>, Vec<u8>) {
    let simple = encoded(ImageFormat::WebP);
    let vp8 = simple[12..].to_vec();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.push(flags);
    vp8x.extend_from_slice(&[0, 0, 0]);
    vp8x.extend_from_slice(&[23, 0, 0, 15, 0, 0]); // 24x16
    body.extend_from_slice(&vp8x);
    body.extend_from_slice(&vp8);
    for e in extra {
        body.extend_from_slice(e);
    }
    let mut f = b"RIFF".to_vec();
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(&body);
    (f, simple)
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = kind.to_vec();
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

#[test]
fn webp_drops_exif_and_xmp_and_fixes_header() {
    let (f, _) = webp_with(
        &[
            riff_chunk(b"EXIF", &exif_with(1)),
            riff_chunk(b"XMP ", b"<x:xmpmeta>secret</x:xmpmeta>"),
        ],
        FLAG_EXIF_XMP,
    );
    let out = stripped(&f);
    assert!(!contains(&out, b"secret"));
    assert!(!contains(&out, b"EXIF"));
    assert_eq!(out[20] & 0x0C, 0, "EXIF and XMP flags cleared");
    assert_eq!(
        u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize,
        out.len() - 8
    );
    assert_eq!(pixels(&out), pixels(&f));

    // Orientation 8 stays, alone.
    let (f, _) = webp_with(&[riff_chunk(b"EXIF", &exif_with(8))], 0x08);
    let out = stripped(&f);
    assert_eq!(out[20] & 0x0C, 0x08);
    assert!(contains(
        &out,
        &riff_chunk(b"EXIF", &exif::orientation_only(8))
    ));
    assert!(!contains(&out, b"Cam"));
    assert_eq!(strip(&out).unwrap(), Stripped::Unchanged);
}

const FLAG_EXIF_XMP: u8 = 0x0C;

#[test]
fn webp_simple_is_unchanged_unless_followed_by_junk() {
    let simple = encoded(ImageFormat::WebP);
    assert_eq!(strip(&simple).unwrap(), Stripped::Unchanged);
    let mut f = simple.clone();
    f.extend_from_slice(b"trailing secret");
    assert_eq!(stripped(&f), simple);
}

#[test]
fn gif_drops_comments_and_xmp() {
    let mut plain = Cursor::new(Vec::new());
    photo().write_to(&mut plain, ImageFormat::Gif).unwrap();
    let plain = plain.into_inner();
    // Insert a comment and an XMP application extension before the trailer.
    let trailer = plain.len() - 1;
    assert_eq!(plain[trailer], 0x3B);
    let mut f = plain[..trailer].to_vec();
    f.extend_from_slice(&[0x21, 0xFE, 6]);
    f.extend_from_slice(b"secret");
    f.push(0);
    f.extend_from_slice(&[0x21, 0xFF, 11]);
    f.extend_from_slice(b"XMP DataXMP");
    f.extend_from_slice(&[6]);
    f.extend_from_slice(b"secret");
    f.push(0);
    f.push(0x3B);
    assert_eq!(stripped(&f), plain);
    assert_eq!(strip(&plain).unwrap(), Stripped::Unchanged);
}

fn bmff_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn avif_with_item(item_type: &[u8; 4]) -> Vec<u8> {
    let mut infe = vec![2, 0, 0, 0, 0, 1, 0, 0];
    infe.extend_from_slice(item_type);
    infe.push(0);
    let mut iinf = vec![0, 0, 0, 0, 0, 1];
    iinf.extend(bmff_box(b"infe", &infe));
    let mut meta = vec![0, 0, 0, 0];
    meta.extend(bmff_box(b"iinf", &iinf));
    let mut f = bmff_box(b"ftyp", b"avif\0\0\0\0avifmif1");
    f.extend(bmff_box(b"meta", &meta));
    f.extend(bmff_box(b"mdat", b"coded"));
    f
}

/// Item removal itself is checked on real files (avifenc, heif-enc) with exiftool and
/// pillow-heif in tests/it/privacy.rs; here, what cannot be walked is refused.
#[test]
fn isobmff_without_a_primary_item_is_refused() {
    // No `pitm`: the image cannot be told from its metadata.
    assert!(strip(&avif_with_item(b"Exif")).is_err());
    let mut with_uuid = avif_with_item(b"av01");
    with_uuid.extend(bmff_box(b"uuid", b"XMP packet"));
    assert_eq!(strip(&with_uuid).unwrap(), Stripped::Unsupported("AVIF"));
    let mut truncated = avif_with_item(b"av01");
    truncated.truncate(30);
    assert!(strip(&truncated).is_err());
}

//! HEIC/HEIF and AVIF inputs (SPEC §9). Fixtures are made at test time by libheif's
//! `heif-enc` and libavif's `avifenc` (Debian packages, installed by scripts/test), the
//! iPhone-style grid is assembled here from `heif-enc` tiles, and every expectation is read
//! with an independent decoder (Pillow with pillow-heif).

use std::path::Path;
use std::process::Command;

use crate::api::{Api, Db, Req, Who};
use crate::support::{QUADS, TestServer, fixture, quads, rss_bytes, run_python, solid_png};

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `heif-enc` on `input` (a JPEG or PNG file), returning the HEIC bytes.
fn heif_enc(dir: &Path, input: &[u8], ext: &str, extra: &[&str]) -> Vec<u8> {
    let src = dir.join(format!("in.{ext}"));
    let out = dir.join("out.heic");
    std::fs::write(&src, input).unwrap();
    let mut args = vec!["-q", "90"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    run("heif-enc", &args);
    std::fs::read(out).unwrap()
}

/// What pillow-heif decodes (libheif applies `irot`/`imir`, not an Exif orientation), as the
/// colours of the four quadrant centres, one letter each; plus the size.
fn independent_quads(bytes: &[u8]) -> (String, (u32, u32)) {
    let script = r#"
import sys, io, pillow_heif
from PIL import Image
pillow_heif.register_heif_opener()
im = Image.open(io.BytesIO(sys.stdin.buffer.read())).convert('RGB')
w, h = im.size
def name(p):
    r, g, b = p
    hi = lambda v: v > 180
    lo = lambda v: v < 80
    if hi(r) and lo(g) and lo(b): return 'R'
    if lo(r) and hi(g) and lo(b): return 'G'
    if lo(r) and lo(g) and hi(b): return 'B'
    if hi(r) and hi(g) and lo(b): return 'Y'
    return '?'
print(''.join(name(im.getpixel((int(w * fx), int(h * fy)))) for fx, fy in [(.25, .25), (.75, .25), (.25, .75), (.75, .75)]), w, h)
"#;
    let out = String::from_utf8(run_python(script, &[], bytes)).unwrap();
    let mut parts = out.split_whitespace();
    let q = parts.next().unwrap().to_string();
    let w = parts.next().unwrap().parse().unwrap();
    let h = parts.next().unwrap().parse().unwrap();
    (q, (w, h))
}

fn letters(q: [Option<crate::support::C>; 4]) -> String {
    use crate::support::C;
    q.iter()
        .map(|c| match c {
            Some(C::Red) => 'R',
            Some(C::Green) => 'G',
            Some(C::Blue) => 'B',
            Some(C::Yellow) => 'Y',
            _ => '?',
        })
        .collect()
}

#[tokio::test]
async fn heic_upload_then_resize_is_an_oriented_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    // orient6.jpg: stored 48x64 with Exif orientation 6, shows the quadrants at 64x48.
    // heif-enc 1.15 keeps the Exif orientation and writes no `irot`.
    let heic = heif_enc(dir.path(), &fixture("orient6.jpg"), "jpg", &[]);
    assert_eq!(&heic[4..12], b"ftypheic");
    let (stored, size) = independent_quads(&heic);
    assert_eq!(size, (48, 64));
    let file = dir.path().join("o6.heic");
    std::fs::write(&file, &heic).unwrap();
    let out = Command::new("exiftool")
        .args(["-s3", "-n", "-Orientation", file.to_str().unwrap()])
        .output()
        .expect("exiftool");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    // Orientation 6 turns the stored image 90° clockwise: TL, TR, BL, BR come from the
    // stored BL, TL, BR, TR.
    let b = stored.as_bytes();
    let shown: String = [b[2], b[0], b[3], b[1]]
        .iter()
        .map(|&c| c as char)
        .collect();
    assert_eq!(shown, "RGBY");

    let Some(api) = Api::start(Db::Sqlite, "").await else {
        return;
    };
    let (st, rec) = api
        .call(
            "POST",
            "/api/v1/images?level=public",
            Who::User("alice"),
            Req::Raw("image/heic", heic.clone()),
        )
        .await;
    assert_eq!(st, 201, "{rec}");
    let key = rec["key"].as_str().unwrap().to_string();
    assert!(key.ends_with(".heic"), "{key}");
    assert_eq!(rec["content_type"], "image/heic", "{rec}");

    let r = api.s.get(&format!("/{key}?w=40")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let img = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!((img.width(), img.height()), (40, 30));
    assert_eq!(quads(&img), QUADS);

    // Without parameters: the stored HEIC, as stored.
    let r = api.s.get(&format!("/{key}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/heic");

    // fm=auto for a browser that takes WebP: WebP, never HEIC.
    let r = api
        .s
        .get_with(&format!("/{key}?w=40&fm=auto"), &[("accept", "image/webp")])
        .await;
    assert_eq!(r.headers()["content-type"], "image/webp");
}

// --- an iPhone-style grid image, assembled from heif-enc tiles -------------------------

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// `(fourcc, payload, whole box)` of each box in `data`.
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = be32(data, pos) as usize;
        let kind = data[pos + 4..pos + 8].try_into().unwrap();
        out.push((kind, &data[pos + 8..pos + size], &data[pos..pos + size]));
        pos += size;
    }
    out
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> (&'a [u8], &'a [u8]) {
    boxes(data)
        .into_iter()
        .find(|(k, _, _)| k == kind)
        .map(|(_, p, w)| (p, w))
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(kind)))
}

/// The `hvcC` box and the coded bytes of the single image `heif-enc` wrote.
fn tile_parts(heic: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let meta = &child(heic, b"meta").0[4..];
    let ipco = child(child(meta, b"iprp").0, b"ipco").0;
    let hvcc = child(ipco, b"hvcC").1.to_vec();
    // iloc: heif-enc writes one item with one extent; sizes from the header.
    let iloc = child(meta, b"iloc").0;
    let (version, off_size, len_size, base_size) = (
        iloc[0],
        usize::from(iloc[4] >> 4),
        usize::from(iloc[4] & 15),
        usize::from(iloc[5] >> 4),
    );
    let num = |at: usize, n: usize| {
        iloc[at..at + n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x))
    };
    let mut pos = 8 + 2; // header, count; then the item id
    if version >= 1 {
        pos += 2; // construction method
    }
    pos += 2; // data reference index
    let base = num(pos, base_size);
    pos += base_size + 2; // base offset, extent count
    let offset = num(pos, off_size);
    let length = num(pos + off_size, len_size);
    (hvcc, heic[base + offset..base + offset + length].to_vec())
}

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![version];
    p.extend_from_slice(&flags.to_be_bytes()[1..]);
    p.extend_from_slice(payload);
    bx(kind, &p)
}

/// A 2x2 grid HEIC of `tiles` (each `heif-enc` output of a `tile`x`tile` image), output
/// `out`x`out`, with an optional `irot` angle on the grid.
fn grid_heic(tiles: &[Vec<u8>], tile: u32, out: u32, irot: Option<u8>) -> Vec<u8> {
    let parts: Vec<_> = tiles.iter().map(|t| tile_parts(t)).collect();
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let build = |mdat_start: usize| -> Vec<u8> {
        let hdlr = full(b"hdlr", 0, 0, b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let pitm = full(b"pitm", 0, 0, &1u16.to_be_bytes());
        let mut iinf = 5u16.to_be_bytes().to_vec();
        iinf.extend(full(b"infe", 2, 0, b"\0\x01\0\0grid\0"));
        for id in 2u16..=5 {
            let mut e = id.to_be_bytes().to_vec();
            e.extend_from_slice(b"\0\0hvc1\0");
            iinf.extend(full(b"infe", 2, 1, &e)); // hidden tiles
        }
        let iinf = full(b"iinf", 0, 0, &iinf);
        let iref = full(
            b"iref",
            0,
            0,
            &bx(b"dimg", &[0, 1, 0, 4, 0, 2, 0, 3, 0, 4, 0, 5]),
        );
        // ipco: 1-4 hvcC of each tile, 5 tile ispe, 6 grid ispe, 7 irot.
        let mut ipco = Vec::new();
        for (hvcc, _) in &parts {
            ipco.extend_from_slice(hvcc);
        }
        let ispe = |w: u32, h: u32| {
            let mut p = w.to_be_bytes().to_vec();
            p.extend_from_slice(&h.to_be_bytes());
            full(b"ispe", 0, 0, &p)
        };
        ipco.extend(ispe(tile, tile));
        ipco.extend(ispe(out, out));
        let mut grid_props = vec![6u8];
        if let Some(angle) = irot {
            ipco.extend(bx(b"irot", &[angle]));
            grid_props.push(0x80 | 7);
        }
        let mut ipma = 5u32.to_be_bytes().to_vec();
        ipma.extend_from_slice(&[0, 1, grid_props.len() as u8]);
        ipma.extend_from_slice(&grid_props);
        for i in 0..4u8 {
            ipma.extend_from_slice(&[0, 2 + i, 2, 0x80 | (1 + i), 5]);
        }
        let iprp = bx(
            b"iprp",
            &[bx(b"ipco", &ipco), full(b"ipma", 0, 0, &ipma)].concat(),
        );
        // iloc v0: 4-byte offsets and lengths, no base offset; grid descriptor first.
        let grid = [
            0u8,
            0,
            1,
            1,
            (out >> 8) as u8,
            out as u8,
            (out >> 8) as u8,
            out as u8,
        ];
        let mut iloc = vec![0x44, 0x00];
        iloc.extend_from_slice(&5u16.to_be_bytes());
        let mut at = mdat_start;
        let lens: Vec<usize> = std::iter::once(grid.len())
            .chain(parts.iter().map(|(_, d)| d.len()))
            .collect();
        for (i, len) in lens.iter().enumerate() {
            iloc.extend_from_slice(&(i as u16 + 1).to_be_bytes());
            iloc.extend_from_slice(&[0, 0, 0, 1]);
            iloc.extend_from_slice(&(at as u32).to_be_bytes());
            iloc.extend_from_slice(&(*len as u32).to_be_bytes());
            at += len;
        }
        let iloc = full(b"iloc", 0, 0, &iloc);
        let meta = full(
            b"meta",
            0,
            0,
            &[hdlr, pitm, iinf, iref, iprp, iloc].concat(),
        );
        let mut mdat = grid.to_vec();
        for (_, d) in &parts {
            mdat.extend_from_slice(d);
        }
        [ftyp.clone(), meta, bx(b"mdat", &mdat)].concat()
    };
    // The data starts after ftyp, meta and mdat's header; meta's size does not depend on
    // the offsets written into it.
    let probe = build(0);
    let meta_len = be32(&probe, ftyp.len()) as usize;
    build(ftyp.len() + meta_len + 8)
}

#[tokio::test]
async fn grid_heic_with_irot_decodes_like_pillow_heif() {
    let dir = tempfile::tempdir().unwrap();
    let colours = [
        [230, 20, 20, 255],
        [20, 200, 20, 255],
        [20, 20, 230, 255],
        [240, 230, 20, 255],
    ];
    let tiles: Vec<Vec<u8>> = colours
        .iter()
        .map(|c| heif_enc(dir.path(), &solid_png(64, 64, *c), "png", &[]))
        .collect();
    let s = TestServer::start("").await;
    // Output 120x120 from 2x2 tiles of 64: the grid crops the overhang.
    for (irot, name) in [(None, "grid.heic"), (Some(1), "grid-rot90.heic")] {
        let heic = grid_heic(&tiles, 64, 120, irot);
        let (expected, size) = independent_quads(&heic);
        assert_eq!(size, (120, 120), "{name}");
        if irot.is_none() {
            assert_eq!(expected, "RGBY");
        } else {
            assert_ne!(expected, "RGBY", "irot must turn the grid");
        }
        std::fs::write(s.root.join("public").join(name), &heic).unwrap();
        let img = s.image(&format!("/public/{name}?w=60&fm=png")).await;
        assert_eq!((img.width(), img.height()), (60, 60), "{name}");
        assert_eq!(letters(quads(&img)), expected, "{name}");
    }
}

#[tokio::test]
async fn ten_bit_avif_is_rounded_to_8_bit_like_libavif() {
    let dir = tempfile::tempdir().unwrap();
    // A 16-bit PNG with levels that fall between 8-bit steps, made by Pillow; avifenc
    // stores it losslessly at 10 bits (RGB, identity matrix).
    let png = dir.path().join("in.png");
    let avif = dir.path().join("out.avif");
    run_python(
        r#"
import sys
from PIL import Image
import struct
w, h = 32, 32
im = Image.new('I;16', (w, h))
# 16-bit PNG RGB through numpy-free packing: write 3 channels via mode 'RGB' is 8-bit only,
# so build the PNG with pypng-like raw bytes instead.
import zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
levels = [(0x8123, 0x40A0, 0x1234), (0xFFFF, 0x0101, 0x7F7F)]
rows = b''
for y in range(h):
    rows += b'\0' + b''.join(struct.pack('>HHH', *levels[0 if x < w // 2 else 1]) for x in range(w))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
"#,
        &[png.to_str().unwrap()],
        b"",
    );
    run(
        "avifenc",
        &[
            "-l",
            "-d",
            "10",
            png.to_str().unwrap(),
            avif.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&avif).unwrap();
    // Pillow's own AVIF plugin (libavif) decodes to 8 bits.
    let expected = String::from_utf8(run_python(
        "import sys, io\nfrom PIL import Image\nim = Image.open(io.BytesIO(sys.stdin.buffer.read())).convert('RGB')\nprint(*im.getpixel((4, 4)), *im.getpixel((28, 28)))",
        &[],
        &bytes,
    ))
    .unwrap();
    let expected: Vec<i32> = expected
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let s = TestServer::start("").await;
    std::fs::write(s.root.join("public/ten.avif"), &bytes).unwrap();
    let img = s.image("/public/ten.avif?fm=png").await;
    assert_eq!((img.width(), img.height()), (32, 32));
    let got: Vec<i32> = [img.get_pixel(4, 4).0, img.get_pixel(28, 28).0]
        .iter()
        .flat_map(|p| p[..3].iter().map(|&v| i32::from(v)))
        .collect();
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1, "ours {got:?}, libavif {expected:?}");
    }
    // 0x8123 of 65535 is 129.1 in 8 bits: rounded, not truncated through 10 bits (128).
    assert_eq!(got[0], 129, "{got:?}");
    // Without parameters: served as stored, as AVIF.
    let r = s.get("/public/ten.avif").await;
    assert_eq!(r.headers()["content-type"], "image/avif");
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

/// A copy of `heic` whose primary `ispe` (the first one) declares `w`x`h`.
fn with_ispe(heic: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = heic.to_vec();
    let at = out.windows(4).position(|w| w == b"ispe").unwrap() + 8;
    out[at..at + 4].copy_from_slice(&w.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&h.to_be_bytes());
    out
}

#[tokio::test]
async fn heif_headers_over_the_pixel_limit_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let heic = heif_enc(dir.path(), &solid_png(64, 64, [200, 0, 0, 255]), "png", &[]);
    let tiles = vec![heic.clone(); 4];
    let s = TestServer::start("[limits]\nmax_source_pixels = 10000000\n").await;
    let public = s.root.join("public");
    std::fs::write(public.join("huge.heic"), with_ispe(&heic, 60_000, 60_000)).unwrap();
    // A grid whose descriptor claims far more than its tiles cover.
    let grid = grid_heic(&tiles, 64, 120, None);
    let at = grid
        .windows(8)
        .position(|w| w == [0, 0, 1, 1, 0, 120, 0, 120])
        .unwrap();
    let mut lying = grid.clone();
    lying[at + 4..at + 8].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    std::fs::write(public.join("lying-grid.heic"), lying).unwrap();
    let before = rss_bytes();
    for name in ["huge.heic", "lying-grid.heic"] {
        let r = s.get(&format!("/public/{name}?w=100")).await;
        assert_eq!(r.status(), 422, "{name}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 50 << 20, "RSS grew {grown} bytes");
    // The same files uploaded through the API are refused too, and nothing is stored.
    upload_is_refused(
        "[limits]\nmax_source_pixels = 10000000\n",
        "image/heic",
        with_ispe(&heic, 60_000, 60_000),
    )
    .await;
}

/// An upload of `bytes` through the API gets 422 and stores nothing.
async fn upload_is_refused(config: &str, content_type: &'static str, bytes: Vec<u8>) {
    let Some(api) = Api::start(Db::Sqlite, config).await else {
        return;
    };
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/images?level=public",
            Who::User("alice"),
            Req::Raw(content_type, bytes),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(api.stored_files().is_empty());
}

/// `ispe` shrunk to 64×48 over a 2000×2000 picture coded by `heif-enc` (HEVC) or `avifenc`
/// (AV1): dav1d and libde265 allocate what the bitstream declares, so before the fix such a
/// file passed any pixel limit and took ~240 MB per decode at 4000×4000 (found by fuzzing).
#[tokio::test]
async fn coded_pictures_larger_than_their_ispe_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png = solid_png(2000, 2000, [0, 0, 200, 255]);
    let heic = heif_enc(dir.path(), &png, "png", &[]);
    std::fs::write(dir.path().join("big.png"), &png).unwrap();
    let avif_path = dir.path().join("big.avif");
    run(
        "avifenc",
        &[
            "-s",
            "9",
            dir.path().join("big.png").to_str().unwrap(),
            avif_path.to_str().unwrap(),
        ],
    );
    let avif = std::fs::read(&avif_path).unwrap();
    for (name, honest) in [("heic", &heic), ("avif", &avif)] {
        // The honest file is sized by its header as before.
        let info = imgorigin::pipeline::probe(honest).unwrap();
        assert_eq!((info.width, info.height), (2000, 2000), "{name}");
        let lying = with_ispe(honest, 64, 48);
        assert!(
            imgorigin::pipeline::probe(&lying).is_err(),
            "{name}: a 64x48 ispe over a 2000x2000 picture"
        );
    }
    // One picture per image item: the decoder would decode every one it is given. The file
    // is otherwise sound: libheif (through pillow-heif) reads it.
    let twice = with_item_data_twice(&avif);
    assert_eq!(independent_quads(&twice).1, (2000, 2000));
    assert!(imgorigin::pipeline::probe(&twice).is_err());
    let s = TestServer::start("[limits]\nmax_source_pixels = 1000000\n").await;
    let public = s.root.join("public");
    std::fs::write(public.join("lying.heic"), with_ispe(&heic, 64, 48)).unwrap();
    std::fs::write(public.join("lying.avif"), with_ispe(&avif, 64, 48)).unwrap();
    std::fs::write(public.join("honest.avif"), &avif).unwrap();
    for name in ["lying.heic", "lying.avif"] {
        let r = s.get(&format!("/public/{name}?w=32")).await;
        assert_eq!(r.status(), 422, "{name}");
    }
    // The honest file is over the 1 MP limit.
    let r = s.get("/public/honest.avif?w=32").await;
    assert_eq!(r.status(), 422);
    upload_is_refused("", "image/avif", with_ispe(&avif, 64, 48)).await;
}

/// A copy of a one-item AVIF (`avifenc`'s layout: `mdat` last, holding the item's data)
/// whose item data is there twice: the `mdat` and the `iloc` extent grown to match.
fn with_item_data_twice(avif: &[u8]) -> Vec<u8> {
    let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap());
    let mdat = avif.windows(4).rposition(|w| w == b"mdat").unwrap() - 4;
    assert_eq!(
        be32(&avif[mdat..]) as usize,
        avif.len() - mdat,
        "mdat is last"
    );
    let data = &avif[mdat + 8..];
    let mut out = avif.to_vec();
    out.extend_from_slice(data);
    out[mdat..mdat + 4].copy_from_slice(&((avif.len() - mdat + data.len()) as u32).to_be_bytes());
    let iloc = avif.windows(4).position(|w| w == b"iloc").unwrap();
    let len = (data.len() as u32).to_be_bytes();
    let at = iloc + avif[iloc..mdat].windows(4).position(|w| w == len).unwrap();
    out[at..at + 4].copy_from_slice(&(2 * data.len() as u32).to_be_bytes());
    out
}

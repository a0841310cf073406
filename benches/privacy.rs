//! SPEC §10 benches on a 12 MP camera JPEG: the metadata walk of a stripped original, a
//! whole stripped-original request (layout cached, body streamed from the cached original)
//! against the same request for the stored bytes, and facts extraction.
//!
//! Inputs come from `../shared/corpus` (the iPhone 7 photo: 4032×3024, 3.8 MB, EXIF with
//! GPS, orientation 6, Display P3 profile) when it exists; without it a generated 12 MP
//! JPEG with an Exif block is used so the repository stands alone.
//!
//! `cargo bench --bench privacy -- --warm-up-time 1 --measurement-time 5`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use imgorigin::config::Config;
use imgorigin::originals::{self, Stripped};
use std::hint::black_box;
use std::path::PathBuf;

const PHOTO: &str = "camera-12mp-iphone7-orient6.jpg";

fn photo() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(PHOTO);
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) => {
            println!("note: {PHOTO} not found in ../shared/corpus; using a generated image");
            generated()
        }
    }
}

/// A 4032×3024 JPEG with an APP1 Exif block (orientation 6 and a Make tag).
fn generated() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4032, 3024, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    let jpeg = buf.into_inner();
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x02".to_vec();
    tiff.extend_from_slice(&[0x01, 0x0F, 0, 2, 0, 0, 0, 4, b'C', b'a', b'm', 0]);
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn strip_and_facts(c: &mut Criterion) {
    let input = Bytes::from(photo());
    assert!(matches!(originals::strip(&input), Ok(Stripped::Layout(_))));
    let mut g = c.benchmark_group("privacy");
    g.bench_function("strip-walk/jpeg-12mp", |b| {
        b.iter(|| originals::strip(black_box(&input)).unwrap())
    });
    // What facts cost beyond the decode upload validation made anyway.
    g.bench_function("decode-1/8/jpeg-12mp", |b| {
        b.iter(|| imgorigin::pipeline::bench::decode(black_box(&input), 8).unwrap())
    });
    g.bench_function("facts/jpeg-12mp", |b| {
        b.iter(|| imgorigin::pipeline::inspect(black_box(&input), 100_000_000).unwrap())
    });
    g.finish();
}

/// A server over loopback whose `public/photo.jpg` is the photo, with `policy`.
fn server(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    input: &[u8],
    policy: &str,
) -> String {
    let root = dir.join(policy);
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("public/photo.jpg"), input).unwrap();
    let toml = format!(
        "[storage.fs]\nroot = {:?}\n[metadata]\nurl = \"sqlite://{}\"\n[originals]\nmetadata = \"{policy}\"\n",
        root.to_str().unwrap(),
        dir.join(format!("{policy}.db")).to_str().unwrap()
    );
    let config = Config::from_toml_and_env(&toml, std::iter::empty()).unwrap();
    let app = rt
        .block_on(imgorigin::App::builder(config).build())
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(app.serve(listener, None, std::future::pending()));
    base
}

fn stripped_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = photo();
    let mut g = c.benchmark_group("privacy");
    // `keep`: the stored bytes, one `Bytes` body; `strip`: the stripped copy, streamed as
    // slices of the same cached bytes.
    for (policy, name) in [
        ("keep", "stored-original/http-loopback"),
        ("strip", "stripped-original/http-loopback"),
    ] {
        let url = format!(
            "{}/public/photo.jpg",
            server(&rt, dir.path(), &input, policy)
        );
        // After the app is built: it installs the TLS crypto provider reqwest needs.
        let client = reqwest::Client::new();
        let get = || {
            rt.block_on(async {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        };
        let first = get();
        assert_eq!(first.len() == input.len(), policy == "keep");
        g.bench_function(name, |b| b.iter(|| black_box(get())));
    }
    g.finish();
}

criterion_group!(benches, strip_and_facts, stripped_request);
criterion_main!(benches);

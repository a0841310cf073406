//! Benches for the request path outside the pixel pipeline: parsing + canonical key, and a
//! whole request answered from a warm variant cache (in-process, and over loopback HTTP).

use criterion::{Criterion, criterion_group, criterion_main};
use imgorigin::config::Config;
use imgorigin::media::SourceFormat;
use imgorigin::params::{self, SourceTraits};
use std::hint::black_box;

fn canonical_key(c: &mut Criterion) {
    let cfg = Config::defaults();
    let s = cfg.parse_settings();
    let src = SourceTraits {
        format: SourceFormat::Jpeg,
        has_alpha: false,
        animated: false,
    };
    c.bench_function("params/parse+resolve+variant_id", |b| {
        b.iter(|| {
            let p = params::parse(Some(black_box("w=800&fit=inside&fm=webp&q=80&dpr=2")), &s)
                .unwrap()
                .transform
                .unwrap();
            let (t, _) = params::resolve(&p, src, Some("image/avif,image/webp,*/*"), &s);
            black_box(params::variant_id(
                "public/camera.jpg",
                "0123456789abcdef",
                &t,
            ))
        })
    });
}

fn warm_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("originals");
    std::fs::create_dir_all(root.join("public")).unwrap();
    let img = image::RgbImage::from_fn(1024, 768, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    std::fs::write(root.join("public/photo.jpg"), buf.into_inner()).unwrap();
    let toml = format!(
        "[storage.fs]\nroot = {:?}\n[metadata]\nurl = \"sqlite://{}\"\n",
        root.to_str().unwrap(),
        dir.path().join("meta.db").to_str().unwrap()
    );
    let config = Config::from_toml_and_env(&toml, std::iter::empty()).unwrap();
    let app = rt
        .block_on(imgorigin::App::builder(config).build())
        .unwrap();
    let state = app.state.clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(app.serve(listener, None, std::future::pending()));
    let path = "/public/photo.jpg?w=400&fm=webp&q=80";
    let uri: axum::http::Uri = path.parse().unwrap();
    let headers = axum::http::HeaderMap::new();
    let method = axum::http::Method::GET;
    // Warm the caches.
    let r = rt
        .block_on(imgorigin::delivery::handle(
            &state, &method, &uri, &headers, None,
        ))
        .unwrap();
    assert_eq!(r.status(), 200);

    c.bench_function("request/warm-hit/in-process", |b| {
        b.iter(|| {
            rt.block_on(imgorigin::delivery::handle(
                &state, &method, &uri, &headers, None,
            ))
            .unwrap()
        })
    });
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    c.bench_function("request/warm-hit/http-loopback", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client.get(&url).send().await.unwrap();
                black_box(r.bytes().await.unwrap())
            })
        })
    });
}

criterion_group!(benches, canonical_key, warm_request);
criterion_main!(benches);

//! Decoding every input format and variant, and encoding every output format.

use super::*;

#[test]
fn every_input_to_every_output() {
    let src = DynamicImage::ImageRgb8(quadrants(64, 48));
    let inputs = [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Webp,
        SourceFormat::Gif,
    ];
    let outputs = [
        (OutputFormat::Jpeg, 80),
        (OutputFormat::Png, 0),
        (OutputFormat::Webp, 90),
        (OutputFormat::Avif, 60),
        (OutputFormat::Gif, 0),
    ];
    for input in inputs {
        let bytes = encode_as(&src, input);
        let info = probe(&bytes).expect("probe");
        assert_eq!((info.format, info.width, info.height), (input, 64, 48));
        for (fm, q) in outputs {
            let mut t = Transform::for_format(fm, q);
            t.width = Some(32);
            let out = render(&bytes, &t, &opts()).expect("render");
            assert_eq!((out.width, out.height, out.format), (32, 24, fm));
            let magic_ok = match fm {
                OutputFormat::Jpeg => out.bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
                OutputFormat::Png => out.bytes.starts_with(b"\x89PNG"),
                OutputFormat::Webp => out.bytes.get(8..12) == Some(b"WEBP"),
                OutputFormat::Avif => out.bytes.get(4..12) == Some(b"ftypavif"),
                OutputFormat::Gif => out.bytes.starts_with(b"GIF89a"),
            };
            assert!(magic_ok, "{input:?} -> {fm:?}: bad magic");
            if fm == OutputFormat::Avif {
                assert!(out.bytes.len() > 100);
                continue;
            }
            let img = image::load_from_memory(&out.bytes).expect("decode output");
            assert_eq!((img.width(), img.height()), (32, 24));
            assert_eq!(
                sample_quadrants(&img.to_rgb8()),
                [0, 1, 2, 3],
                "{input:?} -> {fm:?}"
            );
        }
    }
}

#[test]
fn input_variants_decode() {
    let q = quadrants(40, 30);
    let gray = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(q.clone()).to_luma8());
    let rgb16 = DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(q.clone()).to_rgb16());
    let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
        40,
        30,
        image::LumaA([100, 128]),
    ));
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("gray jpeg", encode_jpeg(&gray), false),
        ("gray png", encode_png(&gray), false),
        ("16-bit png", encode_png(&rgb16), false),
        ("gray+alpha png", encode_png(&la), true),
        (
            "rgba webp",
            encode_webp(&DynamicImage::ImageRgba8(
                DynamicImage::ImageRgb8(q.clone()).to_rgba8(),
            )),
            true,
        ),
    ];
    for (name, bytes, alpha) in cases {
        let info = probe(&bytes).expect(name);
        assert_eq!(
            (info.width, info.height, info.has_alpha),
            (40, 30, alpha),
            "{name}"
        );
        let img = render_rgb(&bytes, &png_out());
        assert_eq!(img.dimensions(), (40, 30), "{name}");
    }
    // The 16-bit PNG keeps its colours when reduced to 8 bits.
    let img = render_rgb(&encode_png(&rgb16), &png_out());
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
}

#[test]
fn palette_png_with_transparency() {
    // Hand-encode an indexed PNG with a tRNS chunk through the png crate's API via image:
    // image has no palette encoder, so build the file from parts.
    let bytes = palette_png();
    let info = probe(&bytes).expect("probe");
    assert_eq!((info.width, info.height, info.has_alpha), (2, 1, true));
    let mut t = png_out();
    t.format = OutputFormat::Png;
    let out = render(&bytes, &t, &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes)
        .expect("decode")
        .to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0[3], 0);
    assert_eq!(img.get_pixel(1, 0).0, [0, 0, 255, 255]);
}

fn palette_png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(2, 1, 8, 3));
    png_chunk(&mut out, b"PLTE", &[255, 0, 0, 0, 0, 255]);
    png_chunk(&mut out, b"tRNS", &[0, 255]);
    // Filter byte 0, indices 0 and 1; zlib stored block.
    let raw = [0u8, 0, 1];
    let mut z = vec![0x78, 0x01, 0x01, 3, 0, 0xFC, 0xFF];
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn truncated_and_garbage_inputs() {
    let noise = RgbImage::from_fn(64, 64, |x, y| {
        Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, (x ^ y) as u8])
    });
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(noise.clone()));
    for cut in [jpeg.len() * 6 / 10, jpeg.len() - 2, 40, 3] {
        let err = render(&jpeg[..cut], &png_out(), &opts()).expect_err("truncated jpeg");
        assert!(
            matches!(err, PipelineError::Corrupt(_)),
            "cut {cut}: {err:?}"
        );
    }
    let png = encode_png(&DynamicImage::ImageRgb8(noise.clone()));
    let err = render(&png[..png.len() / 2], &png_out(), &opts()).expect_err("truncated png");
    assert!(matches!(err, PipelineError::Corrupt(_)), "{err:?}");
    let webp = encode_webp(&DynamicImage::ImageRgb8(noise));
    let err = render(&webp[..webp.len() / 2], &png_out(), &opts()).expect_err("truncated webp");
    assert!(matches!(err, PipelineError::Corrupt(_)), "{err:?}");

    let mut state = 0x1234_5678u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    for bytes in [
        &random[..],
        b"",
        b"BM\x36\x00\x00\x00",
        b"II*\x00\x08\x00\x00\x00",
        // An MP4 video: an ISO file, not an image.
        b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41",
    ] {
        let err = render(bytes, &png_out(), &opts()).expect_err("garbage");
        assert!(matches!(err, PipelineError::Unsupported(_)), "{err:?}");
        assert!(matches!(probe(bytes), Err(PipelineError::Unsupported(_))));
    }
    // HEIF containers cut short: recognised by their brand, refused as corrupt by our header
    // walk (a bare `ftyp`) or by libheif (half the coded data).
    let photo = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| {
        Rgb([(x * 4) as u8, (y * 5) as u8, 90])
    }));
    for (format, file) in [
        (SourceFormat::Heic, encode_as(&photo, SourceFormat::Heic)),
        (SourceFormat::Avif, encode_as(&photo, SourceFormat::Avif)),
    ] {
        let cut = file.len() - 40;
        for bytes in [&file[..40], &file[..cut]] {
            assert_eq!(SourceFormat::sniff(bytes), Some(format));
            let err = render(bytes, &png_out(), &opts()).expect_err("truncated HEIF");
            assert!(
                matches!(err, PipelineError::Corrupt(_)),
                "{format:?}: {err:?}"
            );
        }
        let ok = render(&file, &png_out(), &opts()).expect("whole file");
        assert!(!ok.bytes.is_empty());
    }
}

#[test]
fn animated_gif_uses_first_frame() {
    let red = RgbaImage::from_pixel(16, 16, Rgba([RED[0], RED[1], RED[2], 255]));
    let blue = RgbaImage::from_pixel(16, 16, Rgba([BLUE[0], BLUE[1], BLUE[2], 255]));
    let gif = encode_gif(&[red, blue]);
    let img = render_rgb(&gif, &png_out());
    assert_eq!(img.dimensions(), (16, 16));
    assert!(img.pixels().all(|p| classify(p.0) == 0));
}

#[test]
fn cmyk_jpeg_decodes() {
    // libjpeg-turbo writes an Adobe (inverted) CMYK JPEG from CMYK pixels.
    let (w, h) = (32usize, 16usize);
    let pixels = vec![0u8; w * h * 4];
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 4,
        height: h,
        format: turbojpeg::PixelFormat::CMYK,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(90).expect("quality");
    let jpeg = c.compress_to_vec(image).expect("cmyk jpeg");
    let img = render_rgb(&jpeg, &png_out());
    assert_eq!(img.dimensions(), (32, 16));
    let mut t = png_out();
    t.width = Some(8);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (8, 4));
}

#[test]
fn probe_reads_headers_only() {
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(7, 5, Rgba([1, 2, 3, 4])));
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 5, Rgb([1, 2, 3])));
    let cases = [
        (encode_png(&rgba), SourceFormat::Png, true),
        (encode_png(&rgb), SourceFormat::Png, false),
        (encode_webp(&rgba), SourceFormat::Webp, true),
        (encode_webp(&rgb), SourceFormat::Webp, false),
        (encode_jpeg(&rgb), SourceFormat::Jpeg, false),
        (encode_gif(&[rgb.to_rgba8()]), SourceFormat::Gif, false),
    ];
    for (bytes, format, alpha) in cases {
        let info = probe(&bytes).expect("probe");
        assert_eq!(
            info,
            SourceInfo {
                format,
                width: 7,
                height: 5,
                has_alpha: alpha,
                frames: 1,
            }
        );
        // Headers survive losing the pixel data.
        let head = &bytes[..bytes.len().min(64)];
        if format != SourceFormat::Jpeg {
            assert_eq!(probe(head).map(|i| i.width).ok(), Some(7), "{format:?}");
        }
    }
    // Lossy WebP header (VP8).
    let lossy = webp::Encoder::from_rgb(rgb.as_bytes(), 7, 5)
        .encode_simple(false, 80.0)
        .expect("lossy webp")
        .to_vec();
    let info = probe(&lossy).expect("probe");
    assert_eq!((info.width, info.height, info.has_alpha), (7, 5, false));
}

#[test]
fn progressive_jpeg_and_embedded_icc() {
    // Progressive JPEG from libjpeg-turbo, with shrink-on-load.
    let q = quadrants(128, 96);
    let image = turbojpeg::Image {
        pixels: q.as_raw().as_slice(),
        width: 128,
        pitch: 128 * 3,
        height: 96,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(90).expect("quality");
    c.set_progressive(true).expect("progressive");
    let jpeg = c.compress_to_vec(image).expect("progressive jpeg");
    let mut t = png_out();
    t.width = Some(32);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (32, 24));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);

    // A PNG tagged Display P3 is converted to sRGB; one tagged sRGB is left alone.
    let px = RgbImage::from_pixel(8, 8, Rgb([40, 200, 60]));
    for (profile, changed) in [
        (moxcms::ColorProfile::new_display_p3(), true),
        (moxcms::ColorProfile::new_srgb(), false),
    ] {
        let mut bytes = Vec::new();
        let mut enc = PngEncoder::new(&mut bytes);
        enc.set_icc_profile(profile.encode().expect("icc"))
            .expect("icc supported");
        enc.write_image(px.as_raw(), 8, 8, image::ExtendedColorType::Rgb8)
            .expect("png");
        let out = render_rgb(&bytes, &png_out());
        assert_eq!(out.get_pixel(4, 4).0 != [40, 200, 60], changed);
        // Output carries no ICC profile.
        let raw = render(&bytes, &png_out(), &opts()).expect("render").bytes;
        assert!(!raw.windows(4).any(|w| w == b"iCCP"));
    }
}

#[test]
fn animated_and_lossy_alpha_webp() {
    let red = RgbaImage::from_pixel(16, 16, Rgba([RED[0], RED[1], RED[2], 255]));
    let blue = RgbaImage::from_pixel(16, 16, Rgba([BLUE[0], BLUE[1], BLUE[2], 255]));
    let config = webp::WebPConfig::new().expect("config");
    let mut enc = webp::AnimEncoder::new(16, 16, &config);
    enc.add_frame(webp::AnimFrame::from_rgba(red.as_raw(), 16, 16, 0));
    enc.add_frame(webp::AnimFrame::from_rgba(blue.as_raw(), 16, 16, 100));
    let anim = enc.try_encode().expect("animated webp").to_vec();
    let info = probe(&anim).expect("probe");
    assert_eq!(
        (info.format, info.width, info.height),
        (SourceFormat::Webp, 16, 16)
    );
    let img = render_rgb(&anim, &png_out());
    assert!(
        img.pixels().all(|p| classify(p.0) == 0),
        "first frame is red"
    );

    // Lossy WebP with an alpha plane (VP8X + ALPH + VP8).
    let half = RgbaImage::from_fn(16, 16, |x, _| {
        if x < 8 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([BLUE[0], BLUE[1], BLUE[2], 255])
        }
    });
    let lossy = webp::Encoder::from_rgba(half.as_raw(), 16, 16)
        .encode_simple(false, 90.0)
        .expect("lossy alpha webp")
        .to_vec();
    assert!(probe(&lossy).expect("probe").has_alpha);
    let out = render(&lossy, &png_out(), &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(2, 8).0[3], 0);
    assert_eq!(img.get_pixel(13, 8).0[3], 255);
}

/// `format.avif_encoder = "aom"`: libaom through libavif writes 10-bit 4:4:4 (AV1 High
/// profile) with the sRGB signal, and libheif (dav1d, our decoder, not libavif) reads back
/// the size, the quadrant colours and the alpha.
#[test]
fn aom_avif_is_10_bit_444_srgb_and_reads_back() {
    let o = RenderOptions {
        avif: AvifSettings {
            encoder: AvifEncoder::Aom,
            speed: 9,
        },
        ..opts()
    };
    let find = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("no {:?} box", String::from_utf8_lossy(needle)))
    };
    let mut translucent = DynamicImage::ImageRgb8(quadrants(64, 48)).to_rgba8();
    for p in translucent.pixels_mut() {
        p.0[3] = 96;
    }
    let sources = [
        DynamicImage::ImageRgb8(quadrants(64, 48)),
        DynamicImage::ImageRgba8(translucent),
    ];
    for src in sources {
        let alpha = src.color().has_alpha();
        let mut t = Transform::for_format(OutputFormat::Avif, 80);
        t.width = Some(48);
        let out = render(&encode_png(&src), &t, &o).expect("render");
        assert_eq!((out.width, out.height), (48, 36));
        // av1C after its type: marker/version, then seq_profile (3 bits) and level, then
        // tier, high_bitdepth, twelve_bit, monochrome, subsampling x and y.
        let av1c = &out.bytes[find(&out.bytes, b"av1C") + 4..];
        assert_eq!(av1c[1] >> 5, 1, "AV1 High profile (4:4:4)");
        assert_eq!(av1c[2] & 0b0111_1100, 0b0100_0000, "10-bit, colour, 4:4:4");
        // colr nclx: BT.709 primaries, sRGB transfer, BT.601 matrix, full range.
        let colr = &out.bytes[find(&out.bytes, b"colrnclx") + 8..];
        assert_eq!(&colr[..7], &[0, 1, 0, 13, 0, 6, 0x80]);

        let mut back = Transform::for_format(OutputFormat::Png, 0);
        back.width = None;
        let decoded = render(&out.bytes, &back, &opts()).expect("read back");
        let img = image::load_from_memory(&decoded.bytes).expect("png");
        assert_eq!((img.width(), img.height()), (48, 36));
        assert_eq!(
            sample_quadrants(&img.to_rgb8()),
            [0, 1, 2, 3],
            "alpha {alpha}"
        );
        if alpha {
            let a = img.to_rgba8().get_pixel(24, 18).0[3];
            assert!((90..=102).contains(&a), "alpha {a}");
        } else {
            assert!(!img.color().has_alpha());
        }
    }
}

//! Decoder bombs (security review, issue 11): caps and counts read from headers.

use super::*;

/// A JPEG with `chunks` ICC_PROFILE APP2 segments of `len` bytes each, in reverse order.
fn jpeg_with_icc_chunks(chunks: u8, len: usize) -> Vec<u8> {
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        8,
        8,
        Rgb([1, 2, 3]),
    )));
    let mut out = jpeg[..2].to_vec();
    for seq in (1..=chunks).rev() {
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((len + 16) as u16).to_be_bytes());
        out.extend_from_slice(b"ICC_PROFILE\0");
        out.extend_from_slice(&[seq, chunks]);
        out.extend(std::iter::repeat_n(seq, len));
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn jpeg_icc_profile_is_capped_and_borrowed() {
    let one = jpeg_with_icc_chunks(1, 1000);
    let h = detect::read_header(&one).expect("header");
    let icc = h.jpeg.as_ref().and_then(|m| m.icc_profile()).expect("icc");
    assert!(matches!(icc, std::borrow::Cow::Borrowed(_)));
    assert_eq!(icc.len(), 1000);

    let two = jpeg_with_icc_chunks(2, 1000);
    let h = detect::read_header(&two).expect("header");
    let icc = h.jpeg.as_ref().and_then(|m| m.icc_profile()).expect("icc");
    assert_eq!((icc[0], icc[1999]), (1, 2), "reassembled in sequence order");

    // 70 x 60000 bytes > 4 MiB: ignored, and the image still decodes.
    let big = jpeg_with_icc_chunks(70, 60_000);
    let h = detect::read_header(&big).expect("header");
    let meta = h.jpeg.as_ref().expect("meta");
    assert!(meta.icc_profile().is_none());
    assert!(meta.icc_chunks.is_empty());
    assert_eq!(render_rgb(&big, &png_out()).dimensions(), (8, 8));
}

#[test]
fn png_iccp_is_inflated_with_a_cap() {
    let zlib = |data: &[u8]| {
        let mut png = Vec::new();
        let mut enc = PngEncoder::new(&mut png);
        enc.set_icc_profile(data.to_vec()).expect("icc");
        enc.write_image(&[0, 0, 0], 1, 1, image::ExtendedColorType::Rgb8)
            .expect("png");
        let h = detect::read_header(&png).expect("header");
        h.png_iccp.expect("iCCP").to_vec()
    };
    let small = zlib(&[7; 1000]);
    assert_eq!(decode::png_icc(&small), Some(vec![7; 1000]));
    let at_cap = zlib(&vec![7; detect::MAX_ICC_BYTES]);
    assert_eq!(
        decode::png_icc(&at_cap).map(|p| p.len()),
        Some(detect::MAX_ICC_BYTES)
    );
    let over = zlib(&vec![7; detect::MAX_ICC_BYTES + 1]);
    assert_eq!(decode::png_icc(&over), None);
    assert_eq!(decode::png_icc(b"\0\0garbage"), None, "empty keyword");
}

#[test]
fn jpeg_scans_are_counted() {
    let q = quadrants(64, 48);
    let image = turbojpeg::Image {
        pixels: q.as_raw().as_slice(),
        width: 64,
        pitch: 64 * 3,
        height: 48,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_progressive(true).expect("progressive");
    let jpeg = c.compress_to_vec(image).expect("jpeg");
    let h = detect::read_header(&jpeg).expect("header");
    let scan = h.jpeg.as_ref().expect("meta").scan_offset;
    let naive = jpeg.windows(2).filter(|w| w == &[0xFF, 0xDA]).count() as u32;
    assert!(naive > 3, "{naive}");
    assert_eq!(detect::jpeg_scan_count(&jpeg, scan, 1000), naive);
    let baseline = encode_jpeg(&q.into());
    let h = detect::read_header(&baseline).expect("header");
    let at = h.jpeg.as_ref().expect("meta").scan_offset;
    assert_eq!(detect::jpeg_scan_count(&baseline, at, 1000), 1);

    // The last scan repeated: counted, and counting stops just past the limit.
    let eoi = jpeg.len() - 2;
    let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let mut bomb = jpeg[..eoi].to_vec();
    for _ in 0..500 {
        bomb.extend_from_slice(&jpeg[last..eoi]);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(detect::jpeg_scan_count(&bomb, scan, 1000), naive + 500);
    assert_eq!(detect::jpeg_scan_count(&bomb, scan, 100), 101);
    let err = render(&bomb, &png_out(), &opts()).expect_err("refused");
    assert!(err.to_string().contains("100 scans"), "{err}");

    // 0xFF 0xDA inside a segment payload is not a scan.
    let mut com = jpeg[..eoi].to_vec();
    com.extend_from_slice(&[0xFF, 0xFE, 0, 6, 0xFF, 0xDA, 0xFF, 0xDA, 0xFF, 0xD9]);
    assert_eq!(detect::jpeg_scan_count(&com, scan, 1000), naive);
}

#[test]
fn gif_frames_are_counted_and_checked() {
    let frames: Vec<RgbaImage> = (0..3)
        .map(|i| RgbaImage::from_pixel(4, 4, Rgba([i * 80, 0, 0, 255])))
        .collect();
    let gif = encode_gif(&frames);
    assert_eq!(probe(&gif).expect("probe").frames, 3);

    // The logical screen patched down to 2x2: the 4x4 frame is what counts.
    let mut small_screen = encode_gif(&frames[..1]);
    small_screen[6..10].copy_from_slice(&[2, 0, 2, 0]);
    let h = detect::read_header(&small_screen).expect("header");
    assert_eq!((h.width, h.height, h.largest_frame), (2, 2, (4, 4)));
    let tight = RenderOptions {
        max_source_pixels: 15,
        ..opts()
    };
    let err = render(&small_screen, &png_out(), &tight).expect_err("refused");
    assert!(
        matches!(
            err,
            PipelineError::TooManyPixels {
                width: 4,
                height: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        check(&small_screen, 15),
        Err(PipelineError::TooManyPixels { .. })
    ));
    // Within the limit it decodes, clipped to the screen.
    assert_eq!(render_rgb(&small_screen, &png_out()).dimensions(), (2, 2));
}

#[test]
fn animated_webp_frames_are_counted() {
    let config = webp::WebPConfig::new().expect("config");
    let mut enc = webp::AnimEncoder::new(16, 16, &config);
    let px = RgbaImage::from_pixel(16, 16, Rgba([1, 2, 3, 255]));
    let px2 = RgbaImage::from_pixel(16, 16, Rgba([200, 2, 3, 255]));
    for (i, f) in [&px, &px2, &px].into_iter().enumerate() {
        enc.add_frame(webp::AnimFrame::from_rgba(
            f.as_raw(),
            16,
            16,
            i as i32 * 100,
        ));
    }
    let anim = enc.try_encode().expect("animated webp").to_vec();
    let h = detect::read_header(&anim).expect("header");
    assert_eq!(h.frames, 3);
    assert!(h.largest_frame.0 <= 16 && h.largest_frame.1 <= 16);
    assert_eq!(probe(&encode_webp(&px.into())).expect("probe").frames, 1);
}

//! Source pixel limits and output pixel caps (security finding 3), enforced before decoding.

use super::*;

#[test]
fn huge_png_header_fails_fast() {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut bytes, b"IHDR", &ihdr(60_000, 60_000, 8, 6));
    let start = std::time::Instant::now();
    let err = render(&bytes, &png_out(), &opts()).expect_err("must fail");
    assert!(
        matches!(
            err,
            PipelineError::TooManyPixels {
                width: 60_000,
                height: 60_000,
                limit: 50_000_000
            }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(50));
    // probe still answers: it never decodes.
    let info = probe(&bytes).expect("probe");
    assert_eq!(
        (info.width, info.height, info.has_alpha),
        (60_000, 60_000, true)
    );
}

#[test]
fn pixel_limit_applies_to_every_format() {
    let src = DynamicImage::ImageRgb8(quadrants(64, 48));
    for f in [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Webp,
        SourceFormat::Gif,
    ] {
        let o = RenderOptions {
            max_output: (8192, 8192),
            max_source_pixels: 64 * 48 - 1,
            ..opts()
        };
        let err = render(&encode_as(&src, f), &png_out(), &o).expect_err("limit");
        assert!(
            matches!(err, PipelineError::TooManyPixels { .. }),
            "{f:?}: {err:?}"
        );
    }
}

fn capped(pixels: u64, avif_pixels: u64) -> RenderOptions<'static> {
    RenderOptions {
        max_output_pixels: pixels,
        max_avif_output_pixels: avif_pixels,
        ..opts()
    }
}

fn param_of(e: PipelineError) -> &'static str {
    match e {
        PipelineError::InvalidParam { param, .. } => param,
        other => panic!("not a parameter error: {other:?}"),
    }
}

#[test]
fn output_pixel_caps_per_format() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    let o = capped(1000, 500);
    let sized = |w: Option<u32>, h: Option<u32>, fit: Fit, format: OutputFormat| Transform {
        width: w,
        height: h,
        fit,
        ..Transform::for_format(format, 60)
    };
    // Full size (3072 px) is over the cap: the size is what to change.
    let full = png_out();
    assert_eq!(param_of(check_output(&png, &full, &o).unwrap_err()), "w");
    assert_eq!(param_of(render(&png, &full, &o).unwrap_err()), "w");
    let h_only = sized(None, Some(40), Fit::Inside, OutputFormat::Png);
    assert_eq!(param_of(check_output(&png, &h_only, &o).unwrap_err()), "h");
    // 30x23 = 690 px: fine for PNG, over the AVIF cap, which names `fm`.
    let t = sized(Some(30), None, Fit::Inside, OutputFormat::Png);
    check_output(&png, &t, &o).expect("png fits");
    assert_eq!(render_rgb_with(&png, &t, &o).dimensions(), (30, 23));
    let t = sized(Some(30), None, Fit::Inside, OutputFormat::Avif);
    let err = check_output(&png, &t, &o).unwrap_err();
    assert!(err.to_string().contains("30x23 (690 pixels)"), "{err}");
    assert_eq!(param_of(err), "fm");
    assert_eq!(param_of(render(&png, &t, &o).unwrap_err()), "fm");
    let t = sized(Some(20), None, Fit::Inside, OutputFormat::Avif);
    check_output(&png, &t, &o).expect("20x15 avif fits");
    // A cover crop's resampled intermediate (53x40 for a 10x40 box) counts too.
    let t = sized(Some(10), Some(40), Fit::Cover, OutputFormat::Png);
    assert_eq!(param_of(check_output(&png, &t, &o).unwrap_err()), "w");
    // Contain pads: the canvas is the output.
    let t = sized(Some(40), Some(40), Fit::Contain, OutputFormat::Png);
    check_output(&png, &t, &capped(1600, 1600)).expect("40x40 fits");
    assert_eq!(
        param_of(check_output(&png, &t, &capped(1599, 1599)).unwrap_err()),
        "w"
    );
}

#[test]
fn output_cap_is_checked_before_decoding() {
    // A header claiming 10000x5000 with no pixel data: refused for its size, not as corrupt.
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut bytes, b"IHDR", &ihdr(10_000, 5_000, 8, 6));
    let err = render(&bytes, &png_out(), &opts()).unwrap_err();
    assert_eq!(param_of(err), "w");
}

#[test]
fn output_cap_pre_check_allows_either_axis_order_without_jpeg_exif() {
    // 64x48 stored, shown 48x64 (EXIF in the WebP): a 10x10 crop at y=50 exists only in
    // the displayed orientation. The header-only check cannot know that, so it must not
    // refuse; the render, which knows, succeeds.
    let webp = webp_with_exif(&quadrants(64, 48), 6);
    let t = Transform {
        crop: Some(CropRect {
            x: 0,
            y: 50,
            width: 10,
            height: 10,
        }),
        ..png_out()
    };
    check_output(&webp, &t, &opts()).expect("pre-check");
    assert_eq!(render_rgb(&webp, &t).dimensions(), (10, 10));
    // With JPEG the orientation is in the header: exact before decoding.
    let jpeg = with_exif_orientation(&encode_jpeg(&DynamicImage::ImageRgb8(quadrants(64, 48))), 6);
    check_output(&jpeg, &t, &opts()).expect("rotated jpeg");
    let outside = Transform {
        crop: Some(CropRect {
            x: 50,
            y: 0,
            width: 10,
            height: 10,
        }),
        ..png_out()
    };
    assert_eq!(
        param_of(check_output(&jpeg, &outside, &opts()).unwrap_err()),
        "crop"
    );
}

fn render_rgb_with(input: &[u8], t: &Transform, o: &RenderOptions) -> RgbImage {
    let out = render(input, t, o).expect("render");
    image::load_from_memory(&out.bytes)
        .expect("decode output")
        .to_rgb8()
}

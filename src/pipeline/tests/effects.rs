//! Background flattening, blur, sharpen and watermark.

use super::*;

#[test]
fn flatten_onto_red_background() {
    let src = RgbaImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([20, 20, 230, 255])
        }
    });
    let png = encode_png(&DynamicImage::ImageRgba8(src));
    let mut t = Transform::for_format(OutputFormat::Jpeg, 90);
    t.background = Some([255, 0, 0, 255]);
    let img = render_rgb(&png, &t);
    let left = img.get_pixel(5, 10).0;
    let right = img.get_pixel(35, 10).0;
    assert!(left[0] > 240 && left[1] < 15 && left[2] < 15, "{left:?}");
    assert_eq!(classify(right), 2);
    // Default JPEG background is white.
    let img = render_rgb(&png, &Transform::for_format(OutputFormat::Jpeg, 90));
    assert!(img.get_pixel(5, 10).0.iter().all(|&c| c > 245));
    // PNG output keeps the transparency.
    let out = render(&png, &png_out(), &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(5, 10).0[3], 0);
}

#[test]
fn blur_and_sharpen_run() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    let mut t = png_out();
    t.blur = Some(3.0);
    let img = render_rgb(&png, &t);
    // The boundary between red and green gets mixed.
    let mid = img.get_pixel(32, 12).0;
    assert!(mid[0] > 60 && mid[1] > 60, "{mid:?}");
    let mut t = png_out();
    t.sharpen = Some(1.0);
    t.blur = Some(50.0);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (64, 48));
}

#[test]
fn watermark_bottom_right() {
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 80, Rgb([255, 255, 255])));
    let png = encode_png(&white);
    let mark = encode_png(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        10,
        10,
        Rgb([0, 0, 0]),
    )));
    let wm = Watermark::from_bytes(&mark, Gravity::SouthEast, 1.0, 0.2).expect("wm");
    let o = RenderOptions {
        max_output: (8192, 8192),
        watermark: Some(&wm),
        ..opts()
    };
    let out = render(&png, &png_out(), &o).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgb8();
    // 20×20 black square, 2 px (2% of 100) from the bottom-right corner.
    assert_eq!(img.get_pixel(88, 68).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(78, 58).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(98, 78).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(10, 10).0, [255, 255, 255]);
    // Half opacity gives grey.
    let wm = Watermark::from_bytes(&mark, Gravity::NorthWest, 0.5, 0.2).expect("wm");
    let o = RenderOptions {
        max_output: (8192, 8192),
        watermark: Some(&wm),
        ..opts()
    };
    let out = render(&png, &png_out(), &o).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgb8();
    let p = img.get_pixel(10, 10).0;
    assert!(p[0].abs_diff(128) <= 2, "{p:?}");
    // Bad parameters.
    assert!(Watermark::from_bytes(&mark, Gravity::Center, 1.5, 0.2).is_err());
    assert!(Watermark::from_bytes(&mark, Gravity::Center, 1.0, 0.0).is_err());
    assert!(matches!(
        Watermark::from_bytes(b"nope", Gravity::Center, 1.0, 0.5),
        Err(PipelineError::Unsupported(_))
    ));
}

//! Orientation, crop, fit, gravity and shrink-on-load, checked on the pixels.

use super::*;

/// (rot, flip_h, flip_v, expected quadrant classes, expected size)
type OrientCase = (u16, bool, bool, [usize; 4], (u32, u32));

#[test]
fn rotate_flip_crop_quadrants() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    // Expected [TL, TR, BL, BR] classes (0 red, 1 green, 2 blue, 3 yellow).
    let cases: &[OrientCase] = &[
        (0, false, false, [0, 1, 2, 3], (64, 48)),
        (90, false, false, [2, 0, 3, 1], (48, 64)),
        (180, false, false, [3, 2, 1, 0], (64, 48)),
        (270, false, false, [1, 3, 0, 2], (48, 64)),
        (0, true, false, [1, 0, 3, 2], (64, 48)),
        (0, false, true, [2, 3, 0, 1], (64, 48)),
        (0, true, true, [3, 2, 1, 0], (64, 48)),
        (90, true, false, [0, 2, 1, 3], (48, 64)),
    ];
    for &(rot, fh, fv, want, dims) in cases {
        let mut t = png_out();
        t.rotate = rot;
        t.flip_h = fh;
        t.flip_v = fv;
        let img = render_rgb(&png, &t);
        assert_eq!(img.dimensions(), dims, "rot {rot} h {fh} v {fv}");
        assert_eq!(sample_quadrants(&img), want, "rot {rot} h {fh} v {fv}");
        // The same with a resize (crop/resize happen before orientation internally).
        t.width = Some(dims.0 / 2);
        let img = render_rgb(&png, &t);
        assert_eq!(img.dimensions(), (dims.0 / 2, dims.1 / 2));
        assert_eq!(
            sample_quadrants(&img),
            want,
            "resized rot {rot} h {fh} v {fv}"
        );
    }

    // Crop is in coordinates after rotation: the top-right quadrant of the 90°-rotated image
    // (48×64) is the source's top-left (red) quadrant.
    let mut t = png_out();
    t.rotate = 90;
    t.crop = Some(CropRect {
        x: 24,
        y: 0,
        width: 24,
        height: 32,
    });
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (24, 32));
    assert!(img.pixels().all(|p| classify(p.0) == 0));
    // Crop + resize.
    t.width = Some(12);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (12, 16));
    assert!(img.pixels().all(|p| classify(p.0) == 0));

    // Clamped crop.
    let mut t = png_out();
    t.crop = Some(CropRect {
        x: 40,
        y: 30,
        width: 1000,
        height: 1000,
    });
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (24, 18));
    assert!(img.pixels().all(|p| classify(p.0) == 3));

    // Outside or empty.
    for c in [
        CropRect {
            x: 64,
            y: 0,
            width: 5,
            height: 5,
        },
        CropRect {
            x: 0,
            y: 0,
            width: 0,
            height: 5,
        },
    ] {
        t.crop = Some(c);
        let err = render(&png, &t, &opts()).expect_err("crop outside");
        assert!(
            matches!(err, PipelineError::InvalidParam { param: "crop", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn exif_orientation_all_eight() {
    let src = quadrants(64, 48);
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(src.clone()));
    for o in 1..=8u16 {
        let input = with_exif_orientation(&jpeg, o);
        // What a viewer shows.
        let mut expected = DynamicImage::ImageRgb8(src.clone());
        expected.apply_orientation(Orientation::from_exif(o as u8).expect("valid orientation"));
        let expected = expected.to_rgb8();
        let info = probe(&input).expect("probe");
        assert_eq!((info.width, info.height), (64, 48), "stored size");

        let img = render_rgb(&input, &png_out());
        assert_eq!(img.dimensions(), expected.dimensions(), "orientation {o}");
        assert_eq!(
            sample_quadrants(&img),
            sample_quadrants(&expected),
            "orientation {o}"
        );

        // With shrink-on-load (target ≤ half the source) and a crop of the top-left
        // quadrant in displayed coordinates.
        let (ew, eh) = expected.dimensions();
        let mut t = png_out();
        t.width = Some(ew / 4);
        let img = render_rgb(&input, &t);
        assert_eq!(img.dimensions(), (ew / 4, eh / 4), "orientation {o} shrunk");
        assert_eq!(
            sample_quadrants(&img),
            sample_quadrants(&expected),
            "orientation {o} shrunk"
        );
        t.crop = Some(CropRect {
            x: 0,
            y: 0,
            width: ew / 2,
            height: eh / 2,
        });
        t.width = Some(ew / 8);
        let img = render_rgb(&input, &t);
        let want = classify(expected.get_pixel(0, 0).0);
        assert!(
            img.pixels().all(|p| classify(p.0) == want),
            "orientation {o} crop"
        );
    }
}

#[test]
fn webp_exif_orientation() {
    let src = quadrants(64, 48);
    let webp = webp_with_exif(&src, 6);

    let info = probe(&webp).expect("probe");
    assert_eq!((info.width, info.height), (64, 48));
    let img = render_rgb(&webp, &png_out());
    let mut expected = DynamicImage::ImageRgb8(src);
    expected.apply_orientation(Orientation::Rotate90);
    assert_eq!(img.dimensions(), (48, 64));
    assert_eq!(
        sample_quadrants(&img),
        sample_quadrants(&expected.to_rgb8())
    );
}

#[test]
fn jpeg_shrink_on_load_keeps_quality() {
    // 256×192 JPEG to 32 px wide: decoded at 1/4 then resampled.
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(quadrants(256, 192)));
    let mut t = png_out();
    t.width = Some(32);
    let img = render_rgb(&jpeg, &t);
    assert_eq!(img.dimensions(), (32, 24));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
    // Fully inside a quadrant the colour is close to the original.
    let p = img.get_pixel(4, 4).0;
    assert!(p.iter().zip(RED).all(|(a, b)| a.abs_diff(b) < 12), "{p:?}");
}

#[test]
fn cover_north_keeps_top_and_contain_pads() {
    let src = RgbImage::from_fn(40, 80, |_, y| Rgb(if y < 40 { RED } else { BLUE }));
    let png = encode_png(&DynamicImage::ImageRgb8(src));
    let mut t = png_out();
    t.width = Some(20);
    t.height = Some(20);
    t.fit = Fit::Cover;
    t.gravity = Gravity::North;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (20, 20));
    assert!(img.pixels().all(|p| classify(p.0) == 0), "top must be red");
    t.gravity = Gravity::South;
    let img = render_rgb(&png, &t);
    assert!(
        img.pixels().all(|p| classify(p.0) == 2),
        "bottom must be blue"
    );

    // Contain: 40×80 into 40×40 → 20×40 centred, padded with green.
    t.width = Some(40);
    t.height = Some(40);
    t.fit = Fit::Contain;
    t.gravity = Gravity::Center;
    t.background = Some([20, 200, 20, 255]);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 40));
    assert_eq!(classify(img.get_pixel(2, 20).0), 1);
    assert_eq!(classify(img.get_pixel(37, 20).0), 1);
    assert_eq!(classify(img.get_pixel(20, 5).0), 0);
    assert_eq!(classify(img.get_pixel(20, 35).0), 2);
    // Contain to PNG with the default (transparent) background.
    t.background = None;
    let out = render(&png, &t, &opts()).expect("render");
    let img = image::load_from_memory(&out.bytes).expect("png").to_rgba8();
    assert_eq!(img.get_pixel(2, 20).0[3], 0);
    assert_eq!(img.get_pixel(20, 20).0[3], 255);
}

#[test]
fn entropy_gravity_picks_texture() {
    let src = RgbImage::from_fn(120, 40, |x, y| {
        if x < 60 {
            Rgb([128, 128, 128])
        } else {
            let v = ((x * 7919 + y * 104_729) ^ (x * y * 31)) as u8;
            Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
        }
    });
    let png = encode_png(&DynamicImage::ImageRgb8(src));
    let mut t = png_out();
    t.width = Some(40);
    t.height = Some(40);
    t.fit = Fit::Cover;
    t.gravity = Gravity::Entropy;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 40));
    let flat = img.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    assert!(
        flat < 40,
        "window should be on the noisy half, {flat} flat pixels"
    );
}

#[test]
fn enlarge_rules_end_to_end() {
    let png = encode_png(&DynamicImage::ImageRgb8(quadrants(40, 30)));
    let mut t = png_out();
    t.width = Some(400);
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (40, 30));
    t.enlarge = true;
    let img = render_rgb(&png, &t);
    assert_eq!(img.dimensions(), (400, 300));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
}

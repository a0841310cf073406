//! Table tests of the render plan: each rule in small cases.

use super::*;
use crate::media::OutputFormat;
use crate::params::{CropRect, Fit};

use crate::pipeline::AvifSettings;
use crate::pipeline::tests::opts;

fn jpeg(stored: (u32, u32), exif: u8) -> Facts {
    Facts {
        stored,
        format: SourceFormat::Jpeg,
        exif: Orientation::from_exif(exif),
    }
}

fn png(stored: (u32, u32)) -> Facts {
    Facts {
        stored,
        format: SourceFormat::Png,
        exif: None,
    }
}

fn sized(w: Option<u32>, h: Option<u32>, fit: Fit) -> Transform {
    Transform {
        width: w,
        height: h,
        fit,
        ..Transform::for_format(OutputFormat::Png, 0)
    }
}

fn cropped(x: u32, y: u32, width: u32, height: u32) -> Transform {
    Transform {
        crop: Some(CropRect {
            x,
            y,
            width,
            height,
        }),
        ..sized(None, None, Fit::Inside)
    }
}

fn plan(facts: Facts, t: &Transform) -> Plan {
    Plan::before_decode(facts, t, &opts()).expect("plan")
}

fn param_of(r: Result<Plan, PipelineError>) -> &'static str {
    match r {
        Err(PipelineError::InvalidParam { param, .. }) => param,
        other => panic!("not a parameter error: {other:?}"),
    }
}

#[test]
fn fit_table() {
    use Fit::*;
    use Gravity::*;
    let cut = |w, h, at| CanvasStep::Cut { w, h, at };
    // 400x200 into a 100x100 box: (fit, gravity) -> (target, canvas, output)
    #[rustfmt::skip]
    let cases = [
        (Inside, Center, (100, 50), CanvasStep::None, (100, 50)),
        (Outside, Center, (200, 100), CanvasStep::None, (200, 100)),
        (Fill, Center, (100, 100), CanvasStep::None, (100, 100)),
        (Contain, Center, (100, 50), CanvasStep::Pad { w: 100, h: 100 }, (100, 100)),
        (Contain, North, (100, 50), CanvasStep::Pad { w: 100, h: 100 }, (100, 100)),
        (Cover, Center, (200, 100), cut(100, 100, Some((50, 0))), (100, 100)),
        (Cover, West, (200, 100), cut(100, 100, Some((0, 0))), (100, 100)),
        (Cover, SouthEast, (200, 100), cut(100, 100, Some((100, 0))), (100, 100)),
        (Cover, Entropy, (200, 100), cut(100, 100, None), (100, 100)),
    ];
    for (fit, gravity, target, canvas, output) in cases {
        let t = Transform {
            gravity,
            ..sized(Some(100), Some(100), fit)
        };
        let p = plan(png((400, 200)), &t);
        assert_eq!(
            (p.target, p.canvas, p.output, p.resample),
            (target, canvas, output, true),
            "{fit:?} {gravity:?}"
        );
    }
    // No size: no fit, the whole source as it is.
    let p = plan(png((400, 200)), &sized(None, None, Cover));
    assert_eq!(p.fit, None);
    assert_eq!(
        (p.target, p.canvas, p.output),
        ((400, 200), CanvasStep::None, (400, 200))
    );
}

#[test]
fn orientation_table() {
    // 400x200 stored, w=100: (exif, rot, flip_h) -> (orient, oriented, target, target_stored)
    let o = |rot, flip| Orient { rot, flip };
    #[rustfmt::skip]
    let cases = [
        (1, 0, false, o(0, false), (400, 200), (100, 50), (100, 50)),
        (3, 0, false, o(2, false), (400, 200), (100, 50), (100, 50)),
        (2, 0, false, o(0, true), (400, 200), (100, 50), (100, 50)),
        // Orientation 6 (and 5, 7, 8) swaps the axes: w applies to the stored height.
        (6, 0, false, o(1, false), (200, 400), (100, 200), (200, 100)),
        (8, 0, false, o(3, false), (200, 400), (100, 200), (200, 100)),
        (5, 0, false, o(1, true), (200, 400), (100, 200), (200, 100)),
        (7, 0, false, o(3, true), (200, 400), (100, 200), (200, 100)),
        // `rot` composes after EXIF: 6 then 270 is upright again.
        (6, 270, false, o(0, false), (400, 200), (100, 50), (100, 50)),
        (6, 90, false, o(2, false), (400, 200), (100, 50), (100, 50)),
        (1, 90, false, o(1, false), (200, 400), (100, 200), (200, 100)),
        // A mirror after a rotation reverses it.
        (6, 0, true, o(1, true), (200, 400), (100, 200), (200, 100)),
    ];
    for (exif, rotate, flip_h, orient, oriented, target, target_stored) in cases {
        let t = Transform {
            rotate,
            flip_h,
            ..sized(Some(100), None, Fit::Inside)
        };
        let p = plan(jpeg((400, 200), exif), &t);
        assert_eq!(
            (p.orient, p.oriented, p.target, p.target_stored),
            (orient, oriented, target, target_stored),
            "exif {exif} rot {rotate} flip_h {flip_h}"
        );
        assert_eq!(p.output, target);
    }
    let t = Transform {
        rotate: 45,
        ..sized(None, None, Fit::Inside)
    };
    assert_eq!(
        param_of(Plan::before_decode(png((4, 4)), &t, &opts())),
        "rot"
    );
}

#[test]
fn crop_mapping_table() {
    let rf = |x, y, w, h| RectF { x, y, w, h };
    // 400x200 stored: (exif, crop in oriented coordinates) -> (region, rect in stored)
    #[rustfmt::skip]
    let cases = [
        (1, cropped(10, 20, 30, 40), Rect { x: 10, y: 20, w: 30, h: 40 }, rf(10.0, 20.0, 30.0, 40.0)),
        (3, cropped(10, 20, 30, 40), Rect { x: 10, y: 20, w: 30, h: 40 }, rf(360.0, 140.0, 30.0, 40.0)),
        (2, cropped(10, 20, 30, 40), Rect { x: 10, y: 20, w: 30, h: 40 }, rf(360.0, 20.0, 30.0, 40.0)),
        // Orientation 6: the oriented top-left 50x100 is the stored bottom-left 100x50.
        (6, cropped(0, 0, 50, 100), Rect { x: 0, y: 0, w: 50, h: 100 }, rf(0.0, 150.0, 100.0, 50.0)),
        // y=300 exists only in the oriented 200x400 image.
        (6, cropped(0, 300, 200, 100), Rect { x: 0, y: 300, w: 200, h: 100 }, rf(300.0, 0.0, 100.0, 200.0)),
        // Clamped to the image.
        (1, cropped(380, 190, 50, 50), Rect { x: 380, y: 190, w: 20, h: 10 }, rf(380.0, 190.0, 20.0, 10.0)),
        // No crop: the whole image, nothing to resample.
        (6, sized(None, None, Fit::Inside), Rect { x: 0, y: 0, w: 200, h: 400 }, rf(0.0, 0.0, 400.0, 200.0)),
    ];
    for (exif, t, region, rect) in cases {
        let p = plan(jpeg((400, 200), exif), &t);
        assert_eq!(
            (p.region, p.source_rect),
            (region, rect),
            "exif {exif} {:?}",
            t.crop
        );
        assert_eq!(p.target, (region.w, region.h));
        assert_eq!(p.resample, t.crop.is_some());
    }
    for (exif, t) in [
        (1, cropped(400, 0, 10, 10)),
        (1, cropped(0, 200, 10, 10)),
        (1, cropped(0, 0, 0, 10)),
        (6, cropped(300, 0, 10, 10)),
    ] {
        let r = Plan::before_decode(jpeg((400, 200), exif), &t, &opts());
        assert_eq!(param_of(r), "crop", "exif {exif} {:?}", t.crop);
    }
}

#[test]
fn resample_only_when_needed() {
    let rotated = Transform {
        rotate: 90,
        flip_v: true,
        ..sized(None, None, Fit::Inside)
    };
    let cases = [
        (sized(None, None, Fit::Inside), false),
        (rotated, false),
        (sized(Some(400), None, Fit::Inside), false),
        (sized(Some(800), None, Fit::Inside), false),
        (sized(Some(400), Some(200), Fit::Cover), false),
        (sized(Some(399), None, Fit::Inside), true),
        (sized(Some(400), Some(100), Fit::Fill), true),
        (cropped(0, 0, 400, 199), true),
    ];
    for (t, resample) in cases {
        assert_eq!(plan(png((400, 200)), &t).resample, resample, "{t:?}");
    }
}

#[test]
fn shrink_factor_table() {
    // (facts, transform) -> shrink
    let cases = [
        (
            jpeg((4000, 3000), 1),
            sized(Some(200), None, Fit::Inside),
            8,
        ),
        (
            jpeg((4000, 3000), 1),
            sized(Some(400), None, Fit::Inside),
            4,
        ),
        (
            jpeg((4000, 3000), 1),
            sized(Some(250), None, Fit::Inside),
            4,
        ),
        (
            jpeg((4000, 3000), 1),
            sized(Some(1000), None, Fit::Inside),
            2,
        ),
        (
            jpeg((4000, 3000), 1),
            sized(Some(1001), None, Fit::Inside),
            1,
        ),
        // Cover resamples to more than the box (533x400).
        (
            jpeg((4000, 3000), 1),
            sized(Some(400), Some(400), Fit::Cover),
            2,
        ),
        // The crop region, not the source, is what is shrunk against.
        (
            jpeg((4000, 3000), 1),
            Transform {
                crop: cropped(0, 0, 1600, 1200).crop,
                ..sized(Some(100), None, Fit::Inside)
            },
            8,
        ),
        (
            jpeg((4000, 3000), 1),
            Transform {
                crop: cropped(0, 0, 400, 300).crop,
                ..sized(Some(100), None, Fit::Inside)
            },
            2,
        ),
        // Orientation 6: w=200 of the 3000x4000 oriented image is 200x267, 4 not 8.
        (
            jpeg((4000, 3000), 6),
            sized(Some(200), None, Fit::Inside),
            4,
        ),
        (
            jpeg((4000, 3000), 6),
            sized(None, Some(1000), Fit::Inside),
            2,
        ),
        // No size: no shrink. Only JPEG decodes shrunk.
        (jpeg((4000, 3000), 1), sized(None, None, Fit::Inside), 1),
        (png((4000, 3000)), sized(Some(200), None, Fit::Inside), 1),
    ];
    for (facts, t, shrink) in cases {
        assert_eq!(plan(facts, &t).shrink, shrink, "{facts:?} {t:?}");
    }
}

/// AVIF through libaom shrinks a JPEG by at most 1/2 (fewer bytes for the same score);
/// rav1e and the other formats keep libvips' rule.
#[test]
fn avif_with_libaom_shrinks_at_most_by_half() {
    let shrink = |encoder: AvifEncoder, format: OutputFormat, w: u32| {
        let t = Transform {
            format,
            ..sized(Some(w), None, Fit::Inside)
        };
        let o = RenderOptions {
            avif: AvifSettings { encoder, speed: 6 },
            ..opts()
        };
        Plan::before_decode(jpeg((4000, 3000), 1), &t, &o)
            .expect("plan")
            .shrink
    };
    assert_eq!(shrink(AvifEncoder::Aom, OutputFormat::Avif, 200), 2);
    assert_eq!(shrink(AvifEncoder::Rav1e, OutputFormat::Avif, 200), 8);
    assert_eq!(shrink(AvifEncoder::Aom, OutputFormat::Webp, 200), 8);
    // Finer shrinks are left alone.
    assert_eq!(shrink(AvifEncoder::Aom, OutputFormat::Avif, 1000), 2);
    assert_eq!(shrink(AvifEncoder::Aom, OutputFormat::Avif, 1001), 1);
}

#[test]
fn enlarge_limits() {
    let o = RenderOptions {
        max_output: (1000, 1000),
        ..opts()
    };
    let enlarged = |w, h, fit| Transform {
        enlarge: true,
        ..sized(w, h, fit)
    };
    // (stored, transform) -> target, or refused for `enlarge`
    let cases = [
        (
            (400, 200),
            enlarged(Some(1000), None, Fit::Inside),
            Some((1000, 500)),
        ),
        ((400, 200), enlarged(Some(2000), None, Fit::Inside), None),
        ((400, 200), enlarged(None, Some(600), Fit::Inside), None),
        (
            (400, 200),
            enlarged(Some(1000), Some(1000), Fit::Cover),
            None,
        ),
        (
            (400, 200),
            enlarged(Some(1000), Some(1000), Fit::Contain),
            Some((1000, 500)),
        ),
        (
            (400, 200),
            enlarged(Some(1000), Some(1001), Fit::Fill),
            None,
        ),
        // Without enlarge the source size is never exceeded.
        (
            (400, 200),
            sized(Some(2000), None, Fit::Inside),
            Some((400, 200)),
        ),
        // A source beyond the limit may still be delivered at its own size.
        (
            (3000, 100),
            sized(None, None, Fit::Inside),
            Some((3000, 100)),
        ),
        (
            (3000, 100),
            enlarged(Some(3000), None, Fit::Inside),
            Some((3000, 100)),
        ),
    ];
    for (stored, t, want) in cases {
        // JPEG: the orientation is known, so the plan is exact.
        let r = Plan::before_decode(jpeg(stored, 1), &t, &o);
        match want {
            Some(target) => assert_eq!(r.expect("plan").target, target, "{stored:?} {t:?}"),
            None => assert_eq!(param_of(r), "enlarge", "{stored:?} {t:?}"),
        }
    }
}

#[test]
fn output_pixel_caps() {
    let o = RenderOptions {
        max_output_pixels: 1000,
        max_avif_output_pixels: 500,
        ..opts()
    };
    let avif = |t: Transform| Transform {
        format: OutputFormat::Avif,
        ..t
    };
    // 64x48 (3072 px) source: (transform) -> refused for which parameter
    let cases = [
        (sized(None, None, Fit::Inside), Some("w")),
        (sized(None, Some(40), Fit::Inside), Some("h")),
        (sized(Some(30), None, Fit::Inside), None),
        (avif(sized(Some(30), None, Fit::Inside)), Some("fm")),
        (avif(sized(Some(20), None, Fit::Inside)), None),
        // The cover intermediate (53x40) counts, not only the 10x40 output.
        (sized(Some(10), Some(40), Fit::Cover), Some("w")),
        (sized(Some(40), Some(25), Fit::Contain), None),
        (sized(Some(41), Some(25), Fit::Contain), Some("w")),
        (sized(Some(40), Some(25), Fit::Inside), None),
    ];
    for (t, refused) in cases {
        let r = Plan::before_decode(png((64, 48)), &t, &o);
        match refused {
            None => assert!(r.is_ok(), "{t:?}: {r:?}"),
            Some(param) => assert_eq!(param_of(r), param, "{t:?}"),
        }
    }
}

#[test]
fn orientation_known_only_after_decoding() {
    // 64x48 PNG: a crop at y=50 exists only if the decoder reports a rotation.
    let t = cropped(0, 50, 10, 10);
    let p = plan(png((64, 48)), &t);
    assert_eq!(p.exif, Orientation::Rotate90);
    let same = p.for_orientation(png((64, 48)), Orientation::Rotate90, &t, &opts());
    assert_eq!(same.expect("same"), p);
    let upright = p.for_orientation(png((64, 48)), Orientation::NoTransforms, &t, &opts());
    assert_eq!(param_of(upright), "crop");
    let other = p.for_orientation(png((64, 48)), Orientation::Rotate270, &t, &opts());
    assert_eq!(other.expect("rotated").exif, Orientation::Rotate270);
    // Upright plans stay upright; with neither order fitting, the upright error.
    let p = plan(png((64, 48)), &sized(Some(32), None, Fit::Inside));
    assert_eq!((p.exif, p.target), (Orientation::NoTransforms, (32, 24)));
    match Plan::before_decode(png((64, 48)), &cropped(70, 70, 1, 1), &opts()) {
        Err(e) => assert!(e.to_string().contains("64x48"), "{e}"),
        Ok(p) => panic!("{p:?}"),
    }
    // JPEG carries its orientation in the header: no second guess.
    let r = Plan::before_decode(jpeg((64, 48), 1), &t, &opts());
    assert_eq!(param_of(r), "crop");
}

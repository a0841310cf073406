//! Animated GIF/WebP in, animated GIF/WebP out (the HTTP tests read outputs back with
//! Pillow; these use the `image` crate's decoders).

use image::codecs::gif::{GifDecoder, Repeat};
use image::{AnimationDecoder, Delay};
use std::io::Cursor;

use super::*;

/// A GIF of `frames` with per-frame delays in ms (multiples of 10) and an optional repeat.
fn gif_anim(frames: &[RgbaImage], delays: &[u32], repeat: Option<Repeat>) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        if let Some(r) = repeat {
            enc.set_repeat(r).expect("repeat");
        }
        for (f, d) in frames.iter().zip(delays) {
            let delay = Delay::from_numer_denom_ms(*d, 1);
            enc.encode_frame(Frame::from_parts(f.clone(), 0, 0, delay))
                .expect("gif frame");
        }
    }
    out
}

fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbaImage {
    RgbaImage::from_pixel(w, h, Rgba([c[0], c[1], c[2], 255]))
}

/// Frames of an output as (RGBA, delay in ms): GIF through the `image` crate, WebP through
/// libwebp's `WebPAnimDecoder` (the reference compositor).
fn frames_of(out: &Rendered) -> Vec<(RgbaImage, u32)> {
    match out.format {
        OutputFormat::Gif => GifDecoder::new(Cursor::new(&out.bytes))
            .expect("gif")
            .into_frames()
            .collect_frames()
            .expect("frames")
            .into_iter()
            .map(|f| {
                let (n, d) = f.delay().numer_denom_ms();
                (f.into_buffer(), n / d)
            })
            .collect(),
        OutputFormat::Webp => {
            let anim = webp::AnimDecoder::new(&out.bytes).decode().expect("webp");
            let mut end = 0;
            (0..anim.len())
                .map(|i| {
                    let f = anim.get_frame(i).expect("frame");
                    assert_eq!(f.get_layout(), webp::PixelLayout::Rgba);
                    let img = RgbaImage::from_raw(f.width(), f.height(), f.get_image().to_vec())
                        .expect("rgba");
                    // libwebp reports when each frame ends.
                    let delay = (f.get_time_ms() - end) as u32;
                    end = f.get_time_ms();
                    (img, delay)
                })
                .collect()
        }
        other => panic!("{other:?} has no frames"),
    }
}

fn class_at(img: &RgbaImage, x: u32, y: u32) -> usize {
    let p = img.get_pixel(x, y).0;
    classify([p[0], p[1], p[2]])
}

#[test]
fn gif_loop_counts_become_plays() {
    let f = [solid(4, 4, RED), solid(4, 4, GREEN)];
    let plays = |r| {
        let gif = gif_anim(&f, &[100, 100], r);
        detect::read_header(&gif).expect("header").plays
    };
    assert_eq!(plays(None), 1);
    assert_eq!(plays(Some(Repeat::Infinite)), 0);
    assert_eq!(plays(Some(Repeat::Finite(2))), 3);
    let gif = gif_anim(&f, &[100, 100], None);
    let h = detect::read_header(&gif).expect("header");
    assert_eq!((h.frames, h.first_frame), (2, (4, 4)));
}

#[test]
fn animated_gif_to_webp_and_gif_keeps_frames_delays_and_loop() {
    let frames: Vec<RgbaImage> = PALETTE.iter().map(|c| solid(40, 20, *c)).collect();
    let delays = [100, 250, 70, 1000];
    let gif = gif_anim(&frames, &delays, Some(Repeat::Finite(4)));
    for fm in [OutputFormat::Webp, OutputFormat::Gif] {
        let t = Transform {
            width: Some(20),
            ..Transform::for_format(fm, 90)
        };
        let out = render(&gif, &t, &opts()).expect("render");
        assert_eq!((out.width, out.height, out.format), (20, 10, fm));
        let got = frames_of(&out);
        assert_eq!(got.len(), 4, "{fm:?}");
        for (i, (img, delay)) in got.iter().enumerate() {
            assert_eq!(img.dimensions(), (20, 10));
            assert_eq!(*delay, delays[i], "{fm:?} frame {i}");
            assert_eq!(class_at(img, 10, 5), i, "{fm:?} frame {i}");
        }
        // Played 5 times: WebP says 5, GIF repeats 4 times.
        let plays = detect::read_header(&out.bytes).expect("header").plays;
        assert_eq!(plays, 5, "{fm:?}");
    }
}

#[test]
fn still_formats_and_frame_first_take_the_first_frame() {
    let frames: Vec<RgbaImage> = [GREEN, RED].iter().map(|c| solid(8, 8, *c)).collect();
    let gif = gif_anim(&frames, &[100, 100], None);
    let first = Transform {
        first_frame: true,
        ..Transform::for_format(OutputFormat::Webp, 80)
    };
    let out = render(&gif, &first, &opts()).expect("render");
    assert_eq!(detect::read_header(&out.bytes).expect("header").frames, 1);
    assert_eq!(classify(render_rgb(&gif, &first).get_pixel(4, 4).0), 1);
    assert_eq!(classify(render_rgb(&gif, &png_out()).get_pixel(4, 4).0), 1);
}

#[test]
fn entropy_window_is_chosen_on_the_first_frame() {
    // Frame 0 is busy on the left, frame 1 on the right; the rest is grey.
    let busy = |left: bool| {
        RgbaImage::from_fn(60, 20, |x, y| {
            let in_busy = if left { x < 20 } else { x >= 40 };
            let v = if in_busy && (x + y) % 2 == 0 { 255 } else { 0 };
            if in_busy {
                Rgba([v, v, v, 255])
            } else {
                Rgba([128, 128, 128, 255])
            }
        })
    };
    let gif = gif_anim(&[busy(true), busy(false)], &[100, 100], None);
    let t = Transform {
        width: Some(20),
        height: Some(20),
        fit: Fit::Cover,
        gravity: Gravity::Entropy,
        ..Transform::for_format(OutputFormat::Gif, 0)
    };
    let got = frames_of(&render(&gif, &t, &opts()).expect("render"));
    let grey = |img: &RgbaImage| {
        img.pixels()
            .all(|p| p.0[..3].iter().all(|&v| v.abs_diff(128) < 8))
    };
    assert!(!grey(&got[0].0), "first frame cut at its busy left part");
    assert!(grey(&got[1].0), "second frame cut at the same window");
}

#[test]
fn flip_applies_to_every_frame() {
    let frame = |c: [u8; 3]| {
        RgbaImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgba([c[0], c[1], c[2], 255])
            } else {
                Rgba([240, 240, 20, 255])
            }
        })
    };
    let gif = gif_anim(
        &[frame(RED), frame(GREEN), frame(BLUE)],
        &[50, 50, 50],
        None,
    );
    let t = Transform {
        flip_h: true,
        ..Transform::for_format(OutputFormat::Gif, 0)
    };
    let got = frames_of(&render(&gif, &t, &opts()).expect("render"));
    for (i, (img, _)) in got.iter().enumerate() {
        assert_eq!(class_at(img, 5, 10), 3, "frame {i}: yellow moved left");
        assert_eq!(class_at(img, 35, 10), i, "frame {i}");
    }
}

#[test]
fn animation_limits_come_from_the_header() {
    let frames: Vec<RgbaImage> = (0..5).map(|i| solid(10, 10, PALETTE[i % 4])).collect();
    let gif = gif_anim(&frames, &[100; 5], None);
    let webp = render(
        &gif,
        &Transform::for_format(OutputFormat::Webp, 80),
        &opts(),
    )
    .expect("webp")
    .bytes;
    for input in [&gif, &webp] {
        let h = detect::read_header(input).expect("header");
        assert_eq!((h.frames, h.width, h.height), (5, 10, 10));
        let t = Transform::for_format(OutputFormat::Gif, 0);
        let frames = RenderOptions {
            max_animation_frames: 4,
            ..opts()
        };
        let e = render(input, &t, &frames).expect_err("frames");
        assert!(
            e.to_string().contains("5 frames, more than the limit of 4"),
            "{e}"
        );
        let pixels = RenderOptions {
            max_animation_pixels: 499,
            ..opts()
        };
        let e = render(input, &t, &pixels).expect_err("pixels");
        assert!(matches!(e, PipelineError::AnimationTooLarge(_)), "{e:?}");
        assert!(e.to_string().contains("(500 pixels)"), "{e}");
        // Output frames count too: 5 × 100 pixels.
        let output = RenderOptions {
            max_output_pixels: 499,
            ..opts()
        };
        let e = render(input, &t, &output).expect_err("output");
        assert!(
            matches!(e, PipelineError::InvalidParam { param: "w", .. }),
            "{e:?}"
        );
        // None of them apply to the first frame alone.
        let first = Transform {
            first_frame: true,
            ..t.clone()
        };
        for o in [frames, pixels, output] {
            render(input, &first, &o).expect("first frame");
        }
    }
}

#[test]
fn last_webp_duration_is_rewritten_from_the_total() {
    let anmf = |duration: u32| {
        let mut c = b"ANMF".to_vec();
        c.extend_from_slice(&16u32.to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(&duration.to_le_bytes()[..3]);
        c.push(0);
        c
    };
    let mut webp = b"RIFF\0\0\0\0WEBP".to_vec();
    for d in [100, 200, 150] {
        webp.extend_from_slice(&anmf(d));
    }
    crate::pipeline::animation::set_last_duration(&mut webp, 100 + 200 + 700);
    let last = &webp[12 + 2 * 24 + 20..][..3];
    assert_eq!(last, &700u32.to_le_bytes()[..3]);
    // Still images are left alone.
    let mut still = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0".to_vec();
    let copy = still.clone();
    crate::pipeline::animation::set_last_duration(&mut still, 5);
    assert_eq!(still, copy);
}

#[test]
fn still_sources_encode_as_gif() {
    let src = encode_png(&DynamicImage::ImageRgb8(quadrants(64, 48)));
    let t = Transform {
        width: Some(32),
        ..Transform::for_format(OutputFormat::Gif, 0)
    };
    let out = render(&src, &t, &opts()).expect("gif");
    assert!(out.bytes.starts_with(b"GIF89a"));
    let img = image::load_from_memory(&out.bytes).expect("gif").to_rgb8();
    assert_eq!(img.dimensions(), (32, 24));
    assert_eq!(sample_quadrants(&img), [0, 1, 2, 3]);
}

#[test]
fn transparent_pixels_do_not_show_the_previous_frame() {
    // A WebP (libwebp's encoder) whose frames are half transparent on alternate sides, and
    // transparent in their first and last columns, so libwebp keeps an alpha channel (else
    // it relies on disposal alone and marks the file opaque).
    let half = |left: bool, c: [u8; 3]| {
        RgbaImage::from_fn(16, 8, |x, _| {
            if (x < 8) == left && x != 0 && x != 15 {
                Rgba([c[0], c[1], c[2], 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        })
    };
    let frames = [half(true, RED), half(false, GREEN), half(true, BLUE)];
    let config = webp::WebPConfig::new().expect("config");
    let mut enc = webp::AnimEncoder::new(16, 8, &config);
    for (i, f) in frames.iter().enumerate() {
        enc.add_frame(webp::AnimFrame::from_rgba(
            f.as_raw(),
            16,
            8,
            i as i32 * 100,
        ));
    }
    let src = enc.try_encode().expect("animated webp").to_vec();
    for fm in [OutputFormat::Gif, OutputFormat::Webp] {
        let got =
            frames_of(&render(&src, &Transform::for_format(fm, 90), &opts()).expect("render"));
        assert_eq!(got.len(), 3, "{fm:?}");
        for (i, (img, _)) in got.iter().enumerate() {
            let (opaque, clear) = if i % 2 == 0 { (2, 13) } else { (13, 2) };
            assert_eq!(img.get_pixel(clear, 4).0[3], 0, "{fm:?} frame {i}");
            assert_eq!(img.get_pixel(opaque, 4).0[3], 255, "{fm:?} frame {i}");
            assert_eq!(class_at(img, opaque, 4), [0, 1, 2][i], "{fm:?} frame {i}");
        }
    }
}

#[test]
fn identical_frames_are_merged_by_libwebp() {
    // libwebp stores a run of identical frames once, with their durations added.
    let frames = [solid(8, 8, RED), solid(8, 8, RED), solid(8, 8, GREEN)];
    let gif = gif_anim(&frames, &[100, 100, 300], None);
    let t = Transform::for_format(OutputFormat::Webp, 80);
    let got = frames_of(&render(&gif, &t, &opts()).expect("webp"));
    let delays: Vec<u32> = got.iter().map(|f| f.1).collect();
    assert_eq!(delays, [200, 300]);
    // All frames identical: a still WebP.
    let gif = gif_anim(&frames[..2], &[100, 100], None);
    let out = render(&gif, &t, &opts()).expect("webp");
    assert_eq!(detect::read_header(&out.bytes).expect("header").frames, 1);
}

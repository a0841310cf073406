//! Pixel effects after the resize: blur, sharpen, contain padding, cover cut, flattening.
//!
//! They run on the output-sized image, so they are written for clarity over speed, but
//! still work in place or with a single scratch buffer of the image's size.

use fast_image_resize::MulDiv;
use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

use super::geometry::gravity_offset;
use crate::params::Gravity;

/// Mutable raw samples and channel count of an RGB/RGBA image.
fn samples_mut(img: &mut DynamicImage) -> Option<(&mut [u8], usize)> {
    match img {
        DynamicImage::ImageRgb8(b) => Some((&mut **b, 3)),
        DynamicImage::ImageRgba8(b) => Some((&mut **b, 4)),
        _ => None,
    }
}

/// Gaussian blur. RGBA is blurred premultiplied so transparent pixels do not darken or
/// tint their neighbours.
pub(crate) fn blur(img: &mut DynamicImage, sigma: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let alpha = img.color().has_alpha();
    let mul_div = MulDiv::new();
    if alpha {
        // Only fails for pixel types without alpha, which `alpha` rules out.
        let _ = mul_div.multiply_alpha_inplace(img);
    }
    if let Some((data, ch)) = samples_mut(img) {
        gaussian(data, w, h, ch, sigma);
    }
    if alpha {
        let _ = mul_div.divide_alpha_inplace(img);
    }
}

/// Unsharp mask: `out = in + AMOUNT * (in - gaussian(in, sigma))` on the colour channels;
/// alpha is left alone.
pub(crate) fn sharpen(img: &mut DynamicImage, sigma: f32) {
    const AMOUNT: f32 = 1.0;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let Some((data, ch)) = samples_mut(img) else {
        return;
    };
    let mut blurred = data.to_vec();
    gaussian(&mut blurred, w, h, ch, sigma);
    for (px, bl) in data.chunks_exact_mut(ch).zip(blurred.chunks_exact(ch)) {
        for c in 0..3 {
            let v = f32::from(px[c]);
            px[c] = (v + AMOUNT * (v - f32::from(bl[c])))
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
}

/// Kernel taps of the exact Gaussian for `sigma` (its cost per sample and pass).
fn exact_taps(sigma: f32) -> u64 {
    2 * (sigma * 3.0).ceil().max(1.0) as u64 + 1
}

/// Whether [`gaussian`] uses the exact kernel (cost ∝ pixels × taps, taps = 6σ + 1) rather
/// than three box blurs (constant cost per pixel whatever sigma). Above `BOX_FROM` the
/// boxes approximate it closely anyway. Up to `ALWAYS_EXACT_TAPS` (σ ≤ 2, where three
/// narrow boxes would be a poor fit) the kernel costs no more than the boxes' few passes;
/// between the two, the exact kernel is kept only while pixels × taps stays within
/// `EXACT_WORK` (≈ 1.8 MP at σ 6), so no sigma makes a large output cost more per pixel
/// than σ 2: the cost of an effect is bounded by output pixels (which are capped), not by
/// pixels × sigma.
fn uses_exact_kernel(sigma: f32, pixels: u64) -> bool {
    const BOX_FROM: f32 = 6.0;
    const ALWAYS_EXACT_TAPS: u64 = 13;
    const EXACT_WORK: u64 = 64 << 20;
    let taps = exact_taps(sigma);
    sigma <= BOX_FROM && (taps <= ALWAYS_EXACT_TAPS || pixels.saturating_mul(taps) <= EXACT_WORK)
}

/// Separable Gaussian in place: the exact kernel or three box blurs, see
/// [`uses_exact_kernel`].
fn gaussian(data: &mut [u8], w: usize, h: usize, ch: usize, sigma: f32) {
    if w == 0 || h == 0 || sigma <= 0.0 {
        return;
    }
    let mut tmp = vec![0u8; data.len()];
    if uses_exact_kernel(sigma, (w * h) as u64) {
        let kernel = gaussian_kernel(sigma);
        convolve_h(data, &mut tmp, w, h, ch, &kernel);
        convolve_v(&tmp, data, w, h, ch, &kernel);
    } else {
        for size in box_sizes(sigma) {
            let r = (size - 1) / 2;
            box_h(data, &mut tmp, w, h, ch, r);
            box_v(&tmp, data, w, h, ch, r);
        }
    }
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (exact_taps(sigma) / 2) as i32;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// Box widths whose threefold application approximates a Gaussian of `sigma`
/// (W. Jarosz / I. Kutskir).
fn box_sizes(sigma: f32) -> [usize; 3] {
    let n = 3.0f32;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut wl = ideal.floor() as i64;
    if wl % 2 == 0 {
        wl -= 1;
    }
    let wu = wl + 2;
    let wlf = wl as f32;
    let m = ((12.0 * sigma * sigma - n * wlf * wlf - 4.0 * n * wlf - 3.0 * n) / (-4.0 * wlf - 4.0))
        .round() as i64;
    let mut out = [0usize; 3];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (if (i as i64) < m { wl } else { wu }).max(1) as usize;
    }
    out
}

fn convolve_h(src: &[u8], dst: &mut [u8], w: usize, h: usize, ch: usize, k: &[f32]) {
    let r = (k.len() / 2) as isize;
    let row_len = w * ch;
    let mut acc = vec![0f32; ch];
    for y in 0..h {
        let row = &src[y * row_len..(y + 1) * row_len];
        let out = &mut dst[y * row_len..(y + 1) * row_len];
        for x in 0..w {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (i, &kw) in k.iter().enumerate() {
                // Clamp to the edge: the border pixel is repeated.
                let sx = (x as isize + i as isize - r).clamp(0, w as isize - 1) as usize;
                for c in 0..ch {
                    acc[c] += kw * f32::from(row[sx * ch + c]);
                }
            }
            for c in 0..ch {
                out[x * ch + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

fn convolve_v(src: &[u8], dst: &mut [u8], w: usize, h: usize, ch: usize, k: &[f32]) {
    let r = (k.len() / 2) as isize;
    let row_len = w * ch;
    let mut acc = vec![0f32; row_len];
    for y in 0..h {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (i, &kw) in k.iter().enumerate() {
            let sy = (y as isize + i as isize - r).clamp(0, h as isize - 1) as usize;
            let row = &src[sy * row_len..(sy + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += kw * f32::from(v);
            }
        }
        for (o, a) in dst[y * row_len..(y + 1) * row_len].iter_mut().zip(&acc) {
            *o = a.round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn box_h(src: &[u8], dst: &mut [u8], w: usize, h: usize, ch: usize, r: usize) {
    let row_len = w * ch;
    let div = (2 * r + 1) as u32;
    let at = |i: isize| i.clamp(0, w as isize - 1) as usize;
    for y in 0..h {
        let row = &src[y * row_len..(y + 1) * row_len];
        let out = &mut dst[y * row_len..(y + 1) * row_len];
        for c in 0..ch {
            let mut sum: u32 = (-(r as isize)..=r as isize)
                .map(|i| u32::from(row[at(i) * ch + c]))
                .sum();
            for x in 0..w {
                out[x * ch + c] = ((sum + div / 2) / div) as u8;
                let add = at(x as isize + r as isize + 1);
                let sub = at(x as isize - r as isize);
                sum = sum + u32::from(row[add * ch + c]) - u32::from(row[sub * ch + c]);
            }
        }
    }
}

fn box_v(src: &[u8], dst: &mut [u8], w: usize, h: usize, ch: usize, r: usize) {
    let row_len = w * ch;
    let div = (2 * r + 1) as u32;
    let at = |i: isize| i.clamp(0, h as isize - 1) as usize;
    let row = |y: usize| &src[y * row_len..(y + 1) * row_len];
    let mut sums = vec![0u32; row_len];
    for i in -(r as isize)..=r as isize {
        for (s, &v) in sums.iter_mut().zip(row(at(i))) {
            *s += u32::from(v);
        }
    }
    for y in 0..h {
        for (o, &s) in dst[y * row_len..(y + 1) * row_len].iter_mut().zip(&sums) {
            *o = ((s + div / 2) / div) as u8;
        }
        let add = row(at(y as isize + r as isize + 1));
        let sub = row(at(y as isize - r as isize));
        for ((s, &a), &b) in sums.iter_mut().zip(add).zip(sub) {
            *s = *s + u32::from(a) - u32::from(b);
        }
    }
}

/// Places `img` on a `canvas`-sized background at `gravity` (contain). The canvas has
/// alpha when the image or the background does.
pub(crate) fn pad(
    img: DynamicImage,
    canvas: (u32, u32),
    gravity: Gravity,
    bg: [u8; 4],
) -> DynamicImage {
    let (x, y) = gravity_offset(canvas, (img.width(), img.height()), gravity);
    let (x, y) = (i64::from(x), i64::from(y));
    if img.color().has_alpha() || bg[3] < 255 {
        let mut out = RgbaImage::from_pixel(canvas.0, canvas.1, Rgba(bg));
        image::imageops::replace(&mut out, &img.into_rgba8(), x, y);
        DynamicImage::ImageRgba8(out)
    } else {
        let mut out = RgbImage::from_pixel(canvas.0, canvas.1, Rgb([bg[0], bg[1], bg[2]]));
        image::imageops::replace(&mut out, &img.into_rgb8(), x, y);
        DynamicImage::ImageRgb8(out)
    }
}

/// Composites RGBA onto an opaque `bg` (its alpha is ignored) and drops the alpha channel,
/// reusing the pixel buffer: each RGB triple is written at or before the RGBA pixel it
/// comes from, so compacting in place never overwrites unread data.
pub(crate) fn flatten(img: DynamicImage, bg: [u8; 4]) -> DynamicImage {
    let DynamicImage::ImageRgba8(buf) = img else {
        return img;
    };
    let (w, h) = buf.dimensions();
    let mut v = buf.into_raw();
    let n = v.len() / 4;
    for i in 0..n {
        let [r, g, b, a] = [v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]];
        let a = u32::from(a);
        for (c, s) in [r, g, b].into_iter().enumerate() {
            v[3 * i + c] = ((u32::from(s) * a + u32::from(bg[c]) * (255 - a) + 127) / 255) as u8;
        }
    }
    v.truncate(n * 3);
    match RgbImage::from_raw(w, h, v) {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::new_rgb8(w, h), // unreachable: the length matches w*h*3
    }
}

/// Whether every pixel is fully opaque (or there is no alpha channel).
pub(crate) fn is_opaque(img: &DynamicImage) -> bool {
    match img {
        DynamicImage::ImageRgba8(b) => b.pixels().all(|p| p.0[3] == 255),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_flat_and_spreads_edges() {
        for sigma in [0.5, 2.0, 20.0] {
            let img = RgbImage::from_fn(40, 10, |x, _| {
                if x < 20 {
                    Rgb([0, 0, 0])
                } else {
                    Rgb([200, 200, 200])
                }
            });
            let mut d = DynamicImage::ImageRgb8(img);
            blur(&mut d, sigma);
            let out = d.to_rgb8();
            // Monotonic across the edge, unchanged far away for small sigma.
            let row: Vec<u8> = (0..40).map(|x| out.get_pixel(x, 5).0[0]).collect();
            assert!(
                row.windows(2).all(|w| w[0] <= w[1]),
                "sigma {sigma}: {row:?}"
            );
            assert!(row[19] > 0 && row[20] < 200, "sigma {sigma}: {row:?}");
            if sigma < 1.0 {
                assert_eq!((row[0], row[39]), (0, 200));
            }
        }
    }

    #[test]
    fn blur_transparent_neighbours_do_not_darken() {
        let img = RgbaImage::from_fn(20, 4, |x, _| {
            if x < 10 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        let mut d = DynamicImage::ImageRgba8(img);
        blur(&mut d, 2.0);
        for p in d.to_rgba8().pixels() {
            if p.0[3] > 16 {
                assert!(p.0[0] > 240, "{p:?}");
            }
        }
    }

    #[test]
    fn effect_cost_is_bounded_by_pixels_not_sigma() {
        // Small images keep the exact kernel up to the box threshold.
        assert!(uses_exact_kernel(6.0, 1 << 20));
        assert!(!uses_exact_kernel(6.5, 1 << 20));
        // Large ones switch to the boxes above σ 2: never more than 13 taps per sample.
        assert!(uses_exact_kernel(2.0, 40_000_000));
        assert!(!uses_exact_kernel(2.1, 40_000_000));
        assert!(!uses_exact_kernel(100.0, 40_000_000));
        for sigma in [0.3f32, 1.0, 2.0, 3.0, 6.0, 10.0, 100.0] {
            let exact = uses_exact_kernel(sigma, 40_000_000);
            assert!(!exact || exact_taps(sigma) <= 13, "sigma {sigma}");
        }
    }

    #[test]
    fn box_approximation_is_close_to_the_exact_kernel() {
        // What a large output gets at σ 2..6 instead of the exact kernel.
        let (w, h) = (64, 8);
        let src: Vec<u8> = (0..w * h * 3)
            .map(|i| if (i / 3) % w < w / 2 { 20 } else { 230 })
            .collect();
        for sigma in [2.5f32, 4.0, 6.0] {
            let mut exact = src.clone();
            let mut tmp = vec![0u8; src.len()];
            let k = gaussian_kernel(sigma);
            convolve_h(&exact.clone(), &mut tmp, w, h, 3, &k);
            convolve_v(&tmp, &mut exact, w, h, 3, &k);
            let mut boxed = src.clone();
            for size in box_sizes(sigma) {
                let r = (size - 1) / 2;
                box_h(&boxed, &mut tmp, w, h, 3, r);
                box_v(&tmp, &mut boxed, w, h, 3, r);
            }
            let worst = exact
                .iter()
                .zip(&boxed)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 8, "sigma {sigma}: max difference {worst}");
        }
    }

    #[test]
    fn sharpen_increases_edge_contrast() {
        let img = RgbImage::from_fn(20, 4, |x, _| {
            if x < 10 {
                Rgb([100, 100, 100])
            } else {
                Rgb([150, 150, 150])
            }
        });
        let mut d = DynamicImage::ImageRgb8(img);
        sharpen(&mut d, 1.0);
        let out = d.to_rgb8();
        assert!(out.get_pixel(9, 1).0[0] < 100);
        assert!(out.get_pixel(10, 1).0[0] > 150);
        assert_eq!(out.get_pixel(0, 1).0[0], 100);
    }

    #[test]
    fn flatten_onto_background() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([0, 0, 255, 0]));
        img.put_pixel(1, 0, Rgba([0, 0, 255, 255]));
        let out = flatten(DynamicImage::ImageRgba8(img), [255, 0, 0, 255]).to_rgb8();
        assert_eq!(out.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [0, 0, 255]);
    }

    #[test]
    fn pad_places_by_gravity() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([0, 0, 0])));
        let out = pad(img, (4, 6), Gravity::South, [255, 255, 255, 255]).to_rgb8();
        assert_eq!(out.dimensions(), (4, 6));
        assert_eq!(out.get_pixel(1, 5).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(0, 5).0, [255, 255, 255]);
    }
}

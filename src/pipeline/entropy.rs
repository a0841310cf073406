//! `g=entropy` for cover crops: keep the busiest part of the image.
//!
//! Same idea as sharp/libvips' `entropy` strategy: starting from the whole resized image,
//! repeatedly compare a strip at each end of the axis that is too long and cut the one whose
//! luminance histogram has the lower Shannon entropy, until the window has the target size.

use image::DynamicImage;

/// Top-left corner of the `win`-sized window of highest entropy in `img`.
pub(crate) fn entropy_window(img: &DynamicImage, win: (u32, u32)) -> (u32, u32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (tw, th) = ((win.0 as usize).min(w), (win.1 as usize).min(h));
    let luma = luminance(img);
    let (mut x0, mut x1, mut y0, mut y1) = (0usize, w, 0usize, h);
    while x1 - x0 > tw {
        let excess = x1 - x0 - tw;
        // Strips of ~1/8 of what is left to cut: few iterations, fine enough steps.
        let s = excess.div_ceil(8).max(1);
        let left = entropy(&luma, w, x0..x0 + s, y0..y1);
        let right = entropy(&luma, w, x1 - s..x1, y0..y1);
        if left < right {
            x0 += s;
        } else {
            x1 -= s;
        }
    }
    while y1 - y0 > th {
        let excess = y1 - y0 - th;
        let s = excess.div_ceil(8).max(1);
        let top = entropy(&luma, w, x0..x1, y0..y0 + s);
        let bottom = entropy(&luma, w, x0..x1, y1 - s..y1);
        if top < bottom {
            y0 += s;
        } else {
            y1 -= s;
        }
    }
    (x0 as u32, y0 as u32)
}

/// Rec. 601 luma, one byte per pixel.
fn luminance(img: &DynamicImage) -> Vec<u8> {
    let (bytes, ch) = match img {
        DynamicImage::ImageRgba8(b) => (b.as_raw().as_slice(), 4),
        DynamicImage::ImageRgb8(b) => (b.as_raw().as_slice(), 3),
        other => return other.to_luma8().into_raw(),
    };
    bytes
        .chunks_exact(ch)
        .map(|p| {
            ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500) / 1000)
                as u8
        })
        .collect()
}

fn entropy(
    luma: &[u8],
    stride: usize,
    xs: std::ops::Range<usize>,
    ys: std::ops::Range<usize>,
) -> f64 {
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    for y in ys {
        for &v in &luma[y * stride + xs.start..y * stride + xs.end] {
            hist[v as usize] += 1;
            n += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn noise(x: u32, y: u32) -> u8 {
        // Deterministic hash noise.
        let mut v = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
        v ^= v >> 15;
        v = v.wrapping_mul(0x2C1B_3C6D);
        (v >> 24) as u8
    }

    #[test]
    fn picks_textured_side() {
        // Left half flat grey, right half noise: the window lands on the right.
        let img = RgbImage::from_fn(100, 40, |x, y| {
            if x < 50 {
                Rgb([128, 128, 128])
            } else {
                let n = noise(x, y);
                Rgb([n, n, n])
            }
        });
        let (x, y) = entropy_window(&DynamicImage::ImageRgb8(img.clone()), (40, 40));
        assert!(x >= 50, "x = {x}");
        assert_eq!(y, 0);
        // Rotated clockwise: the noise is at the bottom.
        let t = image::imageops::rotate90(&img);
        let (x, y) = entropy_window(&DynamicImage::ImageRgb8(t), (40, 40));
        assert_eq!(x, 0);
        assert!(y >= 50, "y = {y}");
    }
}

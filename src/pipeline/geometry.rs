//! Pure size and placement arithmetic: orientation algebra, crop clamping, the `fit`
//! rules, gravity offsets and the JPEG shrink-on-load factor.
//!
//! Kept free of pixels so every rule can be checked with table tests.

use crate::params::{CropRect, Fit, Gravity};
use image::metadata::Orientation;

/// An element of the square's symmetry group: rotate `rot` quarter turns clockwise, then
/// mirror left-right when `flip`. EXIF orientation, `rot` and `flip` are composed into one
/// of these so the pixels are moved once, and so crop rectangles can be mapped back into
/// the stored (unoriented) image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Orient {
    pub rot: u8,
    pub flip: bool,
}

impl Orient {
    #[cfg(test)]
    pub const IDENTITY: Orient = Orient {
        rot: 0,
        flip: false,
    };

    pub fn from_image(o: Orientation) -> Orient {
        let (rot, flip) = match o {
            Orientation::NoTransforms => (0, false),
            Orientation::Rotate90 => (1, false),
            Orientation::Rotate180 => (2, false),
            Orientation::Rotate270 => (3, false),
            Orientation::FlipHorizontal => (0, true),
            // A vertical flip is a half turn followed by a mirror.
            Orientation::FlipVertical => (2, true),
            Orientation::Rotate90FlipH => (1, true),
            Orientation::Rotate270FlipH => (3, true),
        };
        Orient { rot, flip }
    }

    pub fn to_image(self) -> Orientation {
        match (self.rot % 4, self.flip) {
            (0, false) => Orientation::NoTransforms,
            (1, false) => Orientation::Rotate90,
            (2, false) => Orientation::Rotate180,
            (3, false) => Orientation::Rotate270,
            (0, true) => Orientation::FlipHorizontal,
            (2, true) => Orientation::FlipVertical,
            (1, true) => Orientation::Rotate90FlipH,
            _ => Orientation::Rotate270FlipH,
        }
    }

    /// `self`, then `quarters` clockwise quarter turns. A rotation after a mirror equals the
    /// mirror after the opposite rotation.
    pub fn then_rotate(self, quarters: u8) -> Orient {
        let q = quarters % 4;
        let rot = if self.flip {
            (self.rot + 4 - q) % 4
        } else {
            (self.rot + q) % 4
        };
        Orient {
            rot,
            flip: self.flip,
        }
    }

    /// `self`, then a left-right mirror.
    pub fn then_flip_h(self) -> Orient {
        Orient {
            rot: self.rot,
            flip: !self.flip,
        }
    }

    /// `self`, then a top-bottom mirror (= half turn + left-right mirror; the half turn
    /// commutes with the mirror).
    pub fn then_flip_v(self) -> Orient {
        Orient {
            rot: (self.rot + 2) % 4,
            flip: !self.flip,
        }
    }

    pub fn swaps_axes(self) -> bool {
        self.rot % 2 == 1
    }

    /// Size of the oriented image for a stored image of `w`×`h`.
    pub fn output_dims(self, w: u32, h: u32) -> (u32, u32) {
        if self.swaps_axes() { (h, w) } else { (w, h) }
    }

    pub fn inverse(self) -> Orient {
        if self.flip {
            // Every mirror-containing element is its own inverse.
            self
        } else {
            Orient {
                rot: (4 - self.rot % 4) % 4,
                flip: false,
            }
        }
    }

    /// Maps a continuous point of a `w`×`h` image into the oriented image.
    pub fn map_point(self, w: f64, h: f64, x: f64, y: f64) -> (f64, f64) {
        let (mut x, mut y, mut w, mut h) = (x, y, w, h);
        for _ in 0..self.rot % 4 {
            // Clockwise quarter turn: the left edge becomes the top edge.
            (x, y) = (h - y, x);
            (w, h) = (h, w);
        }
        let _ = h;
        if self.flip {
            x = w - x;
        }
        (x, y)
    }

    /// Maps a rectangle given in oriented coordinates back into a stored image of
    /// `src_w`×`src_h`.
    pub fn unmap_rect(self, src_w: f64, src_h: f64, r: RectF) -> RectF {
        let inv = self.inverse();
        let (ow, oh) = if self.swaps_axes() {
            (src_h, src_w)
        } else {
            (src_w, src_h)
        };
        let (ax, ay) = inv.map_point(ow, oh, r.x, r.y);
        let (bx, by) = inv.map_point(ow, oh, r.x + r.w, r.y + r.h);
        RectF {
            x: ax.min(bx),
            y: ay.min(by),
            w: (ax - bx).abs(),
            h: (ay - by).abs(),
        }
    }
}

/// A rectangle with fractional coordinates (crop boxes after shrink-on-load).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RectF {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// An integer rectangle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Clamps a crop to a `w`×`h` image; `None` when it is empty or entirely outside.
pub(crate) fn clamp_crop(c: CropRect, w: u32, h: u32) -> Option<Rect> {
    if c.width == 0 || c.height == 0 || c.x >= w || c.y >= h {
        return None;
    }
    Some(Rect {
        x: c.x,
        y: c.y,
        w: c.width.min(w - c.x),
        h: c.height.min(h - c.y),
    })
}

/// What happens after the resize to reach the requested box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Canvas {
    /// The resized image is the output.
    Exact,
    /// Cut a window of this size at the gravity (cover).
    Crop { w: u32, h: u32 },
    /// Pad to this size with the background at the gravity (contain).
    Pad { w: u32, h: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FitPlan {
    /// Size the (cropped) source is resampled to.
    pub resize: (u32, u32),
    pub canvas: Canvas,
}

fn scaled(v: u32, scale: f64) -> u32 {
    // Saturating float→int cast; never below 1 pixel.
    ((f64::from(v) * scale).round() as u32).max(1)
}

fn divided(v: u32, s: f64) -> u32 {
    ((f64::from(v) / s).round() as u32).max(1)
}

/// Applies the `fit` rules to a `sw`×`sh` source. `None` when neither dimension is given
/// (no resize).
pub(crate) fn plan_fit(
    sw: u32,
    sh: u32,
    w: Option<u32>,
    h: Option<u32>,
    fit: Fit,
    enlarge: bool,
) -> Option<FitPlan> {
    let (fw, fh) = (f64::from(sw.max(1)), f64::from(sh.max(1)));
    let exact = |resize| FitPlan {
        resize,
        canvas: Canvas::Exact,
    };
    let (bw, bh) = match (w, h) {
        (None, None) => return None,
        // One dimension: the other follows the ratio, every fit acts as `inside`.
        (Some(w), None) => {
            let scale = (f64::from(w.max(1)) / fw).min(if enlarge { f64::MAX } else { 1.0 });
            let rw = if scale == 1.0 { sw } else { scaled(sw, scale) };
            return Some(exact((rw, scaled(sh, scale))));
        }
        (None, Some(h)) => {
            let scale = (f64::from(h.max(1)) / fh).min(if enlarge { f64::MAX } else { 1.0 });
            let rh = if scale == 1.0 { sh } else { scaled(sh, scale) };
            return Some(exact((scaled(sw, scale), rh)));
        }
        (Some(w), Some(h)) => (w.max(1), h.max(1)),
    };
    let min_scale = |bw: u32, bh: u32| (f64::from(bw) / fw).min(f64::from(bh) / fh);
    let max_scale = |bw: u32, bh: u32| (f64::from(bw) / fw).max(f64::from(bh) / fh);
    // Without enlarge, shrink the box (keeping its ratio) until the fit no longer upscales.
    let s = match fit {
        Fit::Inside | Fit::Contain => min_scale(bw, bh),
        Fit::Cover | Fit::Outside | Fit::Fill => max_scale(bw, bh),
    };
    let (bw, bh) = if !enlarge && s > 1.0 {
        (divided(bw, s), divided(bh, s))
    } else {
        (bw, bh)
    };
    Some(match fit {
        Fit::Fill => exact((bw, bh)),
        Fit::Inside | Fit::Contain => {
            let sc = min_scale(bw, bh);
            let resize = (scaled(sw, sc).min(bw), scaled(sh, sc).min(bh));
            if fit == Fit::Contain && resize != (bw, bh) {
                FitPlan {
                    resize,
                    canvas: Canvas::Pad { w: bw, h: bh },
                }
            } else {
                exact(resize)
            }
        }
        Fit::Outside => {
            let sc = max_scale(bw, bh);
            exact((scaled(sw, sc).max(bw), scaled(sh, sc).max(bh)))
        }
        Fit::Cover => {
            let sc = max_scale(bw, bh);
            let resize = (scaled(sw, sc).max(bw), scaled(sh, sc).max(bh));
            if resize == (bw, bh) {
                exact(resize)
            } else {
                FitPlan {
                    resize,
                    canvas: Canvas::Crop { w: bw, h: bh },
                }
            }
        }
    })
}

/// Top-left position of an `inner` box placed inside `outer` at `g` (Entropy → Center).
pub(crate) fn gravity_offset(outer: (u32, u32), inner: (u32, u32), g: Gravity) -> (u32, u32) {
    let dx = outer.0.saturating_sub(inner.0);
    let dy = outer.1.saturating_sub(inner.1);
    let x = match g {
        Gravity::West | Gravity::NorthWest | Gravity::SouthWest => 0,
        Gravity::East | Gravity::NorthEast | Gravity::SouthEast => dx,
        _ => dx / 2,
    };
    let y = match g {
        Gravity::North | Gravity::NorthEast | Gravity::NorthWest => 0,
        Gravity::South | Gravity::SouthEast | Gravity::SouthWest => dy,
        _ => dy / 2,
    };
    (x, y)
}

/// libvips' rule for DCT-domain downscaling: the largest 1/d (d = 8, 4, 2) that keeps the
/// decoded region at least twice the resampled size on both axes, so the following
/// Lanczos3 pass still has enough samples.
pub(crate) fn jpeg_shrink(region: (u32, u32), resize: (u32, u32)) -> u32 {
    for d in [8u64, 4, 2] {
        if u64::from(region.0) >= 2 * d * u64::from(resize.0)
            && u64::from(region.1) >= 2 * d * u64::from(resize.1)
        {
            return d as u32;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(x: u32, y: u32, width: u32, height: u32) -> CropRect {
        CropRect {
            x,
            y,
            width,
            height,
        }
    }

    /// (source, w, h, fit, enlarge, expected resize, expected canvas)
    type FitCase = (
        (u32, u32),
        Option<u32>,
        Option<u32>,
        Fit,
        bool,
        (u32, u32),
        Canvas,
    );

    #[test]
    fn fit_table() {
        use Canvas::*;
        use Fit::*;
        // (source, w, h, fit, enlarge) -> (resize, canvas)
        #[rustfmt::skip]
        let cases: &[FitCase] = &[
            // Only one dimension: acts as inside for every fit.
            ((400, 200), Some(100), None, Inside, false, (100, 50), Exact),
            ((400, 200), Some(100), None, Cover, false, (100, 50), Exact),
            ((400, 200), Some(100), None, Contain, true, (100, 50), Exact),
            ((400, 200), Some(100), None, Fill, false, (100, 50), Exact),
            ((400, 200), Some(100), None, Outside, true, (100, 50), Exact),
            ((400, 200), None, Some(50), Inside, false, (100, 50), Exact),
            ((400, 200), None, Some(50), Cover, true, (100, 50), Exact),
            // One dimension larger than the source.
            ((400, 200), Some(800), None, Inside, false, (400, 200), Exact),
            ((400, 200), Some(800), None, Inside, true, (800, 400), Exact),
            ((400, 200), None, Some(400), Fill, false, (400, 200), Exact),
            ((400, 200), None, Some(400), Fill, true, (800, 400), Exact),
            // Both dimensions, downscale.
            ((400, 200), Some(100), Some(100), Inside, false, (100, 50), Exact),
            ((400, 200), Some(100), Some(100), Inside, true, (100, 50), Exact),
            ((400, 200), Some(100), Some(100), Outside, false, (200, 100), Exact),
            ((400, 200), Some(100), Some(100), Outside, true, (200, 100), Exact),
            ((400, 200), Some(100), Some(100), Cover, false, (200, 100), Crop { w: 100, h: 100 }),
            ((400, 200), Some(100), Some(100), Cover, true, (200, 100), Crop { w: 100, h: 100 }),
            ((400, 200), Some(100), Some(100), Contain, false, (100, 50), Pad { w: 100, h: 100 }),
            ((400, 200), Some(100), Some(100), Contain, true, (100, 50), Pad { w: 100, h: 100 }),
            ((400, 200), Some(100), Some(100), Fill, false, (100, 100), Exact),
            ((400, 200), Some(100), Some(100), Fill, true, (100, 100), Exact),
            // Same ratio: cover/contain need no canvas step.
            ((400, 200), Some(200), Some(100), Cover, false, (200, 100), Exact),
            ((400, 200), Some(200), Some(100), Contain, false, (200, 100), Exact),
            // Both dimensions, box larger than the source.
            ((100, 50), Some(400), Some(400), Inside, false, (100, 50), Exact),
            ((100, 50), Some(400), Some(400), Inside, true, (400, 200), Exact),
            ((100, 50), Some(400), Some(400), Outside, false, (100, 50), Exact),
            ((100, 50), Some(400), Some(400), Outside, true, (800, 400), Exact),
            ((100, 50), Some(400), Some(400), Cover, false, (100, 50), Crop { w: 50, h: 50 }),
            ((100, 50), Some(400), Some(400), Cover, true, (800, 400), Crop { w: 400, h: 400 }),
            ((100, 50), Some(400), Some(400), Contain, false, (100, 50), Pad { w: 100, h: 100 }),
            ((100, 50), Some(400), Some(400), Contain, true, (400, 200), Pad { w: 400, h: 400 }),
            ((100, 50), Some(400), Some(100), Fill, false, (100, 25), Exact),
            ((100, 50), Some(400), Some(100), Fill, true, (400, 100), Exact),
            // Mixed: one axis up, one down.
            ((100, 50), Some(200), Some(25), Inside, false, (50, 25), Exact),
            ((100, 50), Some(200), Some(25), Cover, false, (100, 50), Crop { w: 100, h: 13 }),
            // Rounding and the 1 px floor.
            ((1000, 3), Some(10), None, Inside, false, (10, 1), Exact),
            ((3, 3), Some(2), None, Inside, false, (2, 2), Exact),
            ((999, 333), Some(100), Some(100), Inside, false, (100, 33), Exact),
        ];
        for &(src, w, h, fit, enlarge, resize, canvas) in cases {
            let plan = plan_fit(src.0, src.1, w, h, fit, enlarge).expect("plan");
            assert_eq!(
                (plan.resize, plan.canvas),
                (resize, canvas),
                "src {src:?} w {w:?} h {h:?} {fit:?} enlarge {enlarge}"
            );
        }
        assert_eq!(plan_fit(10, 10, None, None, Fit::Cover, true), None);
    }

    #[test]
    fn gravity_table() {
        use Gravity::*;
        let cases = [
            (Center, (50, 25)),
            (Entropy, (50, 25)),
            (North, (50, 0)),
            (South, (50, 50)),
            (East, (100, 25)),
            (West, (0, 25)),
            (NorthEast, (100, 0)),
            (NorthWest, (0, 0)),
            (SouthEast, (100, 50)),
            (SouthWest, (0, 50)),
        ];
        for (g, want) in cases {
            assert_eq!(gravity_offset((200, 100), (100, 50), g), want, "{g:?}");
        }
    }

    #[test]
    fn crop_table() {
        let r = |x, y, w, h| Some(Rect { x, y, w, h });
        let cases = [
            (crop(0, 0, 10, 10), r(0, 0, 10, 10)),
            (crop(90, 40, 50, 50), r(90, 40, 10, 10)),
            (crop(100, 0, 5, 5), None),
            (crop(0, 50, 5, 5), None),
            (crop(5, 5, 0, 5), None),
            (crop(5, 5, 5, 0), None),
            (crop(0, 0, u32::MAX, u32::MAX), r(0, 0, 100, 50)),
        ];
        for (c, want) in cases {
            assert_eq!(clamp_crop(c, 100, 50), want, "{c:?}");
        }
    }

    #[test]
    fn shrink_table() {
        let cases = [
            ((4000, 3000), (400, 300), 4),
            ((4000, 3000), (250, 187), 8),
            ((4000, 3000), (250, 188), 4),
            ((4000, 3000), (1000, 750), 2),
            ((4000, 3000), (1001, 750), 1),
            ((4000, 3000), (4000, 3000), 1),
            ((4000, 3000), (100, 3000), 1),
        ];
        for (region, resize, d) in cases {
            assert_eq!(jpeg_shrink(region, resize), d, "{region:?} -> {resize:?}");
        }
    }

    /// A 3×2 image with distinct pixel values, oriented the slow way with `image`.
    fn oriented(o: Orient) -> image::GrayImage {
        let img = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(y * 3 + x) as u8]));
        let mut d = image::DynamicImage::ImageLuma8(img);
        d.apply_orientation(o.to_image());
        d.to_luma8()
    }

    fn all() -> Vec<Orient> {
        (0..8)
            .map(|i| Orient {
                rot: i % 4,
                flip: i >= 4,
            })
            .collect()
    }

    #[test]
    fn orient_composition_matches_sequential_ops() {
        for base in all() {
            let seq = image::DynamicImage::ImageLuma8(oriented(base));
            for q in 0..4u8 {
                let mut s = seq.clone();
                s.apply_orientation(
                    Orient {
                        rot: q,
                        flip: false,
                    }
                    .to_image(),
                );
                assert_eq!(
                    s.to_luma8(),
                    oriented(base.then_rotate(q)),
                    "{base:?} rot {q}"
                );
            }
            assert_eq!(
                seq.fliph().to_luma8(),
                oriented(base.then_flip_h()),
                "{base:?} fliph"
            );
            assert_eq!(
                seq.flipv().to_luma8(),
                oriented(base.then_flip_v()),
                "{base:?} flipv"
            );
        }
    }

    #[test]
    fn orient_exif_and_inverse() {
        for e in 1..=8u8 {
            let o = Orient::from_image(Orientation::from_exif(e).expect("valid"));
            assert_eq!(o.to_image().to_exif(), e);
            let mut d = image::DynamicImage::ImageLuma8(oriented(o));
            d.apply_orientation(o.inverse().to_image());
            assert_eq!(d.to_luma8(), oriented(Orient::IDENTITY), "exif {e}");
        }
    }

    #[test]
    fn unmap_rect_matches_pixels() {
        // Every single-pixel rectangle of the oriented image maps back to the source pixel
        // holding the same value.
        for o in all() {
            let img = oriented(o);
            for y in 0..img.height() {
                for x in 0..img.width() {
                    let r = o.unmap_rect(
                        3.0,
                        2.0,
                        RectF {
                            x: f64::from(x),
                            y: f64::from(y),
                            w: 1.0,
                            h: 1.0,
                        },
                    );
                    assert_eq!((r.w, r.h), (1.0, 1.0));
                    let v = (r.y as u32 * 3 + r.x as u32) as u8;
                    assert_eq!(img.get_pixel(x, y).0[0], v, "{o:?} at {x},{y}");
                }
            }
        }
    }
}

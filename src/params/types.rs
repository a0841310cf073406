//! The typed, canonical transform. Everything downstream (cache key, pipeline) sees only
//! these values, never the raw query string.

use crate::media::OutputFormat;

/// How the output box is filled (sharp's `fit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Keep the ratio, fit within the box.
    #[default]
    Inside,
    /// Fill the box, crop the overflow (anchored by `Gravity`).
    Cover,
    /// Fit within the box, pad to the exact box with the background colour.
    Contain,
    /// Stretch to the exact box, ignoring the ratio.
    Fill,
    /// Keep the ratio, cover the box without cropping (output may exceed the box).
    Outside,
}

impl Fit {
    const ALL: [Fit; 5] = [
        Fit::Inside,
        Fit::Cover,
        Fit::Contain,
        Fit::Fill,
        Fit::Outside,
    ];

    /// The `fit=` value; also the spelling in the canonical transform text (hashed into
    /// cache keys and ETags, so it must never change).
    pub fn name(self) -> &'static str {
        match self {
            Fit::Inside => "inside",
            Fit::Cover => "cover",
            Fit::Contain => "contain",
            Fit::Fill => "fill",
            Fit::Outside => "outside",
        }
    }

    pub fn from_name(s: &str) -> Option<Fit> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Crop / placement anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Gravity {
    #[default]
    Center,
    North,
    South,
    East,
    West,
    NorthEast,
    NorthWest,
    SouthEast,
    SouthWest,
    /// Pick the region with the highest Shannon entropy (only meaningful for cover crops;
    /// anywhere else it acts as `Center`).
    Entropy,
}

impl Gravity {
    /// `g=` values (and `watermarks.*.position`), short and long forms.
    const NAMES: [(&'static str, Gravity); 20] = [
        ("center", Gravity::Center),
        ("centre", Gravity::Center),
        ("c", Gravity::Center),
        ("n", Gravity::North),
        ("north", Gravity::North),
        ("s", Gravity::South),
        ("south", Gravity::South),
        ("e", Gravity::East),
        ("east", Gravity::East),
        ("w", Gravity::West),
        ("west", Gravity::West),
        ("ne", Gravity::NorthEast),
        ("northeast", Gravity::NorthEast),
        ("nw", Gravity::NorthWest),
        ("northwest", Gravity::NorthWest),
        ("se", Gravity::SouthEast),
        ("southeast", Gravity::SouthEast),
        ("sw", Gravity::SouthWest),
        ("southwest", Gravity::SouthWest),
        ("entropy", Gravity::Entropy),
    ];

    pub fn from_name(s: &str) -> Option<Gravity> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|&(_, g)| g)
    }

    /// The spelling in the canonical transform text, which the cache key and every ETag
    /// hash: it must never change. (It is what `Debug` printed when ETags were first
    /// issued, written out so that renaming a variant cannot change it.)
    pub fn canonical_name(self) -> &'static str {
        match self {
            Gravity::Center => "Center",
            Gravity::North => "North",
            Gravity::South => "South",
            Gravity::East => "East",
            Gravity::West => "West",
            Gravity::NorthEast => "NorthEast",
            Gravity::NorthWest => "NorthWest",
            Gravity::SouthEast => "SouthEast",
            Gravity::SouthWest => "SouthWest",
            Gravity::Entropy => "Entropy",
        }
    }
}

/// A source rectangle in the coordinates of the image after orientation, `rot` and `flip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CropRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A fully resolved transform: every default filled in, `dpr` folded into the sizes,
/// `allowed_widths` applied, the output format decided. Two requests that mean the same
/// thing produce equal `Transform`s.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Target width in device pixels (after `dpr`, `allowed_widths` and the max limits).
    pub width: Option<u32>,
    /// Target height in device pixels.
    pub height: Option<u32>,
    pub fit: Fit,
    pub gravity: Gravity,
    /// Whether the output may be larger than the (cropped) source.
    pub enlarge: bool,
    pub format: OutputFormat,
    /// 1..=100; meaningless for PNG (always lossless) and GIF (palette), where it is 0.
    pub quality: u8,
    /// RGBA padding / flattening colour. `None` means the default: white for JPEG
    /// (which has no alpha), transparent for the other formats.
    pub background: Option<[u8; 4]>,
    /// Gaussian blur sigma, 0.3..=100.
    pub blur: Option<f32>,
    /// Unsharp-mask sigma, 0.3..=10.
    pub sharpen: Option<f32>,
    /// Extra clockwise rotation after EXIF orientation: 0, 90, 180 or 270.
    pub rotate: u16,
    pub flip_h: bool,
    pub flip_v: bool,
    pub crop: Option<CropRect>,
    /// Name of a configured watermark.
    pub watermark: Option<String>,
    /// `frame=first`: only the first frame of an animated source. Canonical: set only when
    /// it changes the output (an animated GIF/WebP source and an output format that would
    /// otherwise keep the animation).
    pub first_frame: bool,
}

impl Transform {
    /// The identity transform for a given output format (used for tests and benches).
    pub fn for_format(format: OutputFormat, quality: u8) -> Self {
        Transform {
            width: None,
            height: None,
            fit: Fit::Inside,
            gravity: Gravity::Center,
            enlarge: false,
            format,
            quality,
            background: None,
            blur: None,
            sharpen: None,
            rotate: 0,
            flip_h: false,
            flip_v: false,
            crop: None,
            watermark: None,
            first_frame: false,
        }
    }
}

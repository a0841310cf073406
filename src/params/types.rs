//! The typed, canonical transform. Everything downstream (cache key, pipeline) sees only
//! these values, never the raw query string.

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

/// Encodings we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    Png,
    Webp,
    Avif,
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
        }
    }

    pub fn supports_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg)
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
    /// 1..=100; meaningless for PNG (always lossless), where it is set to 0.
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
        }
    }
}

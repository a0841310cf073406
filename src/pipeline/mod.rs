//! TEMPORARY STUB until the real pipeline lands.
use crate::params::{Gravity, OutputFormat, Transform};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}
#[derive(Clone, Copy, Debug)]
pub struct SourceInfo {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
}
pub struct RenderOptions<'a> {
    pub max_source_pixels: u64,
    pub avif_speed: u8,
    pub watermark: Option<&'a Watermark>,
}
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub format: OutputFormat,
}
pub struct Watermark;
impl Watermark {
    pub fn from_bytes(
        _b: &[u8],
        _p: Gravity,
        _o: f32,
        _s: f32,
    ) -> Result<Watermark, PipelineError> {
        Ok(Watermark)
    }
}
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error("too many pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("invalid {param}: {detail}")]
    InvalidParam { param: &'static str, detail: String },
    #[error("encode: {0}")]
    Encode(String),
}
pub fn probe(input: &[u8]) -> Result<SourceInfo, PipelineError> {
    let r = image::ImageReader::new(std::io::Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| PipelineError::Corrupt(e.to_string()))?;
    let format = match r.format() {
        Some(image::ImageFormat::Jpeg) => SourceFormat::Jpeg,
        Some(image::ImageFormat::Png) => SourceFormat::Png,
        Some(image::ImageFormat::WebP) => SourceFormat::Webp,
        Some(image::ImageFormat::Gif) => SourceFormat::Gif,
        _ => {
            return Err(PipelineError::Unsupported(
                "not an image format we decode".into(),
            ));
        }
    };
    let (width, height) = r
        .into_dimensions()
        .map_err(|_| PipelineError::Corrupt("cannot read the image header".into()))?;
    Ok(SourceInfo {
        format,
        width,
        height,
        has_alpha: format != SourceFormat::Jpeg,
    })
}
pub fn render(input: &[u8], t: &Transform, _o: &RenderOptions) -> Result<Rendered, PipelineError> {
    let img = image::load_from_memory(input).map_err(|e| PipelineError::Corrupt(e.to_string()))?;
    let img = match (t.width, t.height) {
        (Some(w), Some(h)) => img.resize(w, h, image::imageops::FilterType::Triangle),
        (Some(w), None) => img.resize(w, u32::MAX, image::imageops::FilterType::Triangle),
        (None, Some(h)) => img.resize(u32::MAX, h, image::imageops::FilterType::Triangle),
        _ => img,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let fmt = match t.format {
        OutputFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::Jpeg,
    };
    let img = if fmt == image::ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    } else {
        img
    };
    img.write_to(&mut out, fmt)
        .map_err(|e| PipelineError::Encode(e.to_string()))?;
    Ok(Rendered {
        width: img.width(),
        height: img.height(),
        bytes: out.into_inner(),
        format: t.format,
    })
}

//! `[limits]`, `[format]`, `[cache_control]`, `[watermarks.*]` and `[originals]`: what
//! delivery reads.

use super::*;

pub(super) fn validate_limits(l: &raw::Limits, errs: &mut Vec<String>) -> LimitsConfig {
    let nonzero = |key: &str, v: u64, errs: &mut Vec<String>| {
        if v == 0 {
            errs.push(format!("{key}: must be at least 1"));
        }
    };
    nonzero("limits.max_source_bytes", l.max_source_bytes.0, errs);
    nonzero("limits.max_source_pixels", l.max_source_pixels, errs);
    nonzero("limits.max_width", l.max_width as u64, errs);
    nonzero("limits.max_height", l.max_height as u64, errs);
    nonzero("limits.max_upload_bytes", l.max_upload_bytes.0, errs);
    // Render cost caps.
    nonzero("limits.max_output_pixels", l.max_output_pixels, errs);
    nonzero(
        "limits.max_avif_output_pixels",
        l.max_avif_output_pixels,
        errs,
    );
    nonzero(
        "limits.max_animation_frames",
        u64::from(l.max_animation_frames),
        errs,
    );
    let max_animation_pixels = l
        .max_animation_pixels
        .unwrap_or(l.max_source_pixels.saturating_mul(4));
    nonzero("limits.max_animation_pixels", max_animation_pixels, errs);
    let mut allowed_widths = l.allowed_widths.clone().unwrap_or_default();
    allowed_widths.sort_unstable();
    allowed_widths.dedup();
    if let Some(l) = &l.allowed_widths
        && l.is_empty()
    {
        errs.push("limits.allowed_widths: when set, list at least one width".into());
    }
    if allowed_widths.iter().any(|&w| w == 0 || w > l.max_width) {
        errs.push("limits.allowed_widths: every width must be 1..=limits.max_width".into());
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    LimitsConfig {
        max_source_bytes: l.max_source_bytes.0,
        max_source_pixels: l.max_source_pixels,
        max_width: l.max_width,
        max_height: l.max_height,
        max_upload_bytes: l.max_upload_bytes.0,
        allowed_widths,
        transform_concurrency: if l.transform_concurrency == 0 {
            cores
        } else {
            l.transform_concurrency
        },
        transform_queue: l.transform_queue,
        max_output_pixels: l.max_output_pixels,
        max_avif_output_pixels: l.max_avif_output_pixels,
        max_animation_frames: l.max_animation_frames,
        max_animation_pixels,
    }
}

pub(super) fn validate_format(f: &raw::Format, errs: &mut Vec<String>) -> FormatConfig {
    let default = match f.default.as_str() {
        "source" => DefaultFormat::Source,
        "auto" => DefaultFormat::Auto,
        other => match OutputFormat::from_name_or_alias(other) {
            Some(fm) => DefaultFormat::Fixed(fm),
            None => {
                errs.push(format!(
                    "format.default: `{other}` is not one of source, auto, jpeg, png, webp, avif, gif"
                ));
                DefaultFormat::Source
            }
        },
    };
    for (key, q) in [
        ("format.jpeg_quality", f.jpeg_quality),
        ("format.webp_quality", f.webp_quality),
        ("format.avif_quality", f.avif_quality),
    ] {
        if !(1..=100).contains(&q) {
            errs.push(format!("{key}: must be 1..=100"));
        }
    }
    let encoder = AvifEncoder::from_name(&f.avif_encoder).unwrap_or_else(|| {
        errs.push(format!(
            "format.avif_encoder: `{}` is not one of aom, rav1e",
            f.avif_encoder
        ));
        AvifEncoder::Aom
    });
    let speed = f.avif_speed.unwrap_or(encoder.default_speed());
    if !encoder.speeds().contains(&speed) {
        let speeds = encoder.speeds();
        let (lo, hi) = (speeds.start(), speeds.end());
        errs.push(format!(
            "format.avif_speed: must be {lo}..={hi} for format.avif_encoder = {}",
            f.avif_encoder
        ));
    }
    if default == DefaultFormat::Fixed(OutputFormat::Avif) && !f.avif {
        errs.push("format.default: `avif` while format.avif = false".into());
    }
    FormatConfig {
        default,
        avif: f.avif,
        jpeg_quality: f.jpeg_quality,
        webp_quality: f.webp_quality,
        avif_quality: f.avif_quality,
        avif_settings: AvifSettings { encoder, speed },
    }
}

pub(super) fn validate_cache_control(
    cc: &raw::CacheControl,
    errs: &mut Vec<String>,
) -> CacheControlConfig {
    for (key, v) in [
        ("cache_control.public", &cc.public),
        ("cache_control.private", &cc.private),
        ("cache_control.not_found", &cc.not_found),
    ] {
        if axum::http::HeaderValue::from_str(v).is_err() {
            errs.push(format!("{key}: not a valid header value"));
        }
    }
    CacheControlConfig {
        public: cc.public.clone(),
        private: cc.private.clone(),
        not_found: cc.not_found.clone(),
        share_max_age: cc.share_max_age,
    }
}

pub(super) fn validate_watermarks(
    raw: &BTreeMap<String, raw::Watermark>,
    errs: &mut Vec<String>,
) -> BTreeMap<String, WatermarkConfig> {
    let mut watermarks = BTreeMap::new();
    for (name, w) in raw {
        let key = format!("watermarks.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(format!(
                "{key}: names use letters, digits, `-` and `_` only"
            ));
        }
        let position = Gravity::from_name(&w.position).unwrap_or_else(|| {
            errs.push(format!(
                "{key}.position: `{}` is not a gravity (center, n, s, e, w, ne, nw, se, sw)",
                w.position
            ));
            Gravity::SouthEast
        });
        if !(0.0..=1.0).contains(&w.opacity) {
            errs.push(format!("{key}.opacity: must be 0..=1"));
        }
        if !(w.scale > 0.0 && w.scale <= 1.0) {
            errs.push(format!("{key}.scale: must be in (0, 1]"));
        }
        watermarks.insert(
            name.clone(),
            WatermarkConfig {
                file: PathBuf::from(&w.file),
                position,
                opacity: w.opacity,
                scale: w.scale,
            },
        );
    }
    watermarks
}

pub(super) fn validate_originals(o: &raw::Originals, errs: &mut Vec<String>) -> MetadataPolicy {
    MetadataPolicy::from_name(&o.metadata).unwrap_or_else(|| {
        errs.push(format!(
            "originals.metadata: `{}` is not `owner`, `strip` or `keep`",
            o.metadata
        ));
        MetadataPolicy::Owner
    })
}

//! Query string → typed, canonical request. No I/O. Two requests that mean the same thing
//! (parameter order, defaults spelled out or not, `dpr` folded into sizes) end up equal, and
//! so share one cache entry and one ETag.

mod error;
mod types;

pub use error::ParamsError;
pub use types::*;

use crate::media::{OutputFormat, SourceFormat};
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Query parameters that belong to CloudFront signed URLs: never part of a transform, and
/// what CloudFront strips before it rebuilds the viewer URL (`auth::cloudfront`).
pub const SIGNATURE_PARAMS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// The share id a share link carries next to its signature; not part of a transform either.
pub const SHARE_PARAM: &str = "share";

/// How the output format is chosen before the source is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatChoice {
    Fixed(OutputFormat),
    /// Negotiate from `Accept` (`fm=auto`).
    Auto,
    /// Keep the source's format where we can write it.
    Source,
}

/// The transform as far as it can be decided from the URL alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// `None`: no transform parameter at all; serve the original bytes untouched.
    pub transform: Option<PendingTransform>,
    /// `fm=json`: the image's facts (SPEC §10) instead of an image; `transform` is `None`.
    pub facts: bool,
    pub share: Option<String>,
    pub has_signature: bool,
}

/// A transform whose format (and so quality and background defaults) still depends on
/// the source and the `Accept` header.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingTransform {
    pub base: Transform,
    pub format: FormatChoice,
    pub quality: Option<u8>,
}

/// What the parser needs from the configuration (built by `config`).
#[derive(Clone, Debug)]
pub struct ParseSettings {
    pub max_width: u32,
    pub max_height: u32,
    pub allowed_widths: Vec<u32>,
    /// What an absent `fm` means.
    pub default_format: FormatChoice,
    pub avif_enabled: bool,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub watermarks: BTreeSet<String>,
    /// `[presets.NAME] params`: the raw query each `p=NAME` stands for (SPEC §11).
    pub presets: BTreeMap<String, String>,
}

/// The query's parameters, percent-decoded, in order.
fn decoded_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ParamsError> {
    let mut pairs = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (rname, rvalue) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode_str(rname)
            .decode_utf8()
            .map_err(|_| ParamsError::NameNotUtf8)?;
        let value = percent_decode_str(rvalue)
            .decode_utf8()
            .map_err(|_| bad(&name, "value is not UTF-8"))?;
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// `p=NAME` replaced by the preset's parameters; parameters given next to `p` override the
/// preset's. So a preset and the same spelled-out parameters parse to one transform (one
/// variant, one ETag).
fn expand_preset(
    pairs: Vec<(String, String)>,
    s: &ParseSettings,
) -> Result<Vec<(String, String)>, ParamsError> {
    let Some(name) = pairs
        .iter()
        .find(|(n, _)| n == PRESET_PARAM)
        .map(|(_, v)| v.clone())
    else {
        return Ok(pairs);
    };
    let Some(preset) = s.presets.get(&name) else {
        return Err(bad(PRESET_PARAM, "no preset of that name is configured"));
    };
    let mut out: Vec<(String, String)> = decoded_pairs(Some(preset))?
        .into_iter()
        .filter(|(n, _)| !pairs.iter().any(|(given, _)| given == n))
        .collect();
    out.extend(pairs.into_iter().filter(|(n, _)| n != PRESET_PARAM));
    Ok(out)
}

/// `p`: a named preset (SPEC §11).
pub const PRESET_PARAM: &str = "p";

/// `delivery.strict` for a caller that is neither admin nor signed (SPEC §11): only `p`,
/// `w` (one of `limits.allowed_widths`, exactly), `dpr` (1, 2 or 3), `fm=auto` and `v`;
/// next to `p` only `dpr`, `fm=auto` and `v`. Anything else is 400 naming it.
pub fn check_strict(query: Option<&str>, s: &ParseSettings) -> Result<(), ParamsError> {
    let pairs = decoded_pairs(query)?;
    let preset = pairs.iter().any(|(n, _)| n == PRESET_PARAM);
    for (name, value) in &pairs {
        let name = name.as_str();
        if SIGNATURE_PARAMS.contains(&name) || name == SHARE_PARAM {
            continue;
        }
        match name {
            PRESET_PARAM | "v" => {}
            "w" if preset => {
                return Err(bad("w", "strict mode: only dpr, fm=auto and v go with p"));
            }
            "w" => {
                let ok = value
                    .parse::<u32>()
                    .is_ok_and(|w| s.allowed_widths.contains(&w));
                if !ok {
                    return Err(bad(
                        "w",
                        format!(
                            "strict mode: one of limits.allowed_widths {:?}",
                            s.allowed_widths
                        ),
                    ));
                }
            }
            "dpr" => {
                if !matches!(value.as_str(), "1" | "2" | "3") {
                    return Err(bad("dpr", "strict mode: 1, 2 or 3"));
                }
            }
            "fm" => {
                if value != "auto" {
                    return Err(bad("fm", "strict mode: only fm=auto"));
                }
            }
            other => {
                return Err(bad(
                    other,
                    if preset {
                        "strict mode: only dpr, fm=auto and v go with p"
                    } else {
                        "strict mode: only p, w, dpr, fm=auto and v are allowed"
                    },
                ));
            }
        }
    }
    Ok(())
}

fn bad(param: &str, detail: impl Into<String>) -> ParamsError {
    ParamsError::invalid(param, detail)
}

fn parse_int(param: &str, v: &str, lo: u32, hi: u32) -> Result<u32, ParamsError> {
    let n: u32 = v
        .parse()
        .map_err(|_| bad(param, format!("expected an integer {lo}..={hi}")))?;
    if n < lo || n > hi {
        return Err(bad(param, format!("expected an integer {lo}..={hi}")));
    }
    Ok(n)
}

fn parse_num(param: &str, v: &str, lo: f64, hi: f64) -> Result<f64, ParamsError> {
    let n: f64 = v
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| bad(param, format!("expected a number {lo}..={hi}")))?;
    if n < lo || n > hi {
        return Err(bad(param, format!("expected a number {lo}..={hi}")));
    }
    Ok(n)
}

/// Rounds to hundredths so `1`, `1.0` and `1.001` are one variant.
fn canon_f32(n: f64) -> f32 {
    ((n * 100.0).round() / 100.0) as f32
}

fn parse_bg(v: &str) -> Result<[u8; 4], ParamsError> {
    let ok = (v.len() == 6 || v.len() == 8) && v.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(bad("bg", "expected 6 or 8 hex digits (RRGGBB or RRGGBBAA)"));
    }
    let byte = |i: usize| u8::from_str_radix(&v[i..i + 2], 16).unwrap_or(0);
    Ok([
        byte(0),
        byte(2),
        byte(4),
        if v.len() == 8 { byte(6) } else { 255 },
    ])
}

fn parse_crop(v: &str) -> Result<CropRect, ParamsError> {
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() != 4 {
        return Err(bad("crop", "expected x,y,w,h"));
    }
    let mut n = [0u32; 4];
    for (i, p) in parts.iter().enumerate() {
        n[i] = p
            .trim()
            .parse()
            .map_err(|_| bad("crop", "expected four non-negative integers x,y,w,h"))?;
    }
    if n[2] == 0 || n[3] == 0 {
        return Err(bad("crop", "width and height must be at least 1"));
    }
    Ok(CropRect {
        x: n[0],
        y: n[1],
        width: n[2],
        height: n[3],
    })
}

/// Parses a raw query string (without the `?`).
pub fn parse(query: Option<&str>, s: &ParseSettings) -> Result<Parsed, ParamsError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut w = None;
    let mut h = None;
    let mut dpr = 1.0f64;
    let mut fit = None;
    let mut gravity = None;
    let mut enlarge = false;
    let mut format = None;
    let mut quality = None;
    let mut background = None;
    let mut blur = None;
    let mut sharpen = None;
    let mut rotate = 0u16;
    let mut flip = (false, false);
    let mut crop = None;
    let mut watermark = None;
    let mut first_frame = false;
    let mut share = None;
    let mut has_signature = false;
    let mut any_transform = false;
    let mut facts = false;
    // The first transform parameter, named when it comes with `fm=json`.
    let mut first_transform: Option<String> = None;

    let pairs = decoded_pairs(query)?;
    // Given twice is refused before a preset is expanded (a preset's own parameters are
    // checked once, when the configuration is loaded).
    for (name, _) in &pairs {
        if !SIGNATURE_PARAMS.contains(&name.as_str()) && !seen.insert(name.clone()) {
            return Err(bad(name, "given more than once"));
        }
    }
    seen.clear();
    for (name, value) in expand_preset(pairs, s)? {
        let (name, value) = (name.as_str(), value.as_str());
        if SIGNATURE_PARAMS.contains(&name) {
            has_signature = true;
            continue;
        }
        if !seen.insert(name.to_string()) {
            return Err(bad(name, "given more than once"));
        }
        if value.is_empty() && name != "v" {
            return Err(bad(name, "empty value"));
        }
        match name {
            "w" => w = Some(parse_int("w", value, 1, s.max_width)?),
            "h" => h = Some(parse_int("h", value, 1, s.max_height)?),
            "dpr" => dpr = parse_num("dpr", value, 1.0, 4.0)?,
            "fit" => {
                fit = Some(Fit::from_name(value).ok_or_else(|| {
                    bad("fit", "expected inside, cover, contain, fill or outside")
                })?)
            }
            "g" => {
                gravity = Some(Gravity::from_name(value).ok_or_else(|| {
                    bad(
                        "g",
                        "expected center, n, s, e, w, ne, nw, se, sw or entropy",
                    )
                })?)
            }
            "enlarge" => {
                enlarge = match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad("enlarge", "expected 0 or 1")),
                }
            }
            "fm" if value == "json" => {
                facts = true;
                continue;
            }
            "fm" => {
                format = Some(match value {
                    "auto" => FormatChoice::Auto,
                    "avif" if !s.avif_enabled => {
                        return Err(bad("fm", "avif output is disabled on this server"));
                    }
                    _ => FormatChoice::Fixed(OutputFormat::from_name(value).ok_or_else(|| {
                        bad("fm", "expected jpeg, png, webp, avif, gif, auto or json")
                    })?),
                })
            }
            "q" => quality = Some(parse_int("q", value, 1, 100)? as u8),
            "bg" => background = Some(parse_bg(value)?),
            "blur" => blur = Some(canon_f32(parse_num("blur", value, 0.3, 100.0)?)),
            "sharpen" => sharpen = Some(canon_f32(parse_num("sharpen", value, 0.3, 10.0)?)),
            "rot" => {
                rotate = match value {
                    "0" => 0,
                    "90" => 90,
                    "180" => 180,
                    "270" => 270,
                    _ => return Err(bad("rot", "expected 0, 90, 180 or 270")),
                }
            }
            "flip" => {
                flip = match value {
                    "h" => (true, false),
                    "v" => (false, true),
                    "hv" | "vh" => (true, true),
                    _ => return Err(bad("flip", "expected h, v or hv")),
                }
            }
            "crop" => crop = Some(parse_crop(value)?),
            "frame" => {
                if value != "first" {
                    return Err(bad("frame", "expected first"));
                }
                first_frame = true;
            }
            "wm" => {
                if !s.watermarks.contains(value) {
                    return Err(bad("wm", "no watermark of that name is configured"));
                }
                watermark = Some(value.to_string());
            }
            "v" => {
                if value.len() > 64 {
                    return Err(bad("v", "at most 64 characters"));
                }
                continue;
            }
            SHARE_PARAM => {
                if value.len() > 128 {
                    return Err(bad("share", "too long"));
                }
                share = Some(value.to_string());
                continue;
            }
            _ => return Err(ParamsError::unknown(name)),
        }
        any_transform = true;
        if first_transform.is_none() {
            first_transform = Some(name.to_string());
        }
    }

    if facts && let Some(other) = first_transform {
        return Err(bad(&other, "not allowed with fm=json (only `v` is)"));
    }
    if !any_transform {
        return Ok(Parsed {
            transform: None,
            facts,
            share,
            has_signature,
        });
    }

    let (width, height) = fold_sizes(w, h, dpr, s);
    let both = width.is_some() && height.is_some();
    // With one dimension (or none) every fit acts as `inside`; gravity only places crops and
    // padding. Canonicalising here keeps equivalent requests on one cache entry.
    let fit = if both {
        fit.unwrap_or_default()
    } else {
        Fit::Inside
    };
    let gravity = if matches!(fit, Fit::Cover | Fit::Contain) {
        gravity.unwrap_or_default()
    } else {
        Gravity::Center
    };
    let gravity = if fit == Fit::Contain && gravity == Gravity::Entropy {
        Gravity::Center
    } else {
        gravity
    };
    let format = format.unwrap_or(s.default_format);
    let base = Transform {
        width,
        height,
        fit,
        gravity,
        enlarge: enlarge && (width.is_some() || height.is_some()),
        format: OutputFormat::Jpeg, // placeholder until `resolve`
        quality: 0,
        background,
        blur,
        sharpen,
        rotate,
        flip_h: flip.0,
        flip_v: flip.1,
        crop,
        watermark,
        first_frame,
    };
    Ok(Parsed {
        transform: Some(PendingTransform {
            base,
            format,
            quality,
        }),
        facts: false,
        share,
        has_signature,
    })
}

/// Applies `dpr`, the max limits (keeping the box's ratio) and `allowed_widths`.
fn fold_sizes(
    w: Option<u32>,
    h: Option<u32>,
    dpr: f64,
    s: &ParseSettings,
) -> (Option<u32>, Option<u32>) {
    let mut wf = w.map(|v| v as f64 * dpr);
    let mut hf = h.map(|v| v as f64 * dpr);
    let mut cap = 1.0f64;
    if let Some(v) = wf {
        cap = cap.min(s.max_width as f64 / v);
    }
    if let Some(v) = hf {
        cap = cap.min(s.max_height as f64 / v);
    }
    if cap < 1.0 {
        wf = wf.map(|v| v * cap);
        hf = hf.map(|v| v * cap);
    }
    let mut width = wf.map(|v| (v.round() as u32).max(1));
    let mut height = hf.map(|v| (v.round() as u32).max(1));
    if let (Some(wv), false) = (width, s.allowed_widths.is_empty()) {
        let snapped = s
            .allowed_widths
            .iter()
            .copied()
            .find(|&a| a >= wv)
            .unwrap_or(*s.allowed_widths.last().unwrap_or(&wv));
        if snapped != wv {
            if let Some(hv) = height {
                let scaled = (hv as f64 * snapped as f64 / wv as f64).round() as u32;
                height = Some(scaled.clamp(1, s.max_height));
            }
            width = Some(snapped);
        }
    }
    (width, height)
}

/// What the resolver needs to know about the source.
#[derive(Clone, Copy, Debug)]
pub struct SourceTraits {
    pub format: SourceFormat,
    pub has_alpha: bool,
    /// An animated GIF or WebP (more than one frame).
    pub animated: bool,
}

/// Decides the output format (and with it the quality and background defaults).
/// Returns the final transform and whether the choice depended on `Accept`.
pub fn resolve(
    p: &PendingTransform,
    src: SourceTraits,
    accept: Option<&str>,
    s: &ParseSettings,
) -> (Transform, bool) {
    resolve_inner(p, src, accept, s, s.avif_enabled)
}

/// [`resolve`] with AVIF left out of `fm=auto` negotiation: for outputs too large for the
/// AVIF pixel cap, which then get WebP or JPEG/PNG instead of a refusal.
pub fn resolve_without_avif(
    p: &PendingTransform,
    src: SourceTraits,
    accept: Option<&str>,
    s: &ParseSettings,
) -> (Transform, bool) {
    resolve_inner(p, src, accept, s, false)
}

fn resolve_inner(
    p: &PendingTransform,
    src: SourceTraits,
    accept: Option<&str>,
    s: &ParseSettings,
    avif_enabled: bool,
) -> (Transform, bool) {
    use SourceFormat as SF;
    // Whether the request would keep the animation of the source, where the format allows.
    let animation = src.animated && !p.base.first_frame;
    let (format, negotiated) = match p.format {
        FormatChoice::Fixed(f) => (f, false),
        FormatChoice::Source => (
            match src.format {
                SF::Jpeg => OutputFormat::Jpeg,
                // A still GIF becomes a PNG (lossless, no palette); an animated one stays GIF.
                SF::Gif if animation => OutputFormat::Gif,
                SF::Png | SF::Gif => OutputFormat::Png,
                SF::Webp => OutputFormat::Webp,
                // Browsers do not show HEIC/HEIF: JPEG, as iPhones export them.
                SF::Heic | SF::Heif => OutputFormat::Jpeg,
                SF::Avif if avif_enabled => OutputFormat::Avif,
                SF::Avif if src.has_alpha => OutputFormat::Png,
                SF::Avif => OutputFormat::Jpeg,
            },
            false,
        ),
        FormatChoice::Auto => {
            let accept = accept.unwrap_or("");
            // AVIF has no animation here: never negotiated for an animated source (SPEC §9).
            let f = if avif_enabled && !src.animated && accepts(accept, "image/avif") {
                OutputFormat::Avif
            } else if accepts(accept, "image/webp") {
                OutputFormat::Webp
            } else if animation {
                // Every browser plays GIF: the animation is kept rather than cut to a still.
                OutputFormat::Gif
            } else if src.has_alpha {
                OutputFormat::Png
            } else {
                OutputFormat::Jpeg
            };
            (f, true)
        }
    };
    let mut t = p.base.clone();
    t.format = format;
    // `frame=first` only matters where the animation would otherwise be kept.
    t.first_frame = t.first_frame && src.animated && format.supports_animation();
    t.quality = match format {
        OutputFormat::Png | OutputFormat::Gif => 0,
        OutputFormat::Jpeg => p.quality.unwrap_or(s.jpeg_quality),
        OutputFormat::Webp => p.quality.unwrap_or(s.webp_quality),
        OutputFormat::Avif => p.quality.unwrap_or(s.avif_quality),
    };
    let default_bg = if format == OutputFormat::Jpeg {
        [255, 255, 255, 255]
    } else {
        [0, 0, 0, 0]
    };
    if t.background == Some(default_bg) {
        t.background = None;
    }
    (t, negotiated)
}

/// True when an `Accept` header lists `mime` with a non-zero q.
fn accepts(accept: &str, mime: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let ty = parts.next().unwrap_or("").trim();
        if !ty.eq_ignore_ascii_case(mime) {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// The canonical text of a transform; equal transforms give equal text.
pub fn canonical(t: &Transform) -> String {
    let mut s = String::with_capacity(96);
    let _ = write!(
        s,
        "w={};h={};fit={};g={};e={};fm={};q={}",
        t.width.unwrap_or(0),
        t.height.unwrap_or(0),
        t.fit.name(),
        t.gravity.canonical_name(),
        t.enlarge as u8,
        t.format.name(),
        t.quality
    );
    if let Some(bg) = t.background {
        let _ = write!(s, ";bg={}", hex::encode(bg));
    }
    if let Some(b) = t.blur {
        let _ = write!(s, ";blur={b:.2}");
    }
    if let Some(b) = t.sharpen {
        let _ = write!(s, ";sharpen={b:.2}");
    }
    if t.rotate != 0 {
        let _ = write!(s, ";rot={}", t.rotate);
    }
    if t.flip_h || t.flip_v {
        let _ = write!(
            s,
            ";flip={}{}",
            if t.flip_h { "h" } else { "" },
            if t.flip_v { "v" } else { "" }
        );
    }
    if let Some(c) = t.crop {
        let _ = write!(s, ";crop={},{},{},{}", c.x, c.y, c.width, c.height);
    }
    if let Some(w) = &t.watermark {
        let _ = write!(s, ";wm={w}");
    }
    if t.first_frame {
        s.push_str(";frame=first");
    }
    s
}

/// The identity of one variant: the object key, the original's ETag and the canonical
/// transform, hashed. Used as the cache key and (quoted) as the variant's ETag.
pub fn variant_id(key: &str, source_etag: &str, t: &Transform) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"imgorigin-variant-v1\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(source_etag.as_bytes());
    h.update(b"\0");
    h.update(canonical(t).as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

#[cfg(test)]
mod tests;

//! Fuzz target bodies: the parsers that read untrusted bytes (image headers, query strings,
//! CloudFront policies and cookies, keys, metadata containers, EXIF) and every decoder
//! through our wrapper. The `fuzz/` crate calls these under libFuzzer, and
//! `tests/it/fuzz_regressions.rs` replays the committed crash inputs through the same
//! functions, so the suite checks them without cargo-fuzz. Not an API.
//!
//! A target returns normally for any input; a panic (our assertions included) is a finding.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use crate::auth::cloudfront::{self, SignatureVerifier};
use crate::media::{ImageType, SourceFormat};
use crate::params::{self, FormatChoice, ParseSettings, SourceTraits};
use crate::{originals, pipeline, storage};

/// Pixels a decode target may allocate: small, so a header declaring a huge image is
/// refused before decoding (the path that matters), and each run stays fast.
const MAX_PIXELS: u64 = 1 << 20;

/// A target body: returns for any input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name (the `fuzz/` binaries and the regression directories use these).
pub const TARGETS: &[(&str, Target)] = &[
    ("probe", probe),
    ("params", params),
    ("cloudfront_policy", cloudfront_policy),
    ("cloudfront_cookies", cloudfront_cookies),
    ("key", key),
    ("strip", strip),
    ("exif", exif),
    ("decode_jpeg", decode_jpeg),
    ("decode_png", decode_png),
    ("decode_webp", decode_webp),
    ("decode_gif", decode_gif),
    ("decode_heif", decode_heif),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Header probing of every format (ISOBMFF `meta` boxes included): never decodes.
pub fn probe(data: &[u8]) {
    let _ = ImageType::sniff(data);
    if let Ok(info) = pipeline::probe(data) {
        assert!(
            info.width > 0 && info.height > 0,
            "probe accepted an empty image"
        );
        assert!(info.frames >= 1, "probe accepted an image without frames");
        assert_eq!(SourceFormat::sniff(data), Some(info.format));
    }
}

/// The query parser, the format resolution and the canonical variant. The first byte picks
/// the settings and source traits, the first line after it is `Accept`, the rest the query.
pub fn params(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (accept, query) = text.split_once('\n').unwrap_or(("", text));
    let s = parse_settings(flags);
    let _ = params::check_strict(Some(query), &s);
    let Ok(parsed) = params::parse(Some(query), &s) else {
        return;
    };
    // Parameter order never changes the meaning (SPEC §2: one canonical variant).
    let reversed: Vec<&str> = query.split('&').rev().collect();
    assert_eq!(
        params::parse(Some(&reversed.join("&")), &s).ok().as_ref(),
        Some(&parsed),
        "parameter order changed the parse of {query:?}"
    );
    let Some(pending) = parsed.transform else {
        return;
    };
    let formats = [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Webp,
        SourceFormat::Gif,
        SourceFormat::Heic,
        SourceFormat::Heif,
        SourceFormat::Avif,
    ];
    let src = SourceTraits {
        format: formats[usize::from(flags >> 4) % formats.len()],
        has_alpha: flags & 0x04 != 0,
        animated: flags & 0x08 != 0,
    };
    for (t, _) in [
        params::resolve(&pending, src, Some(accept), &s),
        params::resolve_without_avif(&pending, src, Some(accept), &s),
    ] {
        assert!(t.width.is_none_or(|w| (1..=s.max_width).contains(&w)));
        assert!(t.height.is_none_or(|h| (1..=s.max_height).contains(&h)));
        let _ = params::variant_id("public/a.jpg", "\"etag\"", &t);
    }
}

fn parse_settings(flags: u8) -> ParseSettings {
    ParseSettings {
        max_width: 8192,
        max_height: 8192,
        allowed_widths: if flags & 1 != 0 {
            vec![320, 640, 1280]
        } else {
            Vec::new()
        },
        default_format: if flags & 2 != 0 {
            FormatChoice::Auto
        } else {
            FormatChoice::Source
        },
        avif_enabled: true,
        jpeg_quality: 80,
        webp_quality: 80,
        avif_quality: 60,
        watermarks: ["logo".to_string()].into(),
        presets: [
            (
                "card".to_string(),
                "w=400&h=300&fit=cover&fm=auto".to_string(),
            ),
            ("bad".to_string(), "w=0&zz=1".to_string()),
        ]
        .into(),
    }
}

const NOW: u64 = 1_700_000_000;
const VIEWER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// A custom policy as if its signature had matched: JSON shape, dates, the `Resource`
/// wildcards and the `IpAddress` CIDR.
pub fn cloudfront_policy(data: &[u8]) {
    let urls = [
        "https://d111111abcdef8.cloudfront.net/public/a.jpg?w=10".to_string(),
        "https://images.example.com/public/a.jpg?w=10".to_string(),
    ];
    let _ = cloudfront::check_policy(data, &urls, Some(VIEWER), NOW);
    let _ = cloudfront::check_policy(data, &urls, None, NOW);
    // The matchers on their own, with the input split in two at the first NUL.
    let text = String::from_utf8_lossy(data);
    let (pattern, subject) = text.split_once('\0').unwrap_or((&text, "x"));
    // A pattern matches itself whatever wildcards it holds.
    assert!(cloudfront::wildcard_match(pattern, pattern));
    let _ = cloudfront::wildcard_match(pattern, subject);
    let ip = subject.parse().unwrap_or(VIEWER);
    let _ = cloudfront::cidr_contains(pattern, ip);
}

/// Signed cookies and signed-URL query parameters up to the signature check: the first
/// line is the `Cookie` header, the second the query.
pub fn cloudfront_cookies(data: &[u8]) {
    assert_eq!(
        cloudfront::cf_b64_decode(&cloudfront::cf_b64_encode(data)).as_deref(),
        Some(data)
    );
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let cookie = lines.next().unwrap_or("");
    let query = lines.next().unwrap_or("");
    let v = verifier();
    let from_cookies = cloudfront::from_cookies([cookie].into_iter());
    let (from_query, rest) = cloudfront::split_query(query);
    for p in [from_cookies, from_query] {
        let _ = v.verify(&p, "/public/a.jpg", &rest, Some(VIEWER), NOW);
    }
}

fn verifier() -> &'static SignatureVerifier {
    // A throwaway public key (its private half was never kept): signatures never match,
    // so this reaches everything before the RSA check and the check itself.
    const PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1ftpZ3opqxRzSaxU/KVq
flwpPWRSKUAHg1kUHVZDfzZmUdalaTP1aDuZJ688AuoBoqNWnWL+y4p6XZNAE4CW
pJZKU3qP5+A7e4/TpwxEyAScadEQB/sJistLWuZ+PDaCdLRrl8FJsjSU8tt/MoIG
jBZYv0QNG8R117yipBziVKWCfLkJfdv6k/SpdEspc94cQVdWutZgakndxrhvR/5C
IbIt5nnnE+sr9JNDI/6LSSK3bcQP95bcS2R96jq5NkAkA/KA3kpoTCtmN2Xrwmjt
FGOlHgpJI1XNF0bxY166UU5XpZKOR0gLr8eRyu/ACfgvsjt3RoUII3RY0LyFACna
9wIDAQAB
-----END PUBLIC KEY-----";
    static V: OnceLock<SignatureVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = cloudfront::parse_public_key(PEM).expect("fuzz key");
        SignatureVerifier::new(
            [("K2JCJMDEHXQW5F".to_string(), key)].into(),
            vec!["https://d111111abcdef8.cloudfront.net/".to_string()],
        )
    })
}

/// Key validation from a raw request path.
pub fn key(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let _ = storage::key::validate(path);
    if let Ok(key) = storage::key::from_path(path) {
        // What passes can never climb out of a folder or reach a backend unchecked.
        assert_eq!(storage::key::validate(&key), Ok(()));
        assert!(
            !key.split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        );
        assert!(!key.contains('\\') && !key.chars().any(char::is_control));
    }
}

/// Metadata stripping of every container: the layout must stay inside the input.
pub fn strip(data: &[u8]) {
    let Ok(originals::Stripped::Layout(layout)) = originals::strip(data) else {
        return;
    };
    let bytes = bytes::Bytes::copy_from_slice(data);
    assert_eq!(layout.to_vec(&bytes).len(), layout.len());
}

/// EXIF and facts: an image goes through [`pipeline::inspect`] (header, small decode, EXIF
/// block, colours); anything else is read as a TIFF-structured EXIF payload.
pub fn exif(data: &[u8]) {
    if ImageType::sniff(data).is_some() {
        if let Ok((info, facts)) = pipeline::inspect(data, MAX_PIXELS) {
            assert!((1..=8).contains(&facts.orientation));
            assert_eq!(facts.frames, info.frames);
        }
    } else {
        let (_, _, gps) = pipeline::exif_facts(data);
        if let Some(g) = gps {
            assert!(g.lat.abs() <= 90.0 && g.lon.abs() <= 180.0, "{g:?}");
        }
        let _ = image::metadata::Orientation::from_exif_chunk(data);
    }
}

/// Upload validation (header, pixel limit, full decode) for inputs of `formats` only, so
/// each decoder gets a corpus of its own.
fn decode(data: &[u8], formats: &[SourceFormat]) {
    if SourceFormat::sniff(data).is_some_and(|f| formats.contains(&f)) {
        let _ = pipeline::check(data, MAX_PIXELS);
    }
}

pub fn decode_jpeg(data: &[u8]) {
    decode(data, &[SourceFormat::Jpeg]);
}

pub fn decode_png(data: &[u8]) {
    decode(data, &[SourceFormat::Png]);
}

pub fn decode_webp(data: &[u8]) {
    decode(data, &[SourceFormat::Webp]);
}

pub fn decode_gif(data: &[u8]) {
    decode(data, &[SourceFormat::Gif]);
}

pub fn decode_heif(data: &[u8]) {
    decode(
        data,
        &[SourceFormat::Heic, SourceFormat::Heif, SourceFormat::Avif],
    );
}

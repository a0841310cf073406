use super::*;
use crate::media::SourceFormat;

/// The configuration defaults, plus a watermark named `logo`.
fn settings() -> ParseSettings {
    ParseSettings {
        max_width: 8192,
        max_height: 8192,
        allowed_widths: Vec::new(),
        default_format: FormatChoice::Source,
        avif_enabled: true,
        jpeg_quality: 80,
        webp_quality: 80,
        avif_quality: 60,
        watermarks: ["logo".to_string()].into(),
        presets: [(
            "card".to_string(),
            "w=400&h=300&fit=cover&fm=auto".to_string(),
        )]
        .into(),
    }
}

#[test]
fn a_preset_is_the_same_transform_as_its_parameters() {
    let s = settings();
    let t = |q: &str| parse(Some(q), &s).unwrap().transform.unwrap();
    assert_eq!(t("p=card"), t("w=400&h=300&fit=cover&fm=auto"));
    // Parameters next to `p` override the preset's.
    assert_eq!(
        t("p=card&w=200&dpr=2"),
        t("w=200&h=300&fit=cover&fm=auto&dpr=2")
    );
    assert_eq!(t("fm=webp&p=card"), t("w=400&h=300&fit=cover&fm=webp"));
    let err = parse(Some("p=nope"), &s).unwrap_err().to_string();
    assert!(err.contains("`p`"), "{err}");
    let err = parse(Some("p=card&w=1&w=2"), &s).unwrap_err().to_string();
    assert!(err.contains("more than once"), "{err}");
}

#[test]
fn strict_mode_allows_only_the_listed_parameters() {
    let mut s = settings();
    s.allowed_widths = vec![320, 640];
    let ok = |q: &str| check_strict(Some(q), &s);
    for q in [
        "p=card",
        "p=card&dpr=2&fm=auto&v=3",
        "w=320",
        "w=640&dpr=3&fm=auto",
        "",
        "v=1",
    ] {
        assert!(ok(q).is_ok(), "{q}");
    }
    for (q, named) in [
        ("w=321", "`w`"),
        ("w=320&h=100", "`h`"),
        ("dpr=1.5", "`dpr`"),
        ("fm=webp", "`fm`"),
        ("p=card&w=320", "`w`"),
        ("p=card&q=20", "`q`"),
        ("blur=3", "`blur`"),
    ] {
        let err = ok(q).unwrap_err().to_string();
        assert!(err.contains(named), "{q}: {err}");
    }
}

fn resolved(q: &str) -> Transform {
    resolved_with(q, &settings())
}

fn resolved_with(q: &str, s: &ParseSettings) -> Transform {
    let p = parse(Some(q), s).unwrap().transform.expect("a transform");
    let src = SourceTraits {
        format: SourceFormat::Jpeg,
        has_alpha: false,
        animated: false,
    };
    resolve(&p, src, None, s).0
}

#[test]
fn no_transform_params_means_original() {
    let s = settings();
    for q in [
        None,
        Some(""),
        Some("v=3"),
        Some("Expires=1&Signature=x&Key-Pair-Id=K"),
        Some("share=abc"),
    ] {
        assert!(parse(q, &s).unwrap().transform.is_none(), "{q:?}");
    }
    assert!(parse(Some("Expires=1"), &s).unwrap().has_signature);
    assert_eq!(
        parse(Some("share=abc&w=1"), &s).unwrap().share.as_deref(),
        Some("abc")
    );
}

#[test]
fn dpr_folds_into_sizes() {
    assert_eq!(resolved("w=100&dpr=2"), resolved("w=200"));
    assert_eq!(resolved("w=100&h=50&dpr=1.5").width, Some(150));
    assert_eq!(resolved("w=100&h=50&dpr=1.5").height, Some(75));
    // Capped by the max limits with the box's ratio kept.
    let t = resolved("w=5000&h=2500&dpr=4");
    assert_eq!((t.width, t.height), (Some(8192), Some(4096)));
}

#[test]
fn defaults_are_canonicalised() {
    let base = canonical(&resolved("w=10"));
    for q in [
        "w=10&fit=inside",
        "w=10&fit=cover",
        "w=10&g=n",
        "w=10&q=80",
        "w=10&fm=jpeg",
        "w=10&enlarge=0",
        "w=10&bg=ffffff",
        "w=10&bg=ffffffff",
        "w=10&rot=0",
    ] {
        assert_eq!(canonical(&resolved(q)), base, "{q}");
    }
    // Gravity matters only for cover / contain.
    assert_ne!(
        canonical(&resolved("w=10&h=10&fit=cover&g=n")),
        canonical(&resolved("w=10&h=10&fit=cover"))
    );
    assert_eq!(
        canonical(&resolved("w=10&h=10&fit=fill&g=n")),
        canonical(&resolved("w=10&h=10&fit=fill"))
    );
    // Entropy has no meaning for padding.
    assert_eq!(
        canonical(&resolved("w=10&h=10&fit=contain&g=entropy")),
        canonical(&resolved("w=10&h=10&fit=contain"))
    );
    // Float spellings.
    assert_eq!(
        canonical(&resolved("blur=1")),
        canonical(&resolved("blur=1.000"))
    );
    // PNG ignores q.
    assert_eq!(
        canonical(&resolved("fm=png&q=5")),
        canonical(&resolved("fm=png"))
    );
}

#[test]
fn variant_id_depends_on_key_etag_and_transform() {
    let t = resolved("w=10");
    let a = variant_id("public/a.jpg", "e1", &t);
    assert_eq!(
        a,
        variant_id("public/a.jpg", "e1", &resolved("w=10&fit=inside"))
    );
    assert_ne!(a, variant_id("public/b.jpg", "e1", &t));
    assert_ne!(a, variant_id("public/a.jpg", "e2", &t));
    assert_ne!(a, variant_id("public/a.jpg", "e1", &resolved("w=11")));
}

#[test]
fn allowed_widths_snap_up_and_scale_height() {
    let mut s = settings();
    s.allowed_widths = vec![100, 200, 400];
    let t = resolved_with("w=150&h=75&fit=cover", &s);
    assert_eq!((t.width, t.height), (Some(200), Some(100)));
    assert_eq!(resolved_with("w=1000", &s).width, Some(400));
    assert_eq!(resolved_with("w=100", &s).width, Some(100));
    assert_eq!(resolved_with("w=60&dpr=2", &s).width, Some(200));
    assert_eq!(resolved_with("h=60", &s).width, None);
}

#[test]
fn format_resolution() {
    let s = settings();
    let p = parse(Some("w=1&fm=auto"), &s).unwrap().transform.unwrap();
    let jpeg = SourceTraits {
        format: SourceFormat::Jpeg,
        has_alpha: false,
        animated: false,
    };
    let png = SourceTraits {
        format: SourceFormat::Png,
        has_alpha: true,
        animated: false,
    };
    let f = |src, accept| {
        let (t, vary) = resolve(&p, src, accept, &s);
        (t.format, vary)
    };
    assert_eq!(
        f(jpeg, Some("image/avif,image/webp")),
        (OutputFormat::Avif, true)
    );
    assert_eq!(f(jpeg, Some("image/webp")), (OutputFormat::Webp, true));
    assert_eq!(
        f(jpeg, Some("IMAGE/WEBP;q=0.8")),
        (OutputFormat::Webp, true)
    );
    assert_eq!(f(jpeg, Some("image/webp;q=0")), (OutputFormat::Jpeg, true));
    assert_eq!(f(jpeg, None), (OutputFormat::Jpeg, true));
    assert_eq!(f(png, Some("*/*")), (OutputFormat::Png, true));
    let mut no_avif = s.clone();
    no_avif.avif_enabled = false;
    assert_eq!(
        resolve(&p, jpeg, Some("image/avif,image/webp"), &no_avif)
            .0
            .format,
        OutputFormat::Webp
    );
    // Source keeps the format; GIF becomes PNG.
    let p = parse(Some("w=1"), &s).unwrap().transform.unwrap();
    let gif = SourceTraits {
        format: SourceFormat::Gif,
        has_alpha: true,
        animated: false,
    };
    assert_eq!(
        resolve(&p, gif, None, &s),
        (resolved_with("w=1&fm=png", &s), false)
    );
    // Quality defaults per format.
    let webp = resolved("w=1&fm=webp");
    assert_eq!(webp.quality, 80);
    let avif = resolved("w=1&fm=avif");
    assert_eq!(avif.quality, 60);
}

#[test]
fn animated_sources_keep_animation_where_the_format_can() {
    let s = settings();
    let gif = SourceTraits {
        format: SourceFormat::Gif,
        has_alpha: false,
        animated: true,
    };
    let webp = SourceTraits {
        format: SourceFormat::Webp,
        ..gif
    };
    let still_gif = SourceTraits {
        animated: false,
        ..gif
    };
    let f = |q: &str, src, accept| {
        let p = parse(Some(q), &s).unwrap().transform.unwrap();
        let (t, _) = resolve(&p, src, accept, &s);
        (t.format, t.first_frame)
    };
    // No `fm` (format.default = source): an animated GIF stays GIF, a still one is PNG.
    assert_eq!(f("w=10", gif, None), (OutputFormat::Gif, false));
    assert_eq!(f("w=10", still_gif, None), (OutputFormat::Png, false));
    assert_eq!(f("w=10&frame=first", gif, None), (OutputFormat::Png, false));
    assert_eq!(f("w=10", webp, None), (OutputFormat::Webp, false));
    // `fm=auto` never picks AVIF for an animated source, even for its first frame only.
    let both = Some("image/avif,image/webp");
    assert_eq!(f("w=10&fm=auto", gif, both), (OutputFormat::Webp, false));
    assert_eq!(
        f("w=10&fm=auto&frame=first", webp, both),
        (OutputFormat::Webp, true)
    );
    assert_eq!(
        f("w=10&fm=auto", still_gif, both),
        (OutputFormat::Avif, false)
    );
    // Without WebP in Accept an animated source gets GIF, its first frame JPEG/PNG.
    assert_eq!(f("w=10&fm=auto", webp, None), (OutputFormat::Gif, false));
    assert_eq!(
        f("w=10&fm=auto&frame=first", webp, None),
        (OutputFormat::Jpeg, false)
    );
    // `frame=first` is canonical only where it changes the output.
    assert_eq!(
        f("w=10&fm=gif&frame=first", gif, None),
        (OutputFormat::Gif, true)
    );
    assert_eq!(
        f("w=10&fm=jpeg&frame=first", gif, None),
        (OutputFormat::Jpeg, false)
    );
    assert_eq!(
        f("w=10&fm=gif&frame=first", still_gif, None),
        (OutputFormat::Gif, false)
    );
    let p = parse(Some("w=10&fm=gif&frame=first"), &s)
        .unwrap()
        .transform
        .unwrap();
    let (t, _) = resolve(&p, gif, None, &s);
    assert_eq!(t.quality, 0);
    assert!(canonical(&t).ends_with(";frame=first"), "{}", canonical(&t));
    let p = parse(Some("w=10&fm=gif"), &s).unwrap().transform.unwrap();
    assert_ne!(canonical(&resolve(&p, gif, None, &s).0), canonical(&t));
    assert!(parse(Some("frame=last"), &s).is_err());
}

#[test]
fn query_values_are_percent_decoded() {
    let s = settings();
    let t = resolved("crop=1%2C2%2C3%2C4");
    assert_eq!(
        t.crop,
        Some(CropRect {
            x: 1,
            y: 2,
            width: 3,
            height: 4
        })
    );
    assert!(parse(Some("w=%FF"), &s).is_err());
    let e = parse(Some("W=10"), &s).unwrap_err();
    assert_eq!(e, ParamsError::Unknown("W".into()));
}

#[test]
fn error_texts() {
    let s = settings();
    let text = |q: &str| parse(Some(q), &s).unwrap_err().to_string();
    assert_eq!(text("%FF=1"), "query parameter names must be UTF-8");
    assert_eq!(
        text(&format!("{}=1", "x".repeat(50))),
        format!("unknown parameter `{}`", "x".repeat(40))
    );
    assert_eq!(
        text("w=0"),
        "invalid parameter `w`: expected an integer 1..=8192"
    );
    assert_eq!(
        text("fm=jpg"),
        "invalid parameter `fm`: expected jpeg, png, webp, avif, gif, auto or json"
    );
    assert_eq!(
        text("g=up"),
        "invalid parameter `g`: expected center, n, s, e, w, ne, nw, se, sw or entropy"
    );
    assert_eq!(
        text("w=1&w=2"),
        "invalid parameter `w`: given more than once"
    );
}

/// The canonical text is hashed into cache keys and ETags: its spelling is pinned here.
#[test]
fn canonical_text_is_pinned() {
    assert_eq!(
        canonical(&resolved("w=10")),
        "w=10;h=0;fit=inside;g=Center;e=0;fm=jpeg;q=80"
    );
    assert_eq!(
        canonical(&resolved(
            "w=10&h=20&fit=cover&g=ne&enlarge=1&fm=png&bg=ff000080&blur=1.234&sharpen=2&rot=90&flip=hv&crop=1,2,3,4&wm=logo"
        )),
        "w=10;h=20;fit=cover;g=NorthEast;e=1;fm=png;q=0;bg=ff000080;blur=1.23;sharpen=2.00;rot=90;flip=hv;crop=1,2,3,4;wm=logo"
    );
    for (g, name) in [
        ("center", "Center"),
        ("n", "North"),
        ("s", "South"),
        ("e", "East"),
        ("w", "West"),
        ("ne", "NorthEast"),
        ("nw", "NorthWest"),
        ("se", "SouthEast"),
        ("sw", "SouthWest"),
        ("entropy", "Entropy"),
    ] {
        let t = resolved(&format!("w=10&h=10&fit=cover&g={g}"));
        assert!(canonical(&t).contains(&format!(";g={name};")), "{g}");
    }
    for fit in ["inside", "cover", "contain", "fill", "outside"] {
        let t = resolved(&format!("w=10&h=10&fit={fit}"));
        assert!(canonical(&t).contains(&format!(";fit={fit};")), "{fit}");
    }
}

#[test]
fn fm_json_asks_for_facts_and_takes_only_v() {
    let s = settings();
    for q in ["fm=json", "fm=json&v=2", "v=2&fm=json", "fm=json&share=abc"] {
        let p = parse(Some(q), &s).unwrap();
        assert!(p.facts, "{q}");
        assert!(p.transform.is_none(), "{q}");
    }
    assert!(!parse(Some("w=10"), &s).unwrap().facts);
    for (q, named) in [
        ("fm=json&w=10", "`w`"),
        ("q=50&fm=json", "`q`"),
        ("fm=json&blur=2", "`blur`"),
    ] {
        let e = parse(Some(q), &s).unwrap_err().to_string();
        assert!(e.contains(named) && e.contains("fm=json"), "{q}: {e}");
    }
    assert!(parse(Some("fm=json&fm=png"), &s).is_err());
    assert!(parse(Some("fm=json&nope=1"), &s).is_err());
}

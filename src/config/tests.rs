use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_spec() {
    let c = Config::defaults();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.metrics_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.server.request_timeout, Duration::from_secs(25));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(75));
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.api_timeout, Duration::from_secs(60));
    assert_eq!(c.format.default, DefaultFormat::Source);
    assert!(c.format.avif);
    assert_eq!(c.metadata_url, "sqlite://data/imgorigin.db");
    assert!(
        matches!(c.storage, StorageConfig::Fs { ref root } if root == Path::new("data/originals"))
    );
    assert_eq!(
        c.cache_control.public,
        "public, max-age=31536000, immutable"
    );
    assert_eq!(c.access.other, OtherAccess::None);
}

#[test]
fn env_overrides_file() {
    let c = Config::from_toml_and_env(
        "[server]\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_width = 100\n",
        env(&[
            ("IMGORIGIN__SERVER__LISTEN", "0.0.0.0:8081"),
            ("IMGORIGIN__LIMITS__ALLOWED_WIDTHS", "[64, 32]"),
            ("IMGORIGIN__CACHE__VARIANT_BYTES", "64MiB"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8081");
    assert_eq!(c.limits.max_width, 100);
    assert_eq!(c.limits.allowed_widths, vec![32, 64]);
    assert_eq!(c.cache.variant_bytes, 64 << 20);
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_toml_and_env("[server]\nlisten_addr = \"x\"\n", env(&[])).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("server"), "{msg}");
    assert!(msg.contains("listen_addr"), "{msg}");
    let e =
        Config::from_toml_and_env("", env(&[("IMGORIGIN__LIMITS__MAX_WIDHT", "5")])).unwrap_err();
    assert!(e.to_string().contains("max_widht"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = Config::from_toml_and_env("[limits]\nmax_width = \"wide\"\n", env(&[])).unwrap_err();
    assert!(e.to_string().contains("limits.max_width"), "{e}");
}

#[test]
fn every_problem_reported_at_once() {
    let e = Config::from_toml_and_env(
        "[server]\nlisten = \"nowhere\"\n[log]\nformat = \"xml\"\n[format]\njpeg_quality = 0\navif_speed = 11\n[access]\nother = \"everyone\"\n",
        env(&[]),
    )
    .unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|l| l.split(':').next().unwrap()).collect();
    for k in [
        "server.listen",
        "log.format",
        "format.jpeg_quality",
        "format.avif_speed",
        "access.other",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn byte_sizes() {
    assert_eq!(raw::parse_byte_size("1024").unwrap(), 1024);
    assert_eq!(raw::parse_byte_size("2MiB").unwrap(), 2 << 20);
    assert_eq!(raw::parse_byte_size("3 GB").unwrap(), 3_000_000_000);
    assert!(raw::parse_byte_size("lots").is_err());
    assert!(raw::parse_byte_size("5XB").is_err());
}

#[test]
fn unavailable_security_features_fail_loudly() {
    let e =
        Config::from_toml_and_env("[cloudfront]\norigin_secret = [\"s\"]\n", env(&[])).unwrap_err();
    assert!(e.to_string().contains("cloudfront"), "{e}");
}

/// Regression (security review, finding 9): nested or equal access prefixes gave a
/// guest private images with a one-year public Cache-Control.
#[test]
fn overlapping_access_prefixes_are_refused() {
    for (toml, names) in [
        (
            "[access]\npublic_prefix = \"img/\"\nprivate_prefix = \"img/private/\"\n",
            ["access.public_prefix", "access.private_prefix"],
        ),
        (
            "[access]\nprotected_prefix = \"public/\"\n",
            ["access.public_prefix", "access.protected_prefix"],
        ),
        (
            "[access]\nprivate_prefix = \"Protected/x/\"\n",
            ["access.protected_prefix", "access.private_prefix"],
        ),
    ] {
        let e = Config::from_toml_and_env(toml, env(&[])).unwrap_err();
        let text = e.to_string();
        for n in names {
            assert!(text.contains(n), "{toml}: {text}");
        }
    }
    Config::from_toml_and_env(
        "[access]\npublic_prefix = \"img/pub/\"\nprivate_prefix = \"img/priv/\"\n",
        env(&[]),
    )
    .unwrap();
}

/// Regression (finding 10): trusting CloudFront-Viewer-Address without an origin
/// secret is accepted but warned about, naming the key that fixes it.
#[test]
fn trusted_viewer_address_without_origin_secret_warns() {
    let c =
        Config::from_toml_and_env("[cloudfront]\ntrust_viewer_address = true\n", env(&[])).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("cloudfront.origin_secret"));
    let c = Config::from_toml_and_env(
        "[cloudfront]\ntrust_viewer_address = true\norigin_secret = [\"0123456789abcdef-secret\"]\n",
        env(&[]),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(Config::defaults().warnings.is_empty());
}

// Render cost caps.
#[test]
fn output_pixel_caps() {
    let c = Config::defaults();
    assert_eq!(c.limits.max_output_pixels, 40_000_000);
    assert_eq!(c.limits.max_avif_output_pixels, 8_388_608);
    let e = Config::from_toml_and_env("[limits]\nmax_output_pixels = 0\n", env(&[])).unwrap_err();
    assert!(e.to_string().contains("limits.max_output_pixels"), "{e}");
}

#[test]
fn animation_limits() {
    let c = Config::defaults();
    assert_eq!(c.limits.max_animation_frames, 300);
    assert_eq!(c.limits.max_animation_pixels, 400_000_000);
    // The pixel default follows max_source_pixels unless set.
    let c = Config::from_toml_and_env("[limits]\nmax_source_pixels = 1000\n", env(&[])).unwrap();
    assert_eq!(c.limits.max_animation_pixels, 4000);
    let c = Config::from_toml_and_env(
        "[limits]\nmax_source_pixels = 1000\nmax_animation_pixels = 5\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.limits.max_animation_pixels, 5);
    for key in ["max_animation_frames", "max_animation_pixels"] {
        let e = Config::from_toml_and_env(&format!("[limits]\n{key} = 0\n"), env(&[])).unwrap_err();
        assert!(e.to_string().contains(&format!("limits.{key}")), "{e}");
    }
}

#[test]
fn gallery_and_hosted_ui() {
    let c = Config::defaults();
    assert!(c.gallery_enabled);
    let pool = "[cognito]\nregion = \"eu-west-1\"\nuser_pool_id = \"eu-west-1_A\"\n";
    let ok = |extra: &str| Config::from_toml_and_env(&format!("{pool}{extra}"), env(&[]));
    let c = ok("domain = \"auth.example.com/\"\ngallery_client_id = \"abc123\"\n").unwrap();
    let cg = c.auth.cognito.unwrap();
    assert_eq!(
        cg.hosted_ui,
        Some(HostedUi {
            origin: "https://auth.example.com".into(),
            client_id: "abc123".into()
        })
    );
    // The gallery's client alone is enough: its tokens are accepted.
    assert_eq!(cg.client_ids, ["abc123"]);
    // Plain http only for a loopback stand-in.
    let c = ok("domain = \"http://127.0.0.1:9000\"\ngallery_client_id = \"abc\"\n").unwrap();
    assert_eq!(
        c.auth.cognito.unwrap().hosted_ui.unwrap().origin,
        "http://127.0.0.1:9000"
    );
    for (extra, key) in [
        ("domain = \"auth.example.com\"\n", "cognito.domain"),
        (
            "gallery_client_id = \"abc\"\nclient_ids = [\"x\"]\n",
            "cognito.domain",
        ),
        (
            "domain = \"http://auth.example.com\"\ngallery_client_id = \"abc\"\n",
            "cognito.domain",
        ),
        (
            "domain = \"auth.example.com/path\"\ngallery_client_id = \"abc\"\n",
            "cognito.domain",
        ),
        (
            "domain = \"auth.example.com\"\ngallery_client_id = \"a b\"\n",
            "cognito.gallery_client_id",
        ),
    ] {
        let e = ok(extra).unwrap_err().to_string();
        assert!(e.contains(key), "{extra}: {e}");
    }
    // The Hosted UI belongs to a user pool.
    let e = Config::from_toml_and_env(
        "[cognito]\ndomain = \"auth.example.com\"\ngallery_client_id = \"abc\"\n",
        env(&[]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cognito.domain"), "{e}");
    let e = Config::from_toml_and_env(
        "[auth.local]\nkey_file = \"k.pem\"\nsession_ttl_s = 0\n",
        env(&[]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("auth.local.session_ttl_s"), "{e}");
}

#[test]
fn presets_are_checked_like_requests() {
    let ok = Config::from_toml_and_env(
        "[presets.card]\nparams = \"w=400&h=300&fit=cover&fm=auto\"\n",
        std::iter::empty(),
    )
    .unwrap();
    assert_eq!(ok.presets["card"], "w=400&h=300&fit=cover&fm=auto");
    let err = Config::from_toml_and_env(
        "[presets.big]\nparams = \"w=999999\"\n[presets.loop]\nparams = \"p=big\"\n[presets.Bad]\nparams = \"w=10\"\n[presets.none]\nparams = \"v=2\"\n",
        std::iter::empty(),
    )
    .unwrap_err()
    .to_string();
    for key in [
        "presets.big.params",
        "presets.loop.params",
        "presets.Bad",
        "presets.none.params",
    ] {
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn ingest_and_shared_store_are_checked() {
    let c = Config::defaults();
    assert!(c.ingest.queue_url.is_none() && !c.ingest.reviews());
    assert_eq!((c.ingest.concurrency, c.ingest.wait_s), (2, 20));
    assert_eq!(c.ingest.min_confidence, 80.0);
    assert!(!c.cache.shared.enabled);
    assert_eq!(c.cache.shared.prefix, "_variants/");
    assert_eq!(c.ingest.initial_moderation(), None);
    // Each problem names its key; all are reported at once.
    let e = Config::from_toml_and_env(
        "[ingest]\nqueue_url = \"sqs-queue\"\nconcurrency = 0\nwait_s = 21\nlabels = \"yes\"\nmin_confidence = 101\neager_presets = [\"nope\"]\n[cache.shared]\nbackend = \"s3\"\nprefix = \"public/v\"\n",
        env(&[]),
    )
    .unwrap_err();
    let msg = e.to_string();
    for key in [
        "ingest.queue_url: `sqs-queue`",
        "ingest.queue_url: ingest reads S3 events",
        "ingest.concurrency",
        "ingest.wait_s",
        "ingest.labels",
        "ingest.min_confidence",
        "ingest.eager_presets: no preset `nope`",
        "cache.shared.backend: `s3` needs storage.backend",
        "cache.shared.prefix: `public/v` must be",
        "cache.shared.prefix: `public/v` overlaps access.public_prefix",
    ] {
        assert!(msg.contains(key), "{key} missing in {msg}");
    }
    let e = Config::from_toml_and_env("[ingest]\nmoderation = \"rekognition\"\n", env(&[]))
        .unwrap_err();
    assert!(e.to_string().contains("set ingest.queue_url"), "{e}");
    let c = Config::from_toml_and_env(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"eu-west-1\"\n[ingest]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\nmoderation = \"rekognition\"\n[cache.shared]\nbackend = \"s3\"\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(
        c.ingest.initial_moderation(),
        Some(crate::metadata::Moderation::Pending)
    );
    assert!(c.cache.shared.enabled && c.ingest.moderation && !c.ingest.labels);
}

#[test]
fn identity_pools_and_dynamodb_urls() {
    let pool = "us-east-1:4d4b0f4e-0c9e-4b8e-9f31-2c0a8c1b1a11";
    let c = Config::from_toml_and_env(
        &format!("[cognito]\nregion = \"us-east-1\"\nuser_pool_id = \"us-east-1_A\"\nclient_ids = [\"c\"]\nidentity_pool_id = \"{pool}\"\nidentity_endpoint_url = \"http://127.0.0.1:5000\"\n"),
        env(&[]),
    )
    .unwrap();
    let ip = c.auth.cognito.unwrap().identity_pool.unwrap();
    assert_eq!(ip.pool_id, pool);
    assert_eq!(
        ip.login_provider,
        "cognito-idp.us-east-1.amazonaws.com/us-east-1_A"
    );
    assert_eq!(ip.region(), "us-east-1");
    // The login provider needs the user pool; a malformed pool id is named.
    let e = Config::from_toml_and_env(
        &format!("[cognito]\nissuer = \"https://issuer.example\"\nclient_ids = [\"c\"]\nidentity_pool_id = \"{pool}\"\n"),
        env(&[]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("cognito.identity_pool_id: needs"),
        "{e}"
    );
    let e = Config::from_toml_and_env(
        "[cognito]\nregion = \"us-east-1\"\nuser_pool_id = \"us-east-1_A\"\nclient_ids = [\"c\"]\nidentity_pool_id = \"alice\"\n",
        env(&[]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("is not REGION:GUID"), "{e}");

    let c = Config::from_toml_and_env(
        "[metadata]\nurl = \"dynamodb://imgorigin-meta?region=eu-west-1&create=true\"\n",
        env(&[]),
    )
    .unwrap();
    assert!(c.metadata_url.starts_with("dynamodb://"));
    let e = Config::from_toml_and_env("[metadata]\nurl = \"dynamodb://t?colour=red\"\n", env(&[]))
        .unwrap_err();
    assert!(e.to_string().contains("metadata.url"), "{e}");
}

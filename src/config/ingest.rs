//! `[ingest]` and `[cache.shared]` (SPEC §12): both work on the storage bucket, so both
//! need `storage.backend = "s3"`.

use super::*;

fn is_s3(raw: &RawConfig) -> bool {
    raw.storage.backend == "s3"
}

pub(super) fn validate_shared(raw: &RawConfig, errs: &mut Vec<String>) -> SharedCacheConfig {
    let c = &raw.cache.shared;
    let enabled = match c.backend.as_str() {
        "off" => false,
        "s3" => {
            if !is_s3(raw) {
                errs.push("cache.shared.backend: `s3` needs storage.backend = \"s3\"".into());
            }
            true
        }
        other => {
            errs.push(format!(
                "cache.shared.backend: `{other}` is not `off` or `s3`"
            ));
            false
        }
    };
    let p = &c.prefix;
    if p.is_empty()
        || !p.ends_with('/')
        || crate::storage::key::validate(p.trim_end_matches('/')).is_err()
    {
        errs.push(format!(
            "cache.shared.prefix: `{p}` must be a valid key prefix ending in `/`, e.g. `_variants/`"
        ));
    }
    let a = &raw.access;
    for (name, access) in [
        ("public_prefix", &a.public_prefix),
        ("protected_prefix", &a.protected_prefix),
        ("private_prefix", &a.private_prefix),
    ] {
        if !p.is_empty() && (access.starts_with(p.as_str()) || p.starts_with(access.as_str())) {
            errs.push(format!(
                "cache.shared.prefix: `{p}` overlaps access.{name} `{access}`; variants are never originals"
            ));
        }
    }
    SharedCacheConfig {
        enabled,
        prefix: p.clone(),
    }
}

pub(super) fn validate_ingest(raw: &RawConfig, errs: &mut Vec<String>) -> IngestConfig {
    let i = &raw.ingest;
    let queue_url = Some(i.queue_url.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(u) = &queue_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            errs.push(format!("ingest.queue_url: `{u}` is not an SQS queue URL"));
        }
        if !is_s3(raw) {
            errs.push(
                "ingest.queue_url: ingest reads S3 events; it needs storage.backend = \"s3\""
                    .into(),
            );
        }
    }
    let endpoint_url = Some(i.endpoint_url.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(u) = &endpoint_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        errs.push(format!("ingest.endpoint_url: `{u}` is not an http(s) URL"));
    }
    if i.concurrency == 0 {
        errs.push("ingest.concurrency: must be at least 1".into());
    }
    if i.wait_s > 20 {
        errs.push("ingest.wait_s: SQS long polls wait 0 to 20 seconds".into());
    }
    let service = |key: &str, v: &str, errs: &mut Vec<String>| match v {
        "off" => false,
        "rekognition" => true,
        other => {
            errs.push(format!(
                "ingest.{key}: `{other}` is not `off` or `rekognition`"
            ));
            false
        }
    };
    let labels = service("labels", &i.labels, errs);
    let moderation = service("moderation", &i.moderation, errs);
    if (labels || moderation) && queue_url.is_none() {
        errs.push(
            "ingest.labels / ingest.moderation: Rekognition runs in ingest; set ingest.queue_url"
                .into(),
        );
    }
    if !(0.0..=100.0).contains(&i.min_confidence) {
        errs.push("ingest.min_confidence: a percentage, 0 to 100".into());
    }
    for name in &i.eager_presets {
        if !raw.presets.contains_key(name) {
            errs.push(format!(
                "ingest.eager_presets: no preset `{name}` in [presets]"
            ));
        }
    }
    if !i.eager_presets.is_empty() && raw.cache.shared.backend != "s3" {
        errs.push("ingest.eager_presets: presets are rendered into the shared variant store; set cache.shared.backend = \"s3\"".into());
    }
    IngestConfig {
        queue_url,
        endpoint_url,
        concurrency: i.concurrency.max(1),
        wait_s: i.wait_s.min(20),
        eager_presets: i.eager_presets.clone(),
        labels,
        moderation,
        min_confidence: i.min_confidence,
    }
}

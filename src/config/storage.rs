//! `[storage]`: the folder or the S3 bucket, checked into `storage::StorageConfig`.

use super::*;

/// `[storage.s3]`: every problem goes to `errs`; the returned value is only used when
/// there are none.
pub(super) fn validate_s3(s3: &raw::StorageS3, errs: &mut Vec<String>) -> S3Config {
    let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let bucket = given(&s3.bucket).unwrap_or_else(|| {
        errs.push("storage.s3.bucket: required when storage.backend = \"s3\"".into());
        String::new()
    });
    let endpoint_url = given(&s3.endpoint_url);
    if let Some(e) = &endpoint_url
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        errs.push(format!(
            "storage.s3.endpoint_url: `{e}` is not an http:// or https:// URL"
        ));
    }
    let region = match (given(&s3.region), &endpoint_url) {
        (Some(r), _) => r,
        (None, Some(_)) => "us-east-1".into(),
        (None, None) => {
            errs.push("storage.s3.region: required unless storage.s3.endpoint_url is set".into());
            String::new()
        }
    };
    if s3.prefix.starts_with('/') {
        errs.push("storage.s3.prefix: must not start with `/`".into());
    }
    let secret = match (
        given(&s3.secret_access_key),
        given(&s3.secret_access_key_file),
    ) {
        (Some(_), Some(_)) => {
            errs.push(
                "storage.s3.secret_access_key_file: set either it or storage.s3.secret_access_key, not both"
                    .into(),
            );
            None
        }
        (Some(k), None) => Some(k),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                errs.push(format!(
                    "storage.s3.secret_access_key_file: {path} is empty"
                ));
                None
            }
            Err(e) => {
                errs.push(format!(
                    "storage.s3.secret_access_key_file: cannot read {path}: {e}"
                ));
                None
            }
        },
        (None, None) => None,
    };
    let key_id = given(&s3.access_key_id);
    let secret_given = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
    let credentials = match (key_id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(S3StaticCredentials {
            access_key_id,
            secret_access_key,
        }),
        (Some(_), None) if !secret_given => {
            errs.push(
                "storage.s3.secret_access_key: required with storage.s3.access_key_id (or secret_access_key_file)"
                    .into(),
            );
            None
        }
        (None, _) if secret_given => {
            errs.push(
                "storage.s3.access_key_id: required with storage.s3.secret_access_key(_file)"
                    .into(),
            );
            None
        }
        _ => None,
    };
    let mut timeout = |key: &str, v: f64| -> Duration {
        match Duration::try_from_secs_f64(v) {
            Ok(d) if !d.is_zero() && v <= 3600.0 => d,
            _ => {
                errs.push(format!("{key}: must be a number of seconds in (0, 3600]"));
                Duration::from_secs(1)
            }
        }
    };
    let connect_timeout = timeout("storage.s3.connect_timeout_s", s3.connect_timeout_s);
    let read_timeout = timeout("storage.s3.read_timeout_s", s3.read_timeout_s);
    S3Config {
        bucket,
        region,
        endpoint_url,
        force_path_style: s3.force_path_style,
        prefix: s3.prefix.clone(),
        credentials,
        connect_timeout,
        read_timeout,
    }
}

//! `[storage.s3]` validation.

use super::*;

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::from_toml_and_env(toml, std::iter::empty())
}

fn s3_of(c: Config) -> S3Config {
    match c.storage {
        StorageConfig::S3(s) => s,
        other => panic!("not s3: {other:?}"),
    }
}

#[test]
fn minimal_s3_config() {
    let c = s3_of(
        load("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"eu-west-1\"\n")
            .unwrap(),
    );
    assert_eq!(c.bucket, "b");
    assert_eq!(c.region, "eu-west-1");
    assert_eq!(c.endpoint_url, None);
    assert!(!c.force_path_style);
    assert_eq!(c.prefix, "");
    assert!(c.credentials.is_none(), "default chain");
    assert_eq!(c.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.read_timeout, Duration::from_secs(10));
}

#[test]
fn endpoint_implies_a_default_region_and_env_overrides_apply() {
    let c = Config::from_toml_and_env(
        "[storage]\nbackend = \"s3\"\n",
        [
            ("IMGORIGIN__STORAGE__S3__BUCKET", "imgs"),
            (
                "IMGORIGIN__STORAGE__S3__ENDPOINT_URL",
                "http://127.0.0.1:9000",
            ),
            ("IMGORIGIN__STORAGE__S3__FORCE_PATH_STYLE", "true"),
            ("IMGORIGIN__STORAGE__S3__PREFIX", "originals/"),
            ("IMGORIGIN__STORAGE__S3__ACCESS_KEY_ID", "AK"),
            ("IMGORIGIN__STORAGE__S3__SECRET_ACCESS_KEY", "SK"),
            ("IMGORIGIN__STORAGE__S3__READ_TIMEOUT_S", "0.5"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let c = s3_of(c);
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.force_path_style);
    assert_eq!(c.prefix, "originals/");
    let creds = c.credentials.unwrap();
    assert_eq!(creds.access_key_id, "AK");
    assert_eq!(creds.secret_access_key, "SK");
    assert!(!format!("{creds:?}").contains("SK"), "secret in Debug");
    assert_eq!(c.read_timeout, Duration::from_millis(500));
}

#[test]
fn secret_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sk");
    std::fs::write(&f, "s3cr3t\n").unwrap();
    let c = s3_of(
        load(&format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"r\"\naccess_key_id = \"AK\"\nsecret_access_key_file = {:?}\n",
            f.to_str().unwrap()
        ))
        .unwrap(),
    );
    assert_eq!(c.credentials.unwrap().secret_access_key, "s3cr3t");
}

fn error_keys(toml: &str) -> Vec<String> {
    load(toml)
        .unwrap_err()
        .0
        .iter()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_s3_problem_is_named_at_once() {
    let keys = error_keys(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nsecret_access_key = \"x\"\nconnect_timeout_s = 0\nread_timeout_s = -1\nprefix = \"/a/\"\n",
    );
    for k in [
        "storage.s3.bucket",
        "storage.s3.region",
        "storage.s3.access_key_id",
        "storage.s3.connect_timeout_s",
        "storage.s3.read_timeout_s",
        "storage.s3.prefix",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    let keys = error_keys(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"r\"\naccess_key_id = \"AK\"\n",
    );
    assert_eq!(keys, ["storage.s3.secret_access_key"]);
    let keys = error_keys(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint_url = \"s3.example.com\"\naccess_key_id = \"AK\"\nsecret_access_key = \"a\"\nsecret_access_key_file = \"/nonexistent\"\n",
    );
    assert!(
        keys.contains(&"storage.s3.endpoint_url".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"storage.s3.secret_access_key_file".to_string()),
        "{keys:?}"
    );
    let keys = error_keys(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"r\"\naccess_key_id = \"AK\"\nsecret_access_key_file = \"/nonexistent/imgorigin-sk\"\n",
    );
    assert_eq!(keys, ["storage.s3.secret_access_key_file"]);
}

#[test]
fn secrets_are_not_in_error_messages() {
    let e = load("[storage]\nbackend = \"s3\"\n[storage.s3]\nsecret_access_key = \"topsecret\"\n")
        .unwrap_err();
    assert!(!e.to_string().contains("topsecret"), "{e}");
}

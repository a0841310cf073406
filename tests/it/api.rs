//! The metadata API (SPEC §6) through real HTTP, each test against SQLite, PostgreSQL and
//! DynamoDB. PostgreSQL comes from `IMGORIGIN_TEST_POSTGRES_URL` (scripts/test starts or
//! finds a server and makes a scratch database); every test gets its own schema. Without
//! that variable the PostgreSQL cases are skipped, unless `CI` is set, where they fail.
//! DynamoDB is moto in server mode (one process for the test binary), a table per test.

use crate::support::*;
use async_trait::async_trait;
use bytes::Bytes;
use imgorigin::auth::local::LocalIssuer;
use imgorigin::config::Config;
use imgorigin::metadata::{
    ImageRecord, Level, ListQuery, MetaError, MetadataStore, Patch, RecordState, Reservation,
    Share, User,
};
use imgorigin::storage::{Object, ObjectMeta, Storage, StorageError};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const BASE_URL: &str = "https://img.example.com";
const ISSUER: &str = "imgorigin-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
    Dynamodb,
}

/// `name::sqlite`, `name::postgres` and `name::dynamodb` for `async fn name(db: Db)`.
macro_rules! both_dbs {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Db::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                super::$name(super::Db::Dynamodb).await
            }
        }
    };
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A fresh schema in the test PostgreSQL database, as a URL whose connections use it.
/// `None` (skip) only outside CI when no database was given.
pub async fn postgres_url() -> Option<String> {
    match std::env::var("IMGORIGIN_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let schema = format!("t_{}", imgorigin::metadata::new_id());
            let pool = sqlx::PgPool::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("IMGORIGIN_TEST_POSTGRES_URL: cannot connect: {e}"));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        }
        _ => {
            assert!(
                !in_ci(),
                "CI is set but IMGORIGIN_TEST_POSTGRES_URL is not: the PostgreSQL API tests must run (use scripts/test)"
            );
            eprintln!("skipping a PostgreSQL case: IMGORIGIN_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

async fn db_url(db: Db, dir: &Path) -> Option<String> {
    match db {
        Db::Sqlite => Some(format!(
            "sqlite://{}",
            dir.join("meta.db").to_str().unwrap()
        )),
        Db::Postgres => postgres_url().await,
        Db::Dynamodb => Some(dynamodb_url().await),
    }
}

/// A fresh table on the shared moto, created by the store (`create=true`).
pub async fn dynamodb_url() -> String {
    let moto = Moto::shared().await;
    let endpoint: String =
        percent_encoding::utf8_percent_encode(&moto.endpoint, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    format!(
        "dynamodb://t_{}?region=us-east-1&endpoint={endpoint}&create=true",
        imgorigin::metadata::new_id()
    )
}

/// One RSA key for the whole test process (local tokens and share signing).
fn key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    })
}

fn public_pem() -> String {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let key = imgorigin::auth::cloudfront::parse_private_key(key_pem()).unwrap();
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// Who makes a request.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Guest,
    User(&'a str),
    Admin,
    BadToken,
}

pub enum Req {
    Empty,
    Json(Value),
    Raw(&'static str, Vec<u8>),
    Multipart(&'static str, Vec<u8>),
}

/// How to build one API server.
pub struct Setup {
    pub db_url: String,
    /// `[storage…]` TOML and the folder where originals appear on disk.
    pub storage: (String, PathBuf),
    pub extra: String,
    pub signing: bool,
    /// Wraps the real storage and metadata store (fault injection).
    pub wrap: Option<Wrap>,
}

pub type Wrap = Box<
    dyn FnOnce(
            Arc<dyn Storage>,
            Arc<dyn MetadataStore>,
        ) -> (Arc<dyn Storage>, Arc<dyn MetadataStore>)
        + Send,
>;

pub struct Api {
    pub s: TestServer,
    issuer: LocalIssuer,
    /// Where originals are on disk (fs root, or the prefix folder in the S3 bucket).
    pub root: PathBuf,
}

impl Api {
    /// A server on `db` and the fs backend with `extra` config; `None` to skip.
    pub async fn start(db: Db, extra: &str) -> Option<Api> {
        let dir = tempfile::tempdir().unwrap();
        let url = db_url(db, dir.path()).await?;
        let root = dir.path().join("originals");
        std::fs::create_dir_all(&root).unwrap();
        let storage = format!("[storage.fs]\nroot = {:?}\n", root.to_str().unwrap());
        Some(
            Self::build(
                dir,
                Setup {
                    db_url: url,
                    storage: (storage, root),
                    extra: extra.to_string(),
                    signing: true,
                    wrap: None,
                },
            )
            .await,
        )
    }

    pub async fn build(dir: tempfile::TempDir, setup: Setup) -> Api {
        let local = dir.path().join("local.pem");
        std::fs::write(&local, key_pem()).unwrap();
        let signing = if setup.signing {
            let cf = dir.path().join("cf.pem");
            std::fs::write(&cf, key_pem()).unwrap();
            format!(
                "[cloudfront]\npublic_base_urls = [\"{BASE_URL}\"]\nsigning_key_file = {:?}\nsigning_key_pair_id = \"KTEST\"\n[[cloudfront.keys]]\nid = \"KTEST\"\npublic_key_pem = '''{}'''\n",
                cf.to_str().unwrap(),
                public_pem()
            )
        } else {
            String::new()
        };
        let toml = format!(
            "{storage}[metadata]\nurl = {url:?}\n[auth.local]\nkey_file = {local:?}\nissuer = \"{ISSUER}\"\n[admin]\napi_keys_sha256 = [\"{admin}\"]\n{signing}{extra}",
            storage = setup.storage.0,
            url = setup.db_url,
            local = local.to_str().unwrap(),
            admin = sha256_hex(ADMIN_KEY.as_bytes()),
            extra = setup.extra,
        );
        let config = Config::from_toml_and_env(&toml, std::iter::empty()).expect("config");
        let app = match setup.wrap {
            None => imgorigin::App::builder(config)
                .build()
                .await
                .expect("build app"),
            Some(wrap) => {
                let storage: Arc<dyn Storage> = match &config.storage {
                    imgorigin::config::StorageConfig::Fs { root } => {
                        Arc::new(imgorigin::storage::fs::FsStorage::new(root).unwrap())
                    }
                    imgorigin::config::StorageConfig::S3(s3) => {
                        Arc::new(imgorigin::storage::s3::S3Storage::new(s3).await)
                    }
                };
                let meta = imgorigin::metadata::open(&config.metadata_url)
                    .await
                    .unwrap();
                let (storage, meta) = wrap(storage, meta);
                imgorigin::App::builder(config)
                    .storage(storage)
                    .metadata(meta)
                    .build()
                    .await
                    .expect("build app")
            }
        };
        let issuer = LocalIssuer::load_or_create(&local, ISSUER).unwrap();
        let root = setup.storage.1.clone();
        let s = TestServer::serve(app, dir, root.clone()).await;
        Api { s, issuer, root }
    }

    pub fn token(&self, sub: &str) -> String {
        self.issuer
            .mint(sub, &[], std::time::Duration::from_secs(600))
            .unwrap()
    }

    pub async fn call(&self, method: &str, path: &str, who: Who<'_>, body: Req) -> (u16, Value) {
        let r = self.send(method, path, who, body).await;
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if status >= 400 {
            assert_eq!(ct, "application/problem+json", "{method} {path}");
            if path.starts_with("/api/v1/") {
                assert_eq!(r.headers()["cache-control"], "no-store", "{method} {path}");
            }
        }
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        (status, v)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        who: Who<'_>,
        body: Req,
    ) -> reqwest::Response {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.s.client.request(m, self.s.url(path));
        rb = match who {
            Who::Guest => rb,
            Who::User(sub) => rb.header("authorization", format!("Bearer {}", self.token(sub))),
            Who::Admin => rb.header("x-api-key", ADMIN_KEY),
            Who::BadToken => rb.header("authorization", "Bearer not.a.token"),
        };
        rb = match body {
            Req::Empty => rb,
            Req::Json(v) => rb
                .header("content-type", "application/json")
                .body(v.to_string()),
            Req::Raw(ct, b) => rb.header("content-type", ct).body(b),
            Req::Multipart(filename, b) => {
                let boundary = "xXimgoriginBoundaryXx";
                let mut body = Vec::new();
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n").as_bytes(),
                );
                body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
                body.extend_from_slice(&b);
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                rb.header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
            }
        };
        rb.send().await.unwrap()
    }

    /// Uploads `bytes` as `who` at `level`; asserts 201 and returns the record.
    pub async fn upload(&self, who: Who<'_>, level: &str, bytes: Vec<u8>) -> Value {
        let (st, v) = self
            .call(
                "POST",
                &format!("/api/v1/images?level={level}"),
                who,
                Req::Raw("image/png", bytes),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        v
    }

    /// Every file below the originals folder (relative paths).
    pub fn stored_files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
                    // s3s-fs keeps metadata files next to objects.
                    if !rel.contains(".s3s") && !rel.contains(".tmp-") {
                        out.push(rel);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    /// Ids of every listed record (as admin), following cursors.
    pub async fn all_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/images?limit=100{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (st, v) = self.call("GET", &path, Who::Admin, Req::Empty).await;
            assert_eq!(st, 200, "{v}");
            for it in v["items"].as_array().unwrap() {
                ids.push(it["id"].as_str().unwrap().to_string());
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return ids,
            }
        }
    }
}

/// A small PNG that differs by `seed`.
pub fn png(seed: u32) -> Vec<u8> {
    solid_png(
        3 + seed % 5,
        2 + seed % 3,
        [(seed % 256) as u8, 10, 200, 255],
    )
}

/// A PNG of noise, about `w*h*3` bytes.
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut x: u32 = 12345;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        image::Rgb([(x >> 16) as u8, (x >> 8) as u8, (x >> 24) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn path_of(url: &str) -> &str {
    url.strip_prefix(BASE_URL).unwrap_or(url)
}

// ---- the tests ------------------------------------------------------------------------

/// Upload (raw and multipart, every level), get, deliver, list, patch, delete.
async fn crud(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let alice = Who::User("alice");
    let bytes = fixture("quad.png");
    let pub_rec = api.upload(alice, "public", bytes.clone()).await;
    assert_eq!(pub_rec["level"], "public");
    assert_eq!(pub_rec["owner"], "alice");
    assert_eq!(pub_rec["content_type"], "image/png");
    assert_eq!(pub_rec["bytes"], bytes.len());
    assert_eq!(pub_rec["sha256"], sha256_hex(&bytes));
    let info = image::load_from_memory(&bytes).unwrap();
    assert_eq!(pub_rec["width"], info.width());
    assert_eq!(pub_rec["height"], info.height());
    let id = pub_rec["id"].as_str().unwrap();
    let key = pub_rec["key"].as_str().unwrap();
    assert_eq!(key, format!("public/{id}.png"));
    assert_eq!(pub_rec["url"], format!("{BASE_URL}/{key}"));
    assert_eq!(pub_rec["tags"], json!([]));
    assert!(pub_rec["created_at"].as_str().unwrap().ends_with('Z'));
    // Stored, and delivered, byte for byte.
    assert_eq!(std::fs::read(api.root.join(key)).unwrap(), bytes);
    assert_eq!(api.s.ok_bytes(&format!("/{key}")).await, bytes);

    // Multipart, protected; the part's file name is recorded.
    let jpg = fixture("quad.jpg");
    let (st, prot) = api
        .call(
            "POST",
            "/api/v1/images?level=protected",
            alice,
            Req::Multipart("holiday.jpg", jpg.clone()),
        )
        .await;
    assert_eq!(st, 201, "{prot}");
    assert_eq!(prot["content_type"], "image/jpeg");
    assert_eq!(prot["filename"], "holiday.jpg");
    let pid = prot["id"].as_str().unwrap();
    assert_eq!(prot["key"], format!("protected/alice/{pid}.jpg"));
    // `filename` in the query wins; private.
    let (st, priv_rec) = api
        .call(
            "POST",
            "/api/v1/images?level=private&filename=secret%20plan.png",
            alice,
            Req::Raw("image/png", png(1)),
        )
        .await;
    assert_eq!(st, 201, "{priv_rec}");
    assert_eq!(priv_rec["filename"], "secret plan.png");
    assert!(
        priv_rec["key"]
            .as_str()
            .unwrap()
            .starts_with("private/alice/")
    );

    // GET one.
    let (st, got) = api
        .call(
            "GET",
            &format!("/api/v1/images/{id}"),
            Who::Guest,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(got, pub_rec);

    // List: newest first.
    let (st, page) = api
        .call("GET", "/api/v1/images?owner=me", alice, Req::Empty)
        .await;
    assert_eq!(st, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [priv_rec["id"].as_str().unwrap(), pid, id]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = api
        .call("GET", "/api/v1/images?level=protected", alice, Req::Empty)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    // PATCH: tags are normalised, null clears.
    let (st, patched) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            alice,
            Req::Json(json!({"tags": ["Cats", "beach", "cats"], "description": "At the sea", "filename": "sea.png"})),
        )
        .await;
    assert_eq!(st, 200, "{patched}");
    assert_eq!(patched["tags"], json!(["cats", "beach"]));
    assert_eq!(patched["description"], "At the sea");
    assert_eq!(patched["filename"], "sea.png");
    assert!(patched["updated_at"].as_str() >= pub_rec["updated_at"].as_str());
    let (_, tagged) = api
        .call("GET", "/api/v1/images?tag=cats", Who::Guest, Req::Empty)
        .await;
    assert_eq!(tagged["items"].as_array().unwrap().len(), 1);
    assert_eq!(tagged["items"][0]["id"], id);
    let (_, none) = api
        .call("GET", "/api/v1/images?tag=cat", Who::Guest, Req::Empty)
        .await;
    assert_eq!(none["items"], json!([]));
    let (st, cleared) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            alice,
            Req::Json(json!({"description": null})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["tags"], json!(["cats", "beach"]));

    // Render a variant so the cache has something to drop, then DELETE.
    assert_eq!(api.s.get(&format!("/{key}?w=5")).await.status(), 200);
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 204);
    let (st, _) = api
        .call("GET", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 404);
    assert!(!api.root.join(key).exists(), "original deleted");
    assert_eq!(api.s.get(&format!("/{key}?w=5")).await.status(), 404);
    assert_eq!(api.s.get(&format!("/{key}")).await.status(), 404);
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 404, "second delete");
}
both_dbs!(crud);

/// SPEC §3/§6 for every endpoint: owner, other user, guest, admin.
async fn authorization(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let (alice, bob) = (Who::User("alice"), Who::User("bob"));
    let public = api.upload(alice, "public", png(1)).await;
    let protected = api.upload(alice, "protected", png(2)).await;
    let private = api.upload(alice, "private", png(3)).await;
    let id = |r: &Value| r["id"].as_str().unwrap().to_string();

    // Reads: the access table.
    let cases = [
        (&public, [200, 200, 200, 200]),
        (&protected, [404, 200, 200, 200]),
        (&private, [404, 404, 200, 200]),
    ];
    let callers = [Who::Guest, bob, alice, Who::Admin];
    for (rec, want) in cases {
        for (who, w) in callers.iter().zip(want) {
            let (st, _) = api
                .call(
                    "GET",
                    &format!("/api/v1/images/{}", id(rec)),
                    *who,
                    Req::Empty,
                )
                .await;
            assert_eq!(st, w, "{who:?} reading {}", rec["level"]);
        }
    }
    // Lists contain only readable records.
    let listed = |v: &Value| -> HashSet<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (who, want) in [
        (Who::Guest, vec![id(&public)]),
        (bob, vec![id(&public), id(&protected)]),
        (alice, vec![id(&public), id(&protected), id(&private)]),
        (Who::Admin, vec![id(&public), id(&protected), id(&private)]),
    ] {
        let (st, v) = api.call("GET", "/api/v1/images", who, Req::Empty).await;
        assert_eq!(st, 200);
        assert_eq!(
            listed(&v),
            want.into_iter().collect::<HashSet<String>>(),
            "{who:?}"
        );
    }
    // Asking for someone else's private records yields nothing.
    let (_, v) = api
        .call(
            "GET",
            "/api/v1/images?owner=alice&level=private",
            bob,
            Req::Empty,
        )
        .await;
    assert_eq!(v["items"], json!([]));

    // Writes: guest 401, other reader 403, non-reader 404, owner and admin pass.
    for rec in [&public, &protected] {
        let path = format!("/api/v1/images/{}", id(rec));
        let body = || Req::Json(json!({"tags": ["x"]}));
        assert_eq!(api.call("PATCH", &path, Who::Guest, body()).await.0, 401);
        assert_eq!(api.call("PATCH", &path, bob, body()).await.0, 403);
        assert_eq!(api.call("PATCH", &path, alice, body()).await.0, 200);
        assert_eq!(api.call("PATCH", &path, Who::Admin, body()).await.0, 200);
        let shares = format!("{path}/shares");
        let sb = || Req::Json(json!({"expires_in": 60}));
        assert_eq!(api.call("POST", &shares, Who::Guest, sb()).await.0, 401);
        assert_eq!(api.call("POST", &shares, bob, sb()).await.0, 403);
        assert_eq!(api.call("GET", &shares, bob, Req::Empty).await.0, 403);
        assert_eq!(
            api.call("DELETE", &path, Who::Guest, Req::Empty).await.0,
            401
        );
        assert_eq!(api.call("DELETE", &path, bob, Req::Empty).await.0, 403);
    }
    let ppath = format!("/api/v1/images/{}", id(&private));
    assert_eq!(
        api.call("PATCH", &ppath, bob, Req::Json(json!({"tags": []})))
            .await
            .0,
        404
    );
    assert_eq!(api.call("DELETE", &ppath, bob, Req::Empty).await.0, 404);
    // Shares: the owner creates, bob may not revoke, admin may.
    let (st, share) = api
        .call(
            "POST",
            &format!("{ppath}/shares"),
            alice,
            Req::Json(json!({"expires_in": 60})),
        )
        .await;
    assert_eq!(st, 201, "{share}");
    let spath = format!("/api/v1/shares/{}", share["id"].as_str().unwrap());
    assert_eq!(
        api.call("DELETE", &spath, Who::Guest, Req::Empty).await.0,
        401
    );
    assert_eq!(api.call("DELETE", &spath, bob, Req::Empty).await.0, 404);
    assert_eq!(
        api.call("DELETE", &spath, Who::Admin, Req::Empty).await.0,
        204
    );
    // Uploads: guests may not; users only as themselves; admins for anyone.
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            Who::Guest,
            Req::Raw("image/png", png(4)),
        )
        .await;
    assert_eq!(st, 401);
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images?level=private&owner=alice",
            bob,
            Req::Raw("image/png", png(4)),
        )
        .await;
    assert_eq!(st, 403);
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/images?level=private&owner=bob",
            Who::Admin,
            Req::Raw("image/png", png(5)),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["owner"], "bob");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images?level=private",
            Who::Admin,
            Req::Raw("image/png", png(5)),
        )
        .await;
    assert_eq!(st, 400, "admin needs an owner for private uploads");
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/images",
            Who::Admin,
            Req::Raw("image/png", png(6)),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(v["owner"], Value::Null);
    // Owner and admin delete.
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/images/{}", id(&public)),
            alice,
            Req::Empty
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api.call("DELETE", &ppath, Who::Admin, Req::Empty).await.0,
        204
    );
    // Cache purge is for admins.
    let pb = || Req::Json(json!({"prefix": "public/"}));
    assert_eq!(
        api.call("POST", "/api/v1/cache/purge", Who::Guest, pb())
            .await
            .0,
        401
    );
    assert_eq!(
        api.call("POST", "/api/v1/cache/purge", alice, pb()).await.0,
        403
    );
    assert_eq!(
        api.call("POST", "/api/v1/cache/purge", Who::Admin, pb())
            .await
            .0,
        200
    );
    // Bad credentials never fall through to guest.
    assert_eq!(
        api.call("GET", "/api/v1/images", Who::BadToken, Req::Empty)
            .await
            .0,
        401
    );
    let r = api
        .s
        .get_with("/api/v1/images", &[("x-api-key", "wrong")])
        .await;
    assert_eq!(r.status(), 403);
}
both_dbs!(authorization);

/// 400, 401, 404, 413, 415, 422 — and refused uploads leave nothing behind.
async fn errors_and_refused_uploads(db: Db) {
    let Some(api) = Api::start(db, "[limits]\nmax_upload_bytes = 20000\n").await else {
        return;
    };
    let alice = Who::User("alice");
    let up = |ct: &'static str, b: Vec<u8>| Req::Raw(ct, b);
    // 400s.
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=%%%",
        "cursor=bm9wZQ",
        "level=secret",
        "unknown=1",
        "tag=a%2Cb",
    ] {
        let (st, v) = api
            .call("GET", &format!("/api/v1/images?{q}"), alice, Req::Empty)
            .await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(v["detail"].is_string());
    }
    for q in ["level=other", "level=nope", "filename=%07bell"] {
        let (st, _) = api
            .call(
                "POST",
                &format!("/api/v1/images?{q}"),
                alice,
                up("image/png", png(1)),
            )
            .await;
        assert_eq!(st, 400, "{q}");
    }
    let rec = api.upload(alice, "public", png(1)).await;
    let path = format!("/api/v1/images/{}", rec["id"].as_str().unwrap());
    for body in [
        Req::Raw("application/json", b"{not json".to_vec()),
        Req::Json(json!({"colour": "red"})),
        Req::Json(json!({"tags": ["no spaces"]})),
        Req::Json(json!({"tags": "x"})),
    ] {
        assert_eq!(api.call("PATCH", &path, alice, body).await.0, 400);
    }
    for body in [
        json!({"expires_in": 0}),
        json!({"expires_in": 604801}),
        json!({"expires_in": 60, "params": "w=abc"}),
        json!({"expires_in": 60, "params": "share=x"}),
        json!({"expires_in": 60, "params": "Expires=1"}),
    ] {
        let (st, v) = api
            .call(
                "POST",
                &format!("{path}/shares"),
                alice,
                Req::Json(body.clone()),
            )
            .await;
        assert_eq!(st, 400, "{body}: {v}");
    }
    for body in [
        json!({}),
        json!({"key": "a", "prefix": "b"}),
        json!({"prefix": ""}),
    ] {
        let (st, _) = api
            .call("POST", "/api/v1/cache/purge", Who::Admin, Req::Json(body))
            .await;
        assert_eq!(st, 400);
    }
    // 401: no credentials for a write, or `owner=me` as a guest.
    let (st, _) = api
        .call("GET", "/api/v1/images?owner=me", Who::Guest, Req::Empty)
        .await;
    assert_eq!(st, 401);
    // 404s.
    assert_eq!(
        api.call("GET", "/api/v1/images/nosuchid", alice, Req::Empty)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("DELETE", "/api/v1/shares/nosuchshare", alice, Req::Empty)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("GET", "/api/v2/nothing", alice, Req::Empty)
            .await
            .0,
        404
    );
    // 405 on a known route with the wrong method.
    assert_eq!(
        api.call("PUT", "/api/v1/images", alice, Req::Empty).await.0,
        405
    );

    let before = api.stored_files();
    let records_before = api.all_ids("").await;
    // 413: over `limits.max_upload_bytes`, raw (Content-Length) and multipart (streamed).
    let big = noise_png(120, 120);
    assert!(big.len() > 20000);
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            up("image/png", big.clone()),
        )
        .await;
    assert_eq!(st, 413, "{v}");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            Req::Multipart("big.png", big),
        )
        .await;
    assert_eq!(st, 413);
    // 415: not an image type, or bytes that are no image.
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            up("text/plain", b"hello".to_vec()),
        )
        .await;
    assert_eq!(st, 415);
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            up("image/png", b"this is not an image\n".to_vec()),
        )
        .await;
    assert_eq!(st, 415);
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            Req::Multipart("notes.txt", b"plain text".to_vec()),
        )
        .await;
    assert_eq!(st, 415);
    // 422: a 60000x60000 pixel bomb (refused from its header) and a truncated JPEG.
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            up("image/png", png_header_only(60_000, 60_000)),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("60000x60000"), "{v}");
    let jpeg = fixture("quad.jpg");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images",
            alice,
            up("image/jpeg", jpeg[..jpeg.len() / 2].to_vec()),
        )
        .await;
    assert_eq!(st, 422);
    // Nothing of the refused uploads was stored or recorded.
    assert_eq!(api.stored_files(), before);
    assert_eq!(api.all_ids("").await, records_before);
}
both_dbs!(errors_and_refused_uploads);

/// 250 records paged 7 at a time while 60 more are inserted: every original record
/// exactly once, in order, no duplicates.
async fn pagination_under_concurrent_inserts(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let api = Arc::new(api);
    let tiny = png(1);
    let mut originals = Vec::new();
    for i in 0..250u32 {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        let r = api.upload(Who::User(who), "public", tiny.clone()).await;
        originals.push(r["id"].as_str().unwrap().to_string());
    }
    let writer = {
        let api = api.clone();
        let tiny = tiny.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                api.upload(Who::User("carol"), "public", tiny.clone()).await;
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut times: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/v1/images?limit=7".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = api.call("GET", &path, Who::Guest, Req::Empty).await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        for it in items {
            seen.push(it["id"].as_str().unwrap().to_string());
            times.push(it["created_at"].as_str().unwrap().to_string());
        }
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        // Between every two pages at least one newer record arrives (plus the writer's).
        api.upload(Who::User("dave"), "public", tiny.clone()).await;
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    for id in &originals {
        assert!(unique.contains(id), "original record {id} missing");
    }
    // The originals appear newest first, in exactly reverse insertion order.
    let order: Vec<&String> = seen.iter().filter(|id| originals.contains(id)).collect();
    let want: Vec<&String> = originals.iter().rev().collect();
    assert_eq!(order, want);
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // Filters combine with paging.
    let alice = api.all_ids("&owner=alice").await;
    assert_eq!(alice.len(), 125);
    let total = api.all_ids("").await.len();
    assert_eq!(total, 250 + 60 + (pages - 1));
    eprintln!(
        "pagination: {pages} pages of 7 listed {} records (250 originals + {} that were new when paging began); {} inserted while paging",
        seen.len(),
        seen.len() - 250,
        total - 250
    );
}
both_dbs!(pagination_under_concurrent_inserts);

/// Share links: signed URL with `share=<id>` delivers, list shows it, revoke → 403;
/// a share for one key does not open another; transform params are kept.
async fn shares(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let alice = Who::User("alice");
    let rec = api.upload(alice, "private", fixture("quad.png")).await;
    let other = api.upload(alice, "private", png(2)).await;
    let id = rec["id"].as_str().unwrap();
    let key = rec["key"].as_str().unwrap();
    assert_eq!(api.s.get(&format!("/{key}")).await.status(), 403, "guest");
    let (st, share) = api
        .call(
            "POST",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Json(json!({"expires_in": 3600, "params": "w=4&fm=png"})),
        )
        .await;
    assert_eq!(st, 201, "{share}");
    let url = share["url"].as_str().unwrap();
    let sid = share["id"].as_str().unwrap();
    assert!(url.starts_with(&format!("{BASE_URL}/{key}?w=4&fm=png&share={sid}&Expires=")));
    assert!(url.contains("&Signature=") && url.contains("&Key-Pair-Id=KTEST"));
    assert!(share["expires_at"].as_str().unwrap().ends_with('Z'));
    let r = api.s.get(path_of(url)).await;
    assert_eq!(r.status(), 200);
    let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.width(), 4);
    let max_age: u64 = cc.trim_start_matches("public, max-age=").parse().unwrap();
    assert!(
        max_age <= 300,
        "{cc}: capped by cache_control.share_max_age"
    );
    // The same share id in a URL for another key is refused even if signed.
    let signer = imgorigin::auth::cloudfront::UrlSigner::from_pem(key_pem(), "KTEST").unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let forged = signer.sign_canned(
        &format!("{BASE_URL}/{}?share={sid}", other["key"].as_str().unwrap()),
        exp,
    );
    assert_eq!(api.s.get(path_of(&forged)).await.status(), 403);
    let unknown = signer.sign_canned(&format!("{BASE_URL}/{key}?share=nosuchshare"), exp);
    assert_eq!(api.s.get(path_of(&unknown)).await.status(), 403);
    // A plain signed URL (no share) still works: signatures alone are not revocable.
    let plain = signer.sign_canned(&format!("{BASE_URL}/{key}"), exp);
    assert_eq!(api.s.get(path_of(&plain)).await.status(), 200);
    // `share` outside a signed URL does not open anything (guest: 403 before parameters).
    assert_eq!(
        api.s.get(&format!("/{key}?share={sid}")).await.status(),
        403
    );
    let tok = format!("Bearer {}", api.token("alice"));
    let r = api
        .s
        .get_with(
            &format!("/{key}?share={sid}"),
            &[("authorization", tok.as_str())],
        )
        .await;
    assert_eq!(r.status(), 400, "`share` is only valid inside a signed URL");

    // List.
    let (st, list) = api
        .call(
            "GET",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], sid);
    assert_eq!(list["items"][0]["url"], url);
    assert_eq!(list["items"][0]["revoked"], false);
    assert_eq!(list["items"][0]["params"], "w=4&fm=png");
    // Revoke: the very same URL is now refused, also from the variant cache.
    let (st, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/shares/{sid}"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(api.s.get(path_of(url)).await.status(), 403);
    let (_, list) = api
        .call(
            "GET",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(list["items"][0]["revoked"], true);
    // Revoking twice is fine.
    let (st, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/shares/{sid}"),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    // Deleting the image removes its shares.
    let (_, s2) = api
        .call(
            "POST",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Json(json!({"expires_in": 60})),
        )
        .await;
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/shares/{}", s2["id"].as_str().unwrap()),
            Who::Admin,
            Req::Empty
        )
        .await
        .0,
        404
    );
}
both_dbs!(shares);

/// Without `cloudfront.signing_key_file`, share creation is a clear 503.
#[tokio::test]
async fn shares_need_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("originals");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").to_str().unwrap());
    let storage = format!("[storage.fs]\nroot = {:?}\n", root.to_str().unwrap());
    let api = Api::build(
        dir,
        Setup {
            db_url: url,
            storage: (storage, root),
            extra: String::new(),
            signing: false,
            wrap: None,
        },
    )
    .await;
    let rec = api.upload(Who::User("alice"), "public", png(1)).await;
    let (st, v) = api
        .call(
            "POST",
            &format!("/api/v1/images/{}/shares", rec["id"].as_str().unwrap()),
            Who::User("alice"),
            Req::Json(json!({"expires_in": 60})),
        )
        .await;
    assert_eq!(st, 503);
    assert!(v["detail"].as_str().unwrap().contains("signing_key_file"));
    // The record's URL is relative without public_base_urls.
    assert_eq!(rec["url"], format!("/{}", rec["key"].as_str().unwrap()));
}

/// Register an object already in storage; presigned uploads are S3-only (501 on fs).
async fn register_and_presign_on_fs(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let (alice, bob) = (Who::User("alice"), Who::User("bob"));
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/uploads",
            alice,
            Req::Json(json!({"level": "protected", "content_type": "image/png"})),
        )
        .await;
    assert_eq!(st, 501, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("S3"), "{v}");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/uploads",
            Who::Guest,
            Req::Json(json!({"content_type": "image/png"})),
        )
        .await;
    assert_eq!(st, 401);
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/uploads",
            alice,
            Req::Json(json!({"content_type": "text/html"})),
        )
        .await;
    assert_eq!(st, 415);

    let bytes = fixture("quad.png");
    std::fs::create_dir_all(api.root.join("protected/alice")).unwrap();
    std::fs::write(api.root.join("protected/alice/direct.png"), &bytes).unwrap();
    std::fs::write(api.root.join("protected/alice/notes.txt"), b"text").unwrap();
    std::fs::write(
        api.root.join("protected/alice/bomb.png"),
        png_header_only(60_000, 60_000),
    )
    .unwrap();
    let reg = |key: &str| Req::Json(json!({"key": key, "filename": "direct.png"}));
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            Who::Guest,
            reg("protected/alice/direct.png")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            bob,
            reg("protected/alice/direct.png")
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.call("POST", "/api/v1/images/register", alice, reg("other/x.png"))
            .await
            .0,
        403
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/../x.png")
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/missing.png")
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/notes.txt")
        )
        .await
        .0,
        415
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/bomb.png")
        )
        .await
        .0,
        422
    );
    let (st, rec) = api
        .call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/direct.png"),
        )
        .await;
    assert_eq!(st, 201, "{rec}");
    assert_eq!(rec["owner"], "alice");
    assert_eq!(rec["level"], "protected");
    assert_eq!(rec["sha256"], sha256_hex(&bytes));
    assert_eq!(rec["filename"], "direct.png");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images/register",
            alice,
            reg("protected/alice/direct.png"),
        )
        .await;
    assert_eq!(st, 409, "registered twice");
    // Admins register anything, e.g. outside the level prefixes.
    std::fs::create_dir_all(api.root.join("other")).unwrap();
    std::fs::write(api.root.join("other/a.png"), png(3)).unwrap();
    let (st, rec) = api
        .call(
            "POST",
            "/api/v1/images/register",
            Who::Admin,
            reg("other/a.png"),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(rec["level"], "other");
    // ... which only admins may then read (access.other = none).
    let (st, _) = api
        .call(
            "GET",
            &format!("/api/v1/images/{}", rec["id"].as_str().unwrap()),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 404);
}
both_dbs!(register_and_presign_on_fs);

/// Two registrations of one key at the same moment: the store's uniqueness (a unique
/// index, a conditional write) lets exactly one win; the other is 409, and one record
/// remains. Repeated, so the two really overlap on some rounds.
async fn concurrent_registrations(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let bytes = fixture("quad.png");
    std::fs::create_dir_all(api.root.join("protected/alice")).unwrap();
    for round in 0..5 {
        let key = format!("protected/alice/race{round}.png");
        std::fs::write(api.root.join(&key), &bytes).unwrap();
        let reg = || {
            api.call(
                "POST",
                "/api/v1/images/register",
                Who::User("alice"),
                Req::Json(json!({ "key": key })),
            )
        };
        let ((a, va), (b, vb)) = tokio::join!(reg(), reg());
        let mut got = [a, b];
        got.sort();
        assert_eq!(got, [201, 409], "round {round}: {va} {vb}");
    }
    let ids = api.all_ids("&owner=alice").await;
    assert_eq!(ids.len(), 5, "one record per key");
}
both_dbs!(concurrent_registrations);

/// API writes count against `rate_limit.writes_per_s` per client; reads do not.
#[tokio::test]
async fn api_writes_are_rate_limited() {
    let Some(api) = Api::start(
        Db::Sqlite,
        "[rate_limit]\nenabled = true\nwrites_per_s = 0.01\nmisses_per_s = 100\nburst = 2\n",
    )
    .await
    else {
        return;
    };
    let alice = Who::User("alice");
    api.upload(alice, "public", png(1)).await;
    api.upload(alice, "public", png(2)).await;
    let r = api
        .send(
            "POST",
            "/api/v1/images",
            alice,
            Req::Raw("image/png", png(3)),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Another client has its own budget; reads are not limited.
    api.upload(Who::User("bob"), "public", png(4)).await;
    for _ in 0..5 {
        assert_eq!(
            api.call("GET", "/api/v1/images", alice, Req::Empty).await.0,
            200
        );
    }
}

/// A raw upload without Content-Length (chunked) is cut off at the cap while streaming.
#[tokio::test]
async fn chunked_upload_over_the_cap_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(api) = Api::start(Db::Sqlite, "[limits]\nmax_upload_bytes = 10000\n").await else {
        return;
    };
    let token = api.token("alice");
    let addr = api.s.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 4096];
    // Up to 64 KiB, far past the cap; the server may answer and close before the end.
    for _ in 0..16 {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        if sock.write_all(&c).await.is_err() {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(api.stored_files().is_empty());
}

/// Cache purge by key and by prefix drops rendered variants on this instance.
#[tokio::test]
async fn cache_purge() {
    let Some(api) = Api::start(Db::Sqlite, "").await else {
        return;
    };
    let rec = api
        .upload(Who::User("alice"), "public", fixture("quad.png"))
        .await;
    let key = rec["key"].as_str().unwrap().to_string();
    let count = || api.s.state.caches.variants.run_pending_tasks();
    assert_eq!(api.s.get(&format!("/{key}?w=6")).await.status(), 200);
    count().await;
    assert_eq!(api.s.state.caches.variants.entry_count(), 1);
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/cache/purge",
            Who::Admin,
            Req::Json(json!({"key": key})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    count().await;
    assert_eq!(api.s.state.caches.variants.entry_count(), 0);
    assert_eq!(api.s.get(&format!("/{key}?w=7")).await.status(), 200);
    count().await;
    assert_eq!(api.s.state.caches.variants.entry_count(), 1);
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/cache/purge",
            Who::Admin,
            Req::Json(json!({"prefix": "public/"})),
        )
        .await;
    assert_eq!(st, 200);
    count().await;
    assert_eq!(api.s.state.caches.variants.entry_count(), 0);
}

/// The OpenAPI document describes exactly the routed paths and methods.
#[tokio::test]
async fn openapi_matches_the_router() {
    let Some(api) = Api::start(Db::Sqlite, "").await else {
        return;
    };
    let (st, doc) = api
        .call("GET", "/api/v1/openapi.json", Who::Guest, Req::Empty)
        .await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut n = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "someid")
            .replace("{share_id}", "someshare");
        for (method, _) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            n += 1;
            let (st, v) = api
                .call(&method.to_uppercase(), &concrete, Who::Admin, Req::Empty)
                .await;
            assert_ne!(st, 405, "{method} {path} is documented but not routed");
            if st == 404 {
                assert_ne!(
                    v["detail"], "no such API route",
                    "{method} {path} is documented but not routed"
                );
            }
        }
        // Methods not documented are not routed.
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                let (st, _) = api
                    .call(&method.to_uppercase(), &concrete, Who::Admin, Req::Empty)
                    .await;
                assert!(st == 405 || st == 404, "{method} {path}: {st}");
            }
        }
    }
    assert_eq!(n, imgorigin::api::openapi::ROUTES.len());
}

// ---- fault injection ------------------------------------------------------------------

struct FlakyStorage {
    inner: Arc<dyn Storage>,
    fail_put: Arc<AtomicBool>,
    fail_delete: Arc<AtomicBool>,
}

#[async_trait]
impl Storage for FlakyStorage {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, max: u64) -> Result<Object, StorageError> {
        self.inner.get(key, max).await
    }
    async fn get_if_changed(
        &self,
        key: &str,
        etag: &str,
        max: u64,
    ) -> Result<Option<Object>, StorageError> {
        self.inner.get_if_changed(key, etag, max).await
    }
    async fn put(&self, key: &str, body: Bytes, ct: &str) -> Result<ObjectMeta, StorageError> {
        let meta = self.inner.put(key, body, ct).await?;
        if self.fail_put.load(Ordering::SeqCst) {
            // The worst case of a failed put: it landed, then the answer was lost (soak).
            return Err(StorageError::Unavailable("injected put failure".into()));
        }
        Ok(meta)
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable("injected delete failure".into()));
        }
        self.inner.delete(key).await
    }
    async fn check(&self) -> Result<(), StorageError> {
        self.inner.check().await
    }
}

struct FlakyMeta {
    inner: Arc<dyn MetadataStore>,
    fail_insert: Arc<AtomicBool>,
    fail_ready: Arc<AtomicBool>,
    fail_check: Arc<AtomicBool>,
}

fn injected() -> MetaError {
    MetaError::Db("injected database failure".into())
}

#[async_trait]
impl MetadataStore for FlakyMeta {
    async fn insert(&self, r: &ImageRecord) -> Result<(), MetaError> {
        if self.fail_insert.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.insert(r).await
    }
    async fn set_state(
        &self,
        id: &str,
        from: RecordState,
        to: RecordState,
        now: i64,
    ) -> Result<bool, MetaError> {
        if to == RecordState::Ready && self.fail_ready.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.set_state(id, from, to, now).await
    }
    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, MetaError> {
        self.inner.get(id).await
    }
    async fn get_by_key(&self, key: &str) -> Result<Option<ImageRecord>, MetaError> {
        self.inner.get_by_key(key).await
    }
    async fn set_facts(
        &self,
        id: &str,
        facts: &imgorigin::facts::Facts,
    ) -> Result<bool, MetaError> {
        self.inner.set_facts(id, facts).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Vec<ImageRecord>, MetaError> {
        self.inner.list(q).await
    }
    async fn update(
        &self,
        id: &str,
        p: &Patch,
        now: i64,
    ) -> Result<Option<ImageRecord>, MetaError> {
        self.inner.update(id, p, now).await
    }
    async fn move_key(
        &self,
        id: &str,
        from: &str,
        to: &str,
        level: Level,
        now: i64,
    ) -> Result<bool, MetaError> {
        self.inner.move_key(id, from, to, level, now).await
    }
    async fn delete(&self, id: &str) -> Result<(), MetaError> {
        self.inner.delete(id).await
    }
    async fn insert_share(&self, s: &Share) -> Result<(), MetaError> {
        self.inner.insert_share(s).await
    }
    async fn get_share(&self, id: &str) -> Result<Option<Share>, MetaError> {
        self.inner.get_share(id).await
    }
    async fn list_shares(&self, image_id: &str) -> Result<Vec<Share>, MetaError> {
        self.inner.list_shares(image_id).await
    }
    async fn revoke_share(&self, id: &str, now: i64) -> Result<bool, MetaError> {
        self.inner.revoke_share(id, now).await
    }
    async fn stale(&self, older_than: i64) -> Result<Vec<ImageRecord>, MetaError> {
        self.inner.stale(older_than).await
    }
    async fn key_recorded(&self, key: &str) -> Result<bool, MetaError> {
        self.inner.key_recorded(key).await
    }
    async fn reserve_upload(&self, r: &Reservation) -> Result<(), MetaError> {
        self.inner.reserve_upload(r).await
    }
    async fn get_reservation(&self, key: &str) -> Result<Option<Reservation>, MetaError> {
        self.inner.get_reservation(key).await
    }
    async fn use_reservation(&self, key: &str, now: i64) -> Result<bool, MetaError> {
        self.inner.use_reservation(key, now).await
    }
    async fn expired_reservations(&self, before: i64) -> Result<Vec<Reservation>, MetaError> {
        self.inner.expired_reservations(before).await
    }
    async fn delete_reservation(&self, key: &str) -> Result<(), MetaError> {
        self.inner.delete_reservation(key).await
    }
    async fn insert_user(&self, u: &User) -> Result<(), MetaError> {
        self.inner.insert_user(u).await
    }
    async fn get_user(&self, name: &str) -> Result<Option<User>, MetaError> {
        self.inner.get_user(name).await
    }
    async fn set_user_password(&self, name: &str, hash: &str, now: i64) -> Result<bool, MetaError> {
        self.inner.set_user_password(name, hash, now).await
    }
    async fn set_review(
        &self,
        id: &str,
        moderation: Option<imgorigin::metadata::Moderation>,
        tags: &[String],
        now: i64,
    ) -> Result<bool, MetaError> {
        self.inner.set_review(id, moderation, tags, now).await
    }
    async fn get_identity(&self, pool: &str, subject: &str) -> Result<Option<String>, MetaError> {
        self.inner.get_identity(pool, subject).await
    }
    async fn put_identity(
        &self,
        pool: &str,
        subject: &str,
        identity_id: &str,
        now: i64,
    ) -> Result<String, MetaError> {
        self.inner
            .put_identity(pool, subject, identity_id, now)
            .await
    }
    async fn check(&self) -> Result<(), MetaError> {
        if self.fail_check.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.check().await
    }
}

/// Storage failing on put, the database failing on insert or on the final "ready", and
/// storage failing on delete: each request fails cleanly and leaves no original without a
/// record and no record without its original. The raw tables are inspected too.
async fn fault_injection(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = db_url(db, dir.path()).await else {
        return;
    };
    let db_url = url.clone();
    let root = dir.path().join("originals");
    std::fs::create_dir_all(&root).unwrap();
    let storage = format!("[storage.fs]\nroot = {:?}\n", root.to_str().unwrap());
    let fail_put = Arc::new(AtomicBool::new(false));
    let fail_delete = Arc::new(AtomicBool::new(false));
    let fail_insert = Arc::new(AtomicBool::new(false));
    let fail_ready = Arc::new(AtomicBool::new(false));
    let fail_check = Arc::new(AtomicBool::new(false));
    let (fp, fd, fi, fr, fc) = (
        fail_put.clone(),
        fail_delete.clone(),
        fail_insert.clone(),
        fail_ready.clone(),
        fail_check.clone(),
    );
    let raw_store: Arc<OnceLock<Arc<dyn MetadataStore>>> = Arc::new(OnceLock::new());
    let raw2 = raw_store.clone();
    let api = Api::build(
        dir,
        Setup {
            db_url: url,
            storage: (storage, root),
            extra: String::new(),
            signing: true,
            wrap: Some(Box::new(move |s, m| {
                let _ = raw2.set(m.clone());
                (
                    Arc::new(FlakyStorage {
                        inner: s,
                        fail_put: fp,
                        fail_delete: fd,
                    }) as Arc<dyn Storage>,
                    Arc::new(FlakyMeta {
                        inner: m,
                        fail_insert: fi,
                        fail_ready: fr,
                        fail_check: fc,
                    }) as Arc<dyn MetadataStore>,
                )
            })),
        },
    )
    .await;
    let raw = raw_store.get().unwrap().clone();
    let alice = Who::User("alice");
    let kept = api.upload(alice, "protected", png(1)).await;
    let files = api.stored_files();
    assert_eq!(files.len(), 1);
    // Every record in the raw table, any state.
    let all_states = || async {
        let q = ListQuery {
            visible: imgorigin::metadata::Visibility {
                all: true,
                ..Default::default()
            },
            owner: None,
            level: None,
            tag: None,
            limit: 1000,
            before: None,
        };
        let ready = raw.list(&q).await.unwrap();
        let stale = raw.stale(i64::MAX).await.unwrap();
        (ready.len(), stale.len())
    };
    assert_eq!(all_states().await, (1, 0));

    let attempt = || {
        api.call(
            "POST",
            "/api/v1/images",
            alice,
            Req::Raw("image/png", png(2)),
        )
    };
    fail_put.store(true, Ordering::SeqCst);
    let (st, v) = attempt().await;
    assert_eq!(st, 502, "{v}");
    fail_put.store(false, Ordering::SeqCst);
    assert_eq!(api.stored_files(), files, "storage failure: nothing stored");
    assert_eq!(
        all_states().await,
        (1, 0),
        "storage failure: no record left"
    );

    fail_insert.store(true, Ordering::SeqCst);
    let (st, v) = attempt().await;
    assert_eq!(st, 503, "{v}");
    fail_insert.store(false, Ordering::SeqCst);
    assert_eq!(api.stored_files(), files, "insert failure: nothing stored");
    assert_eq!(all_states().await, (1, 0));

    fail_ready.store(true, Ordering::SeqCst);
    let (st, v) = attempt().await;
    assert_eq!(st, 503, "{v}");
    fail_ready.store(false, Ordering::SeqCst);
    assert_eq!(
        api.stored_files(),
        files,
        "ready failure: original removed again"
    );
    assert_eq!(
        all_states().await,
        (1, 0),
        "ready failure: pending record removed"
    );

    // Delete with storage failing: the record stays (visible again), the original too.
    let id = kept["id"].as_str().unwrap();
    fail_delete.store(true, Ordering::SeqCst);
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 502);
    fail_delete.store(false, Ordering::SeqCst);
    assert_eq!(api.stored_files(), files);
    let (st, _) = api
        .call("GET", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 200, "record restored after the failed delete");
    // A crashed upload (pending record, stored original) is removed by the sweep.
    let now = imgorigin::metadata::now_micros();
    let crashed = ImageRecord {
        id: "crashed000000000000a".into(),
        key: "public/crashed000000000000a.png".into(),
        level: imgorigin::metadata::Level::Public,
        owner: None,
        filename: None,
        content_type: "image/png".into(),
        bytes: 1,
        width: 1,
        height: 1,
        sha256: String::new(),
        tags: vec![],
        description: None,
        state: RecordState::Pending,
        created_at: now - 7_200_000_000,
        updated_at: now - 7_200_000_000,
        facts: None,
        moderation: None,
        rejected_reason: None,
    };
    raw.insert(&crashed).await.unwrap();
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    std::fs::write(api.root.join(&crashed.key), png(9)).unwrap();
    // An old record of an object ingest refused is kept on purpose, with its object.
    let refused = ImageRecord {
        id: "refused00000000000a".into(),
        key: "rejected/public/refused.png".into(),
        state: RecordState::Rejected,
        rejected_reason: Some("not an image".into()),
        ..crashed.clone()
    };
    raw.insert(&refused).await.unwrap();
    std::fs::create_dir_all(api.root.join("rejected/public")).unwrap();
    std::fs::write(api.root.join(&refused.key), b"not an image").unwrap();
    api.s
        .state
        .library()
        .sweep_unfinished(imgorigin::library::STALE_AFTER_S)
        .await;
    assert!(raw.get(&crashed.id).await.unwrap().is_none());
    assert!(!api.root.join(&crashed.key).exists());
    assert_eq!(
        raw.get(&refused.id).await.unwrap().map(|r| r.state),
        Some(RecordState::Rejected),
        "the sweep leaves rejected records alone"
    );
    assert!(api.root.join(&refused.key).exists());
    std::fs::remove_file(api.root.join(&refused.key)).unwrap();
    raw.delete(&refused.id).await.unwrap();
    assert_eq!(api.stored_files(), files);
    // And everything works again.
    let (st, _) = attempt().await;
    assert_eq!(st, 201);
    let files = api.stored_files();

    // /readyz reports the database.
    assert_eq!(api.s.get("/readyz").await.status(), 200);
    fail_check.store(true, Ordering::SeqCst);
    assert_eq!(api.s.get("/readyz").await.status(), 503);
    fail_check.store(false, Ordering::SeqCst);

    // A real database failure, not a wrapper: the tables are dropped behind the server's
    // back. The upload fails (503) and stores nothing.
    let drop_sql = "DROP TABLE shares; DROP TABLE images;";
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db_url).await.unwrap();
            sqlx::raw_sql(drop_sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
            sqlx::raw_sql(drop_sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Db::Dynamodb => {
            let table = db_url
                .strip_prefix("dynamodb://")
                .and_then(|r| r.split('?').next())
                .unwrap();
            let client = aws_sdk_dynamodb::Client::new(&Moto::shared().await.sdk_config().await);
            client
                .delete_table()
                .table_name(table)
                .send()
                .await
                .unwrap();
        }
    }
    let (st, v) = attempt().await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(
        api.stored_files(),
        files,
        "nothing stored without a database"
    );
}
both_dbs!(fault_injection);

/// The presigned PUT of `POST /api/v1/uploads`, sent with the headers it was signed with.
pub async fn presigned_put(up: &serde_json::Value, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new()
        .put(up["url"].as_str().unwrap())
        .body(body);
    for (k, v) in up["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    req.send().await.unwrap().status().as_u16()
}

// ---- several instances ------------------------------------------------------------------

/// Two instances on one PostgreSQL and one S3 bucket: an upload through A is listed and
/// delivered by B; a share revoked on B is refused by A; presigned upload + register.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_and_s3() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let s3dir = tempfile::tempdir().unwrap();
    let s3_root = s3dir.path().join("s3");
    let objects = s3_root.join(S3_BUCKET).join(S3_PREFIX);
    std::fs::create_dir_all(&objects).unwrap();
    let s3 = S3Server::start(&s3_root).await;
    let start = |url: String| {
        let storage = s3.config_toml();
        let objects = objects.clone();
        async move {
            Api::build(
                tempfile::tempdir().unwrap(),
                Setup {
                    db_url: url,
                    storage: (storage, objects),
                    // Each instance has its own cache; revalidate originals on every
                    // request so B sees A's delete at once (default: within 60 s).
                    extra: "[cache]\nsource_ttl_s = 0\n".to_string(),
                    signing: true,
                    wrap: None,
                },
            )
            .await
        }
    };
    // Both start at once: migrations must not trip over each other.
    let (a, b) = tokio::join!(start(url.clone()), start(url.clone()));
    let alice = Who::User("alice");
    let bytes = fixture("quad.png");
    let rec = a.upload(alice, "protected", bytes.clone()).await;
    let id = rec["id"].as_str().unwrap();
    let key = rec["key"].as_str().unwrap();
    assert!(objects.join(key).exists(), "stored in the bucket");
    let (st, page) = b
        .call("GET", "/api/v1/images?owner=me", alice, Req::Empty)
        .await;
    assert_eq!(st, 200);
    assert_eq!(page["items"][0]["id"], id);
    let tok = format!("Bearer {}", b.token("bob"));
    let r =
        b.s.get_with(&format!("/{key}"), &[("authorization", tok.as_str())])
            .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    // A share made on A, revoked on B, refused by A (and B).
    let (st, share) = a
        .call(
            "POST",
            &format!("/api/v1/images/{id}/shares"),
            alice,
            Req::Json(json!({"expires_in": 600})),
        )
        .await;
    assert_eq!(st, 201);
    let surl = path_of(share["url"].as_str().unwrap()).to_string();
    assert_eq!(a.s.get(&surl).await.status(), 200);
    assert_eq!(b.s.get(&surl).await.status(), 200);
    let (st, _) = b
        .call(
            "DELETE",
            &format!("/api/v1/shares/{}", share["id"].as_str().unwrap()),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(a.s.get(&surl).await.status(), 403);
    assert_eq!(b.s.get(&surl).await.status(), 403);

    // Presigned PUT straight to the bucket, registered through B, seen by A.
    let (st, up) = b
        .call(
            "POST",
            "/api/v1/uploads",
            alice,
            Req::Json(json!({"level": "private", "content_type": "image/png"})),
        )
        .await;
    assert_eq!(st, 200, "{up}");
    let pkey = up["key"].as_str().unwrap();
    assert!(pkey.starts_with("private/alice/"));
    assert_eq!(presigned_put(&up, png(7)).await, 200, "presigned PUT");
    let (st, reg) = b
        .call(
            "POST",
            "/api/v1/images/register",
            alice,
            Req::Json(json!({"key": pkey})),
        )
        .await;
    assert_eq!(st, 201, "{reg}");
    let (st, got) = a
        .call(
            "GET",
            &format!("/api/v1/images/{}", reg["id"].as_str().unwrap()),
            alice,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["sha256"], sha256_hex(&png(7)));
    // Deleting through A removes the object from the bucket; B no longer delivers it.
    let (st, _) = a
        .call("DELETE", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 204);
    assert!(!objects.join(key).exists());
    let r =
        b.s.get_with(&format!("/{key}?w=3"), &[("authorization", tok.as_str())])
            .await;
    assert_eq!(r.status(), 404);
    let (st, _) = b
        .call("GET", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 404);
}

/// The same metadata database opened twice at once (sqlite file): migrations apply once.
#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("sub/dir/m.db").to_str().unwrap()
    );
    let a = imgorigin::metadata::open(&url).await.unwrap();
    let b = imgorigin::metadata::open(&url).await.unwrap();
    a.check().await.unwrap();
    b.check().await.unwrap();
    assert!(dir.path().join("sub/dir/m.db").exists(), "folders created");
}

/// The three stores answer every list query with the records the rules say, in the same
/// order: ties on `created_at` broken by id, every visibility (flagged records only to
/// their owner), filter and keyset page; pending and rejected records never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_list_identically() {
    use imgorigin::metadata::Visibility;
    let dir = tempfile::tempdir().unwrap();
    let mut stores: Vec<(Db, Arc<dyn MetadataStore>)> = Vec::new();
    for db in [Db::Sqlite, Db::Postgres, Db::Dynamodb] {
        if let Some(url) = db_url(db, dir.path()).await {
            stores.push((db, imgorigin::metadata::open(&url).await.unwrap()));
        }
    }
    let levels = [Level::Public, Level::Protected, Level::Private];
    let owners = ["alice", "bob", "carol"];
    let mut records = Vec::new();
    for i in 0..60i64 {
        let level = levels[(i % 3) as usize];
        let owner = owners[(i / 3 % 3) as usize];
        let r = ImageRecord {
            id: format!(
                "id{:02}{}",
                (i * 37) % 60,
                ["x", "a", "m"][(i % 3) as usize]
            ),
            key: format!("{}/{owner}/k{i}.png", level.as_str()),
            level,
            owner: Some(owner.to_string()),
            filename: None,
            content_type: "image/png".into(),
            bytes: 1,
            width: 1,
            height: 1,
            sha256: "00".into(),
            tags: if i % 4 == 0 {
                vec!["cat".into()]
            } else {
                vec!["dog".into(), "cat-like".into()]
            },
            description: None,
            // Many ties: five records share each time.
            state: match i % 11 {
                5 => RecordState::Pending,
                8 => RecordState::Rejected,
                _ => RecordState::Ready,
            },
            created_at: 1_000 + i / 5,
            updated_at: 1_000 + i / 5,
            facts: None,
            moderation: match i % 7 {
                1 | 4 => Some(imgorigin::metadata::Moderation::Flagged),
                2 => Some(imgorigin::metadata::Moderation::Approved),
                _ => None,
            },
            rejected_reason: (i % 11 == 8).then(|| "not an image".to_string()),
        };
        for (_, s) in &stores {
            s.insert(&r).await.unwrap();
        }
        records.push(r);
    }
    // What each list must return, from the rules of SPEC §6 and §12 written out.
    let expected =
        |v: &Visibility, owner: Option<&str>, level: Option<Level>, tag: Option<&str>| {
            let mut rs: Vec<&ImageRecord> = records
                .iter()
                .filter(|r| r.state == RecordState::Ready)
                .filter(|r| {
                    v.all
                        || ((v.levels.contains(&r.level)
                            || (r.level == Level::Private && r.owner == v.private_of))
                            && (r.moderation != Some(imgorigin::metadata::Moderation::Flagged)
                                || (v.flagged_of.is_some() && r.owner == v.flagged_of)))
                })
                .filter(|r| owner.is_none_or(|o| r.owner.as_deref() == Some(o)))
                .filter(|r| level.is_none_or(|l| r.level == l))
                .filter(|r| tag.is_none_or(|t| r.tags.iter().any(|x| x == t)))
                .collect();
            rs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            rs.into_iter().map(|r| r.id.clone()).collect::<Vec<_>>()
        };
    let visibilities = [
        Visibility {
            all: true,
            ..Default::default()
        },
        Visibility {
            levels: vec![Level::Public],
            ..Default::default()
        },
        Visibility {
            levels: vec![Level::Public, Level::Protected],
            private_of: Some("bob".into()),
            ..Default::default()
        },
        Visibility {
            levels: vec![Level::Public, Level::Protected],
            private_of: Some("alice".into()),
            flagged_of: Some("alice".into()),
            ..Default::default()
        },
        Visibility::default(),
    ];
    let mut checked = 0;
    for visible in &visibilities {
        for owner in [None, Some("alice")] {
            for level in [None, Some(Level::Protected)] {
                for tag in [None, Some("cat")] {
                    let mut results = Vec::new();
                    for (db, s) in &stores {
                        let mut ids = Vec::new();
                        let mut before = None;
                        loop {
                            let q = ListQuery {
                                visible: visible.clone(),
                                owner: owner.map(str::to_string),
                                level,
                                tag: tag.map(str::to_string),
                                limit: 4,
                                before: before.clone(),
                            };
                            let page = s.list(&q).await.unwrap();
                            let Some(last) = page.last() else { break };
                            before = Some((last.created_at, last.id.clone()));
                            ids.extend(page.iter().map(|r| r.id.clone()));
                        }
                        results.push((*db, ids));
                    }
                    let want = expected(visible, owner, level, tag);
                    for (db, ids) in &results {
                        assert_eq!(
                            ids, &want,
                            "{db:?}: {visible:?} {owner:?} {level:?} {tag:?}"
                        );
                    }
                    if visible.all && owner.is_none() && level.is_none() && tag.is_none() {
                        assert_eq!(
                            want.len(),
                            50,
                            "every ready record, none pending or rejected"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 40);
    assert!(stores.len() >= 2, "at least SQLite and DynamoDB");
}

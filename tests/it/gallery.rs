//! The gallery's server side (SPEC §15, §6): local accounts (`imgorigin user`, `POST
//! /api/v1/session`), level changes that move originals, and the page with its files and
//! headers. The journeys themselves run in Chromium: tests/browser/ (scripts/test).

use crate::api::{Api, Db, Req, Who, png};
use crate::support::*;
use imgorigin::auth::password;
use serde_json::{Value, json};
use std::process::{Command, Stdio};

async fn session(api: &Api, name: &str, pw: &str) -> reqwest::Response {
    api.s
        .client
        .post(api.s.url("/api/v1/session"))
        .header("content-type", "application/json")
        .body(json!({"name": name, "password": pw}).to_string())
        .send()
        .await
        .unwrap()
}

/// Sign-in: a token for the right password (the name in any case), the same 401 body for a
/// wrong password and an unknown name, failures limited per name (also for the right
/// password then) and per address, bad bodies refused by field.
async fn sessions(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let store = api.s.state.metadata.clone();
    password::save_user(store.as_ref(), "alice", "correct horse", false)
        .await
        .unwrap();
    password::save_user(store.as_ref(), "bob", "battery staple", false)
        .await
        .unwrap();

    let r = session(&api, "Alice ", "correct horse").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "alice");
    let token = v["token"].as_str().unwrap().to_string();
    let expires = v["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
    // The token is a local token for `alice`: her uploads land under her identity.
    let up = api
        .s
        .client
        .post(api.s.url("/api/v1/images?level=private"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .body(png(1))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let rec: Value = up.json().await.unwrap();
    assert_eq!(rec["owner"], "alice");
    assert!(rec["key"].as_str().unwrap().starts_with("private/alice/"));

    // Wrong password and unknown name: one status, one body.
    let wrong = session(&api, "alice", "correct horsE").await;
    assert_eq!(wrong.status(), 401);
    let wrong_body = wrong.bytes().await.unwrap();
    let unknown = session(&api, "mallory", "correct horse").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.bytes().await.unwrap(), wrong_body);
    let invalid = session(&api, "../etc", "x").await;
    assert_eq!(invalid.status(), 401);
    assert_eq!(invalid.bytes().await.unwrap(), wrong_body);
    let body: Value = serde_json::from_slice(&wrong_body).unwrap();
    assert_eq!(body["detail"], "wrong name or password");

    // Bodies: by field (400), JSON only (415).
    let (st, v) = api
        .call(
            "POST",
            "/api/v1/session",
            Who::Guest,
            Req::Json(json!({"name": "alice"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("password"), "{v}");
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/session",
            Who::Guest,
            Req::Raw("text/plain", b"name=alice".to_vec()),
        )
        .await;
    assert_eq!(st, 415);

    // alice has 1 failure; 9 more use up her name's burst, then even her password waits.
    for _ in 0..9 {
        assert_eq!(session(&api, "alice", "guess").await.status(), 401);
    }
    let limited = session(&api, "alice", "correct horse").await;
    assert_eq!(limited.status(), 429);
    let wait: u32 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    // Another name from the same address still signs in (12 failures of 30 so far)...
    assert_eq!(session(&api, "bob", "battery staple").await.status(), 200);
    // ...until the address has used its 30.
    for i in 0..18 {
        let st = session(&api, &format!("guess{i}"), "x").await.status();
        assert_eq!(st, 401, "failure {i}");
    }
    assert_eq!(
        session(&api, "bob", "battery staple").await.status(),
        429,
        "the address is limited"
    );

    // The page learns that local accounts and shares are there.
    let cfg: Value = api
        .s
        .get("/_gallery/config.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["local"], true);
    assert_eq!(cfg["shares"], true);
    assert_eq!(cfg["cognito"], Value::Null);
}
both_dbs!(sessions);

/// Without `[auth.local]` there are no local accounts to sign in with.
#[tokio::test]
async fn sessions_need_local_auth() {
    let s = TestServer::start("").await;
    let r = s
        .client
        .post(s.url("/api/v1/session"))
        .header("content-type", "application/json")
        .body(r#"{"name":"alice","password":"correct horse"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let cfg: Value = s.get("/_gallery/config.json").await.json().await.unwrap();
    assert_eq!(cfg["local"], false);
    assert_eq!(cfg["shares"], false);
}

fn cli(config: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `imgorigin user add|passwd` on the real binary: hashes land in the metadata store.
#[tokio::test]
async fn user_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let db = format!("sqlite://{d}/meta.db");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[metadata]\nurl = {db:?}\n[auth.local]\nkey_file = \"{d}/local.pem\"\n"),
    )
    .unwrap();
    let add = |name: &str, pw: &str| {
        cli(
            &cfg,
            &["user", "add", name, "--password-stdin"],
            &format!("{pw}\n"),
        )
    };
    let (code, out, err) = add("alice", "correct horse");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "added user `alice`");
    let (code, _, err) = add("alice", "other password");
    assert_eq!(code, 1);
    assert!(err.contains("user `alice` exists"), "{err}");
    let (code, _, err) = add("Alice", "correct horse");
    assert_eq!(code, 2);
    assert!(err.contains("invalid user name"), "{err}");
    let (code, _, err) = add("bob", "short");
    assert_eq!(code, 2);
    assert!(err.contains("at least 8 characters"), "{err}");
    let (code, _, err) = cli(
        &cfg,
        &["user", "passwd", "alice", "--password-stdin"],
        "new password 2\r\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        &cfg,
        &["user", "passwd", "carol", "--password-stdin"],
        "new password 2\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("no user `carol`"), "{err}");

    let store = imgorigin::metadata::open(&db).await.unwrap();
    let alice = store.get_user("alice").await.unwrap().unwrap();
    assert!(alice.password_hash.starts_with("$argon2id$"));
    assert!(password::verify("new password 2", &alice.password_hash));
    assert!(!password::verify("correct horse", &alice.password_hash));
    assert!(store.get_user("bob").await.unwrap().is_none());

    // Local accounts need [auth.local].
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, format!("[metadata]\nurl = {db:?}\n")).unwrap();
    let (code, _, err) = cli(
        &plain,
        &["user", "add", "dave", "--password-stdin"],
        "correct horse\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("[auth.local]"), "{err}");
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_string()
}

/// PATCH `level`: the original moves to the level's prefix (same id, new key, same
/// pixels); the old key is 404 at once, cached variants included; nothing is left behind.
async fn level_changes(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let alice = Who::User("alice");
    let red = solid_png(40, 30, [200, 10, 20, 255]);
    let rec = api.upload(alice, "private", red).await;
    let id = rec["id"].as_str().unwrap();
    let private_key = key_of(&rec);
    assert!(private_key.starts_with("private/alice/"));
    let token = api.token("alice");
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            alice,
            Req::Json(json!({"level": "public", "tags": ["sea"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let public_key = key_of(&v);
    assert_eq!(v["level"], "public");
    assert_eq!(v["tags"], json!(["sea"]));
    assert_eq!(
        public_key,
        format!("public/{}", private_key.rsplit('/').next().unwrap())
    );
    assert_eq!(api.stored_files(), vec![public_key.clone()]);
    let old = api
        .s
        .get_with(
            &format!("/{private_key}"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(old.status(), 404, "the old key is gone");
    let img = api.s.image(&format!("/{public_key}?fm=png")).await;
    assert_eq!((img.width(), img.height()), (40, 30));
    assert_eq!(img.get_pixel(20, 15).0, [200, 10, 20, 255]);
    // No cleanup markers left for the sweep.
    for k in [&private_key, &public_key] {
        assert!(
            api.s
                .state
                .metadata
                .get_reservation(k)
                .await
                .unwrap()
                .is_none(),
            "{k}"
        );
    }

    // Back to private: the public variant just rendered is not served from the cache.
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            alice,
            Req::Json(json!({"level": "private"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(key_of(&v), private_key);
    assert_eq!(
        api.s.get(&format!("/{public_key}?fm=png")).await.status(),
        404
    );
    assert_eq!(
        api.s.get(&format!("/{private_key}?fm=png")).await.status(),
        403
    );
    let (st, listed) = api
        .call("GET", &format!("/api/v1/images/{id}"), alice, Req::Empty)
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (listed["level"].as_str(), listed["tags"].clone()),
        (Some("private"), json!(["sea"]))
    );

    // The same level is no move; bad levels and other people are refused.
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            alice,
            Req::Json(json!({"level": "private"})),
        )
        .await;
    assert_eq!((st, key_of(&v)), (200, private_key.clone()));
    for bad in ["other", "secret"] {
        let (st, v) = api
            .call(
                "PATCH",
                &format!("/api/v1/images/{id}"),
                alice,
                Req::Json(json!({"level": bad})),
            )
            .await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    let (st, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            Who::User("bob"),
            Req::Json(json!({"level": "public"})),
        )
        .await;
    assert_eq!(st, 404, "bob cannot read alice's private image");

    // An image without an owner (an admin's public upload) has no private prefix to go to.
    let orphan = api.upload(Who::Admin, "public", png(2)).await;
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/images/{}", orphan["id"].as_str().unwrap()),
            Who::Admin,
            Req::Json(json!({"level": "private"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("without an owner"));
    let mut files = api.stored_files();
    files.sort();
    let mut want = vec![private_key, key_of(&orphan)];
    want.sort();
    assert_eq!(files, want);
}
both_dbs!(level_changes);

/// Every file the page and its scripts name, by their own references.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pat in ["src=\"", "href=\"", "from '", "import('"] {
        let mut rest = text;
        while let Some(i) = rest.find(pat) {
            rest = &rest[i + pat.len()..];
            let end = rest.find(['"', '\'']).unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// `/` and `/_gallery/…`: the page, every file it and its modules load (with the right
/// types), the headers that keep it locked down, revalidation, and what is not there.
#[tokio::test]
async fn page_and_files() {
    let s = TestServer::start("").await;
    let r = s.get("/").await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    for d in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self';",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "require-trusted-types-for 'script'",
        "report-uri /_gallery/csp-report",
    ] {
        assert!(csp.contains(d), "{d} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-cache");
    let etag = h["etag"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    // No inline code or style: every <script> has a src, no style attributes or elements.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=").count()
    );
    assert!(!html.contains("style=") && !html.contains("<style"));
    let again = s.get_with("/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);

    // Everything reachable from the page is served, with its type.
    let mut todo = references(&html);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = todo.pop() {
        if r.starts_with('#') || r == "/" {
            continue;
        }
        assert!(
            r.starts_with("/_gallery/") || r.starts_with("./") || r.starts_with("../"),
            "{r}"
        );
        let path = if r.starts_with('/') {
            r.clone()
        } else {
            // Relative imports are from /_gallery/js/.
            let base = "/_gallery/js/";
            let joined = format!("{base}{r}");
            joined.replace("/js/./", "/js/").replace("/js/../", "/")
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let resp = s.get(&path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        let want = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}"),
        };
        assert_eq!(ct, want, "{path}");
        assert!(resp.headers().contains_key("content-security-policy"));
        let body = resp.text().await.unwrap();
        if path.ends_with(".js") {
            assert!(
                !body.contains("innerHTML") && !body.contains("eval("),
                "{path}"
            );
            todo.extend(references(&body).into_iter().filter(|r| r.ends_with(".js")));
        }
    }
    assert!(seen.contains("/_gallery/vendor/blurhash.js"), "{seen:?}");
    assert!(seen.len() >= 10, "{seen:?}");
    assert_eq!(
        s.get("/_gallery/vendor/LICENSE-blurhash.txt")
            .await
            .status(),
        200
    );

    // Not there: other names, the page under its file name, the bare prefix.
    for p in [
        "/_gallery/nope.js",
        "/_gallery/index.html",
        "/_gallery",
        "/_gallery/js/",
    ] {
        let r = s.get(p).await;
        assert_eq!(r.status(), 404, "{p}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    // CSP reports are taken (and logged), bounded.
    let r = s
        .client
        .post(s.url("/_gallery/csp-report"))
        .header("content-type", "application/csp-report")
        .body(r#"{"csp-report":{"violated-directive":"script-src"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .client
        .post(s.url("/_gallery/csp-report"))
        .body(vec![b'x'; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.metric("imgorigin_requests_total{route=\"gallery\",status=\"304\"}")
            .await,
        1.0
    );
}

/// `gallery.enabled = false`: `/` is delivery's again (no key: 400); `/_gallery/` stays
/// reserved (404).
#[tokio::test]
async fn gallery_off() {
    let s = TestServer::start("[gallery]\nenabled = false\n").await;
    assert_eq!(s.get("/").await.status(), 400);
    assert_eq!(s.get("/_gallery/app.css").await.status(), 404);
    assert_eq!(s.get("/_gallery/config.json").await.status(), 404);
}

/// With a Hosted UI domain the page is told where to sign in, may talk to that domain, and
/// the gallery's app client is an accepted audience.
#[tokio::test]
async fn hosted_ui_config() {
    let s = TestServer::start(
        "[cognito]\nregion = \"eu-west-1\"\nuser_pool_id = \"eu-west-1_Abc\"\nclient_ids = [\"apiclient\"]\ndomain = \"photos.auth.eu-west-1.amazoncognito.com\"\ngallery_client_id = \"galleryclient1\"\n",
    )
    .await;
    let r = s.get("/").await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("connect-src 'self' https://photos.auth.eu-west-1.amazoncognito.com;"),
        "{csp}"
    );
    let cfg: Value = s.get("/_gallery/config.json").await.json().await.unwrap();
    let c = &cfg["cognito"];
    assert_eq!(
        c["authorize_url"],
        "https://photos.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
    );
    assert_eq!(
        c["token_url"],
        "https://photos.auth.eu-west-1.amazoncognito.com/oauth2/token"
    );
    assert_eq!(c["client_id"], "galleryclient1");
    assert_eq!(c["token"], "id_token");
    assert_eq!(c["identity_claim"], "sub");
    let ids = &s.state.config.auth.cognito.as_ref().unwrap().client_ids;
    assert_eq!(
        ids,
        &["apiclient".to_string(), "galleryclient1".to_string()]
    );
}

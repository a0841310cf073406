//! SPEC §10 through real HTTP: what a request without parameters returns to whom
//! (`originals.metadata`), and image facts (API records and `?fm=json`).
//!
//! Fixtures are made here: Pillow draws a gradient with an sRGB ICC profile, exiftool
//! writes GPS, camera, date, XMP, a comment and the orientation into it. Responses are
//! read back with the same independent tools: exiftool for what metadata is left, Pillow
//! for the decoded pixels, the `blurhash` PyPI package for the BlurHash.

use crate::api::{Api, BASE_URL, Db, Req, Who, path_of};
use crate::support::*;
use serde_json::{Value, json};
use std::process::Command;

const GRADIENT: &str = r#"
import io, sys
from PIL import Image, ImageCms
fmt, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
img = Image.new("RGB", (w, h))
px = img.load()
for y in range(h):
    for x in range(w):
        px[x, y] = (255 * x // (w - 1), 255 * y // (h - 1), 96)
icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
out = io.BytesIO()
kw = {"icc_profile": icc}
if fmt == "jpeg":
    kw["quality"] = 92
img.save(out, format=fmt.upper(), **kw)
sys.stdout.buffer.write(out.getvalue())
"#;

/// A `w`×`h` gradient (red across, green down) in `fmt` with an sRGB ICC profile.
fn gradient(fmt: &str, w: u32, h: u32) -> Vec<u8> {
    run_python(GRADIENT, &[fmt, &w.to_string(), &h.to_string()], b"")
}

/// What exiftool writes into every test photo; `-n` values as exiftool reads them back.
const TAGS: &[&str] = &[
    "-GPSLatitude=48.8584",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=2.2945",
    "-GPSLongitudeRef=W",
    "-Make=TestCam",
    "-Model=X 1",
    "-DateTimeOriginal=2024:05:06 07:08:09",
    "-OffsetTimeOriginal=+02:00",
    "-XMP-dc:Creator=Someone Secret",
    "-Comment=a secret comment",
];

/// `bytes` with `tags` (and `-Orientation#=<o>`) written by exiftool.
fn with_exiftool(bytes: &[u8], ext: &str, tags: &[&str], orientation: Option<u8>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("in.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let o = orientation.map(|o| format!("-Orientation#={o}"));
    let out = Command::new("exiftool")
        .args(["-q", "-overwrite_original"])
        .args(tags)
        .args(o.as_deref())
        .arg(&path)
        .output()
        .expect("exiftool (scripts/build-tools.sh installs libimage-exiftool-perl)");
    assert!(
        out.status.success(),
        "exiftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

/// A photo with everything a phone writes, orientation 6.
fn phone_photo(fmt: &str, ext: &str) -> Vec<u8> {
    with_exiftool(&gradient(fmt, 96, 64), ext, TAGS, Some(6))
}

/// Every tag exiftool finds (`-G -n`), as one JSON object.
fn exiftool(bytes: &[u8]) -> Value {
    use std::io::Write;
    let mut child = Command::new("exiftool")
        .args(["-j", "-G", "-n", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

/// Tags (group:name) that must not survive stripping.
fn leaked(tags: &Value) -> Vec<String> {
    tags.as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| {
            k.contains("GPS")
                || k.starts_with("XMP")
                || k.ends_with(":Make")
                || k.ends_with(":Model")
                || k.ends_with("DateTimeOriginal")
                || k.ends_with("OffsetTimeOriginal")
                || k.ends_with(":Comment")
                || v.as_str()
                    .is_some_and(|s| s.contains("Secret") || s.contains("secret"))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Size and a hash of the decoded pixels (Pillow, as stored: no orientation applied).
fn pillow_pixels(bytes: &[u8]) -> String {
    let script = r#"
import hashlib, io, sys
from PIL import Image
import pillow_heif
pillow_heif.register_heif_opener()
im = Image.open(io.BytesIO(sys.stdin.buffer.read()))
im.load()
print(im.size, im.mode, hashlib.sha256(im.convert("RGBA").tobytes()).hexdigest())
"#;
    String::from_utf8(run_python(script, &[], bytes)).unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn get_as(api: &Api, path: &str, who: Who<'_>) -> reqwest::Response {
    api.send("GET", path, who, Req::Empty).await
}

/// Checks a stripped copy of `stored`: nothing of `TAGS` left, orientation 6 and the ICC
/// profile kept, pixels identical.
fn assert_stripped(stored: &[u8], got: &[u8], what: &str) {
    assert_ne!(got, stored, "{what}: served as stored");
    let tags = exiftool(got);
    assert!(leaked(&tags).is_empty(), "{what}: left {:?}", leaked(&tags));
    assert_eq!(tags["EXIF:Orientation"], 6, "{what}: {tags}");
    assert_eq!(
        tags["ICC_Profile:ProfileDescription"], "sRGB built-in",
        "{what}: ICC profile lost"
    );
    assert!(
        tags.get("EXIF:Warning").is_none() && tags.get("ExifTool:Warning").is_none(),
        "{what}: {tags}"
    );
    assert_eq!(pillow_pixels(got), pillow_pixels(stored), "{what}: pixels");
    // The stored file did carry all of it.
    assert!(
        leaked(&exiftool(stored)).len() >= 6,
        "{what}: fixture lacks tags"
    );
}

/// SPEC §10 `originals.metadata = owner` for JPEG, PNG and WebP: the owner and admins get
/// the stored bytes (privately cached), guests, other users, signed URLs and share links
/// a stripped copy under its own ETag, with 304s.
async fn owner_policy(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let alice = Who::User("alice");
    for (fmt, ext, ct) in [
        ("jpeg", "jpg", "image/jpeg"),
        ("png", "png", "image/png"),
        ("webp", "webp", "image/webp"),
    ] {
        let stored = phone_photo(fmt, ext);
        for level in ["public", "protected"] {
            let rec = api.upload(alice, level, stored.clone()).await;
            let key = rec["key"].as_str().unwrap();
            let path = format!("/{key}");
            let what = format!("{fmt} {level}");

            let owner = get_as(&api, &path, alice).await;
            assert_eq!(owner.status(), 200, "{what}");
            let owner_etag = header(&owner, "etag");
            assert!(
                header(&owner, "cache-control").starts_with("private"),
                "{what}"
            );
            assert_eq!(owner.bytes().await.unwrap(), stored, "{what}: owner");
            let admin = get_as(&api, &path, Who::Admin).await;
            assert_eq!(header(&admin, "etag"), owner_etag);
            assert_eq!(admin.bytes().await.unwrap(), stored, "{what}: admin");

            // Others: a guest (public only) and another user (protected is readable).
            let other = if level == "public" {
                Who::Guest
            } else {
                Who::User("bob")
            };
            let r = get_as(&api, &path, other).await;
            assert_eq!(r.status(), 200, "{what}");
            assert_eq!(header(&r, "content-type"), ct);
            let etag = header(&r, "etag");
            assert!(
                etag.starts_with('"') && etag != owner_etag,
                "{what}: {etag}"
            );
            let len: usize = header(&r, "content-length").parse().unwrap();
            let got = r.bytes().await.unwrap();
            assert_eq!(got.len(), len);
            assert_stripped(&stored, &got, &what);
            if level == "public" {
                assert_eq!(
                    header(&get_as(&api, &path, Who::User("bob")).await, "etag"),
                    etag,
                    "{what}: bob"
                );
            }

            // 304 on the stripped ETag; the stored one does not match it.
            let inm = |tag: &str| {
                let tag = tag.to_string();
                let req = api
                    .s
                    .client
                    .get(api.s.url(&path))
                    .header("if-none-match", tag);
                match other {
                    Who::User(sub) => {
                        req.header("authorization", format!("Bearer {}", api.token(sub)))
                    }
                    _ => req,
                }
            };
            let r = inm(&etag).send().await.unwrap();
            assert_eq!(r.status(), 304, "{what}");
            assert_eq!(header(&r, "etag"), etag);
            assert_eq!(inm(&owner_etag).send().await.unwrap().status(), 200);

            // HEAD: the length of the stripped copy, no body.
            let mut head = api.s.client.head(api.s.url(&path));
            if let Who::User(sub) = other {
                head = head.header("authorization", format!("Bearer {}", api.token(sub)));
            }
            let h = head.send().await.unwrap();
            assert_eq!(header(&h, "content-length"), got.len().to_string());
            assert!(h.bytes().await.unwrap().is_empty());

            // A share link made by the owner is a stripped copy too.
            let id = rec["id"].as_str().unwrap();
            let (st, share) = api
                .call(
                    "POST",
                    &format!("/api/v1/images/{id}/shares"),
                    alice,
                    Req::Json(json!({"expires_in": 600})),
                )
                .await;
            assert_eq!(st, 201, "{share}");
            let url = share["url"].as_str().unwrap();
            assert!(url.starts_with(BASE_URL));
            let r = api.s.get(path_of(url)).await;
            assert_eq!(r.status(), 200);
            assert_eq!(header(&r, "etag"), etag, "{what}: share");
            assert_eq!(r.bytes().await.unwrap(), got, "{what}: share");
        }
    }
}
both_dbs!(owner_policy);

/// `strip`: the owner gets the stripped copy too; `keep`: everyone gets the stored bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_and_keep_policies() {
    let stored = phone_photo("jpeg", "jpg");
    for (policy, owner_stripped, guest_stripped) in [
        ("strip", true, true),
        ("keep", false, false),
        ("owner", false, true),
    ] {
        let api = Api::start(
            Db::Sqlite,
            &format!("[originals]\nmetadata = \"{policy}\"\n"),
        )
        .await
        .unwrap();
        let rec = api
            .upload(Who::User("alice"), "public", stored.clone())
            .await;
        let path = format!("/{}", rec["key"].as_str().unwrap());
        for (who, stripped) in [
            (Who::User("alice"), owner_stripped),
            (Who::Admin, owner_stripped),
            (Who::Guest, guest_stripped),
        ] {
            let got = get_as(&api, &path, who).await.bytes().await.unwrap();
            if stripped {
                assert_stripped(&stored, &got, &format!("{policy} {who:?}"));
            } else {
                assert_eq!(got, stored, "{policy} {who:?}");
            }
        }
    }
    let bad = imgorigin::config::Config::from_toml_and_env(
        "[originals]\nmetadata = \"never\"\n",
        std::iter::empty(),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("originals.metadata"), "{bad}");
}

/// A stored image with nothing to remove is served as stored, under the stored ETag, to
/// everyone; so is a stripped copy stored again (its only EXIF tag is the orientation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_remove_is_served_as_stored() {
    let api = Api::start(Db::Sqlite, "").await.unwrap();
    let plain = gradient("png", 40, 30);
    let rec = api
        .upload(Who::User("alice"), "public", phone_photo("jpeg", "jpg"))
        .await;
    let path = format!("/{}", rec["key"].as_str().unwrap());
    let stripped = get_as(&api, &path, Who::Guest)
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(exiftool(&stripped)["EXIF:Orientation"], 6);
    for stored in [plain, stripped] {
        let rec = api
            .upload(Who::User("alice"), "public", stored.clone())
            .await;
        let path = format!("/{}", rec["key"].as_str().unwrap());
        let owner = get_as(&api, &path, Who::User("alice")).await;
        let guest = get_as(&api, &path, Who::Guest).await;
        assert_eq!(header(&guest, "etag"), header(&owner, "etag"));
        assert!(header(&guest, "cache-control").starts_with("public"));
        assert_eq!(guest.bytes().await.unwrap(), stored);
    }
}

/// `png` encoded by avifenc, which carries the PNG's Exif and XMP over unless told not to.
fn avifenc(png: &[u8], keep_metadata: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.png"), dir.path().join("out.avif"));
    std::fs::write(&src, png).unwrap();
    let mut cmd = Command::new("avifenc");
    if !keep_metadata {
        cmd.args(["--ignore-exif", "--ignore-xmp"]);
    }
    let out = cmd
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("avifenc (scripts/build-tools.sh installs libavif-bin)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&dst).unwrap()
}

/// GIF: comments and XMP go, the frames stay. AVIF (HEIF): a file without metadata items is
/// served as stored; one with Exif/XMP items is refused (415) to callers who must get a
/// stripped copy, since removing items is not written yet, and never sent with them; its
/// owner (here: an admin, the key has no record) gets the stored bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gif_and_avif() {
    let api = Api::start(Db::Sqlite, "").await.unwrap();
    let gif = with_exiftool(
        &gradient("gif", 40, 30),
        "gif",
        &[
            "-Comment=a secret comment",
            "-XMP-dc:Creator=Someone Secret",
        ],
        None,
    );
    assert!(leaked(&exiftool(&gif)).len() >= 2, "{}", exiftool(&gif));
    let rec = api.upload(Who::User("alice"), "public", gif.clone()).await;
    let path = format!("/{}", rec["key"].as_str().unwrap());
    let owner = get_as(&api, &path, Who::User("alice")).await;
    let owner_etag = header(&owner, "etag");
    assert_eq!(owner.bytes().await.unwrap(), gif);
    let r = get_as(&api, &path, Who::Guest).await;
    assert_ne!(header(&r, "etag"), owner_etag);
    let got = r.bytes().await.unwrap();
    assert!(
        leaked(&exiftool(&got)).is_empty(),
        "{:?}",
        leaked(&exiftool(&got))
    );
    assert_eq!(pillow_pixels(&got), pillow_pixels(&gif));

    let png = with_exiftool(&gradient("png", 32, 24), "png", TAGS, None);
    let (with_meta, without) = (avifenc(&png, true), avifenc(&png, false));
    assert!(exiftool(&with_meta)["EXIF:GPSLatitude"].is_number());
    assert!(leaked(&exiftool(&without)).is_empty());
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    std::fs::write(api.root.join("public/meta.avif"), &with_meta).unwrap();
    std::fs::write(api.root.join("public/plain.avif"), &without).unwrap();
    // Exif and XMP items are overwritten in place (the coded image untouched).
    let r = get_as(&api, "/public/meta.avif", Who::Guest).await;
    assert_eq!(r.status(), 200);
    let stripped_etag = header(&r, "etag");
    let got = r.bytes().await.unwrap().to_vec();
    assert_eq!(got.len(), with_meta.len());
    assert!(leaked(&exiftool(&got)).is_empty(), "{}", exiftool(&got));
    assert_eq!(pillow_pixels(&got), pillow_pixels(&with_meta));
    let r = get_as(&api, "/public/meta.avif", Who::Admin).await;
    assert_eq!(r.status(), 200);
    assert_ne!(header(&r, "etag"), stripped_etag);
    assert_eq!(r.bytes().await.unwrap(), with_meta);
    let guest = get_as(&api, "/public/plain.avif", Who::Guest).await;
    let admin = get_as(&api, "/public/plain.avif", Who::Admin).await;
    assert_eq!(header(&guest, "etag"), header(&admin, "etag"));
    assert_eq!(guest.bytes().await.unwrap(), without);

    // HEIC from heif-enc, which keeps the JPEG's Exif (GPS, camera, orientation 6) and ICC.
    let dir = tempfile::tempdir().unwrap();
    let jpeg = phone_photo("jpeg", "jpg");
    let (src, heic_path) = (dir.path().join("p.jpg"), dir.path().join("p.heic"));
    std::fs::write(&src, &jpeg).unwrap();
    let st = std::process::Command::new("heif-enc")
        .args([
            "-q",
            "90",
            "-o",
            heic_path.to_str().unwrap(),
            src.to_str().unwrap(),
        ])
        .output()
        .expect("heif-enc");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let heic = std::fs::read(&heic_path).unwrap();
    std::fs::write(api.root.join("public/phone.heic"), &heic).unwrap();
    let r = get_as(&api, "/public/phone.heic", Who::Guest).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/heic");
    assert_stripped(&heic, &r.bytes().await.unwrap(), "HEIC");
}

/// The BlurHash decoded by the `blurhash` package, against Pillow's downscale of the
/// image as shown (EXIF orientation applied): mean absolute difference per channel.
fn blurhash_distance(hash: &str, image: &[u8]) -> f64 {
    let script = r#"
import io, sys, blurhash
from PIL import Image, ImageOps
im = ImageOps.exif_transpose(Image.open(io.BytesIO(sys.stdin.buffer.read()))).convert("RGB")
w, h = 16, max(1, round(16 * im.height / im.width))
ref = im.resize((w, h), Image.BOX)
dec = blurhash.decode(sys.argv[1], w, h)
total = 0
for y in range(h):
    for x in range(w):
        total += sum(abs(a - b) for a, b in zip(ref.getpixel((x, y)), dec[y][x]))
print(total / (w * h * 3))
"#;
    let out = run_python(script, &[hash], image);
    String::from_utf8(out).unwrap().trim().parse().unwrap()
}

/// The facts exiftool reads from the same file.
fn expected_taken_at(tags: &Value) -> String {
    let dt = tags["EXIF:DateTimeOriginal"].as_str().unwrap();
    let (date, time) = dt.split_once(' ').unwrap();
    format!(
        "{}T{time}{}",
        date.replace(':', "-"),
        tags["EXIF:OffsetTimeOriginal"].as_str().unwrap()
    )
}

/// Facts in records (upload, get, list) and at `?fm=json`, checked against exiftool and
/// Pillow; GPS only for the owner and admins.
async fn facts(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let alice = Who::User("alice");
    let stored = phone_photo("jpeg", "jpg");
    let tags = exiftool(&stored);
    let rec = api.upload(alice, "public", stored.clone()).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    assert_eq!(
        (rec["width"].as_u64(), rec["height"].as_u64()),
        (Some(96), Some(64))
    );
    assert_eq!(rec["format"], "jpeg");
    assert_eq!(rec["orientation"], tags["EXIF:Orientation"]);
    assert_eq!(
        (
            rec["display_width"].as_u64(),
            rec["display_height"].as_u64()
        ),
        (Some(64), Some(96)),
        "orientation 6 shows the image turned"
    );
    assert_eq!(
        (rec["animated"].as_bool(), rec["frames"].as_u64()),
        (Some(false), Some(1))
    );
    assert_eq!(rec["has_alpha"], false);
    assert_eq!(rec["taken_at"], expected_taken_at(&tags));
    assert_eq!(rec["taken_at"], "2024-05-06T07:08:09+02:00");
    assert_eq!(
        rec["camera"],
        json!({"make": tags["EXIF:Make"], "model": tags["EXIF:Model"]})
    );
    let (lat, lon) = (
        tags["Composite:GPSLatitude"].as_f64().unwrap(),
        tags["Composite:GPSLongitude"].as_f64().unwrap(),
    );
    assert!(
        (rec["gps"]["lat"].as_f64().unwrap() - lat).abs() < 1e-6,
        "{rec}"
    );
    assert!(
        (rec["gps"]["lon"].as_f64().unwrap() - lon).abs() < 1e-6,
        "{rec}"
    );
    assert!(lon < 0.0, "west is negative");
    let colour = rec["dominant_color"].as_str().unwrap();
    assert!(colour.len() == 7 && colour.starts_with('#'), "{colour}");
    let hash = rec["blurhash"].as_str().unwrap();
    assert_eq!(hash.len(), 28, "4x3 components");
    let d = blurhash_distance(hash, &stored);
    assert!(d < 20.0, "BlurHash is {d} away from the image");
    // The oriented image is not what the hash shows when taken unrotated: the test can fail.
    let unrotated = with_exiftool(&stored, "jpg", &[], Some(1));
    assert!(blurhash_distance(hash, &unrotated) > d + 5.0);

    let facts_fields = [
        "format",
        "display_width",
        "display_height",
        "orientation",
        "animated",
        "frames",
        "has_alpha",
        "taken_at",
        "camera",
        "dominant_color",
        "blurhash",
    ];
    // get and list: GPS for alice and admins only.
    for (who, sees) in [
        (alice, true),
        (Who::Admin, true),
        (Who::User("bob"), false),
        (Who::Guest, false),
    ] {
        let (st, got) = api
            .call("GET", &format!("/api/v1/images/{id}"), who, Req::Empty)
            .await;
        assert_eq!(st, 200);
        let (_, page) = api.call("GET", "/api/v1/images", who, Req::Empty).await;
        let listed = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone();
        let fm = get_as(&api, &format!("/{key}?fm=json"), who).await;
        assert_eq!(fm.status(), 200);
        assert_eq!(header(&fm, "content-type"), "application/json");
        let private = header(&fm, "cache-control").starts_with("private");
        let fm: Value = fm.json().await.unwrap();
        for (view, v) in [("get", &got), ("list", &listed), ("fm=json", &fm)] {
            assert_eq!(v["gps"].is_object(), sees, "{who:?} {view}: {v}");
            assert!(sees || v["gps"].is_null(), "{who:?} {view}");
            for f in facts_fields {
                assert_eq!(v[f], rec[f], "{who:?} {view} {f}");
            }
        }
        assert_eq!(
            private, sees,
            "{who:?}: a position is not for shared caches"
        );
    }

    // fm=json: only `v` may come with it; ETag and 304.
    assert_eq!(
        get_as(&api, &format!("/{key}?fm=json&v=3"), Who::Guest)
            .await
            .status(),
        200
    );
    let r = get_as(&api, &format!("/{key}?fm=json&w=10"), Who::Guest).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`w`"));
    let r = get_as(&api, &format!("/{key}?fm=json"), Who::Guest).await;
    let etag = header(&r, "etag");
    let r304 = api
        .s
        .get_with(
            &format!("/{key}?fm=json"),
            &[("if-none-match", etag.as_str())],
        )
        .await;
    assert_eq!(r304.status(), 304);
    let owner_etag = header(
        &get_as(&api, &format!("/{key}?fm=json"), alice).await,
        "etag",
    );
    assert_ne!(
        owner_etag, etag,
        "the GPS-bearing answer is another resource"
    );
    // Access rules as for the image: a private image's facts are 403 for others, 404 for
    // a missing key.
    let private = api.upload(alice, "private", stored.clone()).await;
    let pkey = private["key"].as_str().unwrap();
    assert_eq!(
        get_as(&api, &format!("/{pkey}?fm=json"), Who::Guest)
            .await
            .status(),
        403
    );
    assert_eq!(
        get_as(&api, &format!("/{pkey}?fm=json"), Who::User("bob"))
            .await
            .status(),
        403
    );
    assert_eq!(
        get_as(&api, &format!("/{pkey}?fm=json"), alice)
            .await
            .status(),
        200
    );
    assert_eq!(
        get_as(&api, "/public/nope.jpg?fm=json", Who::Guest)
            .await
            .status(),
        404
    );

    // Alpha, no EXIF; an animation (frames counted by Pillow).
    let alpha = api.upload(alice, "public", fixture("alpha.png")).await;
    assert_eq!(alpha["has_alpha"], true);
    assert!(alpha["taken_at"].is_null() && alpha["camera"].is_null() && alpha["gps"].is_null());
    assert_eq!(alpha["orientation"], 1);
    let anim = api.upload(alice, "public", fixture("anim.gif")).await;
    let frames: u64 = String::from_utf8(run_python(
        "import io,sys\nfrom PIL import Image\nprint(Image.open(io.BytesIO(sys.stdin.buffer.read())).n_frames)",
        &[],
        &fixture("anim.gif"),
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    assert!(frames > 1);
    assert_eq!(anim["frames"].as_u64(), Some(frames));
    assert_eq!(anim["animated"], true);
    assert_eq!(anim["format"], "gif");
}
both_dbs!(facts);

/// Facts computed lazily: for a key without a record (`?fm=json`), and for a record
/// stored before facts existed (on its first GET, then kept in the record); and at
/// registration.
async fn facts_later(db: Db) {
    let Some(api) = Api::start(db, "").await else {
        return;
    };
    let stored = phone_photo("webp", "webp");
    // No record: an object put into storage directly.
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    std::fs::write(api.root.join("public/direct.webp"), &stored).unwrap();
    let guest: Value = get_as(&api, "/public/direct.webp?fm=json", Who::Guest)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(guest["format"], "webp");
    assert_eq!(
        (
            guest["display_width"].as_u64(),
            guest["display_height"].as_u64()
        ),
        (Some(64), Some(96))
    );
    assert_eq!(guest["taken_at"], "2024-05-06T07:08:09+02:00");
    assert!(guest["gps"].is_null());
    let admin: Value = get_as(&api, "/public/direct.webp?fm=json", Who::Admin)
        .await
        .json()
        .await
        .unwrap();
    assert!((admin["gps"]["lat"].as_f64().unwrap() - 48.8584).abs() < 1e-6);

    // A record without facts (written before they existed).
    let meta = api.s.state.metadata.clone();
    let key = "protected/alice/old.png";
    let old = gradient("png", 30, 20);
    std::fs::create_dir_all(api.root.join("protected/alice")).unwrap();
    std::fs::write(api.root.join(key), &old).unwrap();
    let now = imgorigin::metadata::now_micros();
    meta.insert(&imgorigin::metadata::ImageRecord {
        id: "oldrecord00000000000".into(),
        key: key.into(),
        level: imgorigin::metadata::Level::Protected,
        owner: Some("alice".into()),
        filename: None,
        content_type: "image/png".into(),
        bytes: old.len() as i64,
        width: 30,
        height: 20,
        sha256: String::new(),
        tags: vec![],
        description: None,
        state: imgorigin::metadata::RecordState::Ready,
        created_at: now,
        updated_at: now,
        facts: None,
        moderation: None,
        rejected_reason: None,
    })
    .await
    .unwrap();
    let (_, page) = api
        .call("GET", "/api/v1/images", Who::Admin, Req::Empty)
        .await;
    let listed = &page["items"][0];
    assert_eq!(listed["id"], "oldrecord00000000000");
    assert!(
        listed["display_width"].is_null(),
        "lists show what is stored"
    );
    let (st, got) = api
        .call(
            "GET",
            "/api/v1/images/oldrecord00000000000",
            Who::User("bob"),
            Req::Empty,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (got["display_width"].as_u64(), got["format"].as_str()),
        (Some(30), Some("png"))
    );
    let kept = meta.get("oldrecord00000000000").await.unwrap().unwrap();
    assert_eq!(
        kept.facts.unwrap().display_width,
        30,
        "written into the record"
    );

    // Registration computes them like an upload.
    std::fs::write(
        api.root.join("protected/alice/reg.jpg"),
        phone_photo("jpeg", "jpg"),
    )
    .unwrap();
    let (st, reg) = api
        .call(
            "POST",
            "/api/v1/images/register",
            Who::User("alice"),
            Req::Json(json!({"key": "protected/alice/reg.jpg"})),
        )
        .await;
    assert_eq!(st, 201, "{reg}");
    assert_eq!(reg["display_height"], 96);
    assert!(reg["gps"].is_object(), "the owner registered it");
}
both_dbs!(facts_later);

/// Serving 1,000 stripped copies of ~1 MB originals: the body is streamed from the
/// cached original's bytes, so memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_flat_serving_stripped_originals() {
    let api = Api::start(Db::Sqlite, "").await.unwrap();
    let noise = r#"
import io, sys, random
from PIL import Image
random.seed(7)
img = Image.frombytes("RGB", (1200, 900), bytes(random.getrandbits(8) for _ in range(1200 * 900 * 3)))
out = io.BytesIO()
img.save(out, format="JPEG", quality=90)
sys.stdout.buffer.write(out.getvalue())
"#;
    let stored = with_exiftool(&run_python(noise, &[], b""), "jpg", TAGS, Some(6));
    assert!(stored.len() > 500_000, "{}", stored.len());
    std::fs::create_dir_all(api.root.join("public")).unwrap();
    let keys: Vec<String> = (0..10).map(|i| format!("public/big{i}.jpg")).collect();
    for k in &keys {
        std::fs::write(api.root.join(k), &stored).unwrap();
    }
    let fetch = |i: usize| {
        let url = api.s.url(&format!("/{}", keys[i % keys.len()]));
        let client = api.s.client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }
    };
    let first = fetch(0).await;
    assert!(first < stored.len());
    for i in 0..50 {
        assert_eq!(fetch(i).await, first);
    }
    let before = rss_bytes();
    for i in 0..1000 {
        assert_eq!(fetch(i).await, first);
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "RSS {} MiB before, grew by {} KiB over 1,000 stripped responses of {} bytes",
        before >> 20,
        grown >> 10,
        first
    );
    assert!(
        grown < 24 << 20,
        "RSS grew by {grown} bytes over 1,000 responses"
    );
}

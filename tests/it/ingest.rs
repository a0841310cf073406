//! Ingest (SPEC §12) against real protocol servers: the in-process S3 (s3s) is the bucket,
//! moto in server mode is SQS and Rekognition `DetectLabels`, and a small responder in
//! this file speaks Rekognition's JSON 1.1 protocol for `DetectModerationLabels` (moto
//! lacks it), passing every other call through to moto. s3s sends no notifications, so
//! each test publishes the exact S3 event JSON (schema 2.1, URL-encoded key) into the
//! moto queue after putting the object, as S3 would.

use crate::api::{Api, Req, Setup, Who, presigned_put};
use crate::support::*;
use aws_sdk_sqs::types::QueueAttributeName;
use base64::Engine as _;
use imgorigin::metadata::RecordState;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// One bucket, one queue, one metadata database, shared by the instances of a test.
struct Env {
    s3: S3Server,
    _moto: Moto,
    moto_endpoint: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// The storage prefix folder inside the bucket.
    objects: PathBuf,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Env {
    /// A bucket and a queue whose messages become visible again `visibility_s` after a
    /// receive that did not delete them.
    async fn new(visibility_s: u32) -> Env {
        // reqwest (moto's readiness probe) takes the process's TLS provider.
        imgorigin::app::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let s3_root = dir.path().join("s3");
        let objects = s3_root.join(S3_BUCKET).join(S3_PREFIX);
        std::fs::create_dir_all(&objects).unwrap();
        let s3 = S3Server::start(&s3_root).await;
        let moto = Moto::start().await;
        let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let queue_url = sqs
            .create_queue()
            .queue_name("imgorigin-ingest")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_s.to_string(),
            )
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("meta.db").to_str().unwrap());
        Env {
            s3,
            moto_endpoint: moto.endpoint.clone(),
            _moto: moto,
            sqs,
            queue_url,
            objects,
            db_url,
            _dir: dir,
        }
    }

    /// An instance on this bucket and database; `ingest` (more `[ingest]` keys) adds the
    /// `[ingest]` section, consuming the queue through `endpoint` (moto unless given).
    async fn start(&self, ingest: Option<&str>, endpoint: Option<&str>, extra: &str) -> Api {
        let ingest = match ingest {
            Some(keys) => format!(
                "[ingest]\nqueue_url = {:?}\nendpoint_url = {:?}\nwait_s = 1\n{keys}",
                self.queue_url,
                endpoint.unwrap_or(&self.moto_endpoint)
            ),
            None => String::new(),
        };
        Api::build(
            tempfile::tempdir().unwrap(),
            Setup {
                db_url: self.db_url.clone(),
                storage: (self.s3.config_toml(), self.objects.clone()),
                extra: format!("{ingest}{extra}"),
                signing: true,
                wrap: None,
            },
        )
        .await
    }

    /// Puts an object behind the server's back, as a presigned PUT or another tool would.
    async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .client()
            .put_object()
            .bucket(S3_BUCKET)
            .key(format!("{S3_PREFIX}{key}"))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    /// The notification S3 sends for a created object (below the storage prefix).
    async fn notify(&self, key: &str) {
        let size = std::fs::metadata(self.objects.join(key))
            .map(|m| m.len())
            .unwrap_or(0);
        self.send(&s3_event(&format!("{S3_PREFIX}{key}"), size))
            .await;
    }

    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages waiting plus messages received and not deleted.
    async fn queued(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().unwrap();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| attrs[a].parse::<u64>().unwrap())
        .sum()
    }

    async fn wait_drained(&self) {
        let start = Instant::now();
        while self.queued().await > 0 {
            assert!(start.elapsed() < DEADLINE, "the queue was not drained");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Files below `dir` of the bucket's storage prefix (relative to `dir`).
    fn files_under(&self, dir: &str) -> Vec<String> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        let base = self.objects.join(dir);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

/// S3's event notification for one created object, as AWS sends it (schema 2.1): the key
/// URL-encoded with `+` for spaces.
fn s3_event(object_key: &str, size: u64) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b' ');
    let encoded = percent_encoding::utf8_percent_encode(object_key, KEEP)
        .to_string()
        .replace(' ', "+");
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "imgorigin-ingest",
            "bucket": {"name": S3_BUCKET, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{S3_BUCKET}")},
            "object": {"key": encoded, "size": size, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
        }
    }]})
    .to_string()
}

/// Polls `f` until it returns `Some`, failing after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A presigned PUT URL (`POST /api/v1/uploads`) for a PNG at `level`.
async fn presign(api: &Api, who: Who<'_>, level: &str) -> Value {
    let (st, up) = api
        .call(
            "POST",
            "/api/v1/uploads",
            who,
            Req::Json(json!({"level": level, "content_type": "image/png"})),
        )
        .await;
    assert_eq!(st, 200, "{up}");
    up
}

/// Every ready record an admin lists whose key is `key`.
async fn records_of(api: &Api, key: &str) -> Vec<Value> {
    let (st, page) = api
        .call("GET", "/api/v1/images?limit=100", Who::Admin, Req::Empty)
        .await;
    assert_eq!(st, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == key)
        .cloned()
        .collect()
}

fn noise_png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(31) ^ seed,
            (y as u8).wrapping_mul(17),
            seed,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A presigned PUT (no `register`) is recorded by ingest: the owner lists it with its
/// size and facts, delivery renders it, and `register` then answers 409. An object another
/// tool wrote under `public/` (a space in its key) is recorded without an owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_put_appears_without_register() {
    let env = Env::new(30).await;
    let api = env.start(Some(""), None, "").await;
    let alice = Who::User("alice");
    let up = presign(&api, alice, "private").await;
    let key = up["key"].as_str().unwrap().to_string();
    let bytes = noise_png(40, 30, 7);
    assert_eq!(presigned_put(&up, bytes.clone()).await, 200);
    env.notify(&key).await;
    env.put(
        "public/from another tool.png",
        solid_png(12, 8, [0, 200, 0, 255]),
    )
    .await;
    env.notify("public/from another tool.png").await;

    let item = eventually("the upload in alice's list", || async {
        let (_, page) = api
            .call("GET", "/api/v1/images?owner=me", alice, Req::Empty)
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key.as_str())
            .cloned()
    })
    .await;
    assert_eq!(item["owner"], "alice");
    assert_eq!(item["level"], "private");
    assert_eq!(item["state"], "ready");
    assert_eq!(
        (item["width"].clone(), item["height"].clone()),
        (json!(40), json!(30))
    );
    assert_eq!(item["bytes"], bytes.len());
    assert_eq!(item["format"], "png");
    assert_eq!(item["moderation"], Value::Null, "moderation is off");
    let tok = format!("Bearer {}", api.token("alice"));
    let r = api
        .s
        .get_with(&format!("/{key}?w=20"), &[("authorization", tok.as_str())])
        .await;
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (20, 15));
    let (st, _) = api
        .call(
            "POST",
            "/api/v1/images/register",
            alice,
            Req::Json(json!({"key": key})),
        )
        .await;
    assert_eq!(st, 409, "ingest recorded it already");

    let other = eventually("the public object's record", || async {
        records_of(&api, "public/from another tool.png").await.pop()
    })
    .await;
    assert_eq!(
        other["owner"],
        Value::Null,
        "no one claims an unrecorded public object"
    );
    assert_eq!(other["level"], "public");
    assert_eq!(
        (other["width"].clone(), other["height"].clone()),
        (json!(12), json!(8))
    );
    env.wait_drained().await;
}

/// The same event twice makes one record; events for keys ingest does not handle (outside
/// the access prefixes, the shared variant prefix, `rejected/`), S3's test event and an
/// object written through the upload API are consumed without a record of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_event_twice_is_one_record() {
    let env = Env::new(30).await;
    env.put("public/twice.png", noise_png(9, 9, 1)).await;
    env.put("other/outside.png", noise_png(9, 9, 2)).await;
    env.put("_variants/public/x.png/0123", noise_png(9, 9, 3))
        .await;
    env.put("rejected/public/old.png", noise_png(9, 9, 4)).await;
    for k in [
        "public/twice.png",
        "public/twice.png",
        "other/outside.png",
        "_variants/public/x.png/0123",
        "rejected/public/old.png",
    ] {
        env.notify(k).await;
    }
    env.send(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T10:00:00.000Z","Bucket":"test-bucket","RequestId":"R","HostId":"H"}"#).await;
    // Both deliveries are in the queue before the consumer starts: two workers may take
    // them at once.
    let api = env.start(Some("concurrency = 4\n"), None, "").await;
    let uploaded = api.upload(Who::Admin, "public", noise_png(5, 5, 9)).await;
    let ukey = uploaded["key"].as_str().unwrap().to_string();
    env.notify(&ukey).await;
    env.wait_drained().await;
    assert_eq!(records_of(&api, "public/twice.png").await.len(), 1);
    assert_eq!(records_of(&api, &ukey).await.len(), 1);
    assert_eq!(
        records_of(&api, &ukey).await[0]["id"],
        uploaded["id"],
        "the API's record stands"
    );
    let meta = &api.s.state.metadata;
    for k in [
        "other/outside.png",
        "_variants/public/x.png/0123",
        "rejected/public/old.png",
    ] {
        assert!(meta.get_by_key(k).await.unwrap().is_none(), "{k} recorded");
    }
}

/// A corrupt object is moved under `rejected/` with a record in state `rejected` saying
/// why (readable by its owner), and its message is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_object_is_rejected() {
    let env = Env::new(30).await;
    let api = env.start(Some(""), None, "").await;
    let jpeg = fixture("quad.jpg");
    let key = "protected/alice/broken.jpg";
    env.put(key, jpeg[..jpeg.len() / 2].to_vec()).await;
    env.put("public/notes.png", b"not an image at all".to_vec())
        .await;
    env.notify(key).await;
    env.notify("public/notes.png").await;
    env.wait_drained().await;
    assert!(!env.objects.join(key).exists(), "moved away");
    assert_eq!(
        std::fs::read(env.objects.join("rejected").join(key)).unwrap(),
        jpeg[..jpeg.len() / 2],
        "kept under rejected/"
    );
    assert!(env.objects.join("rejected/public/notes.png").exists());
    let rec = api
        .s
        .state
        .metadata
        .get_by_key(&format!("rejected/{key}"))
        .await
        .unwrap()
        .expect("a rejected record");
    assert_eq!(rec.state, RecordState::Rejected);
    assert_eq!(rec.owner.as_deref(), Some("alice"));
    let reason = rec.rejected_reason.clone().unwrap();
    assert!(!reason.is_empty());
    let (st, v) = api
        .call(
            "GET",
            &format!("/api/v1/images/{}", rec.id),
            Who::User("alice"),
            Req::Empty,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["rejected_reason"], reason.as_str());
    let (st, _) = api
        .call(
            "GET",
            &format!("/api/v1/images/{}", rec.id),
            Who::User("bob"),
            Req::Empty,
        )
        .await;
    assert_eq!(st, 404);
    let (_, page) = api
        .call(
            "GET",
            "/api/v1/images?owner=me",
            Who::User("alice"),
            Req::Empty,
        )
        .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "rejected records are not listed"
    );
    // Never delivered from its old key.
    assert_eq!(api.s.get(&format!("/{key}")).await.status(), 403);
    let tok = format!("Bearer {}", api.token("alice"));
    let r = api
        .s
        .get_with(&format!("/{key}?w=4"), &[("authorization", tok.as_str())])
        .await;
    assert_eq!(r.status(), 404);
}

/// A worker stopped while it works on an image leaves its message in the queue (not
/// deleted); after the visibility timeout another instance gets it and records the object
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_message_comes_back() {
    let env = Env::new(2).await;
    let a = env.start(Some(""), None, "").await;
    let key = "public/slow.png";
    env.put(key, noise_png(30, 20, 5)).await;
    // The bucket stops answering: A's worker hangs on the object.
    env.s3.set_fault(Fault::Hang);
    env.notify(key).await;
    eventually("A fetching the object", || async {
        (env.s3.get_object_calls(key) > 0).then_some(())
    })
    .await;
    assert_eq!(env.queued().await, 1, "in flight, not deleted");
    let task = a.s.state.ingest_task.lock().unwrap().take().unwrap();
    task.abort();
    env.s3.set_fault(Fault::None);
    assert!(a.s.state.metadata.get_by_key(key).await.unwrap().is_none());

    let b = env.start(Some(""), None, "").await;
    let rec = eventually("B recording the object", || async {
        records_of(&b, key).await.pop()
    })
    .await;
    assert_eq!(
        (rec["width"].clone(), rec["height"].clone()),
        (json!(30), json!(20))
    );
    env.wait_drained().await;
    assert_eq!(records_of(&b, key).await.len(), 1);
}

/// An object worked on longer than the queue's visibility timeout (2 s; the bucket hangs
/// meanwhile) keeps its message: the heartbeat extends the timeout, so the message is not
/// delivered a second time, and the object is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_is_extended_while_working() {
    let env = Env::new(2).await;
    let (endpoint, _, targets) = rekognition_responder(env.moto_endpoint.clone()).await;
    let api = env.start(Some(""), Some(&endpoint), "").await;
    let key = "public/long.png";
    env.put(key, noise_png(20, 20, 8)).await;
    env.s3.set_fault(Fault::Hang);
    env.notify(key).await;
    let extended = || {
        targets
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.as_str() == "AmazonSQS.ChangeMessageVisibility")
            .count()
    };
    // Three extensions, one per second: past the 2 s the message had when received.
    eventually("three visibility extensions", || async {
        (extended() >= 3).then_some(())
    })
    .await;
    env.s3.set_fault(Fault::None);
    env.wait_drained().await;
    assert_eq!(records_of(&api, key).await.len(), 1);
    let series = |o: &str| format!("imgorigin_ingested_total{{outcome=\"{o}\"}}");
    assert_eq!(api.s.metric(&series("recorded")).await, 1.0);
    assert_eq!(
        api.s.metric(&series("skipped")).await,
        0.0,
        "delivered once"
    );
}

/// What the moderation responder saw: the size of each image it was sent.
type Seen = Arc<Mutex<Vec<(u32, u32)>>>;

/// The `X-Amz-Target` of every request the responder passed on to moto.
type Targets = Arc<Mutex<Vec<String>>>;

/// Rekognition's JSON 1.1 protocol for `DetectModerationLabels` (an image whose centre is
/// red is flagged, anything else approved); every other request is passed to moto.
async fn rekognition_responder(moto: String) -> (String, Seen, Targets) {
    use axum::body::Body;
    use axum::http::{Request, Response};
    let seen: Seen = Arc::default();
    let targets: Targets = Arc::default();
    let (seen2, targets2) = (seen.clone(), targets.clone());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (seen, targets, http, moto) = (seen2.clone(), targets2.clone(), http.clone(), moto.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
            let target = parts
                .headers
                .get("x-amz-target")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            if target == "RekognitionService.DetectModerationLabels" {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let jpeg = base64::engine::general_purpose::STANDARD
                    .decode(v["Image"]["Bytes"].as_str().unwrap())
                    .unwrap();
                assert_eq!(&jpeg[..2], b"\xff\xd8", "Rekognition is sent a JPEG");
                let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
                seen.lock().unwrap().push((img.width(), img.height()));
                let c = img.get_pixel(img.width() / 2, img.height() / 2);
                let labels = if c[0] > 200 && c[1] < 60 {
                    json!([{"Confidence": 97.5, "Name": "Explicit Nudity", "ParentName": "", "TaxonomyLevel": 1}])
                } else {
                    json!([])
                };
                let out = json!({"ModerationLabels": labels, "ModerationModelVersion": "7.0"});
                return Response::builder()
                    .header("content-type", "application/x-amz-json-1.1")
                    .body(Body::from(out.to_string()))
                    .unwrap();
            }
            targets.lock().unwrap().push(target);
            let mut fwd = http.request(
                parts.method.clone(),
                format!("{moto}{}", parts.uri.path_and_query().unwrap()),
            );
            for (k, v) in &parts.headers {
                if k != "host" && k != "content-length" {
                    fwd = fwd.header(k, v);
                }
            }
            let r = fwd.body(body).send().await.unwrap();
            let mut out = Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from(r.bytes().await.unwrap())).unwrap()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (endpoint, seen, targets)
}

/// Labels become `auto:` tags (moto's DetectLabels answers `Mobile Phone` with the parent
/// `Phone`, which is left out); a flagged image is 403 for guests, other users and share
/// links and unlisted for them, 200 for its owner and admins; an approved one is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_images_are_for_owner_and_admin() {
    let env = Env::new(30).await;
    let (endpoint, seen, _) = rekognition_responder(env.moto_endpoint.clone()).await;
    let api = env
        .start(
            Some("labels = \"rekognition\"\nmoderation = \"rekognition\"\n"),
            Some(&endpoint),
            "",
        )
        .await;
    let alice = Who::User("alice");
    let mut keys = Vec::new();
    for color in [[230u8, 10, 10, 255], [10, 200, 10, 255]] {
        let up = presign(&api, alice, "public").await;
        // Larger than the review thumbnail: Rekognition gets it downscaled.
        assert_eq!(presigned_put(&up, solid_png(1500, 1000, color)).await, 200);
        keys.push(up["key"].as_str().unwrap().to_string());
    }
    for k in &keys {
        env.notify(k).await;
    }
    env.wait_drained().await;
    let (red, green) = (&keys[0], &keys[1]);
    let rec = records_of(&api, red).await.pop().expect("red recorded");
    assert_eq!(rec["moderation"], "flagged");
    assert_eq!(rec["owner"], "alice", "the uploader it was reserved for");
    assert_eq!(rec["tags"], json!(["auto:mobile-phone"]));
    let ok = records_of(&api, green).await.pop().expect("green recorded");
    assert_eq!(ok["moderation"], "approved");
    assert_eq!(*seen.lock().unwrap(), vec![(1024, 683), (1024, 683)]);

    let token = |sub: &str| format!("Bearer {}", api.token(sub));
    for path in [format!("/{red}"), format!("/{red}?w=100")] {
        assert_eq!(api.s.get(&path).await.status(), 403, "guest {path}");
        let bob = token("bob");
        assert_eq!(
            api.s
                .get_with(&path, &[("authorization", bob.as_str())])
                .await
                .status(),
            403
        );
        let a = token("alice");
        let r = api
            .s
            .get_with(&path, &[("authorization", a.as_str())])
            .await;
        assert_eq!(r.status(), 200, "owner {path}");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("private")
        );
        let img = image::load_from_memory(&r.bytes().await.unwrap())
            .unwrap()
            .to_rgba8();
        assert_eq!(at(&img, 0.5, 0.5), Some(C::Red));
        let r = api
            .s
            .get_with(&path, &[("x-api-key", crate::api::ADMIN_KEY)])
            .await;
        assert_eq!(r.status(), 200, "admin {path}");
    }
    let img = api.s.image(&format!("/{green}?w=150")).await;
    assert_eq!((img.width(), img.height()), (150, 100));
    assert_eq!(at(&img, 0.5, 0.5), Some(C::Green));

    let (st, share) = api
        .call(
            "POST",
            &format!("/api/v1/images/{}/shares", rec["id"].as_str().unwrap()),
            alice,
            Req::Json(json!({"expires_in": 600})),
        )
        .await;
    assert_eq!(st, 201, "{share}");
    let surl = crate::api::path_of(share["url"].as_str().unwrap()).to_string();
    assert_eq!(api.s.get(&surl).await.status(), 403, "share link");

    let listed = |who| {
        let api = &api;
        async move {
            let (_, page) = api.call("GET", "/api/v1/images", who, Req::Empty).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    for who in [Who::Guest, Who::User("bob")] {
        let l = listed(who).await;
        assert!(!l.contains(red) && l.contains(green), "{who:?}: {l:?}");
    }
    assert!(listed(alice).await.contains(red));
    let (st, _) = api
        .call(
            "GET",
            &format!("/api/v1/images/{}", rec["id"].as_str().unwrap()),
            Who::User("bob"),
            Req::Empty,
        )
        .await;
    assert_eq!(st, 404);
}

const SHARED: &str = "[cache.shared]\nbackend = \"s3\"\n[presets.card]\nparams = \"w=64&h=48&fit=cover&fm=webp\"\n[presets.thumb]\nparams = \"w=32&fm=png\"\n";

/// Eager presets are rendered into the shared store at ingest; a second instance serves
/// them without rendering; a miss it renders is written there after being served; keys
/// under the prefix are never originals; deleting the image removes its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_presets_and_the_shared_store() {
    let env = Env::new(30).await;
    let key = "public/eager.png";
    let a = env
        .start(
            Some("eager_presets = [\"card\", \"thumb\"]\n"),
            None,
            SHARED,
        )
        .await;
    env.put(key, noise_png(160, 120, 3)).await;
    env.notify(key).await;
    env.wait_drained().await;
    let entries = env.files_under(&format!("_variants/{key}"));
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        let bytes = std::fs::read(env.objects.join("_variants").join(key).join(e)).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert!(
            [(64, 48), (32, 24)].contains(&(img.width(), img.height())),
            "{e}: {}x{}",
            img.width(),
            img.height()
        );
    }

    // B: another instance on the same bucket, its memory empty, no ingest.
    let b = env.start(None, None, SHARED).await;
    let img = b.s.image(&format!("/{key}?p=card")).await;
    assert_eq!((img.width(), img.height()), (64, 48));
    let img = b.s.image(&format!("/{key}?p=thumb")).await;
    assert_eq!((img.width(), img.height()), (32, 24));
    assert_eq!(
        b.s.metric("imgorigin_renders_total").await,
        0.0,
        "served without rendering"
    );
    assert_eq!(
        b.s.metric("imgorigin_cache_hits_total{tier=\"shared\"}")
            .await,
        2.0
    );
    // The same bytes as A's render (one variant id, one entry).
    let from_a = a.s.ok_bytes(&format!("/{key}?p=card")).await;
    assert_eq!(b.s.ok_bytes(&format!("/{key}?p=card")).await, from_a);

    // A miss B renders goes to the store after it is served.
    let img = b.s.image(&format!("/{key}?w=16")).await;
    assert_eq!((img.width(), img.height()), (16, 12));
    assert_eq!(b.s.metric("imgorigin_renders_total").await, 1.0);
    eventually("the new variant in the shared store", || async {
        (env.files_under(&format!("_variants/{key}")).len() == 3).then_some(())
    })
    .await;

    // Variants are never originals.
    let entry = format!("_variants/{key}/{}", entries[0]);
    assert_eq!(b.s.get(&format!("/{entry}")).await.status(), 404);
    let admin = [("x-api-key", crate::api::ADMIN_KEY)];
    assert_eq!(
        b.s.get_with(&format!("/{entry}"), &admin).await.status(),
        404
    );
    let (st, _) = b
        .call(
            "POST",
            "/api/v1/images/register",
            Who::Admin,
            Req::Json(json!({"key": entry})),
        )
        .await;
    assert_eq!(st, 400);

    // Deleting the image removes its entries (and only its own).
    let rec = records_of(&a, key).await.pop().unwrap();
    let (st, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/images/{}", rec["id"].as_str().unwrap()),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        env.files_under(&format!("_variants/{key}")),
        Vec::<String>::new()
    );
}

/// moto's S3 as the bucket, with a real notification configuration to the moto queue: an
/// object put into the bucket reaches ingest without the test publishing anything (the
/// path `scripts/bench`'s first-view workload uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_notifications_reach_ingest() {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    imgorigin::app::install_crypto_provider();
    let moto = Moto::start().await;
    let sdk = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    s3.create_bucket().bucket("photos").send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name("ingest")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value("originals/")
                        .build(),
                )
                .build(),
        )
        .build();
    s3.put_bucket_notification_configuration()
        .bucket("photos")
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .filter(filter)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"photos\"\nendpoint_url = {:?}\nforce_path_style = true\nprefix = \"originals/\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
        moto.endpoint
    );
    let api = Api::build(
        tempfile::tempdir().unwrap(),
        Setup {
            db_url: format!("sqlite://{}", dir.path().join("m.db").to_str().unwrap()),
            storage: (storage, dir.path().to_path_buf()),
            extra: format!(
                "[ingest]\nqueue_url = {queue_url:?}\nendpoint_url = {:?}\nwait_s = 1\n",
                moto.endpoint
            ),
            signing: false,
            wrap: None,
        },
    )
    .await;
    s3.put_object()
        .bucket("photos")
        .key("originals/protected/carol/a photo.png")
        .body(noise_png(24, 18, 2).into())
        .send()
        .await
        .unwrap();
    let rec = eventually("the record", || async {
        records_of(&api, "protected/carol/a photo.png").await.pop()
    })
    .await;
    assert_eq!(rec["owner"], "carol");
    assert_eq!(
        (rec["width"].clone(), rec["height"].clone()),
        (json!(24), json!(18))
    );
    let tok = format!("Bearer {}", api.token("carol"));
    let r = api
        .s
        .get_with(
            "/protected/carol/a%20photo.png?w=12",
            &[("authorization", tok.as_str())],
        )
        .await;
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (12, 9));
}

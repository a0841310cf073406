//! SPEC §14: several instances on one PostgreSQL or one DynamoDB table agree (a delete, a
//! level change, a purge on one is applied by the others within `cluster.propagation_s`,
//! also after the listener or poller lost its connection), CloudFront invalidations against moto's CloudFront (and a failing
//! API in front of it), and `/metrics` in both exposition formats read by promtool.

use crate::api::{Api, Req, Setup, Who, dynamodb_url, png, postgres_url};
use crate::support::{Moto, S3_BUCKET, S3_PREFIX, S3Server};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Long enough that the test never depends on speed; changes arrive in milliseconds.
const PROPAGATION_S: u64 = 5;

/// One instance on `url` and the shared bucket. Originals are cached for an hour, so only
/// the fan-out can make it notice another instance's changes in time. Returns once its
/// listener is up (it stops being degraded).
async fn instance(url: &str, s3: &S3Server, objects: &Path) -> Api {
    let api = Api::build(
        tempfile::tempdir().unwrap(),
        Setup {
            db_url: url.to_string(),
            storage: (s3.config_toml(), objects.to_path_buf()),
            extra: format!(
                "[cache]\nsource_ttl_s = 3600\n[cluster]\npropagation_s = {PROPAGATION_S}\n"
            ),
            signing: true,
            wrap: None,
        },
    )
    .await;
    poll("listener connected", Duration::from_secs(30), || async {
        api.s.metric("imgorigin_cluster_degraded").await == 0.0
    })
    .await;
    api
}

/// Two instances on one PostgreSQL schema and one S3 bucket, started at once.
async fn pair(url: &str, s3: &S3Server, objects: &Path) -> (Api, Api) {
    tokio::join!(instance(url, s3, objects), instance(url, s3, objects))
}

async fn poll<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(api: &Api, path: &str, who: Who<'_>) -> u16 {
    api.send("GET", path, who, Req::Empty)
        .await
        .status()
        .as_u16()
}

fn bucket() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let objects = s3_root.join(S3_BUCKET).join(S3_PREFIX);
    std::fs::create_dir_all(&objects).unwrap();
    (dir, s3_root, objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_level_change_and_purge_reach_the_other_instance() {
    let Some(url) = postgres_url().await else {
        return;
    };
    changes_reach_the_other_instance(&url).await;
}

/// The same on one DynamoDB table (moto): the change log in the table, polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_level_change_and_purge_reach_the_other_instance_on_dynamodb() {
    changes_reach_the_other_instance(&dynamodb_url().await).await;
}

async fn changes_reach_the_other_instance(url: &str) {
    let (_dir, s3_root, objects) = bucket();
    let s3 = S3Server::start(&s3_root).await;
    let (a, b) = pair(url, &s3, &objects).await;
    let within = Duration::from_secs(PROPAGATION_S);

    // Delete on A: B had the original and a variant cached, and answers 404.
    let rec = a.upload(Who::Admin, "public", png(1)).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    for _ in 0..2 {
        assert_eq!(status(&b, &format!("/{key}"), Who::Guest).await, 200);
        assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
    }
    assert!(
        b.s.metric("imgorigin_cache_hits_total{tier=\"variant\"}")
            .await
            >= 1.0,
        "B served the variant from its cache"
    );
    let (st, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/images/{id}"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    poll("B: deleted key is 404", within, || async {
        status(&b, &format!("/{key}"), Who::Guest).await == 404
            && status(&b, &format!("/{key}?w=8"), Who::Guest).await == 404
    })
    .await;
    assert!(
        b.s.metric("imgorigin_cluster_changes_total{event=\"received\"}")
            .await
            >= 1.0
    );

    // Level change public → private on A: B no longer serves the old key, and the new key
    // is refused to a guest (and served to its owner).
    let rec = a.upload(Who::User("alice"), "public", png(2)).await;
    let (id, key) = (
        rec["id"].as_str().unwrap(),
        rec["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
    let (st, moved) = a
        .call(
            "PATCH",
            &format!("/api/v1/images/{id}"),
            Who::User("alice"),
            Req::Json(serde_json::json!({"level": "private"})),
        )
        .await;
    assert_eq!(st, 200, "{moved}");
    let new_key = moved["key"].as_str().unwrap().to_string();
    poll("B: moved key gone", within, || async {
        status(&b, &format!("/{key}?w=8"), Who::Guest).await == 404
    })
    .await;
    assert_eq!(
        status(&b, &format!("/{new_key}?w=8"), Who::Guest).await,
        403
    );
    assert_eq!(
        status(&b, &format!("/{new_key}?w=8"), Who::User("alice")).await,
        200
    );

    // Purge on A drops B's variants: B renders again.
    let rec = a.upload(Who::Admin, "public", png(3)).await;
    let key = rec["key"].as_str().unwrap().to_string();
    assert_eq!(status(&b, &format!("/{key}?w=9"), Who::Guest).await, 200);
    let renders = b.s.metric("imgorigin_renders_total").await;
    assert_eq!(status(&b, &format!("/{key}?w=9"), Who::Guest).await, 200);
    assert_eq!(
        b.s.metric("imgorigin_renders_total").await,
        renders,
        "a hit"
    );
    let (st, _) = a
        .call(
            "POST",
            "/api/v1/cache/purge",
            Who::Admin,
            Req::Json(serde_json::json!({"key": key})),
        )
        .await;
    assert_eq!(st, 200);
    poll("B: purged variant rendered again", within, || async {
        assert_eq!(status(&b, &format!("/{key}?w=9"), Who::Guest).await, 200);
        b.s.metric("imgorigin_renders_total").await > renders
    })
    .await;
}

/// How the TCP path from instance B to PostgreSQL behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    /// Every connection reset, new ones refused (a restart, a failover).
    Down,
    /// Bytes stop flowing, connections stay open (a silent network drop).
    Blackhole,
}

/// A TCP relay (to PostgreSQL, to DynamoDB) whose link the test switches.
async fn relay(upstream: std::net::SocketAddr) -> (u16, tokio::sync::watch::Sender<Link>) {
    let (tx, rx) = tokio::sync::watch::channel(Link::Up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut link = rx.clone();
            tokio::spawn(async move {
                let now = *link.borrow();
                if now != Link::Up {
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let cut = tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
                    r = link.wait_for(|l| *l != Link::Up) => r.ok().map(|l| *l),
                };
                if cut == Some(Link::Blackhole) {
                    // Hold both ends silent until the link is back, then drop them.
                    let _ = link.wait_for(|l| *l == Link::Up).await.is_ok();
                }
            });
        }
    });
    (port, tx)
}

/// `url` with its host and port replaced by 127.0.0.1:`port`.
fn via_port(url: &str, port: u16) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    u.set_host(Some("127.0.0.1")).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

/// B's path to PostgreSQL is cut (connections reset, then silently dropped): while B
/// cannot hear A, a delete on A must still be 404 on B within `propagation_s` (B revalidates
/// every original while it may miss changes), and once the link is back B listens again
/// and serves from its caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_serves_nothing_stale_and_recovers() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let upstream = {
        let u = reqwest::Url::parse(&url).unwrap();
        let host = u.host_str().unwrap().to_string();
        tokio::net::lookup_host((host, u.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let (port, link) = relay(upstream).await;
    lost_link(&url, &via_port(&url, port), link).await;
}

/// The same on DynamoDB: B's path to the table (its poller's and its store's) is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_change_poller_serves_nothing_stale_and_recovers_on_dynamodb() {
    let moto = Moto::shared().await;
    let upstream = reqwest::Url::parse(&moto.endpoint)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    let (port, link) = relay(upstream).await;
    let table = format!("t_{}", imgorigin::metadata::new_id());
    let url_via = |endpoint: &str| {
        let e: String =
            percent_encoding::utf8_percent_encode(endpoint, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        format!("dynamodb://{table}?region=us-east-1&endpoint={e}&create=true")
    };
    lost_link(
        &url_via(&moto.endpoint),
        &url_via(&format!("http://127.0.0.1:{port}")),
        link,
    )
    .await;
}

/// A on `url`, B on `url_b` (the same database through a relay whose `link` the test cuts).
async fn lost_link(url: &str, url_b: &str, link: tokio::sync::watch::Sender<Link>) {
    let (_dir, s3_root, objects) = bucket();
    let s3 = S3Server::start(&s3_root).await;
    let a = instance(url, &s3, &objects).await;
    let b = instance(url_b, &s3, &objects).await;
    let within = Duration::from_secs(PROPAGATION_S);
    let degraded = || async { b.s.metric("imgorigin_cluster_degraded").await == 1.0 };

    for (cut, what) in [(Link::Down, "reset"), (Link::Blackhole, "silent")] {
        let rec = a.upload(Who::Admin, "public", png(4)).await;
        let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
        assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
        link.send(cut).unwrap();
        // Noticed at once (reset) or by the missing heartbeat within propagation_s (silent).
        poll(&format!("B degraded ({what})"), within * 2, degraded).await;
        let (st, _) = a
            .call(
                "DELETE",
                &format!("/api/v1/images/{id}"),
                Who::Admin,
                Req::Empty,
            )
            .await;
        assert_eq!(st, 204);
        // B cannot have heard of it: it must not serve its cached copy all the same.
        assert_eq!(
            status(&b, &format!("/{key}?w=8"), Who::Guest).await,
            404,
            "{what}: B served a deleted image while its listener was down"
        );
        assert!(degraded().await, "{what}: B still cut off");
        link.send(Link::Up).unwrap();
        poll(
            &format!("B listens again ({what})"),
            Duration::from_secs(30),
            || async { b.s.metric("imgorigin_cluster_degraded").await == 0.0 },
        )
        .await;
    }
    assert!(
        b.s.metric("imgorigin_cluster_changes_total{event=\"listener_lost\"}")
            .await
            >= 2.0
    );

    // Recovered: cached again, and a later delete reaches B through the listener.
    let rec = a.upload(Who::Admin, "public", png(5)).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
    let fetches = b.s.metric("imgorigin_storage_fetches_total").await;
    assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
    assert_eq!(
        b.s.metric("imgorigin_storage_fetches_total").await,
        fetches,
        "served from the cache again"
    );
    let received =
        b.s.metric("imgorigin_cluster_changes_total{event=\"received\"}")
            .await;
    let (st, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/images/{id}"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    poll("B: later delete seen", within, || async {
        status(&b, &format!("/{key}?w=8"), Who::Guest).await == 404
    })
    .await;
    assert!(
        b.s.metric("imgorigin_cluster_changes_total{event=\"received\"}")
            .await
            > received
    );
}

async fn cloudfront_client(moto: &Moto) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::new(&moto.sdk_config().await)
}

/// A distribution in moto, as CreateInvalidation needs one.
async fn distribution(cf: &aws_sdk_cloudfront::Client) -> String {
    use aws_sdk_cloudfront::types::*;
    let origin = Origin::builder()
        .id("origin")
        .domain_name("origin.example.com")
        .custom_origin_config(
            CustomOriginConfig::builder()
                .http_port(80)
                .https_port(443)
                .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let config = DistributionConfig::builder()
        .caller_reference(imgorigin::metadata::new_id())
        .comment("imgorigin test")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("origin")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let out = cf
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .expect("moto CreateDistribution");
    out.distribution().unwrap().id().to_string()
}

/// Paths of every invalidation moto holds for `dist`.
async fn invalidations(cf: &aws_sdk_cloudfront::Client, dist: &str) -> Vec<(String, Vec<String>)> {
    let list = cf
        .list_invalidations()
        .distribution_id(dist)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for summary in list
        .invalidation_list()
        .map(|l| l.items())
        .unwrap_or_default()
    {
        let got = cf
            .get_invalidation()
            .distribution_id(dist)
            .id(summary.id())
            .send()
            .await
            .unwrap();
        let inv = got.invalidation().unwrap();
        let paths = inv
            .invalidation_batch()
            .and_then(|b| b.paths())
            .map(|p| p.items().to_vec())
            .unwrap_or_default();
        out.push((inv.id().to_string(), paths));
    }
    out
}

/// Answers the first `fail` CreateInvalidation calls with 503 and forwards everything
/// else to moto: CloudFront's API misbehaving for a while.
async fn flaky_proxy(upstream: String, fail: usize) -> (String, Arc<AtomicUsize>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (client, upstream, counter) = (client.clone(), upstream.clone(), counter.clone());
            async move {
                let creating = method == Method::POST && uri.path().ends_with("/invalidation");
                if creating && counter.fetch_add(1, Ordering::SeqCst) < fail {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        HeaderMap::new(),
                        Bytes::from_static(b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>try later</Message></Error></ErrorResponse>"),
                    );
                }
                let mut rb = client.request(method, format!("{upstream}{uri}"));
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        rb = rb.header(k, v);
                    }
                }
                let r = rb.body(body).send().await.unwrap();
                let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                let mut h = HeaderMap::new();
                for (k, v) in r.headers() {
                    if k == "content-type" {
                        h.insert(k, v.clone());
                    }
                }
                (status, h, r.bytes().await.unwrap())
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), failed)
}

async fn cloudfront_api(endpoint: &str, dist: &str) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("originals");
    std::fs::create_dir_all(&root).unwrap();
    let db = format!("sqlite://{}", dir.path().join("meta.db").to_str().unwrap());
    Api::build(
        dir,
        Setup {
            db_url: db,
            storage: (
                format!("[storage.fs]\nroot = {:?}\n", root.to_str().unwrap()),
                root,
            ),
            extra: format!(
                "[cloudfront]\ndistribution_id = \"{dist}\"\napi_endpoint_url = \"{endpoint}\"\ninvalidations_per_min = 600\n"
            ),
            signing: false,
            wrap: None,
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_creates_one_invalidation_for_the_keys_paths() {
    let moto = Moto::start().await;
    let cf = cloudfront_client(&moto).await;
    let dist = distribution(&cf).await;
    let api = cloudfront_api(&moto.endpoint, &dist).await;
    let rec = api.upload(Who::Admin, "public", png(6)).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    assert_eq!(status(&api, &format!("/{key}?w=8"), Who::Guest).await, 200);
    let r = api
        .send(
            "DELETE",
            &format!("/api/v1/images/{id}"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(r.status(), 204);
    let header = r
        .headers()
        .get("x-imgorigin-invalidation")
        .expect("invalidation header")
        .to_str()
        .unwrap()
        .to_string();
    let all = invalidations(&cf, &dist).await;
    assert_eq!(all, vec![(header, vec![format!("/{key}*")])]);
    assert_eq!(
        api.s
            .metric("imgorigin_cloudfront_invalidations_total{outcome=\"created\"}")
            .await,
        1.0
    );
    assert_eq!(status(&api, &format!("/{key}?w=8"), Who::Guest).await, 404);

    // A purge by prefix is one wildcard path too.
    let r = api
        .send(
            "POST",
            "/api/v1/cache/purge",
            Who::Admin,
            Req::Json(serde_json::json!({"prefix": "public/"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-imgorigin-invalidation"]
        .to_str()
        .unwrap()
        .to_string();
    let all = invalidations(&cf, &dist).await;
    assert!(
        all.contains(&(id, vec!["/public/*".to_string()])),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_invalidation_api_is_retried_and_counted_without_undoing_the_delete() {
    let moto = Moto::start().await;
    let cf = cloudfront_client(&moto).await;
    let dist = distribution(&cf).await;
    let (proxy, calls) = flaky_proxy(moto.endpoint.clone(), 2).await;
    let api = cloudfront_api(&proxy, &dist).await;
    let rec = api.upload(Who::Admin, "public", png(7)).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    let r = api
        .send(
            "DELETE",
            &format!("/api/v1/images/{id}"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(
        r.status(),
        204,
        "the delete stands whatever CloudFront says"
    );
    assert_eq!(status(&api, &format!("/{key}"), Who::Guest).await, 404);
    poll(
        "invalidation created after retries",
        Duration::from_secs(60),
        || async { !invalidations(&cf, &dist).await.is_empty() },
    )
    .await;
    assert_eq!(
        invalidations(&cf, &dist).await[0].1,
        vec![format!("/{key}*")]
    );
    // Two refused calls, each counted, then one that went through.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let count = |outcome: &'static str| {
        let s = &api.s;
        async move {
            s.metric(&format!(
                "imgorigin_cloudfront_invalidations_total{{outcome=\"{outcome}\"}}"
            ))
            .await
        }
    };
    assert_eq!(count("failed").await, 2.0);
    assert_eq!(count("created").await, 1.0);
}

//! SPEC §14: several instances on one PostgreSQL agree (a delete, a level change, a purge on
//! one is applied by the others within `cluster.propagation_s`, also after the listener
//! lost its connection), CloudFront invalidations against moto's CloudFront (and a failing
//! API in front of it), and `/metrics` in both exposition formats read by promtool.

use crate::api::{Api, Req, Setup, Who, png, postgres_url};
use crate::support::{Moto, S3_BUCKET, S3_PREFIX, S3Server};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Long enough that the test never depends on speed; changes arrive in milliseconds.
const PROPAGATION_S: u64 = 5;

/// Two instances on one PostgreSQL schema and one S3 bucket; originals are cached for an
/// hour, so only the fan-out can make B notice A's changes in time.
async fn pair(url: &str, s3: &S3Server, objects: &Path) -> (Api, Api) {
    let start = || {
        let storage = (s3.config_toml(), objects.to_path_buf());
        let url = url.to_string();
        async move {
            Api::build(
                tempfile::tempdir().unwrap(),
                Setup {
                    db_url: url,
                    storage,
                    extra: format!(
                        "[cache]\nsource_ttl_s = 3600\n[cluster]\npropagation_s = {PROPAGATION_S}\n"
                    ),
                    signing: true,
                    wrap: None,
                },
            )
            .await
        }
    };
    let (a, b) = tokio::join!(start(), start());
    // Each listener is up once its instance stops being degraded.
    for s in [&a, &b] {
        poll("listener connected", Duration::from_secs(30), || async {
            s.s.metric("imgorigin_cluster_degraded").await == 0.0
        })
        .await;
    }
    (a, b)
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
    let (_dir, s3_root, objects) = bucket();
    let s3 = S3Server::start(&s3_root).await;
    let (a, b) = pair(&url, &s3, &objects).await;
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

/// B's listener connection is killed: B must neither miss a delete made meanwhile nor keep
/// serving its cached copy, and must listen again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connection_serves_nothing_stale_and_recovers() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let (_dir, s3_root, objects) = bucket();
    let s3 = S3Server::start(&s3_root).await;
    let (a, b) = pair(&url, &s3, &objects).await;
    let within = Duration::from_secs(PROPAGATION_S);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let reconnects =
        b.s.metric("imgorigin_cluster_changes_total{event=\"reconnected\"}")
            .await;

    let doomed = a.upload(Who::Admin, "public", png(4)).await;
    let (id, key) = (
        doomed["id"].as_str().unwrap(),
        doomed["key"].as_str().unwrap(),
    );
    assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);

    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!(
        "imgorigin-listener-{}",
        b.s.state.cluster.instance()
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed, vec![(true,)], "B's listener found and terminated");
    // The delete races B's reconnection: whichever comes first, B must not serve the image.
    let (st, _) = a
        .call(
            "DELETE",
            &format!("/api/v1/images/{id}"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(st, 204);
    poll(
        "B: deleted key is 404 after the listener was killed",
        within,
        || async { status(&b, &format!("/{key}?w=8"), Who::Guest).await == 404 },
    )
    .await;
    poll("B listens again", Duration::from_secs(30), || async {
        b.s.metric("imgorigin_cluster_changes_total{event=\"reconnected\"}")
            .await
            > reconnects
            && b.s.metric("imgorigin_cluster_degraded").await == 0.0
    })
    .await;
    assert!(
        b.s.metric("imgorigin_cluster_changes_total{event=\"listener_lost\"}")
            .await
            >= 1.0
    );

    // Recovered: a later delete reaches B through the listener again.
    let rec = a.upload(Who::Admin, "public", png(5)).await;
    let (id, key) = (rec["id"].as_str().unwrap(), rec["key"].as_str().unwrap());
    assert_eq!(status(&b, &format!("/{key}?w=8"), Who::Guest).await, 200);
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
    poll("B: second delete seen", within, || async {
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

//! The soak run (`scripts/soak`, ignored by `cargo test`): two `imgorigin` processes on one
//! PostgreSQL schema and the in-process S3 server, a bounded mixed workload (hits, misses,
//! uploads, deletes, shares, revocations, lists) for `IMGORIGIN_SOAK_SECONDS` [1800], with
//! faults injected on a schedule: S3 answering 500, S3 stalling, a PostgreSQL restart
//! (`IMGORIGIN_SOAK_PG_RESTART`, a shell command), instance B killed and restarted. A real
//! Prometheus (Debian's `prometheus`, when installed) scrapes both instances.
//!
//! Passes when: no 5xx outside the fault windows (plus a grace period after each), every
//! upload that returned 201 and was not deleted is readable with its bytes on both
//! instances (one whose delete got no answer may be either, as long as both instances
//! agree), every delete that returned 204 is 404 on both, no record without its object
//! and no object without its record, and each instance's RSS stayed within its cache
//! budgets + 300 MB. The summary (JSON) goes to stdout and `IMGORIGIN_SOAK_REPORT`.

use crate::api::{ADMIN_KEY, png, postgres_url};
use crate::support::{Fault, S3_BUCKET, S3_PREFIX, S3Server};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
/// 5xx are expected while a fault lasts and for this long after it.
const GRACE: Duration = Duration::from_secs(10);
const FAULT_LEN: Duration = Duration::from_secs(8);
const CACHE_MB: u64 = 64;
const RSS_SLACK_MB: u64 = 300;
const ISSUER: &str = "imgorigin-soak";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Instance {
    name: &'static str,
    config: PathBuf,
    addr: String,
    metrics: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn start(&mut self) {
        let bin = std::env::var("IMGORIGIN_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_imgorigin").to_string());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("IMGORIGIN__SERVER__LISTEN", &self.addr)
            .env("IMGORIGIN__SERVER__METRICS_LISTEN", &self.metrics)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start imgorigin");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn rss_mb(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = http
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} did not become ready; see {}",
            self.name,
            self.log.display()
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the workload did, for the checks afterwards.
#[derive(Default)]
struct Ledger {
    /// Uploads that returned 201 and were not deleted.
    live: Live,
    /// Keys whose delete returned 204.
    deleted: Vec<String>,
    /// (key, bytes) of uploads whose delete got no answer: either outcome is right, as
    /// long as both instances agree (a killed instance may leave the record hidden,
    /// `deleting`, for the sweep to finish).
    uncertain: Vec<(String, Vec<u8>)>,
    /// share URL paths revoked (204).
    revoked: Vec<String>,
    requests: u64,
    by_status: BTreeMap<String, u64>,
    unexpected_5xx: Vec<String>,
    /// (start, end) of each fault, for telling expected 5xx from unexpected ones.
    faults: Vec<(Instant, Option<Instant>, &'static str)>,
}

impl Ledger {
    /// Whether a request that ran from `sent` to `done` overlapped a fault (or its grace).
    fn in_fault(&self, sent: Instant, done: Instant) -> bool {
        self.faults
            .iter()
            .any(|(start, end, _)| done >= *start && end.is_none_or(|e| sent <= e + GRACE))
    }
}

/// (id, key, bytes) of live uploads, picked by index in O(1): the workload picks one per
/// request, and a 30-minute run keeps tens of thousands.
#[derive(Default)]
struct Live {
    items: Vec<(String, String, Vec<u8>)>,
    pos: HashMap<String, usize>,
}

impl Live {
    fn insert(&mut self, id: String, key: String, bytes: Vec<u8>) {
        self.pos.insert(id.clone(), self.items.len());
        self.items.push((id, key, bytes));
    }

    /// Removes `id`, returning its bytes.
    fn remove(&mut self, id: &str) -> Option<Vec<u8>> {
        let i = self.pos.remove(id)?;
        let (_, _, bytes) = self.items.swap_remove(i);
        if let Some((moved, _, _)) = self.items.get(i) {
            self.pos.insert(moved.clone(), i);
        }
        Some(bytes)
    }
}

struct Load {
    http: reqwest::Client,
    bases: [String; 2],
    token: String,
    ledger: Mutex<Ledger>,
}

impl Load {
    fn record(&self, op: &str, status: u16, sent: Instant, body: &[u8]) {
        let mut l = self.ledger.lock().unwrap();
        l.requests += 1;
        *l.by_status.entry(status.to_string()).or_default() += 1;
        if status >= 500 && !l.in_fault(sent, Instant::now()) {
            let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            l.unexpected_5xx.push(format!("{op}: {status} {body}"));
        }
    }

    /// One request; connection errors (a killed instance) count as status 0 and are
    /// expected only during faults.
    async fn send(
        &self,
        op: &str,
        rb: reqwest::RequestBuilder,
    ) -> Option<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let at = Instant::now();
        match rb.timeout(Duration::from_secs(30)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let body = r.bytes().await.unwrap_or_default();
                self.record(op, status, at, &body);
                Some((status, headers, body))
            }
            Err(e) => {
                {
                    let mut l = self.ledger.lock().unwrap();
                    l.requests += 1;
                    *l.by_status.entry("connection_error".into()).or_default() += 1;
                    if !l.in_fault(at, Instant::now()) {
                        l.unexpected_5xx.push(format!("{op}: {e}"));
                    }
                }
                // A killed instance refuses at once: don't spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        }
    }

    fn pick(&self, n: u64) -> Option<(String, String)> {
        let l = self.ledger.lock().unwrap();
        if l.live.items.is_empty() {
            return None;
        }
        let (id, key, _) = &l.live.items[(n as usize) % l.live.items.len()];
        Some((id.clone(), key.clone()))
    }

    async fn step(&self, n: u64) {
        let base = &self.bases[(n % 2) as usize];
        let auth = format!("Bearer {}", self.token);
        let roll = n.wrapping_mul(2_654_435_761) % 100;
        match (roll, self.pick(n / 7)) {
            (0..=7, _) | (_, None) => {
                let bytes = png(n as u32);
                let r = self
                    .send(
                        "upload",
                        self.http
                            .post(format!("{base}/api/v1/images?level=protected"))
                            .header("authorization", &auth)
                            .header("content-type", "image/png")
                            .body(bytes.clone()),
                    )
                    .await;
                if let Some((201, _, body)) = r {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let id = v["id"].as_str().unwrap().to_string();
                    let key = v["key"].as_str().unwrap().to_string();
                    self.ledger.lock().unwrap().live.insert(id, key, bytes);
                }
            }
            (8..=12, Some((id, key))) => {
                let r = self
                    .send(
                        "delete",
                        self.http
                            .delete(format!("{base}/api/v1/images/{id}"))
                            .header("authorization", &auth),
                    )
                    .await;
                match r {
                    Some((204, _, _)) => {
                        let mut l = self.ledger.lock().unwrap();
                        l.live.remove(&id);
                        l.deleted.push(key);
                    }
                    // No answer (the instance was killed, or the client gave up during a
                    // stall): the delete may or may not have happened.
                    None => {
                        let mut l = self.ledger.lock().unwrap();
                        if let Some(bytes) = l.live.remove(&id) {
                            l.uncertain.push((key, bytes));
                        }
                    }
                    _ => {}
                }
            }
            (13..=17, Some((id, _))) => {
                let r = self
                    .send(
                        "share",
                        self.http
                            .post(format!("{base}/api/v1/images/{id}/shares"))
                            .header("authorization", &auth)
                            .json(&json!({"expires_in": 600, "params": "w=32"})),
                    )
                    .await;
                if let Some((201, _, body)) = r {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let url = v["url"].as_str().unwrap();
                    let path = &url[url.find("://").map_or(0, |i| i + 3)..];
                    let path = &path[path.find('/').unwrap_or(0)..];
                    let other = &self.bases[((n + 1) % 2) as usize];
                    self.send("share-get", self.http.get(format!("{other}{path}")))
                        .await;
                    if roll.is_multiple_of(2) {
                        let sid = v["id"].as_str().unwrap();
                        let r = self
                            .send(
                                "revoke",
                                self.http
                                    .delete(format!("{base}/api/v1/shares/{sid}"))
                                    .header("authorization", &auth),
                            )
                            .await;
                        if let Some((204, _, _)) = r {
                            self.ledger.lock().unwrap().revoked.push(path.to_string());
                        }
                    }
                }
            }
            (18..=21, _) => {
                self.send(
                    "list",
                    self.http
                        .get(format!("{base}/api/v1/images?owner=me&limit=20"))
                        .header("authorization", &auth),
                )
                .await;
            }
            (22..=41, Some((_, key))) => {
                // A miss: a width nobody asked for yet (mostly).
                let w = 16 + (n % 480);
                self.send(
                    "miss",
                    self.http
                        .get(format!("{base}/{key}?w={w}"))
                        .header("authorization", &auth),
                )
                .await;
            }
            (_, Some((_, key))) => {
                self.send(
                    "hit",
                    self.http
                        .get(format!("{base}/{key}?w=64"))
                        .header("authorization", &auth),
                )
                .await;
            }
        }
    }
}

fn write_config(dir: &Path, name: &str, s3: &S3Server, db: &str, key_file: &Path) -> PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[log]\nformat = \"json\"\nlevel = \"warn\"\n{storage}[metadata]\nurl = {db:?}\n\
             [cache]\nvariant_bytes = \"{CACHE_MB}MiB\"\nsource_bytes = \"{CACHE_MB}MiB\"\ndecoded_bytes = \"{CACHE_MB}MiB\"\n\
             [auth.local]\nkey_file = {key:?}\nissuer = \"{ISSUER}\"\n\
             [admin]\napi_keys_sha256 = [\"{admin}\"]\n\
             [cloudfront]\npublic_base_urls = [\"https://img.example.com\"]\nsigning_key_file = {key:?}\nsigning_key_pair_id = \"KSOAK\"\n\
             [cluster]\npropagation_s = 2\n",
            storage = s3.config_toml(),
            key = key_file.to_str().unwrap(),
            admin = {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(ADMIN_KEY.as_bytes()))
            },
        ),
    )
    .unwrap();
    cfg
}

/// Prometheus scraping both instances every 5 s, when the binary is installed.
fn start_prometheus(dir: &Path, targets: &[String]) -> Option<(Child, String)> {
    let bin = which("prometheus")?;
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: imgorigin\n    static_configs:\n      - targets: [{list}]\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .ok()?;
    Some((child, format!("http://127.0.0.1:{port}")))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

async fn prom_query(http: &reqwest::Client, base: &str, q: &str) -> Value {
    match http
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
    {
        Ok(r) => r
            .json::<Value>()
            .await
            .map(|v| v["data"]["result"].clone())
            .unwrap_or(Value::Null),
        Err(e) => json!({"error": e.to_string()}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by scripts/soak"]
async fn soak() {
    let seconds: u64 = std::env::var("IMGORIGIN_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let Some(db) = postgres_url().await else {
        panic!("the soak run needs IMGORIGIN_TEST_POSTGRES_URL (scripts/soak sets it)");
    };
    imgorigin::app::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let objects = s3_root.join(S3_BUCKET).join(S3_PREFIX);
    std::fs::create_dir_all(&objects).unwrap();
    let s3 = S3Server::start(&s3_root).await;
    let key_file = dir.path().join("key.pem");
    let issuer = imgorigin::auth::local::LocalIssuer::load_or_create(&key_file, ISSUER).unwrap();
    let token = issuer
        .mint("soaker", &[], Duration::from_secs(seconds + 3600))
        .unwrap();
    let mut instances: Vec<Instance> = ["a", "b"]
        .into_iter()
        .map(|name| Instance {
            name,
            config: write_config(dir.path(), name, &s3, &db, &key_file),
            addr: format!("127.0.0.1:{}", free_port()),
            metrics: format!("127.0.0.1:{}", free_port()),
            log: dir.path().join(format!("{name}.log")),
            child: None,
        })
        .collect();
    let http = reqwest::Client::new();
    for i in &mut instances {
        i.start();
    }
    for i in &instances {
        i.wait_ready(&http).await;
    }
    let prometheus = start_prometheus(
        dir.path(),
        &instances
            .iter()
            .map(|i| i.metrics.clone())
            .collect::<Vec<_>>(),
    );
    let load = Arc::new(Load {
        http: http.clone(),
        bases: [
            format!("http://{}", instances[0].addr),
            format!("http://{}", instances[1].addr),
        ],
        token,
        ledger: Mutex::new(Ledger::default()),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..WORKERS as u64 {
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            let mut n = w;
            while Instant::now() < deadline {
                load.step(n).await;
                n += WORKERS as u64;
            }
        }));
    }

    // Faults, evenly spread; RSS sampled every 5 s meanwhile.
    let faults: [&'static str; 4] = ["s3_500", "s3_stall", "pg_restart", "kill_b"];
    let every = Duration::from_secs(seconds) / (faults.len() as u32 + 1);
    let pg_restart = std::env::var("IMGORIGIN_SOAK_PG_RESTART").ok();
    let budget_mb = 3 * CACHE_MB + 16 * 2 + RSS_SLACK_MB;
    let mut rss: Vec<(u64, [Option<u64>; 2])> = Vec::new();
    let mut next_fault = started + every;
    let mut fault_i = 0;
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        let at = started.elapsed().as_secs();
        rss.push((at, [instances[0].rss_mb(), instances[1].rss_mb()]));
        if Instant::now() >= next_fault && fault_i < faults.len() {
            let name = faults[fault_i];
            fault_i += 1;
            next_fault += every;
            let idx = {
                let mut l = load.ledger.lock().unwrap();
                l.faults.push((Instant::now(), None, name));
                l.faults.len() - 1
            };
            match name {
                "s3_500" | "s3_stall" => {
                    s3.set_fault(if name == "s3_500" {
                        Fault::Status500
                    } else {
                        Fault::Hang
                    });
                    tokio::time::sleep(FAULT_LEN).await;
                    s3.set_fault(Fault::None);
                }
                "pg_restart" => match &pg_restart {
                    Some(cmd) => {
                        let st = Command::new("sh").arg("-c").arg(cmd).status();
                        assert!(
                            st.is_ok_and(|s| s.success()),
                            "IMGORIGIN_SOAK_PG_RESTART failed"
                        );
                    }
                    None => skipped.push("pg_restart (IMGORIGIN_SOAK_PG_RESTART not set)"),
                },
                _ => {
                    instances[1].kill();
                    tokio::time::sleep(FAULT_LEN).await;
                    instances[1].start();
                    instances[1].wait_ready(&http).await;
                }
            }
            load.ledger.lock().unwrap().faults[idx].1 = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    // Let the last changes propagate, then check what was promised.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ledger = std::mem::take(&mut *load.ledger.lock().unwrap());
    // Every live upload, deleted key and revoked share is asked of both instances, 32 at a
    // time (one by one, a 30-minute run's ~100k checks took longer than the run).
    let mut checks: Vec<Check> = Vec::new();
    for base in &load.bases {
        for (id, key, bytes) in &ledger.live.items {
            checks.push(Check::Readable(
                format!("{base}/{key}"),
                format!("{id} {key} on {base}"),
                bytes.clone(),
            ));
        }
        for key in &ledger.deleted {
            checks.push(Check::Status(format!("{base}/{key}?w=64"), true, 404));
        }
        for path in &ledger.revoked {
            checks.push(Check::Status(format!("{base}{path}"), false, 403));
        }
    }
    let failures = run_checks(&http, checks, 32).await;
    let mut uncertain_gone = 0;
    let mut disagree = Vec::new();
    for (key, bytes) in &ledger.uncertain {
        let mut seen = Vec::new();
        for base in &load.bases {
            let r = admin_get(&http, &format!("{base}/{key}")).await;
            seen.push(match r {
                Some((200, body)) if body == *bytes => "readable",
                Some((404, _)) => "gone",
                _ => "broken",
            });
        }
        match seen.as_slice() {
            ["gone", "gone"] => uncertain_gone += 1,
            ["readable", "readable"] => {}
            _ => disagree.push(format!("{key} after a delete without answer: {seen:?}")),
        }
    }
    let (lost, stale): (Vec<_>, Vec<_>) = failures.into_iter().partition(|(lost, _)| *lost);
    let lost: Vec<String> = lost.into_iter().map(|(_, m)| m).collect();
    let stale: Vec<String> = stale.into_iter().map(|(_, m)| m).chain(disagree).collect();
    // Orphans: every record has its object, every object a record. Records left `pending`
    // or `deleting` by the killed instance are listed apart: the start-up sweep settles
    // them (with their objects) once they are an hour old.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT object_key, state FROM images")
        .fetch_all(&pool)
        .await
        .unwrap();
    let records: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|(_, st)| st == "ready")
        .map(|(k, _)| k.clone())
        .collect();
    let unsettled: Vec<String> = rows
        .iter()
        .filter(|(_, st)| st != "ready")
        .map(|(k, st)| format!("{k} ({st})"))
        .collect();
    let unsettled_keys: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|(_, st)| st != "ready")
        .map(|(k, _)| k.as_str())
        .collect();
    let mut stored = std::collections::BTreeSet::new();
    for level in ["protected", "private", "public"] {
        for f in walkdir(&objects.join(level)) {
            stored.insert(
                f.strip_prefix(&objects)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    let orphan_objects: Vec<_> = stored
        .difference(&records)
        .filter(|k| !unsettled_keys.contains(k.as_str()))
        .cloned()
        .collect();
    let orphan_records: Vec<_> = records.difference(&stored).cloned().collect();
    let max_rss: Vec<u64> = (0..2)
        .map(|i| rss.iter().filter_map(|(_, r)| r[i]).max().unwrap_or(0))
        .collect();
    let prom = match &prometheus {
        Some((_, base)) => json!({
            "requests_by_status": prom_query(&http, base, &format!("sum by (status) (increase(imgorigin_requests_total[{seconds}s]))")).await,
            "renders": prom_query(&http, base, &format!("sum(increase(imgorigin_renders_total[{seconds}s]))")).await,
            "changes_received": prom_query(&http, base, &format!("sum(increase(imgorigin_cluster_changes_total{{event=\"received\"}}[{seconds}s]))")).await,
            "scrape_up": prom_query(&http, base, "up").await,
        }),
        None => json!("prometheus not installed"),
    };
    let report = json!({
        "seconds": seconds,
        "requests": ledger.requests,
        "by_status": ledger.by_status,
        "faults": ledger.faults.iter().map(|(s, e, n)| json!({
            "fault": n,
            "at_s": s.duration_since(started).as_secs(),
            "lasted_s": e.map(|e| e.duration_since(*s).as_secs_f64()),
        })).collect::<Vec<_>>(),
        "skipped_faults": skipped,
        "unexpected_5xx": ledger.unexpected_5xx.len(),
        "unexpected_5xx_first": ledger.unexpected_5xx.iter().take(10).collect::<Vec<_>>(),
        "uploads_live": ledger.live.items.len(),
        "deletes_without_answer": ledger.uncertain.len(),
        "deletes_without_answer_done": uncertain_gone,
        "deletes": ledger.deleted.len(),
        "revoked_shares": ledger.revoked.len(),
        "lost_uploads": lost,
        "stale_reads": stale,
        "orphan_objects": orphan_objects,
        "orphan_records": orphan_records,
        "unsettled_records": unsettled,
        "rss_budget_mb": budget_mb,
        "max_rss_mb": max_rss,
        "rss_mb_every_5s": rss.iter().map(|(t, r)| json!([t, r[0], r[1]])).collect::<Vec<_>>(),
        "prometheus": prom,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    if let Ok(path) = std::env::var("IMGORIGIN_SOAK_REPORT") {
        std::fs::write(path, &text).unwrap();
    }
    if let Some((mut p, _)) = prometheus {
        let _ = p.kill();
    }
    assert!(ledger.unexpected_5xx.is_empty(), "unexpected 5xx");
    assert!(
        report["lost_uploads"].as_array().unwrap().is_empty(),
        "lost uploads"
    );
    assert!(
        report["stale_reads"].as_array().unwrap().is_empty(),
        "stale reads"
    );
    assert!(
        orphan_objects.is_empty() && orphan_records.is_empty(),
        "orphans"
    );
    assert!(max_rss.iter().all(|m| *m <= budget_mb), "RSS over budget");
}

/// One after-run check: an original readable with exactly its bytes (admin), or a URL
/// answering a status (as admin, or as a guest).
enum Check {
    Readable(String, String, Vec<u8>),
    Status(String, bool, u16),
}

/// Runs the checks `width` at a time; returns (is a lost upload, description) per failure.
async fn run_checks(
    http: &reqwest::Client,
    checks: Vec<Check>,
    width: usize,
) -> Vec<(bool, String)> {
    let queue = Arc::new(Mutex::new(checks.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..width {
        let (queue, http) = (queue.clone(), http.clone());
        workers.spawn(async move {
            let mut failed = Vec::new();
            loop {
                let Some(check) = queue.lock().unwrap().next() else {
                    return failed;
                };
                match check {
                    Check::Readable(url, what, bytes) => {
                        let ok = matches!(admin_get(&http, &url).await,
                            Some((200, body)) if body == bytes);
                        if !ok {
                            failed.push((true, what));
                        }
                    }
                    Check::Status(url, admin, want) => {
                        let mut rb = http.get(&url);
                        if admin {
                            rb = rb.header("x-api-key", ADMIN_KEY);
                        }
                        let got = rb.send().await.map(|r| r.status().as_u16());
                        if got.as_ref().ok() != Some(&want) {
                            failed.push((false, format!("{url}: {got:?}, want {want}")));
                        }
                    }
                }
            }
        });
    }
    workers.join_all().await.into_iter().flatten().collect()
}

/// GET as admin: (status, body), or None when the request failed.
async fn admin_get(http: &reqwest::Client, url: &str) -> Option<(u16, Vec<u8>)> {
    let r = http
        .get(url)
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.bytes().await.ok()?.to_vec()))
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = p.to_string_lossy();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else if !name.contains(".s3s") && !name.contains(".tmp-") {
            // (s3s-fs keeps metadata files next to objects)
            out.push(p);
        }
    }
    out
}

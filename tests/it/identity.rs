//! Amplify identity ids (SPEC §13): user-pool tokens from the test issuer (signed by
//! openssl), `GetId` answered by moto's Cognito Identity through a counting proxy. moto's
//! GetId checks neither the `Logins` map nor the token, so the proxy does what Cognito
//! would: it refuses (NotAuthorizedException) a login that is not an ID token of this
//! user pool, and can answer 500 on demand.

use crate::auth::{Issuer, bearer, sha2_digest};
use crate::support::*;
use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const USER_POOL: &str = "us-east-1_IdTestPool";
const PROVIDER: &str = "cognito-idp.us-east-1.amazonaws.com/us-east-1_IdTestPool";

/// An HTTP proxy in front of moto that counts `GetId` calls and checks their `Logins`.
struct Proxy {
    url: String,
    get_ids: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
}

fn amz_error(status: u16, kind: &str, message: &str) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", kind)
        .body(axum::body::Body::from(
            json!({"__type": kind, "message": message}).to_string(),
        ))
        .unwrap()
}

/// Whether `Logins` holds an ID token of our user pool (claims read, as Cognito checks
/// them; the signature is the server's business and checked there). `mallory` is refused.
fn login_ok(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(token) = v["Logins"][PROVIDER].as_str() else {
        return false;
    };
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    let Ok(claims) = serde_json::from_slice::<Value>(&bytes) else {
        return false;
    };
    v["Logins"].as_object().is_some_and(|m| m.len() == 1)
        && claims["token_use"] == "id"
        && claims["aud"] == "client-1"
        && claims["sub"] != "mallory"
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let get_ids = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let (g, f, up) = (get_ids.clone(), fail.clone(), upstream.to_string());
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: bytes::Bytes| {
                let (g, f, up, http) = (g.clone(), f.clone(), up.clone(), http.clone());
                async move {
                    let target = headers
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if target == "AWSCognitoIdentityService.GetId" {
                        g.fetch_add(1, Ordering::SeqCst);
                        if f.load(Ordering::SeqCst) {
                            return amz_error(500, "InternalErrorException", "injected");
                        }
                        if !login_ok(&body) {
                            return amz_error(
                                400,
                                "NotAuthorizedException",
                                "Invalid login token.",
                            );
                        }
                        // Slow enough that concurrent first requests overlap.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    }
                    let mut rb = http.request(method, format!("{up}{uri}")).body(body);
                    for (k, v) in &headers {
                        if k != "host" && k != "content-length" {
                            rb = rb.header(k, v);
                        }
                    }
                    let r = rb.send().await.unwrap();
                    let mut out = axum::response::Response::builder().status(r.status().as_u16());
                    if let Some(ct) = r.headers().get("content-type") {
                        out = out.header("content-type", ct);
                    }
                    out.body(axum::body::Body::from(r.bytes().await.unwrap()))
                        .unwrap()
                }
            },
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Proxy { url, get_ids, fail }
    }

    fn calls(&self) -> usize {
        self.get_ids.load(Ordering::SeqCst)
    }
}

/// A fresh identity pool in moto that trusts our user pool.
async fn identity_pool(moto: &Moto) -> String {
    use aws_sdk_cognitoidentity::types::CognitoIdentityProvider;
    let client = aws_sdk_cognitoidentity::Client::new(&moto.sdk_config().await);
    let out = client
        .create_identity_pool()
        .identity_pool_name(format!("imgorigin{}", imgorigin::metadata::new_id()))
        .allow_unauthenticated_identities(false)
        .cognito_identity_providers(
            CognitoIdentityProvider::builder()
                .provider_name(PROVIDER)
                .client_id("client-1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.identity_pool_id().to_string()
}

async fn server(iss: &Issuer, pool: &str, endpoint: &str, metadata_url: &str) -> TestServer {
    TestServer::start(&format!(
        "[metadata]\nurl = {metadata_url:?}\n[cognito]\nregion = \"us-east-1\"\nuser_pool_id = \"{USER_POOL}\"\nissuer = \"{}\"\nclient_ids = [\"client-1\"]\ntoken_use = \"any\"\nidentity_pool_id = \"{pool}\"\nidentity_endpoint_url = \"{endpoint}\"\n[admin]\ngroups = [\"admins\"]\napi_keys_sha256 = [\"{}\"]\n",
        iss.url,
        hex::encode(sha2_digest(b"test-admin-key-0123456789")),
    ))
    .await
}

async fn get(s: &TestServer, path: &str, token: &str) -> u16 {
    let r = s.get_with(path, &[("authorization", &bearer(token))]).await;
    let st = r.status().as_u16();
    if st >= 400 {
        eprintln!("GET {path}: {st} {}", r.text().await.unwrap_or_default());
    }
    st
}

async fn upload(s: &TestServer, token: &str) -> (u16, Value) {
    let r = s
        .client
        .post(s.url("/api/v1/images?level=private"))
        .header("authorization", bearer(token))
        .header("content-type", "image/png")
        .body(solid_png(8, 8, [200, 10, 10, 255]))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_pool_ids() {
    let moto = Moto::shared().await;
    let pool = identity_pool(moto).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let iss = Issuer::start().await;
    // The mapping is kept in DynamoDB here (SQL stores: see the metadata unit tests); two
    // servers on one table show that it is shared.
    let meta = crate::api::dynamodb_url().await;
    let a = server(&iss, &pool, &proxy.url, &meta).await;

    // Alice's first request: one GetId; her upload goes under her identity-pool id.
    let alice = iss.token("alice");
    let (st, rec) = upload(&a, &alice).await;
    assert_eq!(st, 201, "{rec}");
    assert_eq!(proxy.calls(), 1);
    let key = rec["key"].as_str().unwrap().to_string();
    let owner = rec["owner"].as_str().unwrap().to_string();
    assert!(
        owner.starts_with("us-east-1:") && owner.len() == 46,
        "{owner}"
    );
    assert!(key.starts_with(&format!("private/{owner}/")), "{key}");
    // Later requests, with the ID token or an access token, make no call.
    assert_eq!(get(&a, &format!("/{key}?w=4"), &alice).await, 200);
    assert_eq!(
        get(&a, &format!("/{key}"), &iss.access_token("alice")).await,
        200
    );
    let (st, _) = upload(&a, &iss.access_token("alice")).await;
    assert_eq!(st, 201);
    assert_eq!(proxy.calls(), 1, "the id is remembered");
    // Her `sub` is not her identity any more: no fall-through to it.
    assert_eq!(get(&a, "/private/alice/quad.png", &alice).await, 403);
    // Another user (one GetId of his own) and a guest may not read her private key.
    let bob = iss.token("bob");
    assert_eq!(get(&a, &format!("/{key}"), &bob).await, 403);
    assert_eq!(proxy.calls(), 2);
    assert_eq!(a.get(&format!("/{key}")).await.status(), 403);
    let (_, bob_rec) = upload(&a, &bob).await;
    assert_ne!(bob_rec["owner"], rec["owner"]);

    // 30 concurrent first requests of one user: one GetId, one id for all.
    let carol = iss.token("carol");
    let before = proxy.calls();
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (c, token) = (a.client.clone(), carol.clone());
        let url = a.url("/api/v1/images?level=private");
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .header("authorization", bearer(&token))
                .header("content-type", "image/png")
                .body(solid_png(4, 4, [0, 0, 255, 255]))
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (st, v["owner"].as_str().unwrap_or_default().to_string())
        }));
    }
    let mut owners = std::collections::HashSet::new();
    for t in tasks {
        let (st, o) = t.await.unwrap();
        assert_eq!(st, 201);
        owners.insert(o);
    }
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(proxy.calls() - before, 1, "single flight");

    // An access token of a user never seen: GetId cannot take it → 401, no call.
    let before = proxy.calls();
    assert_eq!(
        get(&a, "/public/quad.png?w=4", &iss.access_token("dave")).await,
        401
    );
    assert_eq!(proxy.calls(), before);
    // GetId refused → 401, every time (nothing remembered).
    let mallory = iss.token("mallory");
    assert_eq!(get(&a, "/public/quad.png?w=4", &mallory).await, 401);
    assert_eq!(get(&a, "/public/quad.png?w=4", &mallory).await, 401);
    // The service failing → 502; once it answers again the user gets in. Concurrent
    // first requests share the failure too: one GetId (with the SDK's own retries, at most
    // 3 attempts), not one per request.
    proxy.fail.store(true, Ordering::SeqCst);
    let erin = iss.token("erin");
    let before = proxy.calls();
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (c, url, auth) = (
            a.client.clone(),
            a.url("/public/quad.png?w=4"),
            bearer(&erin),
        );
        tries.spawn(async move {
            let r = c.get(url).header("authorization", auth).send().await;
            r.unwrap().status().as_u16()
        });
    }
    while let Some(st) = tries.join_next().await {
        assert_eq!(st.unwrap(), 502);
    }
    assert!(
        proxy.calls() - before <= 3,
        "{} calls",
        proxy.calls() - before
    );
    let (st, _) = upload(&a, &erin).await;
    assert_eq!(st, 502);
    proxy.fail.store(false, Ordering::SeqCst);
    assert_eq!(get(&a, "/public/quad.png?w=4", &erin).await, 200);

    // Another instance on the same metadata (its own originals folder): Alice is known
    // there without a call, even with an access token.
    let b = server(&iss, &pool, &proxy.url, &meta).await;
    let before = proxy.calls();
    let (st, rec_b) = upload(&b, &iss.access_token("alice")).await;
    assert_eq!(st, 201, "{rec_b}");
    assert_eq!(rec_b["owner"].as_str(), Some(owner.as_str()));
    let key_b = rec_b["key"].as_str().unwrap();
    assert_eq!(get(&b, &format!("/{key_b}"), &alice).await, 200);
    assert_eq!(get(&b, &format!("/{key_b}"), &bob).await, 403);
    assert_eq!(proxy.calls(), before, "both known from the shared store");

    // Cognito Identity unreachable → 502 (never a fall-through to `sub`).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = server(&iss, &pool, &closed, &crate::api::dynamodb_url().await).await;
    assert_eq!(get(&c, "/public/quad.png?w=4", &alice).await, 502);
    let (st, _) = upload(&c, &alice).await;
    assert_eq!(st, 502);
}

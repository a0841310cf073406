//! Who is asking (SPEC §3–§5). Every signature and most tokens here are made by the
//! `openssl` CLI, not by our code, so a bug shared by our signer and verifier cannot hide.

use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const D1: &str = "https://d111111abcdef8.cloudfront.net";
const D2: &str = "https://images.example.com";

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed for these tests (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key pair made by openssl: (private PEM path, public PEM text).
pub struct Keys {
    pub private: PathBuf,
    pub public_pem: String,
    pub n_b64url: String,
}

pub fn make_keys(dir: &Path, name: &str) -> Keys {
    let private = dir.join(format!("{name}.pem"));
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap(),
        ],
        b"",
    );
    let public_pem = String::from_utf8(openssl(
        &["pkey", "-in", private.to_str().unwrap(), "-pubout"],
        b"",
    ))
    .unwrap();
    let modulus = String::from_utf8(openssl(
        &[
            "rsa",
            "-in",
            private.to_str().unwrap(),
            "-noout",
            "-modulus",
        ],
        b"",
    ))
    .unwrap();
    let hexmod = modulus.trim().trim_start_matches("Modulus=");
    let n = hex::decode(hexmod).unwrap();
    Keys {
        private,
        public_pem,
        n_b64url: URL_SAFE_NO_PAD.encode(n),
    }
}

fn sign(keys: &Keys, digest: &str, msg: &[u8]) -> Vec<u8> {
    openssl(
        &["dgst", digest, "-sign", keys.private.to_str().unwrap()],
        msg,
    )
}

/// CloudFront's base64: `+`→`-`, `=`→`_`, `/`→`~`.
fn cf64(b: &[u8]) -> String {
    STANDARD
        .encode(b)
        .replace('+', "-")
        .replace('=', "_")
        .replace('/', "~")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn canned(url: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// Query suffix for a canned-policy signed URL of `url`.
fn canned_query(keys: &Keys, kid: &str, url: &str, expires: u64) -> String {
    let sig = cf64(&sign(keys, "-sha1", canned(url, expires).as_bytes()));
    format!("Expires={expires}&Signature={sig}&Key-Pair-Id={kid}")
}

fn custom_query(keys: &Keys, kid: &str, policy: &str, digest: &str) -> String {
    let sig = cf64(&sign(keys, digest, policy.as_bytes()));
    format!(
        "Policy={}&Signature={sig}&Key-Pair-Id={kid}",
        cf64(policy.as_bytes())
    )
}

fn join(path_query: &str, signed: &str) -> String {
    if path_query.contains('?') {
        format!("{path_query}&{signed}")
    } else {
        format!("{path_query}?{signed}")
    }
}

struct Cf {
    s: TestServer,
    k1: Keys,
    k2: Keys,
    _dir: tempfile::TempDir,
}

async fn cloudfront_server(extra: &str) -> Cf {
    let dir = tempfile::tempdir().unwrap();
    let k1 = make_keys(dir.path(), "k1");
    let k2 = make_keys(dir.path(), "k2");
    let toml = format!(
        "[cloudfront]\npublic_base_urls = [\"{D1}\", \"{D2}/\"]\n{extra}\n[[cloudfront.keys]]\nid = \"K1\"\npublic_key_pem = '''{}'''\n[[cloudfront.keys]]\nid = \"K2\"\npublic_key_file = {:?}\n",
        k1.public_pem,
        {
            let p = dir.path().join("k2.pub");
            std::fs::write(&p, &k2.public_pem).unwrap();
            p.to_str().unwrap().to_string()
        }
    );
    Cf {
        s: TestServer::start(&toml).await,
        k1,
        k2,
        _dir: dir,
    }
}

#[tokio::test]
async fn cloudfront_signed_urls() {
    let cf = cloudfront_server("").await;
    let s = &cf.s;
    let pq = "/private/alice/quad.png?w=10&fm=png";
    let exp = now() + 600;

    // Canned, for the distribution domain and for the alternate domain name.
    for base in [D1, D2] {
        let r = s
            .get(&join(
                pq,
                &canned_query(&cf.k1, "K1", &format!("{base}{pq}"), exp),
            ))
            .await;
        assert_eq!(r.status(), 200, "{base}");
        let cc = r.headers()["cache-control"].to_str().unwrap().to_string();
        let max_age: u64 = cc
            .strip_prefix("public, max-age=")
            .expect(&cc)
            .parse()
            .unwrap();
        assert!((400..=600).contains(&max_age), "{cc}");
        let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(img.width(), 10);
    }
    // Without a signature the same key is refused.
    assert_eq!(s.get(pq).await.status(), 403);

    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), now() - 1),
        ),
        (
            "tampered path",
            canned_query(
                &cf.k1,
                "K1",
                &format!("{D1}/private/alice/other.png?w=10&fm=png"),
                exp,
            ),
        ),
        (
            "tampered query",
            canned_query(
                &cf.k1,
                "K1",
                &format!("{D1}/private/alice/quad.png?w=11&fm=png"),
                exp,
            ),
        ),
        (
            "other host",
            canned_query(&cf.k1, "K1", &format!("https://evil.example{pq}"), exp),
        ),
        (
            "unknown key pair",
            canned_query(&cf.k1, "K9", &format!("{D1}{pq}"), exp),
        ),
        (
            "key of another pair id",
            canned_query(&cf.k1, "K2", &format!("{D1}{pq}"), exp),
        ),
        (
            "expires edited",
            canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), exp).replacen(
                &exp.to_string(),
                &(exp + 1000).to_string(),
                1,
            ),
        ),
        (
            "missing key pair id",
            format!("Expires={exp}&Signature=abc"),
        ),
        (
            "both expires and policy",
            format!(
                "{}&Policy=e30_",
                canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), exp)
            ),
        ),
    ];
    for (name, q) in cases {
        let r = s.get(&join(pq, &q)).await;
        assert_eq!(r.status(), 403, "{name}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("Signature") && !body.contains(&exp.to_string()),
            "{name}: {body}"
        );
    }
    // A flipped character in the signature.
    let good = canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), exp);
    let i = good.find("Signature=").unwrap() + 20;
    let mut bad = good.clone().into_bytes();
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        s.get(&join(pq, &String::from_utf8(bad).unwrap()))
            .await
            .status(),
        403,
        "tampered signature"
    );

    // Rotation: the second key works at the same time.
    let r = s
        .get(&join(
            pq,
            &canned_query(&cf.k2, "K2", &format!("{D1}{pq}"), exp),
        ))
        .await;
    assert_eq!(r.status(), 200, "rotated key");

    // A bad signature on a public key is refused too: no fall-through to guest access.
    let pub_pq = "/public/quad.png?w=10";
    let r = s
        .get(&join(
            pub_pq,
            &canned_query(&cf.k1, "K1", &format!("{D1}/elsewhere"), exp),
        ))
        .await;
    assert_eq!(r.status(), 403, "bad signature on a public image");
}

#[tokio::test]
async fn cloudfront_custom_policies() {
    let cf = cloudfront_server("").await;
    let s = &cf.s;
    let exp = now() + 600;
    let policy = |resource: &str, extra: &str| {
        format!(
            r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{exp}}}{extra}}}}}]}}"#
        )
    };
    // A wildcard policy covers other variants of the same image.
    let wild = custom_query(
        &cf.k1,
        "K1",
        &policy(&format!("{D1}/private/alice/quad.png*"), ""),
        "-sha1",
    );
    for pq in [
        "/private/alice/quad.png?w=20&fm=png",
        "/private/alice/quad.png?w=30&h=10&fit=cover&fm=webp",
        "/private/alice/quad.png",
    ] {
        assert_eq!(s.get(&join(pq, &wild)).await.status(), 200, "{pq}");
    }
    assert_eq!(
        s.get(&join("/private/alice/quad.jpg?w=20", &wild))
            .await
            .status(),
        403,
        "outside the pattern"
    );
    let q = custom_query(
        &cf.k1,
        "K1",
        &policy(&format!("{D1}/private/alice/?uad.png?w=1?"), ""),
        "-sha1",
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=12", &q))
            .await
            .status(),
        200,
        "? wildcard"
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=123", &q))
            .await
            .status(),
        403,
        "? is one character"
    );

    // Not yet valid.
    let later = custom_query(
        &cf.k1,
        "K1",
        &policy(
            &format!("{D1}/*"),
            &format!(r#","DateGreaterThan":{{"AWS:EpochTime":{}}}"#, now() + 300),
        ),
        "-sha1",
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=5", &later))
            .await
            .status(),
        403,
        "not yet valid"
    );
    let started = custom_query(
        &cf.k1,
        "K1",
        &policy(
            &format!("{D1}/*"),
            &format!(r#","DateGreaterThan":{{"AWS:EpochTime":{}}}"#, now() - 5),
        ),
        "-sha1",
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=5", &started))
            .await
            .status(),
        200,
        "already valid"
    );
    // Expired custom policy.
    let old = format!(
        r#"{{"Statement":[{{"Resource":"{D1}/*","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}}}}}]}}"#,
        now() - 1
    );
    assert_eq!(
        s.get(&join(
            "/private/alice/quad.png?w=5",
            &custom_query(&cf.k1, "K1", &old, "-sha1")
        ))
        .await
        .status(),
        403
    );
    // IP conditions (the test client connects from 127.0.0.1).
    let ip = |cidr: &str| {
        custom_query(
            &cf.k1,
            "K1",
            &policy(
                &format!("{D1}/*"),
                &format!(r#","IpAddress":{{"AWS:SourceIp":"{cidr}"}}"#),
            ),
            "-sha1",
        )
    };
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=6", &ip("127.0.0.0/8")))
            .await
            .status(),
        200,
        "right IP"
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=6", &ip("203.0.113.0/24")))
            .await
            .status(),
        403,
        "wrong IP"
    );
    // CloudFront-Viewer-Address is ignored unless trusted.
    let r = s
        .get_with(
            &join("/private/alice/quad.png?w=6", &ip("203.0.113.0/24")),
            &[("cloudfront-viewer-address", "203.0.113.9:443")],
        )
        .await;
    assert_eq!(r.status(), 403, "untrusted viewer address");
    // SHA-256 signatures need Hash-Algorithm=SHA256.
    let p = policy(&format!("{D1}/*"), "");
    let sha256 = custom_query(&cf.k1, "K1", &p, "-sha256");
    assert_eq!(
        s.get(&join(
            "/private/alice/quad.png?w=7",
            &format!("{sha256}&Hash-Algorithm=SHA256")
        ))
        .await
        .status(),
        200,
        "sha256"
    );
    assert_eq!(
        s.get(&join("/private/alice/quad.png?w=7", &sha256))
            .await
            .status(),
        403,
        "sha256 signature read as sha1"
    );
    assert_eq!(
        s.get(&join(
            "/private/alice/quad.png?w=7",
            &format!("{sha256}&Hash-Algorithm=MD5")
        ))
        .await
        .status(),
        403
    );
}

#[tokio::test]
async fn cloudfront_viewer_address_when_trusted() {
    let cf = cloudfront_server("trust_viewer_address = true").await;
    let exp = now() + 600;
    let policy = |cidr: &str| {
        format!(
            r#"{{"Statement":[{{"Resource":"{D1}/*","Condition":{{"DateLessThan":{{"AWS:EpochTime":{exp}}},"IpAddress":{{"AWS:SourceIp":"{cidr}"}}}}}}]}}"#
        )
    };
    let q = custom_query(&cf.k1, "K1", &policy("2001:db8::/32"), "-sha1");
    let pq = join("/private/alice/quad.png?w=8", &q);
    assert_eq!(
        cf.s.get_with(
            &pq,
            &[("cloudfront-viewer-address", "2001:db8:0:0:0:0:0:1:46532")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        cf.s.get_with(&pq, &[("cloudfront-viewer-address", "2001:db9::1:46532")])
            .await
            .status(),
        403
    );
    let q4 = custom_query(&cf.k1, "K1", &policy("198.51.100.0/24"), "-sha1");
    let pq4 = join("/private/alice/quad.png?w=8", &q4);
    assert_eq!(
        cf.s.get_with(&pq4, &[("cloudfront-viewer-address", "198.51.100.7:1234")])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn cloudfront_query_encoding_is_kept() {
    let cf = cloudfront_server("").await;
    // `+`, `%20` and `~` in another parameter's value: signed exactly as sent.
    let pq = "/private/alice/quad.png?w=9&v=a+b%20c~d";
    let q = canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), now() + 60);
    assert_eq!(cf.s.get(&join(pq, &q)).await.status(), 200);
    // Signature parameters in the middle: the rest keeps its order.
    let pq2 = "/private/alice/quad.png?w=9";
    let q = canned_query(&cf.k1, "K1", &format!("{D1}{pq2}&v=a+b%20c~d"), now() + 60);
    assert_eq!(
        cf.s.get(&format!("{pq2}&{q}&v=a+b%20c~d")).await.status(),
        200
    );
    // Re-encoding the value breaks the signature, as at CloudFront.
    let q = canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), now() + 60);
    assert_eq!(
        cf.s.get(&join("/private/alice/quad.png?w=9&v=a%2Bb%20c~d", &q))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn cloudfront_signed_cookies() {
    let cf = cloudfront_server("").await;
    let s = &cf.s;
    let pq = "/private/alice/quad.png?w=10&fm=png";
    let exp = now() + 300;
    let sig = cf64(&sign(
        &cf.k1,
        "-sha1",
        canned(&format!("{D1}{pq}"), exp).as_bytes(),
    ));
    let cookie =
        format!("CloudFront-Expires={exp}; CloudFront-Signature={sig}; CloudFront-Key-Pair-Id=K1");
    assert_eq!(
        s.get_with(pq, &[("cookie", &cookie)]).await.status(),
        200,
        "canned cookie"
    );
    let policy = format!(
        r#"{{"Statement":[{{"Resource":"{D1}/private/alice/*","Condition":{{"DateLessThan":{{"AWS:EpochTime":{exp}}}}}}}]}}"#
    );
    let psig = cf64(&sign(&cf.k2, "-sha1", policy.as_bytes()));
    let cookie = format!(
        "other=1; CloudFront-Policy={}; CloudFront-Signature={psig}; CloudFront-Key-Pair-Id=K2",
        cf64(policy.as_bytes())
    );
    for p in [pq, "/private/alice/quad.png?w=3", "/private/alice/quad.png"] {
        assert_eq!(
            s.get_with(p, &[("cookie", &cookie)]).await.status(),
            200,
            "custom cookie {p}"
        );
    }
    assert_eq!(
        s.get_with("/private/bob/quad.png", &[("cookie", &cookie)])
            .await
            .status(),
        403
    );
    let p256 = cf64(&sign(&cf.k2, "-sha256", policy.as_bytes()));
    let cookie256 = format!(
        "CloudFront-Policy={}; CloudFront-Signature={p256}; CloudFront-Key-Pair-Id=K2; CloudFront-Hash-Algorithm=SHA256",
        cf64(policy.as_bytes())
    );
    assert_eq!(
        s.get_with(pq, &[("cookie", &cookie256)]).await.status(),
        200,
        "sha256 cookie"
    );
    let bad =
        format!("CloudFront-Expires={exp}; CloudFront-Signature=AAAA; CloudFront-Key-Pair-Id=K1");
    assert_eq!(
        s.get_with("/public/quad.png?w=3", &[("cookie", &bad)])
            .await
            .status(),
        403,
        "bad cookie never falls through"
    );
}

#[tokio::test]
async fn our_signer_matches_openssl_and_the_cli() {
    let cf = cloudfront_server("").await;
    // Our signer's canned signature is byte-identical to openssl's (PKCS#1 v1.5 is deterministic).
    let pem = std::fs::read_to_string(&cf.k1.private).unwrap();
    let signer = imgorigin::auth::cloudfront::UrlSigner::from_pem(&pem, "K1").unwrap();
    let url = format!("{D1}/private/alice/quad.png?w=4");
    let ours = signer.sign_canned(&url, 2_000_000_000);
    let theirs = canned_query(&cf.k1, "K1", &url, 2_000_000_000);
    assert!(ours.ends_with(&theirs), "{ours}\n{theirs}");
    // The CLI signs URLs the server accepts (custom policy with --resource).
    let cfg = cf._dir.path().join("sign.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cloudfront]\nsigning_key_file = {:?}\nsigning_key_pair_id = \"K1\"\n",
            cf.k1.private.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for extra in [
        &[][..],
        &["--resource", &format!("{D1}/private/alice/*")][..],
        &["--policy-ip", "127.0.0.1/32"][..],
    ] {
        let mut args = vec!["sign-url", url.as_str(), "--expires-in", "60"];
        args.extend_from_slice(extra);
        let signed = run(&args);
        let pq = signed.strip_prefix(D1).unwrap();
        assert_eq!(cf.s.get(pq).await.status(), 200, "{signed}");
    }
}

// ---- Bearer tokens -------------------------------------------------------------------

pub struct Issuer {
    keys: Keys,
    pub url: String,
    fetches: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Issuer {
    pub async fn start() -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let keys = make_keys(dir.path(), "issuer");
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "kid-1", "n": keys.n_b64url, "e": "AQAB"},
        ]});
        let fetches = Arc::new(AtomicUsize::new(0));
        let f2 = fetches.clone();
        let app = axum::Router::new().route(
            "/pool/.well-known/jwks.json",
            axum::routing::get(move || {
                let f = f2.clone();
                let body = jwks.clone();
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(body)
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/pool", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Issuer {
            keys,
            url,
            fetches,
            _dir: dir,
        }
    }

    /// A JWT signed by openssl with RS256 over `header.claims`.
    pub fn token_with(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = sign(&self.keys, "-sha256", input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub fn claims(&self, sub: &str) -> serde_json::Value {
        serde_json::json!({
            "sub": sub, "iss": self.url, "aud": "client-1", "token_use": "id",
            "iat": now() - 10, "exp": now() + 600, "cognito:groups": ["users"],
        })
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with(
            serde_json::json!({"alg": "RS256", "kid": "kid-1", "typ": "JWT"}),
            self.claims(sub),
        )
    }

    /// An access token as Cognito makes them (`client_id`, no `aud`).
    pub fn access_token(&self, sub: &str) -> String {
        self.token_with(
            serde_json::json!({"alg": "RS256", "kid": "kid-1", "typ": "JWT"}),
            serde_json::json!({
                "sub": sub, "iss": self.url, "client_id": "client-1", "token_use": "access",
                "iat": now() - 10, "exp": now() + 600, "scope": "aws.cognito.signin.user.admin",
            }),
        )
    }
}

async fn cognito_server(issuer: &Issuer, extra: &str) -> TestServer {
    TestServer::start(&format!(
        "[cognito]\nissuer = \"{}\"\nclient_ids = [\"client-1\"]\ntoken_use = \"any\"\n{extra}\n[admin]\ngroups = [\"admins\"]\napi_keys_sha256 = [\"{}\"]\n",
        issuer.url,
        hex::encode(sha2_digest(b"test-admin-key-0123456789")),
    ))
    .await
}

pub fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn cognito_tokens() {
    let iss = Issuer::start().await;
    let s = cognito_server(&iss, "").await;
    let alice = iss.token("alice");
    let ok = s
        .get_with(
            "/private/alice/quad.png?w=5",
            &[("authorization", &bearer(&alice))],
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "private, max-age=3600");
    // A public image read with a token is still publicly cacheable.
    let r = s
        .get_with(
            "/public/quad.png?w=5",
            &[("authorization", &bearer(&alice))],
        )
        .await;
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    let h = serde_json::json!({"alg": "RS256", "kid": "kid-1"});
    let c = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = iss.claims("alice");
        f(&mut claims);
        iss.token_with(h.clone(), claims)
    };
    let access = c(&|c| {
        c["token_use"] = "access".into();
        c.as_object_mut().unwrap().remove("aud");
        c["client_id"] = "client-1".into();
    });
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=5",
            &[("authorization", &bearer(&access))]
        )
        .await
        .status(),
        200,
        "access token"
    );

    let bad: Vec<(&str, String)> = vec![
        ("expired", c(&|c| c["exp"] = (now() - 5).into())),
        (
            "no exp",
            c(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("nbf in the future", c(&|c| c["nbf"] = (now() + 300).into())),
        ("iat in the future", c(&|c| c["iat"] = (now() + 300).into())),
        (
            "wrong iss",
            c(&|c| c["iss"] = "https://evil.example/pool".into()),
        ),
        ("wrong token_use", c(&|c| c["token_use"] = "refresh".into())),
        ("wrong client", c(&|c| c["aud"] = "client-2".into())),
        (
            "access token for another client",
            c(&|c| {
                c["token_use"] = "access".into();
                c["client_id"] = "client-2".into();
            }),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"kid-1"}"#),
                URL_SAFE_NO_PAD.encode(iss.claims("alice").to_string())
            ),
        ),
        (
            "unknown kid",
            iss.token_with(
                serde_json::json!({"alg": "RS256", "kid": "kid-9"}),
                iss.claims("alice"),
            ),
        ),
        ("garbage", "not-a-token".to_string()),
    ];
    // HS256 with the issuer's public key as the HMAC secret (the classic key-confusion attack).
    let hs_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"kid-1"}"#),
        URL_SAFE_NO_PAD.encode(iss.claims("alice").to_string())
    );
    let mac = openssl(
        &[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{}", hex::encode(iss.keys.public_pem.as_bytes())),
            "-binary",
        ],
        hs_input.as_bytes(),
    );
    let hs = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac));
    for (name, t) in bad
        .iter()
        .map(|(n, t)| (*n, t.clone()))
        .chain([("HS256 key confusion", hs)])
    {
        let r = s
            .get_with(
                "/private/alice/quad.png?w=5",
                &[("authorization", &bearer(&t))],
            )
            .await;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{name}"
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body = r.text().await.unwrap();
        assert!(!body.contains(&t) || t.is_empty(), "{name}: token echoed");
        // Invalid tokens never fall through to guest access, even for public images.
        let r = s
            .get_with("/public/quad.png?w=5", &[("authorization", &bearer(&t))])
            .await;
        assert_eq!(r.status(), 401, "{name} on a public image");
    }
    let r = s
        .get_with(
            "/public/quad.png",
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_eq!(r.status(), 401, "non-bearer Authorization");
}

#[tokio::test]
async fn unknown_kid_flood_does_not_flood_the_issuer() {
    let iss = Issuer::start().await;
    let s = Arc::new(cognito_server(&iss, "jwks_min_refresh_s = 60").await);
    // First valid token: one fetch.
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=5",
            &[("authorization", &bearer(&iss.token("alice")))]
        )
        .await
        .status(),
        200
    );
    assert_eq!(iss.fetches.load(Ordering::SeqCst), 1);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        let t = iss.token_with(
            serde_json::json!({"alg": "RS256", "kid": format!("bogus-{i}")}),
            iss.claims("alice"),
        );
        tasks.push(tokio::spawn(async move {
            s.get_with(
                "/private/alice/quad.png?w=5",
                &[("authorization", &bearer(&t))],
            )
            .await
            .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        iss.fetches.load(Ordering::SeqCst) <= 2,
        "JWKS fetched {} times",
        iss.fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn unknown_kid_flood_first_contact_coalesces() {
    let iss = Issuer::start().await;
    let s = Arc::new(cognito_server(&iss, "jwks_min_refresh_s = 60").await);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = s.clone();
        let t = iss.token_with(
            serde_json::json!({"alg": "RS256", "kid": format!("bogus-{i}")}),
            iss.claims("alice"),
        );
        tasks.push(tokio::spawn(async move {
            s.get_with("/public/quad.png", &[("authorization", &bearer(&t))])
                .await
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert_eq!(
        iss.fetches.load(Ordering::SeqCst),
        1,
        "concurrent refetches are coalesced"
    );
}

/// SPEC §3: every (caller × key level) cell for reads.
#[tokio::test]
async fn access_table_for_reads() {
    let iss = Issuer::start().await;
    let s = cognito_server(&iss, "").await;
    let alice = bearer(&iss.token("alice"));
    let bob = bearer(&iss.token("bob"));
    let mut admin_claims = iss.claims("carol");
    admin_claims["cognito:groups"] = serde_json::json!(["admins"]);
    let admin_tok = bearer(&iss.token_with(
        serde_json::json!({"alg": "RS256", "kid": "kid-1"}),
        admin_claims,
    ));
    let guest: Vec<(&str, &str)> = vec![];
    let owner = vec![("authorization", alice.as_str())];
    let other = vec![("authorization", bob.as_str())];
    let admin_group = vec![("authorization", admin_tok.as_str())];
    let api_key = vec![("x-api-key", "test-admin-key-0123456789")];
    let callers = [
        ("guest", &guest),
        ("other user", &other),
        ("owner", &owner),
        ("admin group", &admin_group),
        ("api key", &api_key),
    ];
    let keys = [
        "/public/quad.png",
        "/protected/alice/quad.png",
        "/private/alice/quad.png",
        "/other/quad.png",
    ];
    let expected = [
        // public, protected, private, other
        [200, 403, 403, 403], // guest
        [200, 200, 403, 403], // other user
        [200, 200, 200, 403], // owner
        [200, 200, 200, 200], // admin (group)
        [200, 200, 200, 200], // admin (API key)
    ];
    for (ci, (who, headers)) in callers.iter().enumerate() {
        for (ki, key) in keys.iter().enumerate() {
            let r = s.get_with(&format!("{key}?w=4"), headers).await;
            assert_eq!(r.status(), expected[ci][ki], "{who} reading {key}");
        }
    }
    let r = s
        .get_with("/public/quad.png", &[("x-api-key", "wrong-key")])
        .await;
    assert_eq!(r.status(), 403, "wrong API key never falls through");
}

#[tokio::test]
async fn access_other_authenticated() {
    let iss = Issuer::start().await;
    let s = cognito_server(&iss, "").await;
    let s2 = TestServer::start(&format!(
        "[cognito]\nissuer = \"{}\"\nclient_ids = [\"client-1\"]\n[access]\nother = \"authenticated\"\n",
        iss.url
    ))
    .await;
    let alice = bearer(&iss.token("alice"));
    assert_eq!(
        s.get_with("/other/quad.png", &[("authorization", &alice)])
            .await
            .status(),
        403
    );
    assert_eq!(
        s2.get_with("/other/quad.png", &[("authorization", &alice)])
            .await
            .status(),
        200
    );
    assert_eq!(s2.get("/other/quad.png").await.status(), 403);
}

#[tokio::test]
async fn origin_secret_and_edge_verified() {
    let s = TestServer::start(
        "[cloudfront]\norigin_secret = [\"current-secret-0123456789\", \"next-secret-0123456789ab\"]\nedge_verified_secret = \"edge-secret-0123456789\"\n",
    )
    .await;
    assert_eq!(
        s.get("/public/quad.png").await.status(),
        403,
        "no origin secret"
    );
    assert_eq!(s.get("/healthz").await.status(), 200, "healthz is exempt");
    assert_eq!(s.get("/readyz").await.status(), 403);
    assert_eq!(
        s.get_with("/public/quad.png", &[("x-origin-verify", "wrong")])
            .await
            .status(),
        403
    );
    for secret in ["current-secret-0123456789", "next-secret-0123456789ab"] {
        assert_eq!(
            s.get_with("/public/quad.png", &[("x-origin-verify", secret)])
                .await
                .status(),
            200,
            "{secret}"
        );
    }
    let o = ("x-origin-verify", "current-secret-0123456789");
    assert_eq!(
        s.get_with("/private/alice/quad.png?w=3", &[o])
            .await
            .status(),
        403
    );
    let r = s
        .get_with(
            "/private/alice/quad.png?w=3",
            &[o, ("x-edge-verified", "edge-secret-0123456789")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=3",
            &[o, ("x-edge-verified", "nope")]
        )
        .await
        .status(),
        403
    );
}

#[tokio::test]
async fn local_tokens_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("auth/local.pem");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[auth.local]\nkey_file = {:?}\n", key.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgorigin"))
        .args(["--config", cfg.to_str().unwrap(), "token", "--sub", "alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let s = TestServer::start(&format!(
        "[auth.local]\nkey_file = {:?}\n",
        key.to_str().unwrap()
    ))
    .await;
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=3",
            &[("authorization", &bearer(&token))]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        s.get_with(
            "/private/bob/quad.png?w=3",
            &[("authorization", &bearer(&token))]
        )
        .await
        .status(),
        403
    );
    // The key on disk is an ordinary RSA key: openssl can read it.
    openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout"], b"");
}

#[tokio::test]
async fn rate_limits_on_misses() {
    let s =
        TestServer::start("[rate_limit]\nenabled = true\nmisses_per_s = 0.5\nburst = 2\n").await;
    assert_eq!(s.get("/public/quad.png?w=3").await.status(), 200);
    assert_eq!(s.get("/public/quad.png?w=4").await.status(), 200);
    let r = s.get("/public/quad.png?w=5").await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        s.get("/public/quad.png?w=3").await.status(),
        200,
        "hits are not limited"
    );
    assert_eq!(
        s.get("/public/quad.png").await.status(),
        200,
        "originals are not limited"
    );
}

#[tokio::test]
async fn logs_never_contain_tokens_or_signatures() {
    let logs = captured_logs();
    let cf = cloudfront_server("").await;
    let pq = "/private/alice/quad.png?w=10&fm=png&v=log-test";
    let q = canned_query(&cf.k1, "K1", &format!("{D1}{pq}"), now() + 60);
    let sig = q
        .split("Signature=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(cf.s.get(&join(pq, &q)).await.status(), 200);
    let bad = q.replace(&sig[..8], "AAAAAAAA");
    assert_eq!(cf.s.get(&join(pq, &bad)).await.status(), 403);

    let iss = Issuer::start().await;
    let s = cognito_server(&iss, "").await;
    let good = iss.token("alice");
    let mut expired_claims = iss.claims("alice");
    expired_claims["exp"] = (now() - 5).into();
    let expired = iss.token_with(
        serde_json::json!({"alg": "RS256", "kid": "kid-1"}),
        expired_claims,
    );
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=3&v=log-test",
            &[("authorization", &bearer(&good))]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        s.get_with(
            "/private/alice/quad.png?w=3&v=log-test",
            &[("authorization", &bearer(&expired))]
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        s.get_with(
            "/public/quad.png?v=log-test",
            &[("x-api-key", "not-the-key-0123")]
        )
        .await
        .status(),
        403
    );

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("/private/alice/quad.png"),
        "request lines were not captured"
    );
    assert!(
        text.contains("\"status\":401") && text.contains("\"status\":403"),
        "{text}"
    );
    for secret in [
        sig.as_str(),
        &sig[8..],
        good.as_str(),
        expired.as_str(),
        good.split('.').nth(2).unwrap(),
        "not-the-key-0123",
        "Signature=",
    ] {
        assert!(!text.contains(secret), "log contains a secret: {secret}");
    }
}

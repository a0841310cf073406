//! `[auth.local]`: an RSA key on disk that `imgorigin token` uses to mint tokens the server
//! accepts, for the embedded default and demos. Created on first use (mode 0600).

use super::jwt::{JwtSettings, JwtVerifier, TokenUse};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

/// The audience (`aud`) of local tokens.
pub const LOCAL_CLIENT_ID: &str = "imgorigin-local";

pub struct LocalIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    pub issuer: String,
}

impl LocalIssuer {
    /// Reads the PEM private key at `path`, creating a new 2048-bit key there if missing.
    pub fn load_or_create(path: &Path, issuer: &str) -> Result<Self, String> {
        let pem = match std::fs::read_to_string(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path)?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let key = super::cloudfront::parse_private_key(&pem)?;
        let public = key.to_public_key();
        let der = public
            .to_public_key_der()
            .map_err(|e| format!("cannot encode the public key: {e}"))?;
        let kid = hex::encode(&Sha256::digest(der.as_bytes())[..8]);
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(LocalIssuer {
            encoding,
            decoding,
            kid,
            issuer: issuer.to_string(),
        })
    }

    /// A signed ID token for `sub`, valid for `ttl`.
    pub fn mint(&self, sub: &str, groups: &[String], ttl: Duration) -> Result<String, String> {
        let now = crate::unix_now();
        let claims = serde_json::json!({
            "sub": sub,
            "iss": self.issuer,
            "aud": LOCAL_CLIENT_ID,
            "token_use": "id",
            "iat": now,
            "exp": now + ttl.as_secs(),
            "cognito:groups": groups,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// A verifier that accepts this issuer's tokens.
    pub fn verifier(&self) -> JwtVerifier {
        JwtVerifier::with_static_keys(
            JwtSettings {
                issuer: self.issuer.clone(),
                client_ids: vec![LOCAL_CLIENT_ID.to_string()],
                token_use: TokenUse::Id,
                identity_claim: "sub".into(),
                leeway_s: 0,
                min_refresh: Duration::from_secs(60),
            },
            [(self.kid.clone(), self.decoding.clone())].into(),
        )
    }
}

fn create_key(path: &Path) -> Result<String, String> {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| format!("cannot generate a key: {e}"))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the key: {e}"))?
        .to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write as _;
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(pem)
}

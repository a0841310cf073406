//! Amplify identity ids (SPEC §13): with `cognito.identity_pool_id`, a user's `{identity}`
//! in keys is their identity-pool id (`REGION:GUID`), as Amplify Storage writes it, not
//! the user pool's `sub`.
//!
//! The id comes from Cognito Identity `GetId` with the user's ID token, once per user: it
//! is kept in memory and in the metadata store (so other instances and later requests,
//! access tokens included, need no call). Concurrent first requests of one user share one
//! call. A refused GetId is the caller's problem (401); an unreachable or failing service
//! is ours (502). Never a fall-through to `sub`: that would put files under another key.

use crate::error::{Error, ErrorKind};
use crate::metadata::MetadataStore;
use aws_sdk_cognitoidentity::Client;
use aws_sdk_cognitoidentity::config::http::HttpResponse;
use aws_sdk_cognitoidentity::error::{DisplayErrorContext, SdkError};
use aws_sdk_cognitoidentity::operation::get_id::GetIdError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `[cognito]` says about the identity pool, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPoolConfig {
    /// `REGION:GUID`.
    pub pool_id: String,
    /// The `Logins` key: `cognito-idp.<region>.amazonaws.com/<user_pool_id>`.
    pub login_provider: String,
    /// A Cognito Identity-compatible endpoint (tests); else AWS's for the pool's region.
    pub endpoint_url: Option<String>,
}

impl IdentityPoolConfig {
    /// The region an identity pool id names (`us-east-1:…`).
    pub fn region(&self) -> &str {
        self.pool_id.split(':').next().unwrap_or_default()
    }
}

/// Whether `id` looks like an identity pool id: `REGION:GUID`.
pub fn valid_pool_id(id: &str) -> bool {
    let Some((region, guid)) = id.split_once(':') else {
        return false;
    };
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && guid.len() == 36
        && guid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Identity ids are `REGION:GUID` too; anything else from the service is not used as a
/// key segment.
fn valid_identity_id(id: &str) -> bool {
    valid_pool_id(id)
}

/// One user's first resolution, shared by the requests that wait for it.
type Flight = tokio::sync::OnceCell<Result<String, Error>>;

pub struct IdentityResolver {
    cfg: IdentityPoolConfig,
    /// The user pool issuer whose users are mapped (local tokens are not).
    issuer: String,
    client: Client,
    metadata: Arc<dyn MetadataStore>,
    known: moka::sync::Cache<String, String>,
    /// One cell per user while their first resolution runs (single flight).
    inflight: Mutex<HashMap<String, Arc<Flight>>>,
}

impl IdentityResolver {
    pub async fn new(
        cfg: IdentityPoolConfig,
        issuer: String,
        metadata: Arc<dyn MetadataStore>,
    ) -> Self {
        // GetId is an unauthenticated call: it needs no AWS credentials.
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(cfg.region().to_string()))
            .no_credentials()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(e) = &cfg.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let client = Client::new(&loader.load().await);
        IdentityResolver {
            cfg,
            issuer,
            client,
            metadata,
            known: moka::sync::Cache::new(100_000),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The identity-pool id of the user `subject`; `id_token` is their ID token when the
    /// request carried one (an access token cannot be given to GetId).
    pub async fn resolve(&self, subject: &str, id_token: Option<&str>) -> Result<String, Error> {
        if let Some(id) = self.known.get(subject) {
            return Ok(id);
        }
        let Some(token) = id_token else {
            // An access token can only find a stored id: no GetId, nothing to coalesce.
            let id = self.stored(subject).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unauthorized,
                    "sign in with an ID token once: the identity pool id is not known yet",
                )
                .with_cause("access token of a user without a stored identity id")
            })?;
            self.known.insert(subject.to_string(), id.clone());
            return Ok(id);
        };
        // Concurrent first requests of one user share one resolution, its failure too (an
        // outage must not become one GetId per waiting request, one after another).
        let cell = {
            let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(subject.to_string()).or_default().clone()
        };
        let got = cell
            .get_or_init(|| self.first_resolution(subject, token))
            .await
            .clone();
        if let Ok(id) = &got {
            self.known.insert(subject.to_string(), id.clone());
        }
        // Settled: later requests hit `known`, or (after a failure) try afresh.
        let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(subject).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            m.remove(subject);
        }
        got
    }

    async fn stored(&self, subject: &str) -> Result<Option<String>, Error> {
        Ok(self
            .metadata
            .get_identity(&self.cfg.pool_id, subject)
            .await?)
    }

    async fn first_resolution(&self, subject: &str, token: &str) -> Result<String, Error> {
        if let Some(id) = self.stored(subject).await? {
            return Ok(id);
        }
        let out = self
            .client
            .get_id()
            .identity_pool_id(&self.cfg.pool_id)
            .logins(&self.cfg.login_provider, token)
            .send()
            .await;
        let id = match out {
            Ok(o) => o.identity_id.unwrap_or_default(),
            Err(e) => return Err(get_id_error(e)),
        };
        if !valid_identity_id(&id) {
            return Err(Error::new(ErrorKind::BadGateway, "identity service failed")
                .with_cause(format!("GetId returned an unusable id `{id}`")));
        }
        // Another instance may have stored one first: everyone uses that one.
        let stored = self
            .metadata
            .put_identity(
                &self.cfg.pool_id,
                subject,
                &id,
                crate::metadata::now_micros(),
            )
            .await?;
        Ok(stored)
    }
}

/// A refusal (a bad or expired token, an unknown pool: the service answered 4xx) is 401;
/// no answer, throttling or 5xx is 502.
fn get_id_error(e: SdkError<GetIdError, HttpResponse>) -> Error {
    let refused = match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let status = s.raw().status().as_u16();
            (400..500).contains(&status)
                && status != 429
                && !err.is_too_many_requests_exception()
                && !err.is_limit_exceeded_exception()
                && !err.is_internal_error_exception()
                && !err.is_external_service_exception()
        }
        _ => false,
    };
    let cause = format!("GetId: {}", DisplayErrorContext(e));
    if refused {
        Error::new(ErrorKind::Unauthorized, "invalid or expired token").with_cause(cause)
    } else {
        Error::new(ErrorKind::BadGateway, "identity service unavailable").with_cause(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids() {
        assert!(valid_pool_id(
            "us-east-1:4d4b0f4e-0c9e-4b8e-9f31-2c0a8c1b1a11"
        ));
        assert!(!valid_pool_id("us-east-1"));
        assert!(!valid_pool_id("US:4d4b0f4e-0c9e-4b8e-9f31-2c0a8c1b1a11"));
        assert!(!valid_pool_id("us-east-1:../../etc"));
    }
}

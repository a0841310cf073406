//! `POST /api/v1/session` (SPEC §15): a local account's name and password → a local token
//! (`[auth.local]`), as `imgorigin token` mints them. Every failure reads the same (401,
//! one body), an unknown name costs the same argon2 work as a wrong password, and failed
//! attempts are limited per name and per address (`auth::ratelimit::LoginLimits`).

use super::ApiResult;
use super::extract::JsonBody;
use super::views;
use crate::auth::password;
use crate::error::{Error, ErrorKind};
use crate::metadata;
use crate::state::AppState;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionBody {
    name: String,
    password: String,
}

#[derive(Serialize)]
struct SessionView<'a> {
    token: String,
    expires_at: String,
    /// The identity the token carries (`sub`): the name, lowercased.
    name: &'a str,
}

fn wrong() -> Error {
    Error::new(ErrorKind::Unauthorized, "wrong name or password")
}

pub(super) async fn create(State(state): State<Arc<AppState>>, req: Request) -> ApiResult {
    let Some(issuer) = &state.local_issuer else {
        return Err(Error::new(
            ErrorKind::NotFound,
            "local accounts are not configured ([auth.local])",
        ));
    };
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = state
        .rate_limits
        .ip_key(state.auth.viewer_ip(req.headers(), peer));
    let JsonBody(body) = JsonBody::<SessionBody>::from_request(req, &()).await?;
    // Names are stored lowercase; people type them as they like.
    let name = body.name.trim().to_lowercase();
    let limits = &state.rate_limits.logins;
    limits.check(&name, &client)?;
    let user = if password::check_name(&name).is_ok() {
        state.metadata.get_user(&name).await?
    } else {
        None
    };
    let known = user.is_some();
    let hash = user.map_or_else(|| password::dummy_hash().to_string(), |u| u.password_hash);
    let given = body.password;
    let ok = state
        .workers
        .run(move || password::verify(&given, &hash))
        .await?;
    if !(ok && known) {
        limits.fail(&name, &client);
        return Err(wrong().with_cause(if known {
            "wrong password"
        } else {
            "unknown or invalid name"
        }));
    }
    let ttl = state
        .config
        .auth
        .local
        .as_ref()
        .map(|l| l.session_ttl)
        .unwrap_or(std::time::Duration::from_secs(3600));
    let expires = crate::unix_now() + ttl.as_secs();
    let token = issuer
        .mint(&name, &[], ttl)
        .map_err(|e| Error::new(ErrorKind::Internal, "could not sign a token").with_cause(e))?;
    Ok(views::json(
        StatusCode::OK,
        &SessionView {
            token,
            expires_at: metadata::rfc3339_secs(expires as i64),
            name: &name,
        },
    ))
}

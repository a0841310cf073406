//! Share links (SPEC §6): a CloudFront-signed delivery URL carrying `share=<id>`, so the
//! origin can refuse it once revoked. Only the image's owner or an admin shares, lists
//! and revokes.

use super::ApiResult;
use super::extract::{JsonBody, SignedIn};
use super::images::{load_owned, load_readable};
use super::views::{self, NewShareView, Page, ShareView};
use crate::error::{Error, ErrorKind};
use crate::metadata::{self, Share};
use crate::state::AppState;
use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShareBody {
    expires_in: u64,
    params: Option<String>,
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    SignedIn(c): SignedIn,
    req: Request,
) -> ApiResult {
    let rec = load_owned(&state, &c, &id).await?;
    c.count_write(&state)?;
    let JsonBody(body) = JsonBody::<ShareBody>::from_request(req, &()).await?;
    let Some(signer) = &state.signer else {
        return Err(Error::new(
            ErrorKind::ServiceUnavailable,
            "share links are not configured: set cloudfront.signing_key_file, cloudfront.signing_key_pair_id and cloudfront.public_base_urls",
        ));
    };
    let max = state.config.shares_max_ttl_s;
    if body.expires_in == 0 || body.expires_in > max {
        return Err(Error::bad_request(format!(
            "invalid `expires_in`: 1..={max} seconds (shares.max_ttl_s)"
        )));
    }
    let params = match body.params.as_deref().map(|p| p.trim_start_matches('?')) {
        None | Some("") => None,
        Some(p) => {
            for pair in p.split('&') {
                let name = pair.split_once('=').map(|(n, _)| n).unwrap_or(pair);
                // Set by the share link itself.
                if name == crate::params::SHARE_PARAM
                    || crate::params::SIGNATURE_PARAMS.contains(&name)
                {
                    return Err(Error::bad_request(format!(
                        "invalid `params`: `{name}` is set by the share itself"
                    )));
                }
            }
            crate::params::parse(Some(p), &state.parse)?;
            Some(p.to_string())
        }
    };
    let now = crate::unix_now();
    let share = Share {
        id: metadata::new_id(),
        image_id: rec.id.clone(),
        key: rec.key.clone(),
        params,
        created_by: c.principal.identity().map(str::to_owned),
        created_at: metadata::now_micros(),
        expires_at: (now + body.expires_in) as i64,
        revoked_at: None,
    };
    state.metadata.insert_share(&share).await?;
    let urls = views::urls(&state);
    let url = signer.sign_canned(
        &urls.share_unsigned(&share.key, share.params.as_deref(), &share.id),
        share.expires_at as u64,
    );
    Ok(views::json(
        StatusCode::CREATED,
        &NewShareView {
            id: &share.id,
            url,
            expires_at: metadata::rfc3339_secs(share.expires_at),
        },
    ))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    SignedIn(c): SignedIn,
) -> ApiResult {
    let rec = load_owned(&state, &c, &id).await?;
    let shares = state.metadata.list_shares(&rec.id).await?;
    let urls = views::urls(&state);
    Ok(views::json(
        StatusCode::OK,
        &Page {
            items: shares.iter().map(|s| ShareView::new(s, &urls)).collect(),
            next_cursor: None,
        },
    ))
}

pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(share_id): Path<String>,
    SignedIn(c): SignedIn,
) -> ApiResult {
    let share = state
        .metadata
        .get_share(&share_id)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no such share"))?;
    let rec = load_readable(&state, &c, &share.image_id)
        .await
        .map_err(|_| Error::new(ErrorKind::NotFound, "no such share"))?;
    c.require_owner(&rec)?;
    c.count_write(&state)?;
    state
        .metadata
        .revoke_share(&share.id, metadata::now_micros())
        .await?;
    state
        .cluster
        .publish(crate::cluster::Change::ShareRevoked(share.id.clone()))
        .await;
    Ok(views::no_content())
}

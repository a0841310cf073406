//! Admin operations and the API's self-description: cache purge (every instance) and the
//! OpenAPI document.

use super::ApiResult;
use super::extract::{JsonBody, SignedIn};
use super::openapi;
use super::views;
use crate::cluster::Change;
use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use crate::storage::key;
use axum::body::Body;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeBody {
    key: Option<String>,
    prefix: Option<String>,
}

pub(super) async fn purge(
    State(state): State<Arc<AppState>>,
    SignedIn(c): SignedIn,
    req: Request,
) -> ApiResult {
    if !c.principal.is_admin() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "only an admin may purge the cache",
        ));
    }
    c.count_write(&state)?;
    let JsonBody(body) = JsonBody::<PurgeBody>::from_request(req, &()).await?;
    match (body.key, body.prefix) {
        (Some(k), None) => {
            key::validate(&k)?;
            state.shared.forget(&k).await;
            let ticket = state.cluster.publish(Change::Key(k.clone())).await;
            let response = views::json(
                StatusCode::OK,
                &Purged {
                    purged: PurgedWhat {
                        key: Some(&k),
                        prefix: None,
                    },
                },
            );
            Ok(views::with_invalidation(response, ticket).await)
        }
        (None, Some(p)) if !p.is_empty() => {
            state.shared.forget_prefix(&p).await;
            let ticket = state.cluster.publish(Change::Prefix(p.clone())).await;
            let response = views::json(
                StatusCode::OK,
                &Purged {
                    purged: PurgedWhat {
                        key: None,
                        prefix: Some(&p),
                    },
                },
            );
            Ok(views::with_invalidation(response, ticket).await)
        }
        _ => Err(Error::bad_request(
            "give exactly one of `key` or a non-empty `prefix`",
        )),
    }
}

pub(super) async fn openapi_json() -> Response<Body> {
    views::json(StatusCode::OK, &openapi::document())
}

#[derive(Serialize)]
struct Purged<'a> {
    purged: PurgedWhat<'a>,
}

#[derive(Serialize)]
struct PurgedWhat<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
}

//! Image records: list (newest first, keyset cursor), get, patch, delete.
//!
//! Reading a record needs read access to its key (a record the caller may not read is a
//! 404, as if it did not exist); changing it needs its owner or an admin (403 for other
//! readers).

use super::ApiResult;
use super::extract::{Caller, JsonBody, QueryParams, SignedIn};
use super::uploads::level_prefix;
use super::views::{self, Page, RecordView};
use crate::auth::{Principal, access};
use crate::error::{Error, ErrorKind};
use crate::metadata::{self, ImageRecord, Level, ListQuery, Moderation, Patch, RecordState};
use crate::state::AppState;
use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::sync::Arc;

/// Largest `limit` of a list page.
pub const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 50;

/// A ready record the caller may read; 404 otherwise (existence is not revealed). A
/// flagged record (SPEC §12) is readable only by its owner and admins; so is a rejected
/// one, whose object now lies outside the access prefixes.
pub(super) async fn load_readable(
    state: &AppState,
    c: &Caller,
    id: &str,
) -> Result<ImageRecord, Error> {
    let privileged = |r: &ImageRecord| access::may_change(&c.principal, r.owner.as_deref());
    match state.metadata.get(id).await? {
        Some(r)
            if r.state == RecordState::Ready
                && access::can_read(&c.principal, &r.key, &state.config.access)
                && (r.moderation != Some(Moderation::Flagged) || privileged(&r)) =>
        {
            Ok(r)
        }
        Some(r) if r.state == RecordState::Rejected && privileged(&r) => Ok(r),
        _ => Err(Error::not_found()),
    }
}

/// A record the caller may read (else 404) and change: its owner or an admin (else 403).
pub(super) async fn load_owned(
    state: &AppState,
    c: &Caller,
    id: &str,
) -> Result<ImageRecord, Error> {
    let rec = load_readable(state, c, id).await?;
    c.require_owner(&rec)?;
    Ok(rec)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    owner: Option<String>,
    level: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn encode_cursor(r: &ImageRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", r.created_at, r.id))
}

fn decode_cursor(s: &str) -> Result<(i64, String), Error> {
    let bad = || Error::bad_request("invalid `cursor`: pass `next_cursor` from a previous page");
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}

/// `owner=me` → the caller's identity.
fn owner_filter(owner: Option<&str>, c: &Caller) -> Result<Option<String>, Error> {
    match owner {
        None | Some("") => Ok(None),
        Some("me") => match &c.principal {
            Principal::User { id, .. } => Ok(Some(id.clone())),
            Principal::Admin => Err(Error::bad_request(
                "`owner=me` needs a user identity; an API key has none",
            )),
            _ => Err(Error::new(
                ErrorKind::Unauthorized,
                "`owner=me` needs authentication",
            )),
        },
        Some(id) => Ok(Some(id.to_string())),
    }
}

impl ListParams {
    fn query(&self, c: &Caller, state: &AppState) -> Result<(ListQuery, u32), Error> {
        let owner = owner_filter(self.owner.as_deref(), c)?;
        let level = match self.level.as_deref() {
            None | Some("") => None,
            Some(l) => Some(Level::parse(l).ok_or_else(|| {
                Error::bad_request("invalid `level`: public, protected, private or other")
            })?),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_PAGE,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    Error::bad_request(format!("invalid `limit`: an integer 1..={MAX_PAGE}"))
                })?,
        };
        let tag = match self.tag.as_deref() {
            None | Some("") => None,
            Some(t) => Some(normalize_tag(t)?),
        };
        let before = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(s) => Some(decode_cursor(s)?),
        };
        let q = ListQuery {
            visible: access::visibility(&c.principal, &state.config.access),
            owner,
            level,
            tag,
            // One more than asked tells whether there is a next page.
            limit: limit + 1,
            before,
        };
        Ok((q, limit))
    }
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    c: Caller,
    QueryParams(p): QueryParams<ListParams>,
) -> ApiResult {
    let (q, limit) = p.query(&c, &state)?;
    let mut items = state.metadata.list(&q).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(encode_cursor)
    } else {
        None
    };
    let urls = views::urls(&state);
    Ok(views::json(
        StatusCode::OK,
        &Page {
            items: items
                .iter()
                .map(|r| RecordView::new(r, &urls, c.sees_gps(r)))
                .collect(),
            next_cursor: Some(next),
        },
    ))
}

pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    c: Caller,
) -> ApiResult {
    let mut r = load_readable(&state, &c, &id).await?;
    if r.facts.is_none() {
        // A record from before facts existed: computed once, then stored with it.
        r.facts = state.library().backfill_facts(&r).await;
    }
    Ok(views::json(
        StatusCode::OK,
        &RecordView::new(&r, &views::urls(&state), c.sees_gps(&r)),
    ))
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    #[serde(default, deserialize_with = "double_option")]
    filename: Option<Option<String>>,
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<String>>,
    level: Option<String>,
}

/// Tags: 1–64 characters of letters, digits, `-`, `_`, `.`, `:`; stored lowercase.
pub fn normalize_tag(t: &str) -> Result<String, Error> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        return Err(Error::bad_request(format!(
            "invalid tag `{}`: 1-64 letters, digits, `-`, `_`, `.` or `:`",
            t.chars().take(64).collect::<String>()
        )));
    }
    Ok(t.to_lowercase())
}

fn normalize_tags(tags: &[String]) -> Result<Vec<String>, Error> {
    if tags.len() > 32 {
        return Err(Error::bad_request("at most 32 tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = normalize_tag(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn check_filename(f: &str) -> Result<(), Error> {
    if f.is_empty() || f.chars().count() > 255 || f.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid `filename`: 1-255 characters, no control characters",
        ));
    }
    Ok(())
}

pub(super) async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    SignedIn(c): SignedIn,
    req: Request,
) -> ApiResult {
    // Owner first, then the write count, then the body: as SPEC §3 orders the checks.
    let rec = load_owned(&state, &c, &id).await?;
    c.count_write(&state)?;
    let JsonBody(body) = JsonBody::<PatchBody>::from_request(req, &()).await?;
    // Everything is checked before anything changes.
    let new_level = match body.level.as_deref() {
        None => None,
        Some(l) => Some(
            Level::parse(l)
                .filter(|l| *l != Level::Other)
                .ok_or_else(|| {
                    Error::bad_request("invalid `level`: public, protected or private")
                })?,
        )
        .filter(|l| *l != rec.level),
    };
    let to_key = match new_level {
        None => None,
        Some(level) => {
            let prefix = level_prefix(&state.config.access, level, rec.owner.as_deref())?;
            // `<prefix><id>.<ext>`: the file name part of the key stays.
            let name = rec.key.rsplit('/').next().unwrap_or(&rec.key);
            let key = format!("{prefix}{name}");
            crate::storage::key::validate(&key)?;
            Some((key, level))
        }
    };
    if let Some(Some(f)) = &body.filename {
        check_filename(f)?;
    }
    if let Some(Some(d)) = &body.description
        && d.chars().count() > 4000
    {
        return Err(Error::bad_request(
            "invalid `description`: at most 4000 characters",
        ));
    }
    let patch = Patch {
        filename: body.filename,
        tags: body.tags.as_deref().map(normalize_tags).transpose()?,
        description: body.description,
    };
    let mut moved = None;
    if let Some((key, level)) = to_key {
        let l = &state.config.limits;
        let max = l.max_source_bytes.max(l.max_upload_bytes);
        // In its own task, like an upload's store: a request cut off by its deadline must
        // not stop the copy → record → delete sequence half-way.
        let owned = state.clone();
        let (_, ticket) =
            tokio::spawn(
                async move { owned.library().move_original(&rec, &key, level, max).await },
            )
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "changing the level failed").with_cause(e)
            })??;
        moved = Some(ticket);
    }
    let updated = state
        .metadata
        .update(&id, &patch, metadata::now_micros())
        .await?
        .ok_or_else(Error::not_found)?;
    let response = views::json(
        StatusCode::OK,
        &RecordView::new(&updated, &views::urls(&state), c.sees_gps(&updated)),
    );
    Ok(match moved {
        Some(ticket) => views::with_invalidation(response, ticket).await,
        None => response,
    })
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    SignedIn(c): SignedIn,
) -> ApiResult {
    let rec = load_owned(&state, &c, &id).await?;
    c.count_write(&state)?;
    let ticket = state.library().delete(&rec).await?;
    Ok(views::with_invalidation(views::no_content(), ticket).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let r = ImageRecord {
            id: "abc".into(),
            key: "public/abc.png".into(),
            level: Level::Public,
            owner: None,
            filename: None,
            content_type: "image/png".into(),
            bytes: 1,
            width: 1,
            height: 1,
            sha256: String::new(),
            tags: vec![],
            description: None,
            state: RecordState::Ready,
            created_at: 1_795_806_318_123_456,
            updated_at: 0,
            facts: None,
            moderation: None,
            rejected_reason: None,
        };
        let c = encode_cursor(&r);
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_795_806_318_123_456, "abc".into())
        );
        for bad in ["", "!!", "bm9wZQ", "eC5hYmM"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(normalize_tag("Beach-2026").unwrap(), "beach-2026");
        for bad in ["", "a b", "a,b", "a%", &"x".repeat(65)] {
            assert!(normalize_tag(bad).is_err(), "{bad}");
        }
        let t = normalize_tags(&["A".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(t, ["a", "b"]);
    }
}

//! Upload bodies (raw `image/*` or multipart field `file`, capped while streaming) and
//! image validation before anything is stored.

use super::extract::{collect_capped, too_large};
use crate::error::{Error, ErrorKind};
use crate::media::{ImageType, SourceFormat};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

pub(super) struct UploadBody {
    pub bytes: Bytes,
    /// The multipart part's file name, if any.
    pub filename: Option<String>,
}

/// Multipart framing allowed on top of `cap`: boundaries and part headers (16 KiB), plus the
/// fields other than `file` (64 KiB together).
const MULTIPART_OVERHEAD: u64 = 16 * 1024 + MAX_OTHER_FIELDS;
const MAX_OTHER_FIELDS: u64 = 64 * 1024;
/// Body bytes the multipart parser may hold without handing any of them out. A part header
/// that never ends would otherwise be buffered (and rescanned) up to the whole cap.
const MAX_UNPARSED: u64 = 1 << 20;
/// The parser pulls everything that is ready before it parses; hand it at most this much per
/// turn so `MAX_UNPARSED` measures what it could not parse, not a fast sender's burst.
const FEED_STEP: u64 = 64 * 1024;

/// Why `MultipartGuard` cut the body off.
const TRIP_NONE: u8 = 0;
const TRIP_TOTAL: u8 = 1;
const TRIP_UNPARSED: u8 = 2;

/// Shared between the guarded body and the code reading the fields.
#[derive(Default)]
struct GuardState {
    /// Field bytes handed out by the parser (skipped fields included).
    parsed: AtomicU64,
    tripped: AtomicU8,
}

/// The request body as the multipart parser sees it: at most `total_cap` bytes, and at most
/// `MAX_UNPARSED` fed but not yet handed out as field data. Chunked bodies included: the
/// limits count bytes as they arrive.
struct MultipartGuard {
    inner: Body,
    fed: u64,
    fed_at_turn: u64,
    total_cap: u64,
    state: Arc<GuardState>,
}

impl HttpBody for MultipartGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.fed - self.fed_at_turn >= FEED_STEP {
            // Let the parser work on what it has before it gets more.
            self.fed_at_turn = self.fed;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            other => return other,
        };
        if let Some(d) = frame.data_ref() {
            self.fed += d.len() as u64;
            let parsed = self.state.parsed.load(Ordering::Relaxed);
            let trip = if self.fed > self.total_cap {
                TRIP_TOTAL
            } else if self.fed.saturating_sub(parsed) > MAX_UNPARSED {
                TRIP_UNPARSED
            } else {
                TRIP_NONE
            };
            if trip != TRIP_NONE {
                self.state.tripped.store(trip, Ordering::Relaxed);
                return Poll::Ready(Some(Err(axum::Error::new("multipart body over its limit"))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A declared body up to this size is read and dropped before the 413 is sent: a client
/// still sending it would otherwise see the connection reset (the kernel answers unread
/// data with RST) instead of the answer. Larger ones are refused at once.
const DRAIN_BEFORE_413: u64 = 1 << 20;

/// Reads and drops what the client sends, for at most two seconds.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt as _;
    let read_all = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read_all).await;
}

/// The image bytes of an upload request, refused with 413 as soon as they pass `cap`.
pub(super) async fn read_upload(req: Request, cap: u64) -> Result<UploadBody, Error> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let multipart = ct.starts_with("multipart/");
    let total_cap = if multipart {
        cap + MULTIPART_OVERHEAD
    } else {
        cap
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > total_cap
    {
        if len <= DRAIN_BEFORE_413 {
            drain(req.into_body()).await;
        }
        return Err(too_large(cap));
    }
    if ct.starts_with("image/") {
        let bytes = collect_capped(req.into_body(), cap).await?;
        return Ok(UploadBody {
            bytes,
            filename: None,
        });
    }
    if ct.starts_with("multipart/form-data") {
        let guard = Arc::new(GuardState::default());
        let (parts, body) = req.into_parts();
        let body = Body::new(MultipartGuard {
            inner: body,
            fed: 0,
            fed_at_turn: 0,
            total_cap,
            state: guard.clone(),
        });
        let req = Request::from_parts(parts, body);
        let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
            Error::bad_request(format!("invalid multipart body: {}", e.body_text()))
        })?;
        let bad = |e: axum::extract::multipart::MultipartError| match guard
            .tripped
            .load(Ordering::Relaxed)
        {
            TRIP_TOTAL => too_large(cap),
            TRIP_UNPARSED => Error::new(
                ErrorKind::PayloadTooLarge,
                "multipart part headers or framing are too large",
            ),
            _ => Error::bad_request(format!("invalid multipart body: {}", e.body_text())),
        };
        let parsed = |n: usize| {
            guard.parsed.fetch_add(n as u64, Ordering::Relaxed);
        };
        // Fields before `file` are skipped; together they may not exceed 64 KiB.
        let mut skipped = 0u64;
        while let Some(mut field) = mp.next_field().await.map_err(bad)? {
            if field.name() != Some("file") {
                while let Some(c) = field.chunk().await.map_err(bad)? {
                    parsed(c.len());
                    skipped += c.len() as u64;
                    if skipped > MAX_OTHER_FIELDS {
                        return Err(Error::bad_request(
                            "multipart fields other than `file` must be small",
                        ));
                    }
                }
                continue;
            }
            let filename = field.file_name().map(str::to_owned);
            let mut buf = bytes::BytesMut::new();
            while let Some(c) = field.chunk().await.map_err(bad)? {
                parsed(c.len());
                if buf.len() as u64 + c.len() as u64 > cap {
                    return Err(too_large(cap));
                }
                buf.extend_from_slice(&c);
            }
            return Ok(UploadBody {
                bytes: buf.freeze(),
                filename,
            });
        }
        return Err(Error::bad_request("multipart body has no `file` field"));
    }
    Err(Error::new(
        ErrorKind::UnsupportedMediaType,
        "send the image as the body with Content-Type: image/*, or as multipart/form-data field `file`",
    ))
}

pub(super) use crate::library::Checked;

/// The extension for an announced content type, for the formats we accept as originals.
pub(super) fn ext_for_content_type(ct: &str) -> Option<&'static str> {
    ImageType::from_content_type(ct)
        .and_then(SourceFormat::from_image_type)
        .map(SourceFormat::ext)
}

/// See [`crate::library::Library::check_image`].
pub(super) async fn validate(state: &AppState, bytes: Bytes) -> Result<Checked, Error> {
    state.library().check_image(bytes).await
}

//! Upload bodies (raw `image/*` or multipart field `file`, capped while streaming) and
//! image validation before anything is stored.

use super::extract::{collect_capped, too_large};
use crate::error::{Error, ErrorKind};
use crate::pipeline::{self, SourceFormat};
use crate::server::AppState;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub(super) struct UploadBody {
    pub bytes: Bytes,
    /// The multipart part's file name, if any.
    pub filename: Option<String>,
}

/// The image bytes of an upload request, refused with 413 as soon as they pass `cap`.
pub(super) async fn read_upload(req: Request, cap: u64) -> Result<UploadBody, Error> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Multipart adds a little framing around the file.
        let framing = if ct.starts_with("multipart/") {
            16 * 1024
        } else {
            0
        };
        if len > cap + framing {
            return Err(too_large(cap));
        }
    }
    if ct.starts_with("image/") {
        let bytes = collect_capped(req.into_body(), cap).await?;
        return Ok(UploadBody {
            bytes,
            filename: None,
        });
    }
    if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
            Error::bad_request(format!("invalid multipart body: {}", e.body_text()))
        })?;
        let bad = |e: axum::extract::multipart::MultipartError| {
            Error::bad_request(format!("invalid multipart body: {}", e.body_text()))
        };
        // Fields before `file` are skipped; together they may not exceed 64 KiB.
        let mut skipped = 0u64;
        while let Some(mut field) = mp.next_field().await.map_err(bad)? {
            if field.name() != Some("file") {
                while let Some(c) = field.chunk().await.map_err(bad)? {
                    skipped += c.len() as u64;
                    if skipped > 64 * 1024 {
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

/// An image that passed validation.
pub(super) struct Checked {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
}

fn format_names(f: SourceFormat) -> (&'static str, &'static str) {
    match f {
        SourceFormat::Jpeg => ("image/jpeg", "jpg"),
        SourceFormat::Png => ("image/png", "png"),
        SourceFormat::Webp => ("image/webp", "webp"),
        SourceFormat::Gif => ("image/gif", "gif"),
    }
}

pub(super) fn ext_for_content_type(ct: &str) -> Option<&'static str> {
    match ct.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => Some("jpg"),
        "image/png" => Some("png"),
        "image/webp" => Some("webp"),
        "image/gif" => Some("gif"),
        _ => None,
    }
}

/// Header first (format, size; more than `limits.max_source_pixels` → 422 before any
/// pixel is decoded), then a full decode on the worker pool (corrupt → 422). The content
/// type comes from the bytes, never from the client.
pub(super) async fn validate(state: &AppState, bytes: Bytes) -> Result<Checked, Error> {
    if bytes.is_empty() {
        return Err(Error::new(ErrorKind::UnsupportedMediaType, "empty body"));
    }
    let info = pipeline::probe(&bytes)?;
    let limit = state.config.limits.max_source_pixels;
    pipeline::check_source_pixels(info.width, info.height, limit)?;
    let b2 = bytes.clone();
    state
        .workers
        .run(move || pipeline::check(&b2, limit))
        .await??;
    let (content_type, ext) = format_names(info.format);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Checked {
        bytes,
        content_type,
        ext,
        width: info.width,
        height: info.height,
        sha256,
    })
}

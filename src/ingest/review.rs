//! Labels and moderation with Amazon Rekognition (SPEC §12). Rekognition reads JPEG and
//! PNG up to 5 MB, so it is sent a JPEG of at most [`REVIEW_EDGE`] px on the long edge,
//! rendered by our pipeline: HEIC, WebP, AVIF and large originals work alike.

use crate::metadata::Moderation;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types::Image;

/// Long edge of the thumbnail sent to Rekognition (its own guidance: 640 px is enough for
/// labels; 1024 keeps small subjects).
pub const REVIEW_EDGE: u32 = 1024;

/// Query of that thumbnail, through the same parser as delivery.
pub const REVIEW_QUERY: &str = "w=1024&h=1024&fit=inside&fm=jpeg&q=85";

/// At most this many `auto:` tags (a record holds 32).
const MAX_LABELS: usize = 16;

/// `DetectLabels`: the labels at or above `min_confidence`, as `auto:` tags. A label that
/// is the parent of another one returned (`Phone` for `Mobile Phone`) is left out: the
/// tags name what is in the picture, not its categories.
pub async fn labels(
    client: &Client,
    jpeg: &[u8],
    min_confidence: f32,
) -> Result<Vec<String>, String> {
    let out = client
        .detect_labels()
        .image(image(jpeg))
        .min_confidence(min_confidence)
        .send()
        .await
        .map_err(|e| failed("DetectLabels", e))?;
    let labels = out.labels();
    let parents: Vec<&str> = labels
        .iter()
        .flat_map(|l| l.parents().iter().filter_map(|p| p.name()))
        .collect();
    let mut tags = Vec::new();
    for l in labels {
        let (Some(name), Some(conf)) = (l.name(), l.confidence()) else {
            continue;
        };
        if conf < min_confidence || parents.contains(&name) {
            continue;
        }
        if let Some(t) = auto_tag(name)
            && !tags.contains(&t)
        {
            tags.push(t);
        }
        if tags.len() == MAX_LABELS {
            break;
        }
    }
    Ok(tags)
}

/// `DetectModerationLabels`: flagged when any label reaches `min_confidence`.
pub async fn moderation(
    client: &Client,
    jpeg: &[u8],
    min_confidence: f32,
) -> Result<Moderation, String> {
    let out = client
        .detect_moderation_labels()
        .image(image(jpeg))
        .min_confidence(min_confidence)
        .send()
        .await
        .map_err(|e| failed("DetectModerationLabels", e))?;
    let flagged = out
        .moderation_labels()
        .iter()
        .any(|l| l.confidence().is_some_and(|c| c >= min_confidence));
    Ok(if flagged {
        Moderation::Flagged
    } else {
        Moderation::Approved
    })
}

fn failed(op: &str, e: impl std::error::Error) -> String {
    format!(
        "Rekognition {op}: {}",
        aws_sdk_rekognition::error::DisplayErrorContext(e)
    )
}

fn image(jpeg: &[u8]) -> Image {
    Image::builder().bytes(Blob::new(jpeg.to_vec())).build()
}

/// `auto:<name>`: lowercased, spaces as `-`, only the characters tags allow; `None` when
/// nothing is left.
pub fn auto_tag(name: &str) -> Option<String> {
    let body: String = name
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(59)
        .collect();
    (!body.is_empty()).then(|| format!("auto:{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tags() {
        assert_eq!(
            auto_tag("Golden Retriever").as_deref(),
            Some("auto:golden-retriever")
        );
        assert_eq!(
            auto_tag("Person's Hat").as_deref(),
            Some("auto:persons-hat")
        );
        assert_eq!(auto_tag("  "), None);
        assert!(auto_tag(&"x".repeat(200)).unwrap().len() <= 64);
    }
}

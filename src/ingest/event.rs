//! S3 event notifications as SQS delivers them: the raw S3 message (`Records`, schema 2.1),
//! the same wrapped in an SNS notification, and the `s3:TestEvent` S3 sends when a
//! notification is configured. Only what ingest needs is read.

use serde::Deserialize;

/// One created object named by a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub bucket: String,
    /// Decoded: S3 sends keys URL-encoded with `+` for a space.
    pub key: String,
    pub size: Option<u64>,
}

/// What a message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Objects created (other event types are left out).
    Created(Vec<Created>),
    /// `s3:TestEvent`, or a notification without created objects: nothing to do.
    Nothing,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS: the S3 message as a JSON string.
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: Option<S3Part>,
}

#[derive(Deserialize)]
struct S3Part {
    bucket: Bucket,
    object: ObjectPart,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct ObjectPart {
    key: String,
    size: Option<u64>,
}

/// Parses one SQS message body; `Err` for a body that is no S3 notification (left to the
/// queue's redrive policy).
pub fn parse(body: &str) -> Result<Message, String> {
    parse_depth(body, 0)
}

fn parse_depth(body: &str, depth: u8) -> Result<Message, String> {
    let env: Envelope =
        serde_json::from_str(body).map_err(|e| format!("not an S3 event notification: {e}"))?;
    if env.kind.as_deref() == Some("Notification")
        && let Some(inner) = &env.message
        && depth == 0
    {
        return parse_depth(inner, 1);
    }
    if env.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Message::Nothing);
    }
    let Some(records) = env.records else {
        return Err("not an S3 event notification: no `Records`".into());
    };
    let mut created = Vec::new();
    for r in records {
        if !r.event_name.starts_with("ObjectCreated:") {
            continue;
        }
        let Some(s3) = r.s3 else { continue };
        created.push(Created {
            bucket: s3.bucket.name,
            key: decode_key(&s3.object.key)?,
            size: s3.object.size,
        });
    }
    Ok(if created.is_empty() {
        Message::Nothing
    } else {
        Message::Created(created)
    })
}

/// S3 notification keys are form-encoded: `+` is a space, `%XX` a byte (UTF-8).
fn decode_key(k: &str) -> Result<String, String> {
    let plus = k.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("object key `{k}` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_SAMPLE: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-12-01T10:00:00.000Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:X"},"requestParameters":{"sourceIPAddress":"127.0.0.1"},"responseElements":{"x-amz-request-id":"R","x-amz-id-2":"I"},"s3":{"s3SchemaVersion":"1.0","configurationId":"imgorigin","bucket":{"name":"photos","ownerIdentity":{"principalId":"X"},"arn":"arn:aws:s3:::photos"},"object":{"key":"private/alice/my+photo%C3%A9+%2B1.jpg","size":1024,"eTag":"abc","sequencer":"00"}}}]}"#;

    #[test]
    fn raw_s3_event_keys_are_decoded() {
        let m = parse(AWS_SAMPLE).unwrap();
        assert_eq!(
            m,
            Message::Created(vec![Created {
                bucket: "photos".into(),
                key: "private/alice/my photoé +1.jpg".into(),
                size: Some(1024),
            }])
        );
    }

    #[test]
    fn sns_wrapped_and_test_events() {
        let sns = serde_json::json!({"Type": "Notification", "Message": AWS_SAMPLE}).to_string();
        assert!(matches!(parse(&sns).unwrap(), Message::Created(v) if v.len() == 1));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T10:00:00.000Z","Bucket":"photos","RequestId":"R","HostId":"H"}"#;
        assert_eq!(parse(test).unwrap(), Message::Nothing);
        let removed = AWS_SAMPLE.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(parse(&removed).unwrap(), Message::Nothing);
    }

    #[test]
    fn junk_is_an_error() {
        assert!(parse("not json").is_err());
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#).is_err());
    }
}

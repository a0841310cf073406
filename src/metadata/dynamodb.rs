//! `MetadataStore` on one DynamoDB table (SPEC §13): `metadata.url =
//! dynamodb://TABLE?region=R[&endpoint=URL][&create=true]`.
//!
//! Single-table layout (`pk`, `sk` strings):
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | image record | `IMG#<id>` | `A` | `g1pk` = `IMG` when ready, `REJECTED` when rejected, `UNSETTLED` otherwise; `g1sk` = created order; `g2pk` = `OWNER#<owner>` |
//! | key → id | `KEY#<object key>` | `K` | makes object keys unique (written in the record's transaction) |
//! | share | `IMG#<image id>` | `S#<share id>` | in the image's item collection: listed and deleted with one consistent query |
//! | share → image | `SHR#<share id>` | `P` | finds a share by id |
//! | reservation | `RSV#<object key>` | `R` | `g1pk` = `RSV`, `g1sk` = expiry order (the sweep) |
//! | local account | `USR#<name>` | `U` | |
//! | identity-pool id | `IDN#<pool>#<subject>` | `I` | first write wins |
//! | change (SPEC §14) | `CHANGES` | `<µs>#<instance>#<n>` | `expires`: the table's TTL attribute; see `cluster::dynamodb` |
//!
//! `gsi1` (`g1pk`, `g1sk`) lists ready records newest first, unsettled records for the
//! sweep and reservations by expiry; `gsi2` (`g2pk`, `g1sk`) lists one owner's records.
//! Uniqueness and the pending → ready → deleting life are conditional writes; reads of one
//! item are strongly consistent. Lists come from the indexes, which DynamoDB keeps
//! eventually consistent (typically well under a second behind a write).

use super::*;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// The partition of ready records in `gsi1`.
const READY: &str = "IMG";
/// The partition of pending and deleting records in `gsi1` (few, for the sweep).
const UNSETTLED: &str = "UNSETTLED";
/// Records of objects ingest refused (SPEC §12): kept, never listed, never swept.
const REJECTED: &str = "REJECTED";
const RESERVATIONS: &str = "RSV";
/// The table's TTL attribute (epoch seconds): change items of the fan-out expire by it.
pub const TTL_ATTRIBUTE: &str = "expires";
/// DynamoDB's limit of items in one transaction.
const MAX_TRANSACT: usize = 100;

pub struct DynamoStore {
    client: Client,
    table: String,
}

/// What `metadata.url` says.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    table: String,
    region: Option<String>,
    endpoint: Option<String>,
    create: bool,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("dynamodb://")
        .ok_or_else(|| format!("`{url}` is not a dynamodb:// URL"))?;
    let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(format!(
            "`{table}` is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ - .)"
        ));
    }
    let mut t = Target {
        table: table.to_string(),
        region: None,
        endpoint: None,
        create: false,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| format!("`{k}` is not UTF-8"))?
            .into_owned();
        match k {
            "region" => t.region = Some(v),
            "endpoint" => t.endpoint = Some(v),
            "create" => {
                t.create = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("create=`{v}`: expected true or false")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{k}` (region, endpoint, create)"
                ));
            }
        }
    }
    Ok(t)
}

/// The syntax check of a `dynamodb://` URL (config validation).
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn img_key(id: &str) -> Item {
    key(format!("IMG#{id}"), "A")
}

fn objkey_key(object_key: &str) -> Item {
    key(format!("KEY#{object_key}"), "K")
}

fn share_key(image_id: &str, share_id: &str) -> Item {
    key(format!("IMG#{image_id}"), &format!("S#{share_id}"))
}

fn share_ptr_key(share_id: &str) -> Item {
    key(format!("SHR#{share_id}"), "P")
}

fn rsv_key(object_key: &str) -> Item {
    key(format!("RSV#{object_key}"), "R")
}

fn user_key(name: &str) -> Item {
    key(format!("USR#{name}"), "U")
}

fn identity_key(pool: &str, subject: &str) -> Item {
    key(format!("IDN#{pool}#{subject}"), "I")
}

/// A string that sorts as `(t, id)` does: the time biased to unsigned, zero-padded.
fn order(t: i64, id: &str) -> String {
    format!("{:020}#{id}", (t as u64) ^ (1 << 63))
}

fn put_opt(item: &mut Item, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        item.insert(name.into(), s(v.clone()));
    }
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn need_s(item: &Item, name: &str) -> Result<String, MetaError> {
    get_s(item, name).ok_or_else(|| MetaError::Db(format!("item without `{name}`")))
}

fn need_n(item: &Item, name: &str) -> Result<i64, MetaError> {
    get_n(item, name).ok_or_else(|| MetaError::Db(format!("item without number `{name}`")))
}

fn ready_partition(state: RecordState) -> &'static str {
    match state {
        RecordState::Ready => READY,
        RecordState::Rejected => REJECTED,
        RecordState::Pending | RecordState::Deleting => UNSETTLED,
    }
}

/// The one place a record becomes an item (add new record fields here and in `item_record`).
fn record_item(r: &ImageRecord) -> Item {
    let mut item = img_key(&r.id);
    item.insert("id".into(), s(r.id.clone()));
    item.insert("okey".into(), s(r.key.clone()));
    item.insert("level".into(), s(r.level.as_str()));
    put_opt(&mut item, "owner", &r.owner);
    put_opt(&mut item, "filename", &r.filename);
    item.insert("content_type".into(), s(r.content_type.clone()));
    item.insert("bytes".into(), n(r.bytes));
    item.insert("width".into(), n(r.width));
    item.insert("height".into(), n(r.height));
    item.insert("sha256".into(), s(r.sha256.clone()));
    item.insert("tags".into(), tags_value(&r.tags));
    put_opt(&mut item, "description", &r.description);
    item.insert("state".into(), s(r.state.as_str()));
    item.insert("created_at".into(), n(r.created_at));
    item.insert("updated_at".into(), n(r.updated_at));
    if let Some(f) = &r.facts {
        item.insert("facts".into(), s(f.to_json()));
    }
    if let Some(m) = r.moderation {
        item.insert("moderation".into(), s(m.as_str()));
    }
    put_opt(&mut item, "rejected_reason", &r.rejected_reason);
    item.insert("g1pk".into(), s(ready_partition(r.state)));
    item.insert("g1sk".into(), s(order(r.created_at, &r.id)));
    if let Some(o) = &r.owner {
        item.insert("g2pk".into(), s(format!("OWNER#{o}")));
    }
    item
}

/// The one place an item becomes a record.
fn item_record(item: &Item) -> Result<ImageRecord, MetaError> {
    let tags = match item.get("tags") {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    Ok(ImageRecord {
        id: need_s(item, "id")?,
        key: need_s(item, "okey")?,
        level: Level::parse(&need_s(item, "level")?).unwrap_or(Level::Other),
        owner: get_s(item, "owner"),
        filename: get_s(item, "filename"),
        content_type: need_s(item, "content_type")?,
        bytes: need_n(item, "bytes")?,
        width: need_n(item, "width")?,
        height: need_n(item, "height")?,
        sha256: need_s(item, "sha256")?,
        tags,
        description: get_s(item, "description"),
        // Unknown states are never shown.
        state: RecordState::parse(&need_s(item, "state")?).unwrap_or(RecordState::Deleting),
        created_at: need_n(item, "created_at")?,
        updated_at: need_n(item, "updated_at")?,
        // Unreadable text (another version's) counts as missing: computed again.
        facts: get_s(item, "facts")
            .as_deref()
            .and_then(crate::facts::Facts::from_json),
        // An unknown value is treated as flagged: never shown more widely than meant.
        moderation: get_s(item, "moderation")
            .map(|m| Moderation::parse(&m).unwrap_or(Moderation::Flagged)),
        rejected_reason: get_s(item, "rejected_reason"),
    })
}

/// Tags as a list (a set would lose their order, and cannot be empty).
fn tags_value(tags: &[String]) -> AttributeValue {
    AttributeValue::L(tags.iter().map(|t| s(t.clone())).collect())
}

fn share_item(sh: &Share) -> Item {
    let mut item = share_key(&sh.image_id, &sh.id);
    item.insert("id".into(), s(sh.id.clone()));
    item.insert("image_id".into(), s(sh.image_id.clone()));
    item.insert("okey".into(), s(sh.key.clone()));
    put_opt(&mut item, "params", &sh.params);
    put_opt(&mut item, "created_by", &sh.created_by);
    item.insert("created_at".into(), n(sh.created_at));
    item.insert("expires_at".into(), n(sh.expires_at));
    if let Some(r) = sh.revoked_at {
        item.insert("revoked_at".into(), n(r));
    }
    item
}

fn item_share(item: &Item) -> Result<Share, MetaError> {
    Ok(Share {
        id: need_s(item, "id")?,
        image_id: need_s(item, "image_id")?,
        key: need_s(item, "okey")?,
        params: get_s(item, "params"),
        created_by: get_s(item, "created_by"),
        created_at: need_n(item, "created_at")?,
        expires_at: need_n(item, "expires_at")?,
        revoked_at: get_n(item, "revoked_at"),
    })
}

fn reservation_item(r: &Reservation) -> Item {
    let mut item = rsv_key(&r.key);
    item.insert("okey".into(), s(r.key.clone()));
    put_opt(&mut item, "identity", &r.identity);
    item.insert("created_at".into(), n(r.created_at));
    item.insert("expires_at".into(), n(r.expires_at));
    if let Some(u) = r.used_at {
        item.insert("used_at".into(), n(u));
    }
    item.insert("g1pk".into(), s(RESERVATIONS));
    item.insert("g1sk".into(), s(order(r.expires_at, &r.key)));
    item
}

fn item_reservation(item: &Item) -> Result<Reservation, MetaError> {
    Ok(Reservation {
        key: need_s(item, "okey")?,
        identity: get_s(item, "identity"),
        created_at: need_n(item, "created_at")?,
        expires_at: need_n(item, "expires_at")?,
        used_at: get_n(item, "used_at"),
    })
}

fn db_err<E, R>(e: SdkError<E, R>) -> MetaError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    MetaError::Db(DisplayErrorContext(e).to_string())
}

/// Whether a conditional update was made: `false` when its condition did not hold.
fn updated(
    done: Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>,
) -> Result<bool, MetaError> {
    made_or_refused(done, UpdateItemError::is_conditional_check_failed_exception)
}

/// A conditional write's outcome: made (true), its condition did not hold (false), or a
/// database error.
fn made_or_refused<O, E>(
    done: Result<O, SdkError<E, HttpResponse>>,
    condition_failed: fn(&E) -> bool,
) -> Result<bool, MetaError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match done {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(condition_failed) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> MetaError {
    MetaError::Db(e.to_string())
}

/// Which items of a cancelled transaction failed their condition (`None`: not cancelled
/// for conditions, e.g. unreachable).
fn failed_conditions(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
) -> Option<Vec<bool>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error() {
        Some(E::TransactionCanceledException(c)) => {
            let reasons: Vec<bool> = c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect();
            reasons.iter().any(|f| *f).then_some(reasons)
        }
        _ => None,
    }
}

fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, MetaError> {
    let p = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_string))
        .build()
        .map_err(build_err)?;
    Ok(TransactWriteItem::builder().put(p).build())
}

fn delete(table: &str, key: Item) -> Result<TransactWriteItem, MetaError> {
    let d = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(build_err)?;
    Ok(TransactWriteItem::builder().delete(d).build())
}

async fn client(t: &Target) -> Result<Client, String> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &t.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &t.endpoint {
        loader = loader.endpoint_url(e);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err("no region: add ?region=… or set AWS_REGION".into());
    }
    Ok(Client::new(&sdk))
}

impl DynamoStore {
    /// Opens (and with `create=true` creates) the table named by a `dynamodb://` URL.
    pub async fn open(url: &str) -> Result<Self, String> {
        let t = parse_url(url)?;
        let store = DynamoStore {
            client: client(&t).await?,
            table: t.table,
        };
        if t.create {
            store.create_table().await?;
        } else {
            store
                .check()
                .await
                .map_err(|e| format!("table `{}`: {e}", store.table))?;
        }
        Ok(store)
    }

    /// The client and table a `dynamodb://` URL names, without touching the table (the
    /// change fan-out, which runs next to the store).
    pub async fn client_for(url: &str) -> Result<(Client, String), String> {
        let t = parse_url(url)?;
        Ok((client(&t).await?, t.table))
    }

    /// A store over a client built elsewhere (tests: an SDK config pointed at moto).
    pub fn with_client(client: Client, table: &str) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
        }
    }

    /// Creates the table with its indexes (on-demand capacity) unless it exists, and waits
    /// until it and its indexes are ACTIVE.
    pub async fn create_table(&self) -> Result<(), String> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| e.to_string())
        };
        let ks = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| e.to_string())
        };
        let gsi = |name: &str, pk: &str| -> Result<GlobalSecondaryIndex, String> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(ks(pk, KeyType::Hash)?)
                .key_schema(ks("g1sk", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())
        };
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match exists {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let made = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attr("pk")?)
                    .attribute_definitions(attr("sk")?)
                    .attribute_definitions(attr("g1pk")?)
                    .attribute_definitions(attr("g1sk")?)
                    .attribute_definitions(attr("g2pk")?)
                    .key_schema(ks("pk", KeyType::Hash)?)
                    .key_schema(ks("sk", KeyType::Range)?)
                    .global_secondary_indexes(gsi("gsi1", "g1pk")?)
                    .global_secondary_indexes(gsi("gsi2", "g2pk")?)
                    .send()
                    .await;
                match made {
                    Ok(_) => {}
                    // Another instance is creating it at the same time: wait for it below.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                    Err(e) => {
                        return Err(format!("cannot create table: {}", DisplayErrorContext(e)));
                    }
                }
            }
            Err(e) => return Err(format!("cannot describe table: {}", DisplayErrorContext(e))),
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        loop {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| format!("cannot describe table: {}", DisplayErrorContext(e)))?;
            let active = d.table().is_some_and(|t| {
                t.table_status() == Some(&TableStatus::Active)
                    && t.global_secondary_indexes()
                        .iter()
                        .all(|g| g.index_status() == Some(&IndexStatus::Active))
            });
            if active {
                return self.enable_ttl().await;
            }
            if std::time::Instant::now() > deadline {
                return Err("table not ACTIVE after 300 s".into());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Change items (SPEC §14) expire through the table's TTL on `expires`.
    async fn enable_ttl(&self) -> Result<(), String> {
        let d = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| format!("cannot describe TTL: {}", DisplayErrorContext(e)))?;
        let on = d.time_to_live_description().is_some_and(|t| {
            t.attribute_name() == Some(TTL_ATTRIBUTE)
                && matches!(
                    t.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if on {
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot enable TTL: {}", DisplayErrorContext(e)))
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, MetaError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(db_err)?;
        Ok(out.item)
    }

    /// A conditional put; false when the condition failed.
    async fn put_if(&self, item: Item, condition: &str) -> Result<bool, MetaError> {
        let done = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        made_or_refused(done, PutItemError::is_conditional_check_failed_exception)
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<
        (),
        SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
    > {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
    }

    /// Every item of one partition (consistent).
    async fn partition(&self, pk: String) -> Result<Vec<Item>, MetaError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(db_err)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Items of an index partition in `g1sk` order, filtered, until `limit` match.
    #[allow(clippy::too_many_arguments)]
    async fn index_query(
        &self,
        index: &str,
        pk_name: &str,
        pk: String,
        below: Option<String>,
        descending: bool,
        filter: Option<String>,
        mut values: HashMap<String, AttributeValue>,
        names: HashMap<String, String>,
        limit: usize,
    ) -> Result<Vec<Item>, MetaError> {
        let mut cond = format!("{pk_name} = :pk");
        values.insert(":pk".into(), s(pk));
        if let Some(b) = below {
            cond.push_str(" AND g1sk < :below");
            values.insert(":below".into(), s(b));
        }
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(&cond)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_values(Some(values.clone()))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .scan_index_forward(!descending)
                // Read a little more than asked: the filter may drop some.
                .limit((limit.saturating_mul(2)).clamp(10, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(db_err)?;
            for item in page.items.unwrap_or_default() {
                out.push(item);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl MetadataStore for DynamoStore {
    async fn insert(&self, r: &ImageRecord) -> Result<(), MetaError> {
        let mut k = objkey_key(&r.key);
        k.insert("id".into(), s(r.id.clone()));
        let items = vec![
            put(
                &self.table,
                record_item(r),
                Some("attribute_not_exists(pk)"),
            )?,
            put(&self.table, k, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(e) if failed_conditions(&e).is_some() => Err(MetaError::Conflict(format!(
                "a record with id {} or key {} exists",
                r.id, r.key
            ))),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn set_state(
        &self,
        id: &str,
        from: RecordState,
        to: RecordState,
        now: i64,
    ) -> Result<bool, MetaError> {
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(img_key(id)))
            .update_expression("SET #st = :to, updated_at = :now, g1pk = :part")
            .condition_expression("#st = :from")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":part", s(ready_partition(to)))
            .send()
            .await;
        updated(done)
    }

    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, MetaError> {
        self.get_item(img_key(id))
            .await?
            .as_ref()
            .map(item_record)
            .transpose()
    }

    async fn get_by_key(&self, key: &str) -> Result<Option<ImageRecord>, MetaError> {
        let Some(k) = self.get_item(objkey_key(key)).await? else {
            return Ok(None);
        };
        let id = need_s(&k, "id")?;
        // Moved between the two reads: no record has this key any more.
        Ok(self.get(&id).await?.filter(|r| r.key == key))
    }

    async fn set_facts(&self, id: &str, facts: &crate::facts::Facts) -> Result<bool, MetaError> {
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(img_key(id)))
            .update_expression("SET facts = :f")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":f", s(facts.to_json()))
            .send()
            .await;
        updated(done)
    }

    async fn list(&self, q: &ListQuery) -> Result<Vec<ImageRecord>, MetaError> {
        let mut values = HashMap::from([(":ready".to_string(), s("ready"))]);
        // Only names the expression uses may be given (DynamoDB refuses unused ones).
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        let mut conds = vec!["#st = :ready".to_string()];
        if !q.visible.all {
            let mut any = Vec::new();
            if !q.visible.levels.is_empty() {
                let ps: Vec<String> = q
                    .visible
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        values.insert(format!(":vl{i}"), s(l.as_str()));
                        format!(":vl{i}")
                    })
                    .collect();
                any.push(format!("#lv IN ({})", ps.join(", ")));
            }
            if let Some(o) = &q.visible.private_of {
                values.insert(":private".into(), s("private"));
                values.insert(":po".into(), s(o.clone()));
                names.insert("#ow".into(), "owner".into());
                any.push("(#lv = :private AND #ow = :po)".into());
            }
            if any.is_empty() {
                return Ok(Vec::new());
            }
            names.insert("#lv".into(), "level".into());
            conds.push(format!("({})", any.join(" OR ")));
            // Flagged records only to their owner (SPEC §12).
            values.insert(":flagged".into(), s(Moderation::Flagged.as_str()));
            names.insert("#md".into(), "moderation".into());
            let mut flagged = "attribute_not_exists(#md) OR #md <> :flagged".to_string();
            if let Some(o) = &q.visible.flagged_of {
                values.insert(":fo".into(), s(o.clone()));
                names.insert("#ow".into(), "owner".into());
                flagged.push_str(" OR #ow = :fo");
            }
            conds.push(format!("({flagged})"));
        }
        if let Some(l) = q.level {
            values.insert(":level".into(), s(l.as_str()));
            names.insert("#lv".into(), "level".into());
            conds.push("#lv = :level".into());
        }
        if let Some(t) = &q.tag {
            values.insert(":tag".into(), s(t.clone()));
            names.insert("#tg".into(), "tags".into());
            conds.push("contains(#tg, :tag)".into());
        }
        let below = q.before.as_ref().map(|(at, id)| order(*at, id));
        let (index, pk_name, pk) = match &q.owner {
            Some(o) => ("gsi2", "g2pk", format!("OWNER#{o}")),
            None => ("gsi1", "g1pk", READY.to_string()),
        };
        let items = self
            .index_query(
                index,
                pk_name,
                pk,
                below,
                true,
                Some(conds.join(" AND ")),
                values,
                names,
                q.limit as usize,
            )
            .await?;
        items.iter().map(item_record).collect()
    }

    async fn update(
        &self,
        id: &str,
        patch: &Patch,
        now: i64,
    ) -> Result<Option<ImageRecord>, MetaError> {
        let Some(current) = self.get(id).await? else {
            return Ok(None);
        };
        if current.state != RecordState::Ready {
            return Ok(None);
        }
        let mut r = current.clone();
        if let Some(f) = &patch.filename {
            r.filename = f.clone();
        }
        if let Some(t) = &patch.tags {
            r.tags = t.clone();
        }
        if let Some(d) = &patch.description {
            r.description = d.clone();
        }
        r.updated_at = now.max(r.updated_at);
        // Only the patched fields are written, on a record that is still ready.
        // Attribute names go through `#name` (DynamoDB reserves many words), only those used.
        let mut names = HashMap::from([("#st".to_string(), "state".to_string())]);
        let mut sets = vec!["updated_at = :now".to_string()];
        let mut removes: Vec<String> = Vec::new();
        let mut values = HashMap::from([
            (":now".to_string(), n(r.updated_at)),
            (":ready".to_string(), s("ready")),
        ]);
        for (name, patched) in [
            ("filename", &patch.filename),
            ("description", &patch.description),
        ] {
            if patched.is_some() {
                names.insert(format!("#{name}"), name.to_string());
            }
            match patched {
                None => {}
                Some(Some(v)) => {
                    sets.push(format!("#{name} = :{name}"));
                    values.insert(format!(":{name}"), s(v.clone()));
                }
                Some(None) => removes.push(format!("#{name}")),
            }
        }
        if patch.tags.is_some() {
            sets.push("#tags = :tags".into());
            names.insert("#tags".into(), "tags".into());
            values.insert(":tags".into(), tags_value(&r.tags));
        }
        let mut expr = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(img_key(id)))
            .update_expression(expr)
            .condition_expression("#st = :ready")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match done {
            Ok(out) => match out.attributes {
                Some(item) => item_record(&item).map(Some),
                None => Ok(Some(r)),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(db_err(e)),
        }
    }

    async fn move_key(
        &self,
        id: &str,
        from_key: &str,
        to_key: &str,
        level: Level,
        now: i64,
    ) -> Result<bool, MetaError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(img_key(id)))
            .update_expression("SET okey = :to, #lv = :level, updated_at = :now")
            .condition_expression("okey = :from AND #st = :ready")
            .expression_attribute_names("#lv", "level")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":to", s(to_key))
            .expression_attribute_values(":from", s(from_key))
            .expression_attribute_values(":level", s(level.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ready", s("ready"))
            .build()
            .map_err(build_err)?;
        let mut new_key = objkey_key(to_key);
        new_key.insert("id".into(), s(id));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            delete(&self.table, objkey_key(from_key))?,
            put(&self.table, new_key, Some("attribute_not_exists(pk)"))?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) => match failed_conditions(&e) {
                Some(f) if f.first() == Some(&true) => Ok(false),
                Some(_) => Err(MetaError::Conflict(format!("key {to_key} is recorded"))),
                None => Err(db_err(e)),
            },
        }
    }

    async fn delete(&self, id: &str) -> Result<(), MetaError> {
        let items = self.partition(format!("IMG#{id}")).await?;
        let mut record_key = None;
        let mut writes = Vec::new();
        for item in &items {
            match get_s(item, "sk").as_deref() {
                Some("A") => record_key = get_s(item, "okey"),
                Some(sk) if sk.starts_with("S#") => {
                    let sid = &sk[2..];
                    writes.push(delete(&self.table, share_key(id, sid))?);
                    writes.push(delete(&self.table, share_ptr_key(sid))?);
                }
                _ => {}
            }
        }
        // The record and its key go last, together, after its shares.
        let mut last = vec![delete(&self.table, img_key(id))?];
        if let Some(k) = record_key {
            let d = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(objkey_key(&k)))
                .condition_expression("attribute_not_exists(pk) OR #id = :id")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":id", s(id))
                .build()
                .map_err(build_err)?;
            last.push(TransactWriteItem::builder().delete(d).build());
        }
        for chunk in writes.chunks(MAX_TRANSACT) {
            self.transact(chunk.to_vec()).await.map_err(db_err)?;
        }
        self.transact(last).await.map_err(db_err)
    }

    async fn insert_share(&self, sh: &Share) -> Result<(), MetaError> {
        let mut ptr = share_ptr_key(&sh.id);
        ptr.insert("image_id".into(), s(sh.image_id.clone()));
        let image = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(img_key(&sh.image_id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_err)?;
        let items = vec![
            put(
                &self.table,
                share_item(sh),
                Some("attribute_not_exists(pk)"),
            )?,
            put(&self.table, ptr, Some("attribute_not_exists(pk)"))?,
            TransactWriteItem::builder().condition_check(image).build(),
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(e) => match failed_conditions(&e) {
                Some(f) if f.get(2) == Some(&true) => Err(MetaError::Db(format!(
                    "share for a missing image {}",
                    sh.image_id
                ))),
                Some(_) => Err(MetaError::Conflict(format!("share {} exists", sh.id))),
                None => Err(db_err(e)),
            },
        }
    }

    async fn get_share(&self, id: &str) -> Result<Option<Share>, MetaError> {
        let Some(ptr) = self.get_item(share_ptr_key(id)).await? else {
            return Ok(None);
        };
        let image_id = need_s(&ptr, "image_id")?;
        self.get_item(share_key(&image_id, id))
            .await?
            .as_ref()
            .map(item_share)
            .transpose()
    }

    async fn list_shares(&self, image_id: &str) -> Result<Vec<Share>, MetaError> {
        let mut shares = self
            .partition(format!("IMG#{image_id}"))
            .await?
            .iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("S#")))
            .map(item_share)
            .collect::<Result<Vec<_>, _>>()?;
        shares.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(shares)
    }

    async fn revoke_share(&self, id: &str, now: i64) -> Result<bool, MetaError> {
        let Some(ptr) = self.get_item(share_ptr_key(id)).await? else {
            return Ok(false);
        };
        let image_id = need_s(&ptr, "image_id")?;
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(share_key(&image_id, id)))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        updated(done)
    }

    async fn stale(&self, older_than: i64) -> Result<Vec<ImageRecord>, MetaError> {
        let items = self
            .index_query(
                "gsi1",
                "g1pk",
                UNSETTLED.into(),
                None,
                false,
                Some("updated_at < :t".into()),
                HashMap::from([(":t".to_string(), n(older_than))]),
                HashMap::new(),
                1000,
            )
            .await?;
        items.iter().map(item_record).collect()
    }

    async fn key_recorded(&self, key: &str) -> Result<bool, MetaError> {
        Ok(self.get_item(objkey_key(key)).await?.is_some())
    }

    async fn reserve_upload(&self, r: &Reservation) -> Result<(), MetaError> {
        if self
            .put_if(reservation_item(r), "attribute_not_exists(pk)")
            .await?
        {
            Ok(())
        } else {
            Err(MetaError::Conflict(format!("{} is reserved", r.key)))
        }
    }

    async fn get_reservation(&self, key: &str) -> Result<Option<Reservation>, MetaError> {
        self.get_item(rsv_key(key))
            .await?
            .as_ref()
            .map(item_reservation)
            .transpose()
    }

    async fn use_reservation(&self, key: &str, now: i64) -> Result<bool, MetaError> {
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(rsv_key(key)))
            .update_expression("SET used_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(used_at)")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        updated(done)
    }

    async fn expired_reservations(&self, before: i64) -> Result<Vec<Reservation>, MetaError> {
        // Everything that sorts below `before` itself expired strictly before it.
        let items = self
            .index_query(
                "gsi1",
                "g1pk",
                RESERVATIONS.into(),
                Some(order(before, "")),
                false,
                None,
                HashMap::new(),
                HashMap::new(),
                1000,
            )
            .await?;
        items.iter().map(item_reservation).collect()
    }

    async fn delete_reservation(&self, key: &str) -> Result<(), MetaError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(rsv_key(key)))
            .send()
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_user(&self, u: &User) -> Result<(), MetaError> {
        let mut item = user_key(&u.name);
        item.insert("name".into(), s(u.name.clone()));
        item.insert("password_hash".into(), s(u.password_hash.clone()));
        item.insert("created_at".into(), n(u.created_at));
        item.insert("updated_at".into(), n(u.updated_at));
        if self.put_if(item, "attribute_not_exists(pk)").await? {
            Ok(())
        } else {
            Err(MetaError::Conflict(format!("user {} exists", u.name)))
        }
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>, MetaError> {
        let Some(item) = self.get_item(user_key(name)).await? else {
            return Ok(None);
        };
        Ok(Some(User {
            name: need_s(&item, "name")?,
            password_hash: need_s(&item, "password_hash")?,
            created_at: need_n(&item, "created_at")?,
            updated_at: need_n(&item, "updated_at")?,
        }))
    }

    async fn set_user_password(&self, name: &str, hash: &str, now: i64) -> Result<bool, MetaError> {
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(name)))
            .update_expression("SET password_hash = :h, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        updated(done)
    }

    async fn set_review(
        &self,
        id: &str,
        moderation: Option<Moderation>,
        tags: &[String],
        now: i64,
    ) -> Result<bool, MetaError> {
        // Tags are read, merged and written only if nobody changed them in between (a PATCH
        // racing ingest keeps both); a few tries, then the conflict is reported.
        for _ in 0..5 {
            let Some(current) = self.get(id).await? else {
                return Ok(false);
            };
            let mut all = current.tags.clone();
            for t in tags {
                if !all.contains(t) {
                    all.push(t.clone());
                }
            }
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(img_key(id)))
                .condition_expression("attribute_exists(pk) AND #tg = :old")
                .expression_attribute_names("#tg", "tags")
                .expression_attribute_values(":old", tags_value(&current.tags))
                .expression_attribute_values(":tags", tags_value(&all))
                .expression_attribute_values(":now", n(now.max(current.updated_at)));
            update = match moderation {
                Some(m) => update
                    .update_expression("SET moderation = :m, #tg = :tags, updated_at = :now")
                    .expression_attribute_values(":m", s(m.as_str())),
                None => {
                    update.update_expression("SET #tg = :tags, updated_at = :now REMOVE moderation")
                }
            };
            match update.send().await {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(MetaError::Conflict(format!("{id}: tags kept changing")))
    }

    async fn get_identity(&self, pool: &str, subject: &str) -> Result<Option<String>, MetaError> {
        Ok(self
            .get_item(identity_key(pool, subject))
            .await?
            .and_then(|i| get_s(&i, "identity_id")))
    }

    async fn put_identity(
        &self,
        pool: &str,
        subject: &str,
        identity_id: &str,
        now: i64,
    ) -> Result<String, MetaError> {
        let mut item = identity_key(pool, subject);
        item.insert("identity_id".into(), s(identity_id));
        item.insert("created_at".into(), n(now));
        if self.put_if(item, "attribute_not_exists(pk)").await? {
            return Ok(identity_id.to_string());
        }
        // First write wins: every instance then uses the same id.
        self.get_identity(pool, subject)
            .await?
            .ok_or_else(|| MetaError::Db("identity vanished".into()))
    }

    async fn check(&self) -> Result<(), MetaError> {
        // A read of one (absent) item: needs only GetItem on the table.
        self.get_item(key("CHECK".into(), "C")).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url(
                "dynamodb://imgorigin-meta?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A5000&create=true"
            ),
            Ok(Target {
                table: "imgorigin-meta".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:5000".into()),
                create: true,
            })
        );
        assert_eq!(parse_url("dynamodb://t1x").unwrap().region, None);
        assert!(parse_url("dynamodb://a").is_err());
        assert!(parse_url("dynamodb://table?colour=red").is_err());
        assert!(parse_url("dynamodb://table?create=maybe").is_err());
    }

    #[test]
    fn order_sorts_like_time_then_id() {
        let mut v = vec![
            order(5, "b"),
            order(-3, "z"),
            order(5, "a"),
            order(1_795_806_318_123_456, "a"),
            order(0, "a"),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                order(-3, "z"),
                order(0, "a"),
                order(5, "a"),
                order(5, "b"),
                order(1_795_806_318_123_456, "a"),
            ]
        );
        assert!(order(5, "") < order(5, "a"));
    }

    #[test]
    fn record_items_round_trip() {
        let r = ImageRecord {
            id: "id1".into(),
            key: "private/alice/id1.png".into(),
            level: Level::Private,
            owner: Some("alice".into()),
            filename: Some("a.png".into()),
            content_type: "image/png".into(),
            bytes: 10,
            width: 2,
            height: 3,
            sha256: "00".into(),
            tags: vec!["b".into(), "a".into()],
            description: None,
            state: RecordState::Pending,
            created_at: 5,
            updated_at: 6,
            facts: None,
            moderation: None,
            rejected_reason: None,
        };
        assert_eq!(item_record(&record_item(&r)).unwrap(), r);
        let refused = ImageRecord {
            state: RecordState::Rejected,
            moderation: Some(Moderation::Flagged),
            rejected_reason: Some("not an image".into()),
            ..r
        };
        let item = record_item(&refused);
        assert_eq!(item_record(&item).unwrap(), refused);
        assert_eq!(get_s(&item, "g1pk").as_deref(), Some(REJECTED));
    }
}

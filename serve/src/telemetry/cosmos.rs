//! Azure Cosmos DB: documents upserted into one container partitioned by
//! `/model` (upsert, so that a retried write never makes two documents),
//! up to 100 of one model in one transactional batch (one request instead
//! of a hundred: the SDK's per-request work dwarfs a document's); the
//! database and container are created when missing.
//!
//! Writes go through the driver under the SDK (`azure_data_cosmos_driver`,
//! the same crate and version the SDK runs on), handed a batch body this
//! module joins from the encoded documents: the SDK's `TransactionalBatch`
//! turns every document into a `serde_json::Value` first, which cost more
//! than the rest of the write.
//!
//! The SDK's own retries of 429 are switched off: the writer retries with
//! the server's retry-after, counts each retry and stops at the shutdown
//! deadline, where the SDK would wait up to 270 s.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{
    ContainerProperties, ContainerReference, PartitionKey, PartitionKeyDefinition,
};
use azure_data_cosmos::options::{
    OperationOptions, OperationOptionsBuilder, Region, ThrottlingRetryOptionsBuilder,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, FeedScope, Query, RoutingStrategy,
};
use azure_data_cosmos_driver::models::{
    AccountReference as DriverAccount, CosmosOperation, CosmosResponse, DatabaseReference,
};
use azure_data_cosmos_driver::options::DriverOptions;
use azure_data_cosmos_driver::{CosmosDriver, CosmosDriverRuntime};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::sink::SinkFuture;
use super::{Document, EncodedDocument, Sink, SinkError, TelemetryError};

/// A batch operation not done because another one failed.
const FAILED_DEPENDENCY: u16 = 424;

/// The partition key path: one logical partition per model.
const PARTITION_KEY: &str = "/model";

/// The query `serve report` runs, once per model (one partition each).
const REPORT_QUERY: &str = "SELECT * FROM c WHERE c.model = @model";

/// Operations in one transactional batch at most (the service's limit).
const MAX_BATCH: usize = 100;

/// A batch body at most (the service's 2 MB request limit, less room for
/// the envelope): a larger one is written in halves.
const MAX_BATCH_BYTES: usize = 2_000_000;

/// A write that takes longer than this is abandoned and retried (a server
/// that stopped answering holds the connection open).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the account is and how to sign in.
#[derive(Clone)]
pub struct CosmosSettings {
    /// `https://ACCOUNT.documents.azure.com:443/`.
    pub endpoint: String,
    /// The account's primary or secondary key.
    pub key: String,
    pub database: String,
    pub container: String,
    /// Regions in order of preference (none: the account's own order).
    pub regions: Vec<String>,
}

/// Never prints the key.
impl fmt::Debug for CosmosSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosmosSettings")
            .field("endpoint", &self.endpoint)
            .field("key", &"<redacted>")
            .field("database", &self.database)
            .field("container", &self.container)
            .field("regions", &self.regions)
            .finish()
    }
}

/// Writes documents to a Cosmos DB container, connecting on first use (and
/// again after the container went missing, e.g. a restarted emulator).
pub struct CosmosSink {
    settings: CosmosSettings,
    connection: Mutex<Option<Connection>>,
    /// Why the account refused us for good (a wrong key): not asked again.
    refused: OnceLock<String>,
}

/// A driver for the account and the container's resolved reference.
#[derive(Clone)]
struct Connection {
    driver: Arc<CosmosDriver>,
    container: ContainerReference,
}

impl CosmosSink {
    pub fn new(settings: CosmosSettings) -> CosmosSink {
        CosmosSink {
            settings,
            connection: Mutex::new(None),
            refused: OnceLock::new(),
        }
    }

    async fn connection(&self) -> Result<Connection, SinkError> {
        if let Some(reason) = self.refused.get() {
            return Err(SinkError::Permanent(reason.clone()));
        }
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        match connect(&self.settings).await.map_err(|e| classify(&e)) {
            Ok(connection) => {
                *slot = Some(connection.clone());
                Ok(connection)
            }
            Err(SinkError::Permanent(reason)) => Err(SinkError::Permanent(
                self.refused.get_or_init(|| reason).clone(),
            )),
            Err(retryable) => Err(retryable),
        }
    }
}

impl Sink for CosmosSink {
    fn connect(&self) -> SinkFuture<'_> {
        Box::pin(async { self.connection().await.map(drop) })
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn write<'a>(&'a self, documents: &'a [EncodedDocument]) -> SinkFuture<'a> {
        Box::pin(async move {
            let Some(first) = documents.first() else {
                return Ok(());
            };
            // Upserts: a part written before another failed is written
            // again harmlessly when the whole is retried.
            for batch in batch_bodies(documents, MAX_BATCH_BYTES) {
                self.write_batch(&first.model, batch).await?;
            }
            Ok(())
        })
    }
}

impl CosmosSink {
    /// One transactional batch of `model`'s partition.
    async fn write_batch(&self, model: &str, batch: BatchBody) -> Result<(), SinkError> {
        let Connection { driver, container } = self.connection().await?;
        let operation = CosmosOperation::batch(container, PartitionKey::from(model.to_string()))
            .with_body(batch.json);
        let write = driver.execute_singleton_operation(operation, OperationOptions::default());
        let error = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(response)) => return batch_outcome(response, batch.operations),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(SinkError::Retryable {
                    reason: format!("no answer within {WRITE_TIMEOUT:?}"),
                    after: None,
                })
            }
        };
        if error.status().is_not_found() {
            // Upserts do not miss documents: the container (or the
            // database) is gone. Create it again on the next attempt.
            *self.connection.lock().await = None;
        }
        Err(classify(&error))
    }
}

/// What opens each operation of a transactional batch's body; the
/// document follows, then `}`.
const UPSERT: &[u8] = br#"{"operationType":"Upsert","resourceBody":"#;

/// A transactional batch's body: a JSON array of upserts.
#[derive(Default)]
struct BatchBody {
    json: Vec<u8>,
    operations: usize,
}

/// The bodies of the batches `documents` go in, in order: as few as keep
/// each within `max_bytes` (a single document larger than that goes alone,
/// for the service to refuse). Each is allocated at its final size: growing
/// it copied a batch's worth of documents again.
fn batch_bodies(documents: &[EncodedDocument], max_bytes: usize) -> Vec<BatchBody> {
    let operation_size = |document: &EncodedDocument| UPSERT.len() + document.json.len() + 2;
    let mut left: usize = documents.iter().map(operation_size).sum();
    let mut bodies = Vec::new();
    let mut body = BatchBody::default();
    for document in documents {
        let operation = operation_size(document);
        if body.operations > 0 && body.json.len() + operation + 1 > max_bytes {
            body.json.push(b']');
            bodies.push(std::mem::take(&mut body));
        }
        if body.operations == 0 {
            body.json.reserve_exact(left.min(max_bytes) + 1);
        }
        body.json
            .push(if body.operations == 0 { b'[' } else { b',' });
        body.json.extend_from_slice(UPSERT);
        body.json.extend_from_slice(&document.json);
        body.json.push(b'}');
        body.operations += 1;
        left -= operation;
    }
    if body.operations > 0 {
        body.json.push(b']');
        bodies.push(body);
    }
    bodies
}

/// An operation's outcome in a batch response; the rest of it (the
/// document again, unless the service honoured `Prefer: return=minimal`)
/// is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationResult {
    status_code: u16,
    #[serde(default)]
    retry_after_milliseconds: Option<u64>,
}

/// A batch of `operations` the service answered: every operation done, or
/// why not (an atomic batch fails whole; the operation at fault says why).
fn batch_outcome(response: CosmosResponse, operations: usize) -> Result<(), SinkError> {
    let body = response.into_body().single().map_err(unreadable)?;
    batch_results(&body, operations)
}

/// A batch response that does not say what became of the batch: retried.
fn unreadable(reason: impl std::fmt::Display) -> SinkError {
    SinkError::Retryable {
        reason: format!("unreadable batch response: {reason}"),
        after: None,
    }
}

/// [`batch_outcome`] from the response's body.
fn batch_results(body: &[u8], operations: usize) -> Result<(), SinkError> {
    if all_succeeded(body, operations) {
        return Ok(());
    }
    let results: Vec<OperationResult> = serde_json::from_slice(body).map_err(unreadable)?;
    let Some(failed) = results
        .iter()
        .find(|r| !(200..300).contains(&r.status_code) && r.status_code != FAILED_DEPENDENCY)
    else {
        return match results.len() == operations {
            true => Ok(()),
            false => Err(unreadable(format!(
                "{} results for {operations} operations",
                results.len()
            ))),
        };
    };
    let status = failed.status_code;
    let reason = format!("a batch operation failed with {status}");
    match status {
        408 | 429 | 449 | 503 => Err(SinkError::Retryable {
            reason,
            after: failed.retry_after_milliseconds.map(Duration::from_millis),
        }),
        _ => Err(SinkError::Permanent(reason)),
    }
}

/// Whether a batch response says, at a glance, that each of `operations`
/// succeeded: a JSON array with that many `"statusCode":2xx` and no other
/// status. The usual answer, read without parsing (parsing it cost a sixth
/// of the writer's work); anything else is parsed.
fn all_succeeded(body: &[u8], operations: usize) -> bool {
    const STATUS: &[u8] = br#""statusCode":"#;
    let json = body.trim_ascii();
    if !(json.starts_with(b"[") && json.ends_with(b"]")) {
        return false;
    }
    let mut succeeded = 0;
    for at in memchr::memmem::find_iter(json, STATUS) {
        match json[at + STATUS.len()..].trim_ascii_start() {
            [b'2', b'0'..=b'9', b'0'..=b'9', after, ..] if !after.is_ascii_digit() => {
                succeeded += 1
            }
            _ => return false,
        }
    }
    succeeded == operations
}

/// No retries of 429 inside the SDK or driver: the writer retries, counts
/// and honours the shutdown deadline.
fn no_throttle_retries() -> OperationOptions {
    OperationOptionsBuilder::new()
        .with_throttling_retry_options(
            ThrottlingRetryOptionsBuilder::new()
                .with_max_retry_count(0)
                .build(),
        )
        .build()
}

fn regions(settings: &CosmosSettings) -> Vec<Region> {
    settings
        .regions
        .iter()
        .map(|r| Region::from(r.clone()))
        .collect()
}

/// A driver for the account (reading it: a wrong key or endpoint fails
/// here) with the database and container created when missing.
async fn connect(settings: &CosmosSettings) -> Result<Connection, CosmosError> {
    let endpoint: AccountEndpoint = settings.endpoint.parse()?;
    let account = DriverAccount::with_account_key(endpoint.into_url(), settings.key.clone());
    let options = DriverOptions::builder(account.clone())
        .with_preferred_regions(regions(settings))
        .with_operation_options(no_throttle_retries())
        .build();
    let driver = CosmosDriverRuntime::builder()
        .build()
        .await?
        .create_driver(options)
        .await?;
    let database = serde_json::to_vec(&serde_json::json!({ "id": settings.database }))?;
    let database_operation = CosmosOperation::create_database(account.clone()).with_body(database);
    create_if_missing(&driver, database_operation).await?;
    let container = serde_json::to_vec(&ContainerProperties::new(
        settings.container.clone(),
        PartitionKeyDefinition::from(PARTITION_KEY),
    ))?;
    let database = DatabaseReference::from_name(account, settings.database.clone());
    create_if_missing(
        &driver,
        CosmosOperation::create_container(database).with_body(container),
    )
    .await?;
    let container = driver
        .resolve_container(
            &settings.database,
            &settings.container,
            OperationOptions::default(),
        )
        .await?;
    Ok(Connection { driver, container })
}

async fn create_if_missing(
    driver: &CosmosDriver,
    operation: CosmosOperation,
) -> Result<(), CosmosError> {
    ignore_conflict(
        driver
            .execute_singleton_operation(operation, OperationOptions::default())
            .await,
    )
}

/// The SDK's client for `settings`' container (queries), which must exist.
async fn open(settings: &CosmosSettings) -> Result<ContainerClient, CosmosError> {
    let endpoint: AccountEndpoint = settings.endpoint.parse()?;
    let account = AccountReference::with_authentication_key(endpoint, settings.key.clone());
    let client = CosmosClient::builder()
        .with_default_operation_options(no_throttle_retries())
        .build(
            account,
            RoutingStrategy::PreferredRegions(regions(settings)),
        )
        .await?;
    client
        .database_client(&settings.database)
        .container_client(&settings.container, None)
        .await
}

/// A 409 on create means it exists: what was wanted.
fn ignore_conflict<T>(outcome: Result<T, CosmosError>) -> Result<(), CosmosError> {
    match outcome {
        Err(e) if !e.status().is_conflict() => Err(e),
        _ => Ok(()),
    }
}

/// Whether trying again may help, and after how long the server asked.
fn classify(error: &CosmosError) -> SinkError {
    let status = error.status();
    let code = u16::from(status.status_code());
    let retryable = status.is_transient() || status.is_not_found() || code >= 500;
    if status.is_unauthorized() || status.is_forbidden() || !retryable {
        return SinkError::Permanent(error.to_string());
    }
    SinkError::Retryable {
        reason: error.to_string(),
        after: error
            .response()
            .and_then(|r| r.headers().retry_after_ms)
            .map(Duration::from_millis),
    }
}

/// Every document of `model`'s partition ([`REPORT_QUERY`]).
pub async fn query_model(
    settings: &CosmosSettings,
    model: &str,
) -> Result<Vec<Document>, TelemetryError> {
    let cosmos = |e: CosmosError| TelemetryError::Cosmos(e.to_string());
    let container = open(settings).await.map_err(cosmos)?;
    let query = Query::from(REPORT_QUERY)
        .with_parameter("@model", model)
        .map_err(cosmos)?;
    let items = container
        .query_items::<Document>(query, FeedScope::partition(model.to_string()), None)
        .await
        .map_err(cosmos)?;
    match items.try_collect().await {
        Ok(documents) => Ok(documents),
        // A container nobody wrote to yet has no documents of this model.
        Err(e) if e.status().is_not_found() => Ok(Vec::new()),
        Err(e) => Err(cosmos(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(id: usize) -> EncodedDocument {
        let json = serde_json::to_vec(&serde_json::json!({
            "id": format!("doc-{id}"), "request_id": null, "model": "iris", "version": "1",
            "model_sha256": "00", "source": "rest", "timestamp": "2026-01-01T00:00:00.000000Z",
            "latency_ms": 0.5, "row": 0, "label": "setosa", "probabilities": {"setosa": 1.0},
            "outcome": "ok", "error": null, "trace_id": null, "lineage": {}
        }))
        .unwrap();
        EncodedDocument {
            model: "iris".into(),
            json,
        }
    }

    /// The documents a body upserts, checking each operation's shape.
    fn upserted(body: &[u8]) -> Vec<Document> {
        let operations: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        operations
            .into_iter()
            .map(|operation| {
                assert_eq!(operation["operationType"], "Upsert");
                serde_json::from_value(operation["resourceBody"].clone()).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_batch_upserts_every_document_and_one_too_large_is_split_in_order() {
        let encoded: Vec<EncodedDocument> = (0..10).map(document).collect();
        let documents: Vec<Document> = encoded.iter().map(|d| d.decode().unwrap()).collect();
        let whole = batch_bodies(&encoded, MAX_BATCH_BYTES);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].operations, 10);
        assert_eq!(whole[0].json.len(), whole[0].json.capacity(), "sized once");
        assert_eq!(upserted(&whole[0].json), documents);

        // Room for three documents a body: every body fits, and the bodies
        // together upsert every document once, in order.
        let three = batch_bodies(&encoded[..3], MAX_BATCH_BYTES)[0].json.len();
        let bodies = batch_bodies(&encoded, three);
        assert_eq!(bodies.len(), 4);
        assert!(bodies.iter().all(|body| body.json.len() <= three));
        let operations: Vec<usize> = bodies.iter().map(|body| body.operations).collect();
        assert_eq!(operations, [3, 3, 3, 1]);
        let written: Vec<Document> = bodies.iter().flat_map(|b| upserted(&b.json)).collect();
        assert_eq!(written, documents);

        // A single document larger than the limit still goes alone (the
        // service refuses it, and the writer counts it).
        assert_eq!(batch_bodies(&encoded[..2], 10).len(), 2);
    }

    #[test]
    fn a_batch_response_names_the_failed_operation_and_when_to_retry() {
        let ok = r#"[{"statusCode":200,"resourceBody":{"id":"a"}},{"statusCode":201}]"#;
        assert!(all_succeeded(ok.as_bytes(), 2));
        assert!(batch_results(ok.as_bytes(), 2).is_ok());
        // Whitespace where JSON allows it; a success needs every operation's.
        let spaced = "[ {\"statusCode\": 201, \"requestCharge\": 1} ]\n";
        assert!(all_succeeded(spaced.as_bytes(), 1));
        assert!(!all_succeeded(ok.as_bytes(), 3));
        assert!(matches!(
            batch_results(ok.as_bytes(), 3),
            Err(SinkError::Retryable { reason, .. }) if reason.contains("2 results for 3")
        ));
        let throttled = r#"[{"statusCode":424},{"statusCode":429,"retryAfterMilliseconds":30}]"#;
        assert!(!all_succeeded(throttled.as_bytes(), 2));
        match batch_results(throttled.as_bytes(), 2) {
            Err(SinkError::Retryable { reason, after }) => {
                assert!(reason.contains("429"), "{reason}");
                assert_eq!(after, Some(Duration::from_millis(30)));
            }
            other => panic!("{other:?}"),
        }
        let refused = r#"[{"statusCode":400},{"statusCode":424}]"#;
        assert!(matches!(
            batch_results(refused.as_bytes(), 2),
            Err(SinkError::Permanent(reason)) if reason.contains("400")
        ));
        // 2000 is not a status; a truncated array is not an answer.
        assert!(!all_succeeded(br#"[{"statusCode":2000}]"#, 1));
        assert!(!all_succeeded(
            br#"[{"statusCode":200},{"statusCode":200"#,
            2
        ));
        assert!(matches!(
            batch_results(b"<html>", 1),
            Err(SinkError::Retryable { .. })
        ));
    }
}

//! Azure Cosmos DB: documents upserted into one container partitioned by
//! `/model` (upsert, so that a retried write never makes two documents),
//! up to 100 of one model in one transactional batch (one request instead
//! of a hundred: the SDK's per-request work dwarfs a document's); the
//! database and container are created when missing.
//!
//! The SDK's own retries of 429 are switched off: the writer retries with
//! the server's retry-after, counts each retry and stops at the shutdown
//! deadline, where the SDK would wait up to 270 s.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{BatchResponse, ContainerProperties, PartitionKeyDefinition};
use azure_data_cosmos::options::{OperationOptionsBuilder, Region, ThrottlingRetryOptionsBuilder};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, FeedScope, Query,
    RoutingStrategy, TransactionalBatch,
};
use futures_util::TryStreamExt;
use tokio::sync::Mutex;

use super::sink::SinkFuture;
use super::{Document, Sink, SinkError, TelemetryError};

/// A batch operation not done because another one failed.
const FAILED_DEPENDENCY: u16 = 424;

/// The partition key path: one logical partition per model.
const PARTITION_KEY: &str = "/model";

/// The query `serve report` runs, once per model (one partition each).
const REPORT_QUERY: &str = "SELECT * FROM c WHERE c.model = @model";

/// Operations in one transactional batch at most (the service's limit; its
/// 2 MB payload limit leaves ~20 kB per document).
const MAX_BATCH: usize = 100;

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
    container: Mutex<Option<ContainerClient>>,
    /// Why the account refused us for good (a wrong key): not asked again.
    refused: OnceLock<String>,
}

impl CosmosSink {
    pub fn new(settings: CosmosSettings) -> CosmosSink {
        CosmosSink {
            settings,
            container: Mutex::new(None),
            refused: OnceLock::new(),
        }
    }

    async fn container(&self) -> Result<ContainerClient, SinkError> {
        if let Some(reason) = self.refused.get() {
            return Err(SinkError::Permanent(reason.clone()));
        }
        let mut slot = self.container.lock().await;
        if let Some(container) = &*slot {
            return Ok(container.clone());
        }
        match open(&self.settings, true).await.map_err(|e| classify(&e)) {
            Ok(container) => {
                *slot = Some(container.clone());
                Ok(container)
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
        Box::pin(async { self.container().await.map(drop) })
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn write<'a>(&'a self, documents: &'a [Document]) -> SinkFuture<'a> {
        Box::pin(async move {
            let Some(first) = documents.first() else {
                return Ok(());
            };
            let mut batch = TransactionalBatch::new(first.model.clone());
            for document in documents {
                batch = batch
                    .upsert_item(document, None)
                    .map_err(|e| SinkError::Permanent(e.to_string()))?;
            }
            let container = self.container().await?;
            let write = container.execute_transactional_batch(batch, None);
            let error = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(response)) => return batch_outcome(response),
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
                *self.container.lock().await = None;
            }
            Err(classify(&error))
        })
    }
}

/// A batch the service answered: every operation done, or why not (an
/// atomic batch fails whole; the operation at fault says why).
fn batch_outcome(response: BatchResponse) -> Result<(), SinkError> {
    let results = response.into_model().map_err(|e| SinkError::Retryable {
        reason: format!("unreadable batch response: {e}"),
        after: None,
    })?;
    let Some(failed) = results
        .results()
        .iter()
        .find(|r| !r.is_success() && r.status_code() != FAILED_DEPENDENCY)
    else {
        return Ok(());
    };
    let status = failed.status_code();
    let reason = format!("a batch operation failed with {status}");
    match status {
        408 | 429 | 449 | 503 => Err(SinkError::Retryable {
            reason,
            after: failed.retry_after(),
        }),
        _ => Err(SinkError::Permanent(reason)),
    }
}

/// A client for `settings`' container; with `create`, the database and
/// container are created when missing.
async fn open(settings: &CosmosSettings, create: bool) -> Result<ContainerClient, CosmosError> {
    let endpoint: AccountEndpoint = settings.endpoint.parse()?;
    let account = AccountReference::with_authentication_key(endpoint, settings.key.clone());
    let no_throttle_retries = OperationOptionsBuilder::new()
        .with_throttling_retry_options(
            ThrottlingRetryOptionsBuilder::new()
                .with_max_retry_count(0)
                .build(),
        )
        .build();
    let regions = settings
        .regions
        .iter()
        .map(|r| Region::from(r.clone()))
        .collect();
    // `build` reads the account: a wrong key or endpoint fails here.
    let client = CosmosClient::builder()
        .with_default_operation_options(no_throttle_retries)
        .build(account, RoutingStrategy::PreferredRegions(regions))
        .await?;
    if create {
        ignore_conflict(client.create_database(&settings.database, None).await)?;
    }
    let database = client.database_client(&settings.database);
    if create {
        let properties = ContainerProperties::new(
            settings.container.clone(),
            PartitionKeyDefinition::from(PARTITION_KEY),
        );
        ignore_conflict(database.create_container(properties, None).await)?;
    }
    database.container_client(&settings.container, None).await
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
    let container = open(settings, false).await.map_err(cosmos)?;
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

//! The one error type every transport maps to its wire format.
//!
//! HTTP maps it to status codes in `http::error`; later transports (Kafka dead
//! letters) map the same variants, so a client mistake is classified once.

use thiserror::Error;

/// Why a request could not be served.
#[derive(Debug, Clone, Error)]
pub enum ServeError {
    /// The request is malformed or does not fit the model's signature.
    #[error("{0}")]
    InvalidInput(String),
    #[error("model `{0}` not found")]
    ModelNotFound(String),
    #[error("model `{model}` has no version `{version}`")]
    VersionNotFound { model: String, version: String },
    #[error("model `{model}` is not ready: {reason}")]
    ModelNotReady { model: String, reason: String },
    /// The model's queue is full: retry later.
    #[error("model `{model}` is overloaded ({queued_rows} rows queued); retry later")]
    Overloaded { model: String, queued_rows: usize },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The model accepted the input but the runtime failed: our fault, not the client's.
    #[error("inference failed for model `{model}`: {reason}")]
    Inference { model: String, reason: String },
}

impl ServeError {
    /// A short stable name for metrics labels and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::InvalidInput(_) => "invalid_input",
            ServeError::ModelNotFound(_) => "model_not_found",
            ServeError::VersionNotFound { .. } => "version_not_found",
            ServeError::ModelNotReady { .. } => "model_not_ready",
            ServeError::PayloadTooLarge { .. } => "payload_too_large",
            ServeError::Overloaded { .. } => "overloaded",
            ServeError::Inference { .. } => "inference_failed",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ServeError::InvalidInput(message.into())
    }
}

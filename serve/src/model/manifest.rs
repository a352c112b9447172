//! `models/<name>/model.toml`: what the ONNX file cannot say about a model.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::signature::ClassLabels;
use super::LoadError;

/// The parsed `model.toml`. Every field is optional: a bare ONNX file serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub description: Option<String>,
    /// Class labels in probability-column order; overrides the graph's own.
    pub labels: Option<ClassLabels>,
    /// Features per row, for graphs whose input leaves the width unnamed.
    pub features: Option<usize>,
    #[serde(default)]
    pub acceptance: Acceptance,
    /// Where the model came from: training script, data hashes, framework.
    #[serde(default)]
    pub lineage: BTreeMap<String, String>,
    /// Quality measured on the held-back set when the model was trained.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Dynamic batching settings; unset fields take the server's defaults.
    #[serde(default)]
    pub batching: BatchingOverrides,
}

/// `[batching]` in `model.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingOverrides {
    pub max_batch_rows: Option<usize>,
    pub max_queue_delay_us: Option<u64>,
    pub max_queue_rows: Option<usize>,
    pub instances: Option<usize>,
}

/// The gate a model must pass before it ships.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acceptance {
    pub min_accuracy: Option<f64>,
    /// Macro-averaged F1 the model must reach (`deployer test` falls back to
    /// `min_accuracy` when unset).
    pub min_macro_f1: Option<f64>,
}

impl Manifest {
    /// Reads `path` if it exists; a missing file is an empty manifest.
    pub fn read_optional(path: &Path) -> Result<Manifest, LoadError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| LoadError::Manifest {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(LoadError::Manifest {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

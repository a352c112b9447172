//! The production record, `models/<name>/production.toml`: what the model
//! in production measured on the held-back set when it shipped. The gate
//! compares candidates with it; a missing file means a first release.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{shown, GateError, GateReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionRecord {
    pub version: u64,
    pub model_sha256: String,
    pub accuracy: f64,
    pub macro_f1: f64,
}

const HEADER: &str =
    "# Written by `deployer test --record-production` when this version shipped.\n\
                      # The release gate compares candidates with these numbers.\n";

impl ProductionRecord {
    pub fn of(report: &GateReport) -> ProductionRecord {
        ProductionRecord {
            version: report.version,
            model_sha256: report.sha256.clone(),
            accuracy: report.scores.accuracy,
            macro_f1: report.scores.macro_f1,
        }
    }

    pub fn read_optional(path: &Path) -> Result<Option<ProductionRecord>, GateError> {
        let error = |reason: String| GateError::Record {
            path: shown(path),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e.to_string())),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), GateError> {
        let error = |reason: String| GateError::Record {
            path: shown(path),
            reason,
        };
        let text = toml::to_string(self).map_err(|e| error(e.to_string()))?;
        std::fs::write(path, format!("{HEADER}{text}")).map_err(|e| error(e.to_string()))
    }
}

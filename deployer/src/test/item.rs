//! Item tier: the model loads in the serving library and agrees with its
//! held-back test set (features, class labels, test data hash), and its
//! probability rows are probabilities.

use std::collections::BTreeSet;
use std::sync::Arc;

use serve::model::{FeatureMatrix, LoadedModel, TestSet};
use sha2::{Digest, Sha256};

use super::GateError;
use crate::model_dir::{ModelDir, ModelDirError};

/// A model that passed the item tier, with its test set.
pub struct Item {
    pub model: Arc<LoadedModel>,
    pub test_set: TestSet,
    /// Per test row, the index of the true class among the model's labels.
    pub truth: Vec<usize>,
    /// The model's class labels as text, in probability-column order.
    pub labels: Vec<String>,
}

fn fail(reason: impl Into<String>) -> GateError {
    GateError::Item(reason.into())
}

pub fn check(dir: &ModelDir) -> Result<Item, GateError> {
    let model = dir.load_latest().map_err(|e| match e {
        ModelDirError::Load { .. } | ModelDirError::NoVersions(_) => fail(e.to_string()),
        other => GateError::Model(other),
    })?;
    let signature = &model.signature;
    println!(
        "  loads: version {}, sha256 {}, {} ms",
        model.version,
        model.sha256,
        model.load_time.as_millis()
    );
    let labels: Vec<String> = (0..signature.classes())
        .map(|ix| signature.labels.text(ix))
        .collect();
    println!(
        "  signature: input `{}` {} [-1, {}], {} classes {:?}",
        signature.input_name,
        signature.input_type.v2_name(),
        signature.features,
        labels.len(),
        labels
    );
    if labels.len() < 2 {
        return Err(fail(format!(
            "a classifier needs 2 classes, it has {}",
            labels.len()
        )));
    }
    if labels.iter().collect::<BTreeSet<_>>().len() != labels.len() {
        return Err(fail(format!("class labels repeat: {labels:?}")));
    }

    let path = dir.test_set();
    let test_set = TestSet::read(&path).map_err(|e| fail(format!("held-back test set: {e}")))?;
    if let Some(expected) = dir.manifest.lineage.get("test_data_sha256") {
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let actual = format!("{:x}", Sha256::digest(&bytes));
        if &actual != expected {
            return Err(fail(format!(
                "test.csv has sha256 {actual}, model.toml's lineage says {expected}: \
                 the held-back set changed since training"
            )));
        }
    }
    if test_set.features() != signature.features {
        return Err(fail(format!(
            "test.csv has {} feature columns, the model's input takes {}",
            test_set.features(),
            signature.features
        )));
    }
    let mut unknown = BTreeSet::new();
    let truth: Vec<usize> = test_set
        .labels
        .iter()
        .filter_map(|label| {
            let ix = labels.iter().position(|l| l == label);
            if ix.is_none() {
                unknown.insert(label.as_str());
            }
            ix
        })
        .collect();
    if !unknown.is_empty() {
        return Err(fail(format!(
            "test.csv labels {unknown:?} are not among the model's classes {labels:?}"
        )));
    }
    println!(
        "  test set: {} rows x {} features, labels within the classes",
        test_set.rows.len(),
        test_set.features()
    );

    // One row through the model: one probability per class, summing to 1.
    let first = FeatureMatrix::from_values(signature, &test_set.rows[0], "test.csv row 1")
        .map_err(|e| fail(e.to_string()))?;
    let predictions = model.predict(first).map_err(|e| fail(e.to_string()))?;
    let row = predictions.row(0);
    let sum: f32 = row.iter().sum();
    if row.len() != labels.len()
        || row.iter().any(|p| !(0.0..=1.0).contains(p))
        || (sum - 1.0).abs() > 1e-3
    {
        return Err(fail(format!(
            "the probability row {row:?} is not {} probabilities summing to 1",
            labels.len()
        )));
    }
    println!(
        "  probabilities: {} columns, summing to {sum:.6}",
        row.len()
    );
    Ok(Item {
        model,
        test_set,
        truth,
        labels,
    })
}

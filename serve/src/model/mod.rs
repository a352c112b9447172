//! Models: ONNX loading with tract, graph fixes, signatures, classifier
//! decoding and the repository of named, versioned models.
//!
//! Nothing here knows about HTTP or any other transport: callers hand in a
//! [`FeatureMatrix`] and get [`Predictions`] or a [`crate::ServeError`] back.

mod classifier;
mod dense_fusion;
mod distance_scan;
mod graph;
mod input;
mod loader;
mod manifest;
mod ops;
mod repository;
mod rewrite;
mod signature;
mod test_set;
mod top_k;

pub use classifier::Predictions;
pub use input::FeatureMatrix;
pub use loader::{LoadError, LoadedModel};
pub use manifest::{Acceptance, BatchingOverrides, Manifest};
pub use repository::{ModelEntry, ModelRepository, ModelSource, VersionState};
pub use signature::{ClassLabels, ElementType, Signature};
pub use test_set::TestSet;

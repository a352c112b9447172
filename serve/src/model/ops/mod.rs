//! Native ai.onnx.ml operators, registered into tract's ONNX op register.
//!
//! tract lacks several ops that common classifier exports use, computes wrong
//! labels or refuses some attribute forms, and scans tree leaves linearly. Each
//! op family here is computed natively and, where tract has its own version,
//! replaces it. Semantics follow the ONNX-ML spec as onnxruntime implements it,
//! since that is what exporters test against.

mod attributes;
mod dense;
mod distances;
mod encoders;
mod kernel;
mod labels;
mod linear;
mod post_transform;
mod preprocess;
mod svm;
mod top_k;
mod tree_ensemble;

use tract_onnx::model::OnnxOpRegister;

/// Adds (or replaces) every native op in `register`.
pub fn register(register: &mut OnnxOpRegister) {
    tree_ensemble::register(register);
    linear::register(register);
    preprocess::register(register);
    encoders::register(register);
    svm::register(register);
    distances::register(register);
    top_k::register(register);
    dense::register(register);
}

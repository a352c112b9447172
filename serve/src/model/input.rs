//! The domain's request: a `[rows, features]` matrix in the model's element
//! type, built from whatever numbers a transport parsed.

use tract_onnx::prelude::*;

use super::signature::{ElementType, Signature};
use crate::ServeError;

/// Rows of features, validated against a model's signature.
#[derive(Debug)]
pub struct FeatureMatrix {
    rows: usize,
    tensor: Tensor,
}

impl FeatureMatrix {
    /// Converts row-major `values` to the model's input type. `what` names
    /// the input in error messages (e.g. "input `X`").
    ///
    /// Rejects a wrong element count, non-integers for integer inputs and
    /// values that are not finite in the model's type.
    pub fn from_values(
        signature: &Signature,
        values: &[f64],
        what: &str,
    ) -> Result<FeatureMatrix, ServeError> {
        let features = signature.features;
        if values.is_empty() {
            return Err(ServeError::invalid(format!("{what} has no rows")));
        }
        if !values.len().is_multiple_of(features) {
            return Err(ServeError::invalid(format!(
                "{what}: {} values do not make whole rows of {features} features",
                values.len()
            )));
        }
        let rows = values.len() / features;
        let shape = [rows, features];
        let bad = |ix: usize, why: &str| {
            ServeError::invalid(format!(
                "{what}: value {} at row {}, feature {} {why}",
                values[ix],
                ix / features,
                ix % features
            ))
        };
        let tensor = match signature.input_type {
            ElementType::F32 => {
                // Straight into the tensor (an array would be copied into
                // one); convert first, check after: both loops vectorize.
                let mut tensor = Tensor::zero::<f32>(&shape)
                    .map_err(|e| ServeError::invalid(format!("{what}: {e}")))?;
                let mut view = tensor
                    .to_plain_array_view_mut::<f32>()
                    .expect("a fresh f32 tensor");
                let out = view.as_slice_mut().expect("fresh tensors are contiguous");
                for (o, &v) in out.iter_mut().zip(values) {
                    *o = v as f32;
                }
                if !out.iter().all(|x| x.is_finite()) {
                    let ix = out
                        .iter()
                        .position(|x| !x.is_finite())
                        .expect("one is not finite");
                    return Err(bad(ix, "is not a finite FP32 number"));
                }
                Ok(tensor)
            }
            ElementType::F64 => {
                if let Some(ix) = values.iter().position(|v| !v.is_finite()) {
                    return Err(bad(ix, "is not a finite number"));
                }
                tract_ndarray::Array2::from_shape_vec(shape, values.to_vec()).map(Tensor::from)
            }
            ElementType::I32 | ElementType::I64 => {
                let (min, max) = match signature.input_type {
                    ElementType::I32 => (i32::MIN as f64, i32::MAX as f64),
                    _ => (-(2f64.powi(63)), 2f64.powi(63)),
                };
                if let Some(ix) = values
                    .iter()
                    .position(|v| v.fract() != 0.0 || *v < min || *v >= max)
                {
                    let name = signature.input_type.v2_name();
                    return Err(bad(ix, &format!("is not an {name} integer")));
                }
                let ints: Vec<i64> = values.iter().map(|&v| v as i64).collect();
                let array = tract_ndarray::Array2::from_shape_vec(shape, ints);
                match signature.input_type {
                    ElementType::I32 => array.map(|a| Tensor::from(a.mapv(|v| v as i32))),
                    _ => array.map(Tensor::from),
                }
            }
        }
        .map_err(|e| ServeError::invalid(format!("{what}: {e}")))?;
        Ok(FeatureMatrix { rows, tensor })
    }

    /// `rows` rows of zeros, for smoke runs and benchmarks.
    pub fn zeros(signature: &Signature, rows: usize) -> Result<FeatureMatrix, ServeError> {
        let values = vec![0.0; rows * signature.features];
        FeatureMatrix::from_values(signature, &values, "zeros")
    }

    /// Stacks several requests' rows into one matrix, in order.
    pub fn concat(parts: Vec<FeatureMatrix>) -> Result<FeatureMatrix, ServeError> {
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let tensors: Vec<Tensor> = parts.into_iter().map(|p| p.tensor).collect();
        let tensor = Tensor::stack_tensors(0, &tensors)
            .map_err(|e| ServeError::invalid(format!("cannot batch requests: {e}")))?;
        Ok(FeatureMatrix { rows, tensor })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The values as `f64`, row-major (telemetry's input sampling).
    pub fn values(&self) -> Vec<f64> {
        self.tensor
            .cast_to::<f64>()
            .and_then(|t| Ok(t.to_plain_array_view::<f64>()?.iter().copied().collect()))
            .expect("numeric tensors cast to f64")
    }

    pub(super) fn into_tensor(self) -> Tensor {
        self.tensor
    }
}

//! `SmallTopK`: the k best values along the last axis and their indices, for
//! a constant, small k (built by `model::top_k` from `TopK` nodes).
//!
//! One pass per row keeps the best k seen so far in order: a newcomer enters
//! only if strictly better than the current k-th, after any equal values, so
//! ties come out in index order and values sorted, as onnxruntime returns
//! them.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{expansion, shaped_tensor, InputRank, Kernel, OutputSpec, Width};
use crate::model::top_k::SMALL_TOP_K;

pub fn register(register: &mut OnnxOpRegister) {
    register.insert(SMALL_TOP_K, small_top_k);
}

#[derive(Debug, Clone, PartialEq)]
struct SmallTopK {
    k: usize,
    largest: bool,
    /// The input's (and so the values') type, once tract knows it.
    values: DatumType,
}

fn small_top_k(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    Ok((
        expansion(SmallTopK {
            k: attrs.positive_int("k", 1)?,
            largest: attrs.int("largest").unwrap_or(1) != 0,
            values: DatumType::F32,
        }),
        vec![],
    ))
}

impl SmallTopK {
    fn select<T: Datum + PartialOrd + Copy>(&self, input: &Tensor) -> TractResult<TVec<Tensor>> {
        let mut shape = input.shape().to_vec();
        let last = shape
            .last_mut()
            .ok_or_else(|| format_err!("TopK needs an input of rank 1 or more"))?;
        if self.k > *last {
            bail!("TopK: k = {} exceeds the axis length {last}", self.k);
        }
        let width = std::mem::replace(last, self.k);
        let view = input.to_plain_array_view::<T>()?;
        let data = view
            .as_slice()
            .ok_or_else(|| format_err!("TopK input is not contiguous"))?;
        let rows = data.len() / width;
        let mut values = Vec::with_capacity(rows * self.k);
        let mut indices = Vec::with_capacity(rows * self.k);
        let mut best: Vec<(T, usize)> = Vec::with_capacity(self.k + 1);
        for row in data.chunks_exact(width) {
            best.clear();
            for (ix, &value) in row.iter().enumerate() {
                let beats = |&(other, _): &(T, usize)| {
                    if self.largest {
                        value > other
                    } else {
                        value < other
                    }
                };
                if best.len() == self.k && !beats(&best[self.k - 1]) {
                    continue;
                }
                let at = best.iter().position(beats).unwrap_or(best.len());
                best.insert(at, (value, ix));
                best.truncate(self.k);
            }
            values.extend(best.iter().map(|&(v, _)| v));
            indices.extend(best.iter().map(|&(_, ix)| ix as i64));
        }
        Ok(tvec![
            shaped_tensor(&shape, values)?,
            shaped_tensor(&shape, indices)?
        ])
    }
}

impl Kernel for SmallTopK {
    fn name(&self) -> &'static str {
        SMALL_TOP_K
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![
            OutputSpec {
                datum_type: self.values,
                width: Width::LastAxis(self.k),
            },
            OutputSpec {
                datum_type: DatumType::I64,
                width: Width::LastAxis(self.k),
            }
        ]
    }

    fn input_rank(&self) -> InputRank {
        InputRank::Any
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        match datum_type {
            DatumType::F32 | DatumType::F64 | DatumType::I64 | DatumType::I32 => Ok(SmallTopK {
                values: datum_type,
                ..self.clone()
            }),
            other => bail!("TopK over {other:?} is not supported"),
        }
    }

    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        match input.datum_type() {
            DatumType::F32 => self.select::<f32>(&input),
            DatumType::F64 => self.select::<f64>(&input),
            DatumType::I64 => self.select::<i64>(&input),
            DatumType::I32 => self.select::<i32>(&input),
            other => bail!("TopK over {other:?} is not supported"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::arr2;

    fn top_k(k: i64, largest: i64, x: &Tensor) -> TractResult<TVec<Tensor>> {
        let node = node(
            SMALL_TOP_K,
            &["X"],
            &["V", "I"],
            vec![int("k", k), int("largest", largest)],
        );
        run_node(node, &[("X", x)])
    }

    #[test]
    fn smallest_and_largest_in_order_with_ties_by_index() {
        let x: Tensor = arr2(&[[3.0f32, 1.0, 2.0, 1.0, 5.0], [0.0, 0.0, 0.0, -1.0, 9.0]]).into();
        let out = top_k(3, 0, &x).unwrap();
        assert_eq!(values::<f32>(&out[0]), [1.0, 1.0, 2.0, -1.0, 0.0, 0.0]);
        assert_eq!(values::<i64>(&out[1]), [1, 3, 2, 3, 0, 1]);
        assert_eq!(out[0].shape(), [2, 3]);
        let out = top_k(2, 1, &x).unwrap();
        assert_eq!(values::<f32>(&out[0]), [5.0, 3.0, 9.0, 0.0]);
        assert_eq!(values::<i64>(&out[1]), [4, 0, 4, 0]);
    }

    #[test]
    fn k_beyond_the_axis_is_an_error() {
        let x: Tensor = arr2(&[[3.0f32, 1.0]]).into();
        let error = format!("{:#}", top_k(3, 0, &x).unwrap_err());
        assert!(error.contains("exceeds the axis length 2"), "{error}");
    }
}

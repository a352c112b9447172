//! `FusedDistanceScan`: the distance from every input row to every one of a
//! constant set of points, `[rows, points]`. It replaces the `Scan` loop
//! skl2onnx exports for nearest-neighbour models (see
//! `model::distance_scan`, which builds the node).
//!
//! Each distance sums over the features in order in f32, as the `Scan`
//! body's `ReduceSumSquare` / `ReduceSum` does, so neighbours and their ties
//! come out as in the exported graph.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2, Ix2};
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{contiguous_row, expansion, Kernel, OutputSpec, Width};
use crate::model::distance_scan::{Metric, FUSED_OP};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert(FUSED_OP, fused_distance_scan);
}

#[derive(Debug, Clone, PartialEq)]
struct Distances {
    /// `[features, points]`: one feature of every point, contiguous, so a
    /// row's distances to all points accumulate in one vectorizable pass
    /// per feature while each distance still sums its features in order.
    by_feature: Vec<f32>,
    points: usize,
    features: usize,
    metric: Metric,
}

fn fused_distance_scan(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let metric = attrs.string("metric").unwrap_or_default();
    let metric = Metric::parse(&metric)
        .ok_or_else(|| attrs.error("metric", format!("unknown metric `{metric}`")))?;
    let points = attrs
        .tensor("points")?
        .ok_or_else(|| attrs.error("points", "is required"))?;
    let points = points.cast_to::<f32>()?;
    let points = points
        .to_plain_array_view::<f32>()?
        .into_dimensionality::<Ix2>()?;
    let (count, features) = points.dim();
    if count == 0 || features == 0 {
        return Err(attrs.error("points", "is empty"));
    }
    Ok((
        expansion(Distances {
            by_feature: points.t().iter().copied().collect(),
            points: count,
            features,
            metric,
        }),
        vec![],
    ))
}

impl Kernel for Distances {
    fn name(&self) -> &'static str {
        FUSED_OP
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: f32::datum_type(),
            width: Width::Columns(self.points),
        }]
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.features)
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let mut out = Array2::<f32>::zeros((input.nrows(), self.points));
        let mut row_buf = Vec::new();
        for (row, mut distances) in input.rows().into_iter().zip(out.rows_mut()) {
            let row = contiguous_row(row, &mut row_buf);
            let distances = distances
                .as_slice_mut()
                .expect("fresh arrays are contiguous");
            let columns = self.by_feature.chunks_exact(self.points);
            for (&x, column) in row.iter().zip(columns) {
                match self.metric {
                    Metric::SquaredEuclidean => accumulate(distances, column, |p| {
                        let d = x - p;
                        d * d
                    }),
                    Metric::CityBlock => accumulate(distances, column, |p| (x - p).abs()),
                }
            }
        }
        Ok(tvec![out.into()])
    }
}

/// `sums[i] += term(points[i])` for every point.
#[inline(always)]
fn accumulate(sums: &mut [f32], points: &[f32], term: impl Fn(f32) -> f32) {
    for (sum, &p) in sums.iter_mut().zip(points) {
        *sum += term(p);
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::arr2;

    fn distances(metric: &str, x: &Tensor) -> Tensor {
        let points: Tensor = arr2(&[[0.0f32, 0.0], [1.0, 2.0], [-1.0, 0.5]]).into();
        let node = node(
            FUSED_OP,
            &["X"],
            &["D"],
            vec![tensor_attr("points", &points), string("metric", metric)],
        );
        run_node(node, &[("X", x)]).unwrap().remove(0)
    }

    #[test]
    fn each_row_gets_its_distance_to_every_point() {
        let x: Tensor = arr2(&[[1.0f32, 1.0], [0.0, -2.0]]).into();
        assert_close(
            &distances("sqeuclidean", &x),
            &[2.0, 1.0, 4.25, 4.0, 17.0, 7.25],
            0.0,
        );
        assert_close(
            &distances("cityblock", &x),
            &[2.0, 1.0, 2.5, 2.0, 5.0, 3.5],
            0.0,
        );
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused() {
        let x: Tensor = arr2(&[[1.0f32, 1.0, 1.0]]).into();
        let node = node(
            FUSED_OP,
            &["X"],
            &["D"],
            vec![
                tensor_attr("points", &arr2(&[[0.0f32, 0.0]]).into()),
                string("metric", "sqeuclidean"),
            ],
        );
        let error = format!("{:#}", run_node(node, &[("X", &x)]).unwrap_err());
        assert!(error.contains("reads 2 features"), "{error}");
    }
}

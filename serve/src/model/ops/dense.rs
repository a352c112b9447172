//! `FusedDense`: one dense layer, `activation(x × W + bias)`, for every row
//! of a `[rows, K]` input. It replaces the `MatMul`/`Add`/`Relu` (or
//! `Gemm`/`Relu`) chains of exported neural nets (see
//! `model::dense_fusion`, which builds the node).
//!
//! Each output sums its products as onnxruntime's sgemm (MLAS) does: fused
//! multiply-adds in feature order from zero, per block of 1024 features,
//! then the bias added once, so scores match the exported graph's closely.
//! The bias and a Relu are applied to a tile's sums while they are still in
//! registers; Softmax, which needs whole rows, runs over each row after.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{ArrayView2, Ix2};
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{expansion, shaped_tensor, Kernel, OutputSpec, Width};
use crate::model::dense_fusion::{Activation, FUSED_OP};

/// onnxruntime's sgemm sums the features in blocks of this many (see
/// `linear::SGEMM_BLOCK`).
const SGEMM_BLOCK: usize = 1024;
/// Units computed together: two AVX2 vectors of sums.
const TILE: usize = 16;
/// Rows computed together, so that `ROWS * TILE / 8` independent chains of
/// multiply-adds keep the FMA units busy (one row's chains alone wait on
/// each other's latency), all in registers.
const ROWS: usize = 4;

pub fn register(register: &mut OnnxOpRegister) {
    register.insert(FUSED_OP, fused_dense);
}

#[derive(Debug, Clone, PartialEq)]
struct Dense {
    /// The weights of `TILE` units at a time, `[tiles, features, TILE]`
    /// (zero past the last unit): a tile's weights for one feature are one
    /// fixed-width slice, so its sums vectorize and stay in registers while
    /// each still adds its features in order. Subnormal weights are zero
    /// here (sklearn MLPs have some: those of always-blank pixels decay
    /// towards zero): a multiply-add with one waits on a microcode assist on
    /// Intel cores (a few percent of them made this kernel 35x slower), and
    /// their products, below 1e-37, are under half an ulp of any sum not
    /// itself that close to zero.
    tiles: Vec<[f32; TILE]>,
    /// The bias of each tile's units (zero without one: `sum + 0.0` is
    /// `sum`).
    bias: Vec<[f32; TILE]>,
    features: usize,
    units: usize,
    activation: Activation,
}

fn fused_dense(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let activation = attrs.string("activation").unwrap_or_default();
    let activation = Activation::parse(&activation)
        .ok_or_else(|| attrs.error("activation", format!("unknown activation `{activation}`")))?;
    let weights = attrs
        .tensor("weights")?
        .ok_or_else(|| attrs.error("weights", "is required"))?;
    if weights.datum_type() != f32::datum_type() {
        return Err(attrs.error("weights", "must be float"));
    }
    let weights = weights
        .to_plain_array_view::<f32>()?
        .into_dimensionality::<Ix2>()
        .map_err(|e| attrs.error("weights", e))?;
    let (features, units) = weights.dim();
    if features == 0 || units == 0 {
        return Err(attrs.error("weights", "is empty"));
    }
    let bias = match attrs.tensor("bias")? {
        None => vec![0.0; units],
        Some(bias) if bias.datum_type() == f32::datum_type() && bias.len() == units => {
            bias.to_plain_array_view::<f32>()?.iter().copied().collect()
        }
        Some(_) => return Err(attrs.error("bias", format!("must be {units} floats"))),
    };
    Ok((
        expansion(Dense {
            tiles: (0..units)
                .step_by(TILE)
                .flat_map(|first| {
                    weights.rows().into_iter().map(move |weights| {
                        std::array::from_fn(|j| match weights.get(first + j) {
                            Some(&w) if !w.is_subnormal() => w,
                            _ => 0.0,
                        })
                    })
                })
                .collect(),
            bias: (0..units)
                .step_by(TILE)
                .map(|first| std::array::from_fn(|j| bias.get(first + j).copied().unwrap_or(0.0)))
                .collect(),
            features,
            units,
            activation,
        }),
        vec![],
    ))
}

impl Kernel for Dense {
    fn name(&self) -> &'static str {
        FUSED_OP
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: f32::datum_type(),
            width: Width::Columns(self.units),
        }]
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.features)
    }

    /// The `MatMul` or `Gemm` this replaces multiplies floats with floats;
    /// any other input type would not have been a valid graph.
    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        if datum_type != f32::datum_type() {
            bail!("{FUSED_OP} reads f32 rows, not {datum_type:?}");
        }
        Ok(self.clone())
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let (features, units) = (self.features, self.units);
        let input = input.as_standard_layout();
        let input = input.as_slice().expect("standard layout is contiguous");
        let mut out = vec![0.0f32; input.len() / features * units];
        let mut inputs = input.chunks_exact(ROWS * features);
        let mut outputs = out.chunks_exact_mut(ROWS * units);
        for (x, y) in (&mut inputs).zip(&mut outputs) {
            self.products::<ROWS>(x, y);
        }
        let rest = inputs.remainder().chunks_exact(features);
        for (x, y) in rest.zip(outputs.into_remainder().chunks_exact_mut(units)) {
            self.products::<1>(x, y);
        }
        if self.activation == Activation::Softmax {
            out.chunks_exact_mut(units).for_each(softmax);
        }
        Ok(tvec![shaped_tensor(&[out.len() / units, units], out)?])
    }
}

impl Dense {
    /// `x × W + bias`, then Relu if that is the activation, for `R` rows
    /// (`x` is `[R, features]`, `out` `[R, units]`), summed as sgemm does:
    /// multiply-adds in feature order from zero per block of features, each
    /// block's sum added to the previous ones.
    fn products<const R: usize>(&self, x: &[f32], out: &mut [f32]) {
        let (features, units) = (self.features, self.units);
        let relu = self.activation == Activation::Relu;
        let tiles = self.tiles.chunks_exact(features).zip(&self.bias);
        for (tile, (weights, bias)) in tiles.enumerate() {
            let block = |start: usize| {
                let end = (start + SGEMM_BLOCK).min(features);
                let rows = std::array::from_fn(|r| &x[r * features..][start..end]);
                tile_sums::<R>(rows, &weights[start..end])
            };
            let mut sums = block(0);
            for start in (SGEMM_BLOCK..features).step_by(SGEMM_BLOCK) {
                let more = block(start);
                for (sums, more) in sums.iter_mut().zip(more) {
                    sums.iter_mut()
                        .zip(more)
                        .for_each(|(sum, more)| *sum += more);
                }
            }
            let first = tile * TILE;
            let width = TILE.min(units - first);
            for (sums, out) in sums.iter().zip(out.chunks_exact_mut(units)) {
                let y = std::array::from_fn::<f32, TILE, _>(|j| {
                    let y = sums[j] + bias[j];
                    if relu {
                        y.max(0.0)
                    } else {
                        y
                    }
                });
                out[first..first + width]
                    .iter_mut()
                    .zip(y)
                    .for_each(|(out, y)| *out = y);
            }
        }
    }
}

/// One tile's sums for `R` rows over one block of features. Kept apart and
/// free of bounds checks between the multiply-adds (the inputs are read
/// first): otherwise LLVM leaves the sums scalar and on the stack, 4× slower.
#[inline(always)]
fn tile_sums<const R: usize>(rows: [&[f32]; R], weights: &[[f32; TILE]]) -> [[f32; TILE]; R] {
    let mut sums = [[0.0f32; TILE]; R];
    for (f, weights) in weights.iter().enumerate() {
        let xs: [f32; R] = std::array::from_fn(|r| rows[r][f]);
        for (sums, x) in sums.iter_mut().zip(xs) {
            for (sum, &w) in sums.iter_mut().zip(weights) {
                *sum = x.mul_add(w, *sum);
            }
        }
    }
    sums
}

/// `exp(y - max) / sum` in place, as onnxruntime computes it (MLAS:
/// subtract the row's maximum, exponentiate and sum, multiply by
/// `1 / sum`).
fn softmax(y: &mut [f32]) {
    let max = y.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    y.iter_mut().for_each(|y| *y = exp_nonpositive(*y - max));
    let scale = 1.0 / y.iter().sum::<f32>();
    y.iter_mut().for_each(|y| *y *= scale);
}

/// `e^x` for `x <= 0` (NaN stays NaN) within about an ulp, in plain
/// arithmetic that LLVM vectorizes over a row, where libm's `expf` is one
/// call per value (MLAS's exponential is likewise a polynomial). `e^x` is
/// `2^n e^r` with `n` the integer nearest `x / ln 2` and `|r| <= ln 2 / 2`;
/// `e^r` is its Taylor polynomial of degree 7 (truncation below 1e-8).
/// Results that would be subnormal are 0.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    /// `1.5 × 2^23`: adding it rounds a float of magnitude below `2^22` to
    /// an integer, held in the low bits of the sum's mantissa.
    const ROUND: f32 = 12_582_912.0;
    /// `ln 2` split so that `n × LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    /// `ln f32::MIN_POSITIVE`: from here on, `n >= -126`.
    const SMALLEST: f32 = -126.0 * std::f32::consts::LN_2;
    let rounded = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = rounded - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ]
    .into_iter()
    .fold(0.0f32, |p, c| p.mul_add(r, c));
    // 2^n from its exponent bits; meaningless below SMALLEST, not used there.
    let n = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n.wrapping_add(127) << 23);
    if x < SMALLEST {
        0.0
    } else {
        p * two_n
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{arr1, arr2};

    /// A `FusedDense` node.
    fn layer(weights: &Tensor, bias: Option<Tensor>, activation: &str) -> NodeProto {
        let mut attrs = vec![
            tensor_attr("weights", weights),
            string("activation", activation),
        ];
        attrs.extend(bias.map(|b| tensor_attr("bias", &b)));
        node(FUSED_OP, &["X"], &["Y"], attrs)
    }

    /// A layer of 2 features and 3 units.
    fn dense(bias: Option<[f32; 3]>, activation: &str, x: &Tensor) -> TractResult<Tensor> {
        let weights: Tensor = arr2(&[[1.0f32, -2.0, 0.5], [3.0, 1.0, -1.0]]).into();
        let node = layer(&weights, bias.map(|b| arr1(&b).into()), activation);
        Ok(run_node(node, &[("X", x)])?.remove(0))
    }

    fn rows() -> Tensor {
        arr2(&[[1.0f32, 2.0], [-1.0, 0.5]]).into()
    }

    #[test]
    fn each_row_is_multiplied_by_the_weights() {
        // [1, 2] → [1 + 6, -2 + 2, 0.5 - 2]; [-1, 0.5] → [-1 + 1.5, 2 + 0.5, -0.5 - 0.5]
        let y = dense(None, "identity", &rows()).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        assert_close(&y, &[7.0, 0.0, -1.5, 0.5, 2.5, -1.0], 0.0);
    }

    #[test]
    fn the_bias_is_added_to_every_row() {
        let y = dense(Some([10.0, 20.0, 30.0]), "identity", &rows()).unwrap();
        assert_close(&y, &[17.0, 20.0, 28.5, 10.5, 22.5, 29.0], 0.0);
    }

    #[test]
    fn relu_zeroes_negative_outputs_after_the_bias() {
        let y = dense(Some([-1.0, 0.0, 1.0]), "relu", &rows()).unwrap();
        assert_close(&y, &[6.0, 0.0, 0.0, 0.0, 2.5, 0.0], 0.0);
        let y = dense(None, "relu", &rows()).unwrap();
        assert_close(&y, &[7.0, 0.0, 0.0, 0.5, 2.5, 0.0], 0.0);
    }

    #[test]
    fn softmax_turns_each_row_into_probabilities() {
        let weights: Tensor = arr2(&[[1.0f32, 0.0], [0.0, 1.0]]).into();
        let node = layer(&weights, None, "softmax");
        // e^ln3 / (e^ln3 + e^0) = 3/4; a large score must not overflow.
        let x: Tensor = arr2(&[[0.0f32, 0.0], [3.0f32.ln(), 0.0], [1000.0, 0.0]]).into();
        let y = run_node(node, &[("X", &x)]).unwrap().remove(0);
        assert_close(&y, &[0.5, 0.5, 0.75, 0.25, 1.0, 0.0], 1e-6);
    }

    #[test]
    fn rows_in_groups_and_units_past_one_tile_are_all_computed() {
        // 6 rows (a group of ROWS and a rest), 2 features, TILE + 1 units:
        // W[k][u] = u (k + 1) and x[r] = [r, r], so y[r][u] = 3 r u.
        let units = TILE + 1;
        let weights: Vec<f32> = (0..2)
            .flat_map(|k| (0..units).map(move |u| (u * (k + 1)) as f32))
            .collect();
        let weights = Tensor::from_shape(&[2, units], &weights).unwrap();
        let x: Vec<f32> = (0..6).flat_map(|r| [r as f32; 2]).collect();
        let x = Tensor::from_shape(&[6, 2], &x).unwrap();
        let node = layer(&weights, None, "identity");
        let y = run_node(node, &[("X", &x)]).unwrap().remove(0);
        assert_eq!(y.shape(), [6, units]);
        let expected: Vec<f32> = (0..6)
            .flat_map(|r| (0..units).map(move |u| (3 * r * u) as f32))
            .collect();
        assert_close(&y, &expected, 0.0);
    }

    #[test]
    fn more_features_than_an_sgemm_block_are_all_summed() {
        let features = SGEMM_BLOCK + 3;
        let weights = Tensor::from_shape(&[features, 1], &vec![1.0f32; features]).unwrap();
        let x = Tensor::from_shape(&[1, features], &vec![0.5f32; features]).unwrap();
        let node = layer(&weights, None, "identity");
        let y = run_node(node, &[("X", &x)]).unwrap().remove(0);
        assert_close(&y, &[features as f32 * 0.5], 0.0);
    }

    #[test]
    fn the_exponential_is_within_an_ulp_and_a_half_of_libm() {
        // Every 4099th float from -1e-30 down to where e^x turns subnormal.
        let xs = ((-1e-30f32).to_bits()..(-87.3f32).to_bits()).step_by(4099);
        for x in xs.map(f32::from_bits) {
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            let ulp = f32::from_bits(libm.to_bits() + 1) - libm;
            assert!((ours - libm).abs() <= 1.5 * ulp, "e^{x}: {ours} vs {libm}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused() {
        let x: Tensor = arr2(&[[1.0f32, 1.0, 1.0]]).into();
        let error = format!("{:#}", dense(None, "identity", &x).unwrap_err());
        assert!(error.contains("reads 2 features"), "{error}");
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_refused() {
        let weights: Tensor = arr2(&[[1.0f32, 2.0]]).into();
        let node = layer(&weights, Some(arr1(&[1.0f32]).into()), "identity");
        let error = node_error(node, &[("X", &arr2(&[[1.0f32]]).into())]);
        assert!(error.contains("must be 2 floats"), "{error}");
    }
}

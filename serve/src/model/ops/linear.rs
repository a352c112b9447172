//! `LinearClassifier` and `LinearRegressor` (ai.onnx.ml 1), replacing tract's.
//!
//! tract's LinearClassifier lays out a binary model with one coefficient row
//! as `[-s, s]` (onnxruntime: `[1 - s, s]`), lacks SOFTMAX_ZERO and PROBIT,
//! and cannot emit string labels. Here every score is computed as
//! onnxruntime's GEMM does (fused multiply-adds in feature order, in blocks
//! of 1024 features, added to the intercept), so raw scores match it bit for
//! bit; the post
//! transforms follow onnxruntime's `batched_update_scores_inplace`, including
//! the MLAS approximation of the logistic function it uses on score rows.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2};
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{expansion, Kernel, OutputSpec, Width};
use super::labels::{first_max, ClassLabels};
use super::post_transform::{logistic, probit, PostTransform};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("LinearClassifier", classifier);
    register.insert("LinearRegressor", regressor);
}

/// onnxruntime's sgemm (MLAS, x86-64) sums the features in blocks of this
/// many, adding each block's sum to the output (measured on onnxruntime
/// 1.31: bit-exact for 1500 features only with this block size).
const SGEMM_BLOCK: usize = 1024;

/// `targets` rows of `features` coefficients, and one intercept per row.
#[derive(Debug, Clone, PartialEq)]
struct Linear {
    /// `[features, targets]`: the coefficients of one feature for every
    /// target, contiguous, so a row is scored in one pass.
    by_feature: Vec<f32>,
    intercepts: Option<Vec<f32>>,
    targets: usize,
    features: usize,
}

impl Linear {
    /// Reads `coefficients` and `intercepts` for `targets` rows. The feature
    /// count follows from the coefficient count.
    fn parse(
        attrs: &Attributes,
        targets: usize,
        intercepts: Option<Vec<f32>>,
    ) -> TractResult<Linear> {
        let coefficients = attrs.required_floats_f32("coefficients")?;
        if coefficients.is_empty() {
            return Err(attrs.error("coefficients", "is empty"));
        }
        if !coefficients.len().is_multiple_of(targets) {
            return Err(attrs.error(
                "coefficients",
                format!(
                    "has {} entries, not a multiple of the {targets} score rows",
                    coefficients.len()
                ),
            ));
        }
        if let Some(intercepts) = &intercepts {
            attrs.expect_len("intercepts", intercepts, targets)?;
        }
        let features = coefficients.len() / targets;
        let by_feature = (0..features)
            .flat_map(|f| (0..targets).map(move |t| (f, t)))
            .map(|(f, t)| coefficients[t * features + f])
            .collect();
        Ok(Linear {
            by_feature,
            features,
            intercepts,
            targets,
        })
    }

    /// `row · coefficients[t] + intercepts[t]` for every target `t` of each
    /// of `R` rows, into `out` (`[R, targets]`), summed as onnxruntime's
    /// sgemm does: per block of features, fused multiply-adds in feature
    /// order from zero; each block's sum is then added to the intercept (or,
    /// without intercepts, to the previous blocks). Rows go `R` at a time so
    /// their independent chains of multiply-adds overlap (one target means
    /// one chain per row); each keeps its own order and rounding. `acc` is
    /// scratch space of `R * targets` floats. `T` is the target count when
    /// known at compile time (so the innermost loop unrolls), else 0.
    fn scores<const R: usize, const T: usize>(
        &self,
        rows: [&[f32]; R],
        out: &mut [f32],
        acc: &mut [f32],
    ) {
        let targets = if T == 0 { self.targets } else { T };
        for (block, start) in (0..self.features).step_by(SGEMM_BLOCK).enumerate() {
            let end = (start + SGEMM_BLOCK).min(self.features);
            acc.fill(0.0);
            let weights = self.by_feature[start * targets..end * targets].chunks_exact(targets);
            for (f, weights) in (start..end).zip(weights) {
                for (row, acc) in rows.iter().zip(acc.chunks_exact_mut(targets)) {
                    let x = row[f];
                    for (a, &w) in acc.iter_mut().zip(weights) {
                        *a = fma(x, w, *a);
                    }
                }
            }
            match (&self.intercepts, block) {
                (None, 0) => out.copy_from_slice(acc),
                (Some(intercepts), 0) => {
                    for (out, acc) in out.chunks_exact_mut(targets).zip(acc.chunks_exact(targets)) {
                        for ((o, &b), &a) in out.iter_mut().zip(intercepts).zip(acc) {
                            *o = b + a;
                        }
                    }
                }
                _ => out.iter_mut().zip(acc.iter()).for_each(|(o, &a)| *o += a),
            }
        }
    }

    /// Calls `f(raw scores, row index)` for each row of `input`, which has
    /// `features` columns (the kernel checks it).
    fn for_each_row(&self, input: &ArrayView2<'_, f32>, mut f: impl FnMut(&mut [f32], usize)) {
        const ROWS: usize = 8;
        let targets = self.targets;
        let mut scores = vec![0.0f32; ROWS * targets];
        let mut acc = vec![0.0f32; ROWS * targets];
        let input = input.as_standard_layout();
        let flat = input.as_slice().expect("standard layout is contiguous");
        let width = self.features;
        let mut blocks = flat.chunks_exact(ROWS * width);
        let mut ix = 0;
        for block in &mut blocks {
            let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &block[r * width..(r + 1) * width]);
            match targets {
                1 => self.scores::<ROWS, 1>(rows, &mut scores, &mut acc),
                2 => self.scores::<ROWS, 2>(rows, &mut scores, &mut acc),
                3 => self.scores::<ROWS, 3>(rows, &mut scores, &mut acc),
                _ => self.scores::<ROWS, 0>(rows, &mut scores, &mut acc),
            }
            for row_scores in scores.chunks_exact_mut(targets) {
                f(row_scores, ix);
                ix += 1;
            }
        }
        for row in blocks.remainder().chunks_exact(width) {
            let (scores, acc) = (&mut scores[..targets], &mut acc[..targets]);
            self.scores::<1, 0>([row], scores, acc);
            f(scores, ix);
            ix += 1;
        }
    }
}

/// `a * b + c` rounded once, as onnxruntime's sgemm computes it. Builds
/// target x86-64-v3 (`.cargo/config.toml`), where this is one instruction.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

fn classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let intercepts = attrs.floats_f32("intercepts")?.unwrap_or_default();
    if intercepts.is_empty() {
        return Err(attrs.error(
            "intercepts",
            "is required: it sets the number of score rows",
        ));
    }
    let rows = intercepts.len();
    let linear = Linear::parse(&attrs, rows, Some(intercepts))?;
    let labels = match ClassLabels::parse_optional(&attrs, "classlabels_ints")? {
        Some(labels) => labels,
        // A binary model without labels: classes 0 and 1, one score column.
        None if rows == 1 => ClassLabels::Int(vec![0, 1]),
        None => {
            return Err(attrs.error(
                "classlabels_ints",
                format!("classlabels_ints or classlabels_strings must list the {rows} classes"),
            ))
        }
    };
    let post_transform = PostTransform::parse(&attrs)?;
    let layout = if rows > 1 {
        if labels.len() < rows {
            return Err(attrs.error(
                "classlabels_ints",
                format!("lists {} classes, intercepts define {rows}", labels.len()),
            ));
        }
        Layout::Multi
    } else if attrs.has("classlabels_ints") || attrs.has("classlabels_strings") {
        if labels.len() != 2 {
            return Err(attrs.error(
                "classlabels_ints",
                format!(
                    "lists {} classes; one coefficient row needs exactly 2",
                    labels.len()
                ),
            ));
        }
        if post_transform == PostTransform::Probit {
            // onnxruntime writes PROBIT of the single score over a two-column
            // output it never fills: there is no result to match.
            return Err(attrs.error(
                "post_transform",
                "PROBIT with one coefficient row and two class labels is not supported",
            ));
        }
        Layout::BinaryTwoColumns
    } else {
        Layout::BinaryOneColumn
    };
    let kernel = LinearClassifier {
        linear,
        labels,
        post_transform,
        layout,
    };
    Ok((expansion(kernel), vec![]))
}

/// How scores are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One column per coefficient row; the label is the first highest raw
    /// score.
    Multi,
    /// One coefficient row, two labels: `[1 - s, s]` (with LOGISTIC,
    /// `[1 - σ(s), σ(s)]`); label 1 when `s > 0`.
    BinaryTwoColumns,
    /// One coefficient row, no labels: `[s]` (PROBIT applies); label 1
    /// when `s > 0`, else 0.
    BinaryOneColumn,
}

#[derive(Debug, Clone, PartialEq)]
struct LinearClassifier {
    linear: Linear,
    labels: ClassLabels,
    post_transform: PostTransform,
    layout: Layout,
}

impl LinearClassifier {
    fn columns(&self) -> usize {
        match self.layout {
            Layout::Multi => self.linear.targets,
            Layout::BinaryTwoColumns => 2,
            Layout::BinaryOneColumn => 1,
        }
    }

    /// Turns one row of raw scores into output scores, returning the index
    /// of the winning label. With [`Layout::Multi`] the post transform is
    /// left to [`LinearClassifier::eval`], which applies it to every row at once.
    fn finish_row(&self, raw: &mut [f32], out: &mut [f32]) -> usize {
        match self.layout {
            Layout::Multi => {
                out.copy_from_slice(raw);
                first_max(raw)
            }
            Layout::BinaryTwoColumns => {
                let s = raw[0];
                let p = match self.post_transform {
                    PostTransform::Logistic => logistic(s),
                    _ => s,
                };
                out[0] = 1.0 - p;
                out[1] = p;
                (s > 0.0) as usize
            }
            Layout::BinaryOneColumn => {
                let s = raw[0];
                out[0] = match self.post_transform {
                    PostTransform::Probit => probit(s),
                    _ => s,
                };
                (s > 0.0) as usize
            }
        }
    }
}

impl Kernel for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        self.labels.classifier_outputs(self.columns())
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.linear.features)
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let mut scores = Array2::<f32>::zeros((input.nrows(), self.columns()));
        let mut winners = Vec::with_capacity(input.nrows());
        self.linear.for_each_row(&input, |raw, ix| {
            let mut out = scores.row_mut(ix);
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            winners.push(self.finish_row(raw, out));
        });
        if self.layout == Layout::Multi {
            let columns = self.columns();
            let flat = scores.as_slice_mut().expect("fresh arrays are contiguous");
            self.post_transform.apply_batched_rows(flat, columns);
        }
        Ok(tvec![self.labels.tensor(&winners), scores.into()])
    }
}

fn regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let targets = attrs.positive_int("targets", 1)?;
    let intercepts = attrs.floats_f32("intercepts")?;
    let kernel = LinearRegressor {
        linear: Linear::parse(&attrs, targets, intercepts)?,
        post_transform: PostTransform::parse(&attrs)?,
    };
    Ok((expansion(kernel), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct LinearRegressor {
    linear: Linear,
    post_transform: PostTransform,
}

impl Kernel for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: DatumType::F32,
            width: Width::Columns(self.linear.targets),
        }]
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.linear.features)
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let mut output = Array2::<f32>::zeros((input.nrows(), self.linear.targets));
        self.linear.for_each_row(&input, |raw, ix| {
            output
                .row_mut(ix)
                .as_slice_mut()
                .expect("fresh arrays are contiguous")
                .copy_from_slice(raw);
        });
        // onnxruntime treats a single target like a binary score: only
        // PROBIT applies to it.
        let flat = output.as_slice_mut().expect("fresh arrays are contiguous");
        self.post_transform
            .apply_batched_rows(flat, self.linear.targets);
        Ok(tvec![output.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::arr2;

    fn x() -> Tensor {
        arr2(&[[1.0f32, -2.0], [0.5, 0.25], [0.0, 0.0]]).into()
    }

    fn classifier_node(extra: Vec<tract_onnx::pb::AttributeProto>) -> NodeProto {
        node("LinearClassifier", &["X"], &["L", "S"], extra)
    }

    fn regressor_node(attrs: Vec<tract_onnx::pb::AttributeProto>) -> NodeProto {
        node("LinearRegressor", &["X"], &["Y"], attrs)
    }

    fn run(node: NodeProto, input: &Tensor) -> TVec<Tensor> {
        run_node(node, &[("X", input)]).unwrap()
    }

    #[test]
    fn multiclass_scores_labels_and_transforms() {
        // Rows: [0.5, 0.25] + 0.1, [-1, 0] + 0.2, [0, 0] + 0.
        let base = || {
            vec![
                floats("coefficients", &[0.5, 0.25, -1.0, 0.0, 0.0, 0.0]),
                floats("intercepts", &[0.1, 0.2, 0.0]),
                ints("classlabels_ints", &[1, 2, 3]),
            ]
        };
        let out = run(classifier_node(base()), &x());
        assert_eq!(out[0], tensor1(&[1i64, 1, 2]));
        assert_close(
            &out[1],
            &[0.1, -0.8, 0.0, 0.4125, -0.3, 0.0, 0.1, 0.2, 0.0],
            0.0,
        );
        let run_with = |post_transform: &str| {
            let mut attrs = base();
            attrs.push(string("post_transform", post_transform));
            run(classifier_node(attrs), &x())
        };

        let out = run_with("SOFTMAX");
        let e = |v: [f32; 3]| {
            let m = v.iter().copied().fold(f32::MIN, f32::max);
            let s: f32 = v.iter().map(|x| (x - m).exp()).sum();
            v.map(|x| (x - m).exp() / s)
        };
        let expected: Vec<f32> = [[0.1, -0.8, 0.0], [0.4125, -0.3, 0.0], [0.1, 0.2, 0.0]]
            .into_iter()
            .flat_map(e)
            .collect();
        assert_close(&out[1], &expected, 1e-7);
        assert_eq!(out[0], tensor1(&[1i64, 1, 2]));

        let out = run_with("SOFTMAX_ZERO");
        // onnxruntime: zero scores stay zero, the others share the mass.
        assert_close(
            &out[1],
            &[
                0.710_949_5,
                0.289_050_5,
                0.0,
                0.670_953_3,
                0.329_046_67,
                0.0,
                0.475_020_83,
                0.524_979_2,
                0.0,
            ],
            1e-7,
        );

        let out = run_with("LOGISTIC");
        assert_close(
            &out[1],
            &[
                0.524_979_2,
                0.310_025_54,
                0.5,
                0.601_687_2,
                0.425_557_5,
                0.5,
                0.524_979_2,
                0.549_834,
                0.5,
            ],
            0.0,
        );

        let out = run_with("PROBIT");
        assert_close(
            &out[1],
            &[
                -1.281_712_9,
                f32::NAN,
                f32::NEG_INFINITY,
                -0.221_121_88,
                f32::NAN,
                f32::NEG_INFINITY,
                -1.281_712_9,
                -0.841_756_1,
                f32::NEG_INFINITY,
            ],
            1e-6,
        );
    }

    #[test]
    fn binary_one_row_lays_out_like_onnxruntime() {
        // s = 0.5 x0 + 0.25 x1 + 0.1: 0.1, 0.4125, 0.1.
        let attrs = |pt: &str, labels: tract_onnx::pb::AttributeProto| {
            vec![
                floats("coefficients", &[0.5, 0.25]),
                floats("intercepts", &[0.1]),
                labels,
                string("post_transform", pt),
            ]
        };
        for pt in ["NONE", "SOFTMAX", "SOFTMAX_ZERO"] {
            let out = run(
                classifier_node(attrs(pt, ints("classlabels_ints", &[3, 7]))),
                &x(),
            );
            assert_eq!(out[0], tensor1(&[7i64, 7, 7]));
            assert_close(&out[1], &[0.9, 0.1, 0.5875, 0.4125, 0.9, 0.1], 1e-7);
        }
        let out = run(
            classifier_node(attrs(
                "LOGISTIC",
                strings("classlabels_strings", &["a", "b"]),
            )),
            &x(),
        );
        assert_eq!(out[0], tensor1(&["b".to_string(), "b".into(), "b".into()]));
        assert_close(
            &out[1],
            &[
                0.475_020_83,
                0.524_979_2,
                0.398_312_87,
                0.601_687_13,
                0.475_020_83,
                0.524_979_2,
            ],
            1e-7,
        );
        // Negative and zero scores pick the first label.
        let neg = arr2(&[[-1.0f32, 0.0], [-0.2, 0.0]]).into();
        let out = run(
            classifier_node(attrs("NONE", ints("classlabels_ints", &[3, 7]))),
            &neg,
        );
        assert_eq!(out[0], tensor1(&[3i64, 3]));
        assert_close(&out[1], &[1.4, -0.4, 1.0, 0.0], 1e-7);
    }

    #[test]
    fn binary_without_labels_is_one_column() {
        let attrs = |pt: &str| {
            vec![
                floats("coefficients", &[0.5, 0.25]),
                floats("intercepts", &[0.0]),
                string("post_transform", pt),
            ]
        };
        let input: Tensor = arr2(&[[40.0f32, 0.0], [-0.01, 0.0], [0.5, 0.25]]).into();
        let out = run(classifier_node(attrs("LOGISTIC")), &input);
        assert_eq!(out[0], tensor1(&[1i64, 0, 1]));
        assert_close(&out[1], &[20.0, -0.005, 0.3125], 0.0);
        let out = run(classifier_node(attrs("PROBIT")), &input);
        assert_close(&out[1], &[f32::NAN, f32::NAN, -0.488_814_18], 1e-6);
    }

    #[test]
    fn fma_is_correctly_rounded() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000 {
            let r = next();
            let (a, b, c) = if i % 2 == 0 {
                // Any bit patterns: NaN, infinities, subnormals.
                (
                    f32::from_bits(r as u32),
                    f32::from_bits((r >> 32) as u32),
                    f32::from_bits(next() as u32),
                )
            } else {
                let small = |v: u64| ((v % 2001) as f32 - 1000.0) * 0.013_7;
                (small(r), small(r >> 20) * 0.5, small(r >> 40) * 8.0)
            };
            let (hw, ours) = (a.mul_add(b, c), fma(a, b, c));
            assert!(
                hw.to_bits() == ours.to_bits() || (hw.is_nan() && ours.is_nan()),
                "{a:e} {b:e} {c:e}"
            );
        }
    }

    #[test]
    fn long_rows_sum_in_blocks_like_sgemm() {
        // 1500 features: the first 1024 products and the other 476 are
        // summed apart, then added to the intercept in turn.
        let features = 1500;
        let x: Vec<f32> = (0..features)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let w: Vec<f32> = (0..features)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.007)
            .collect();
        let block = |r: std::ops::Range<usize>| r.fold(0.0f32, |acc, i| x[i].mul_add(w[i], acc));
        let expected = (0.25f32 + block(0..1024)) + block(1024..features);
        let input: Tensor =
            tract_onnx::prelude::tract_ndarray::Array2::from_shape_vec((1, features), x.clone())
                .unwrap()
                .into();
        let out = run_node(
            regressor_node(vec![
                floats("coefficients", &w),
                floats("intercepts", &[0.25]),
            ]),
            &[("X", &input)],
        )
        .unwrap();
        assert_eq!(values::<f32>(&out[0]), vec![expected]);
    }

    #[test]
    fn scores_are_fused_multiply_adds() {
        // 0.1 * 0.1 + 0.1 * 0.9 is 0.099999994 with two roundings and 0.1
        // with a fused multiply-add; onnxruntime's sgemm fuses.
        let input: Tensor = arr2(&[[0.1f32, 0.1]]).into();
        let out = run_node(
            regressor_node(vec![floats("coefficients", &[0.1, 0.9])]),
            &[("X", &input)],
        )
        .unwrap();
        assert_ne!(0.1f32 * 0.1 + 0.1 * 0.9, 0.1);
        assert_eq!(values::<f32>(&out[0]), vec![0.1f32]);
    }

    #[test]
    fn regressor_targets_and_transforms() {
        let out = run_node(
            regressor_node(vec![
                floats("coefficients", &[0.5, 0.25, 1.0, 1.0]),
                floats("intercepts", &[1.0, 2.0]),
                int("targets", 2),
                string("post_transform", "SOFTMAX"),
            ]),
            &[("X", &x())],
        )
        .unwrap();
        // onnxruntime: [[0.5, 0.5], [0.19193278, 0.8080672], [0.26894143, 0.7310586]].
        assert_close(
            &out[0],
            &[
                0.5,
                0.5,
                0.191_932_78,
                0.808_067_2,
                0.268_941_43,
                0.731_058_6,
            ],
            1e-7,
        );

        // One target: LOGISTIC and SOFTMAX do nothing, as in onnxruntime.
        for pt in ["LOGISTIC", "SOFTMAX", "NONE"] {
            let out = run_node(
                regressor_node(vec![
                    floats("coefficients", &[0.5, 0.25]),
                    floats("intercepts", &[1.0]),
                    string("post_transform", pt),
                ]),
                &[("X", &x())],
            )
            .unwrap();
            assert_close(&out[0], &[1.0, 1.3125, 1.0], 0.0);
        }
    }

    #[test]
    fn int_input_is_cast() {
        let input: Tensor = arr2(&[[3i64, 1]]).into();
        let out = run_node(
            classifier_node(vec![
                floats("coefficients", &[0.5, 0.25, 1.0, 1.0]),
                floats("intercepts", &[0.1, 0.2]),
                ints("classlabels_ints", &[3, 7]),
            ]),
            &[("X", &input)],
        )
        .unwrap();
        assert_eq!(out[0], tensor1(&[7i64]));
        assert_close(&out[1], &[1.85, 4.2], 1e-6);
    }

    #[test]
    fn malformed_attributes_fail_at_load() {
        let input = x();
        let cases: Vec<(Vec<tract_onnx::pb::AttributeProto>, &str)> = vec![
            (
                vec![
                    floats("coefficients", &[0.5, 0.25]),
                    ints("classlabels_ints", &[0, 1]),
                ],
                "attribute `intercepts`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25, 1.0]),
                    floats("intercepts", &[0.0, 0.0]),
                    ints("classlabels_ints", &[0, 1]),
                ],
                "attribute `coefficients`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25]),
                    floats("intercepts", &[0.0]),
                    ints("classlabels_ints", &[0, 1, 2]),
                ],
                "attribute `classlabels_ints`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25, 1.0, 1.0]),
                    floats("intercepts", &[0.0, 0.0]),
                    ints("classlabels_ints", &[4]),
                ],
                "attribute `classlabels_ints`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25, 1.0, 1.0]),
                    floats("intercepts", &[0.0, 0.0]),
                ],
                "attribute `classlabels_ints`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25]),
                    floats("intercepts", &[0.0]),
                    ints("classlabels_ints", &[0, 1]),
                    string("post_transform", "PROBIT"),
                ],
                "attribute `post_transform`",
            ),
            (
                vec![
                    floats("coefficients", &[0.5, 0.25]),
                    floats("intercepts", &[0.0]),
                    string("post_transform", "SQUASH"),
                ],
                "attribute `post_transform`",
            ),
        ];
        for (attrs, expected) in cases {
            let e = node_error(classifier_node(attrs), &[("X", &input)]);
            assert!(
                e.contains("LinearClassifier node `LinearClassifier_node`"),
                "{e}"
            );
            assert!(e.contains(expected), "{e}");
        }
        // Three coefficients per row for a two-column input.
        let e = node_error(
            classifier_node(vec![
                floats("coefficients", &[0.5, 0.25, 1.0]),
                floats("intercepts", &[0.0]),
            ]),
            &[("X", &input)],
        );
        assert!(
            e.contains("reads 3 features, its input has 2 columns"),
            "{e}"
        );
        let e = node_error(
            regressor_node(vec![
                floats("coefficients", &[0.5, 0.25]),
                floats("intercepts", &[1.0, 2.0]),
            ]),
            &[("X", &input)],
        );
        assert!(
            e.contains("LinearRegressor node `LinearRegressor_node`: attribute `intercepts`"),
            "{e}"
        );
    }
}

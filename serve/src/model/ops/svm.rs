//! `SVMClassifier` and `SVMRegressor` (ai.onnx.ml 1), which tract lacks.
//!
//! Both come in two modes: libsvm (`support_vectors` and a kernel; the
//! classifier runs one-vs-one classifiers and votes) and liblinear (no
//! support vectors: one coefficient row per class, or one for the regressor).
//! Everything follows onnxruntime's CPU kernels, read at
//! `svmclassifier.cc` 02a3688c702aab3374db38da17152c43bfb739d5,
//! `svmclassifier.h` 15e60b3a9cc48b68b24ecaf2fdf1685dad9bedeb,
//! `svmregressor.cc` 0bd42bd53f3c24a93d0621afcb3b791531d6e4c4 and
//! `ml_common.h` 8482e79d6f25c81dd16b2e0abb69c1a2abf9b679, and checked
//! against onnxruntime 1.31.1 where it differs from them (a binary model
//! without probabilities and with LOGISTIC gives [σ(-d), σ(d)]): scores in
//! f32 except the per-pair sums (f64), Platt probabilities with pairwise
//! coupling, the vote-based label, and the score layouts of binary models,
//! which are not those of the ONNX spec.
//!
//! The coupling's stopping test turns last-bit differences in the decision
//! values into jumps of ~1e-3 in the probabilities, so the arithmetic
//! onnxruntime delegates to MLAS (SGEMM, tanh, logistic) is reproduced
//! rounding for rounding, as MLAS runs it on x86-64 with FMA in one thread.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array1, Array2, ArrayView2, Axis};
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{contiguous_row, expansion, Kernel, OutputSpec, Width};
use super::labels::{first_max, ClassLabels};
use super::post_transform::{logistic, mlas_tanh, probit, PostTransform};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("SVMClassifier", classifier);
    register.insert("SVMRegressor", regressor);
}

/// onnxruntime refuses more classes than this.
const MAX_CLASSES: usize = 65535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelType {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

/// The kernel comparing a row with a support vector.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SvmKernel {
    kind: KernelType,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl SvmKernel {
    /// The dot product, as liblinear models use regardless of `kernel_type`.
    const LINEAR: SvmKernel = SvmKernel {
        kind: KernelType::Linear,
        gamma: 0.0,
        coef0: 0.0,
        degree: 0.0,
    };

    fn parse(attrs: &Attributes) -> TractResult<SvmKernel> {
        let kind = attrs.choice(
            "kernel_type",
            &[
                ("LINEAR", KernelType::Linear),
                ("POLY", KernelType::Poly),
                ("RBF", KernelType::Rbf),
                ("SIGMOID", KernelType::Sigmoid),
            ],
        )?;
        let params = attrs.floats("kernel_params")?.unwrap_or_default();
        let [gamma, coef0, degree] = match params[..] {
            [gamma, coef0, degree] => [gamma as f32, coef0 as f32, degree as f32],
            [] if kind == KernelType::Linear => [0.0; 3],
            [] => {
                return Err(attrs.error(
                    "kernel_params",
                    "is required by a non-linear kernel_type ([gamma, coef0, degree])",
                ))
            }
            _ => {
                return Err(attrs.error(
                    "kernel_params",
                    format!(
                        "has {} entries, expected 3 (gamma, coef0, degree)",
                        params.len()
                    ),
                ))
            }
        };
        Ok(SvmKernel {
            kind,
            gamma,
            coef0,
            degree,
        })
    }

    /// The kernel of every row of `input` with every row of `vectors`:
    /// `[rows, vectors]`.
    fn matrix(&self, input: ArrayView2<f32>, vectors: ArrayView2<f32>) -> Array2<f32> {
        if self.kind == KernelType::Rbf {
            // exp(-gamma |x - v|²), each squared distance summed in feature order.
            let vectors = vectors.as_standard_layout();
            let flat = vectors.as_slice().expect("standard layout is contiguous");
            let mut out = Array2::zeros((input.nrows(), vectors.nrows()));
            let mut row_buf = Vec::new();
            for (x, mut out_row) in input.outer_iter().zip(out.outer_iter_mut()) {
                let x = contiguous_row(x, &mut row_buf);
                let out_row = out_row.as_slice_mut().expect("fresh arrays are contiguous");
                squared_distances(x, flat, out_row);
                out_row
                    .iter_mut()
                    .for_each(|o| *o = (-self.gamma * *o).exp());
            }
            return out;
        }
        // onnxruntime: one SGEMM, gamma · x·v + coef0 (no bias when 0), then
        // the kernel's function; LINEAR is the bare product.
        let (alpha, bias) = match self.kind {
            KernelType::Linear | KernelType::Rbf => (1.0, None),
            _ => (self.gamma, Some(self.coef0).filter(|&c| c != 0.0)),
        };
        let mut out = sgemm_nt(input, vectors, alpha, bias);
        match self.kind {
            KernelType::Linear | KernelType::Rbf => {}
            KernelType::Poly => out.mapv_inplace(|v| {
                if self.degree == 2.0 {
                    v * v
                } else if self.degree == 3.0 {
                    v * v * v
                } else {
                    v.powf(self.degree)
                }
            }),
            KernelType::Sigmoid => out.mapv_inplace(mlas_tanh),
        }
        out
    }
}

/// `|x - v|²` for each row `v` of `vectors` (row-major, `x.len()` wide),
/// each sum in feature order as onnxruntime adds them. Four vectors go
/// together so their independent sums overlap in the pipeline; each sum's
/// own order, and so its rounding, is unchanged.
fn squared_distances(x: &[f32], vectors: &[f32], out: &mut [f32]) {
    let width = x.len();
    let mut blocks = vectors.chunks_exact(4 * width);
    let mut outs = out.chunks_exact_mut(4);
    for (block, out) in (&mut blocks).zip(&mut outs) {
        let (v0, rest) = block.split_at(width);
        let (v1, rest) = rest.split_at(width);
        let (v2, v3) = rest.split_at(width);
        let mut sums = [0.0f32; 4];
        for j in 0..width {
            let a = x[j];
            let d = [a - v0[j], a - v1[j], a - v2[j], a - v3[j]];
            for k in 0..4 {
                sums[k] += d[k] * d[k];
            }
        }
        out.copy_from_slice(&sums);
    }
    let remaining = blocks.remainder().chunks_exact(width);
    for (v, o) in remaining.zip(outs.into_remainder()) {
        *o = x.iter().zip(v).fold(0.0f32, |sum, (a, b)| {
            let d = a - b;
            sum + d * d
        });
    }
}

/// `alpha · a·bᵀ + bias` for `a` `[m, k]` and `b` `[n, k]`, rounded as
/// onnxruntime's SGEMM (MLAS on x86-64, one thread) rounds it, so that the
/// values feeding votes, Platt's sigmoid and the pairwise coupling (whose
/// stopping test makes it jump on last-bit changes) are onnxruntime's own.
///
/// A one-row product with `alpha` 1 goes through MLAS's M=1 kernel (eight
/// lanes of separately rounded multiply-adds, then a reduction whose order
/// depends on the output column's position); anything else through the
/// general kernel: per output, fused multiply-adds in order, one partial sum
/// per K slice, each scaled by `alpha` and added to the output (which starts
/// from `bias`, or from the first scaled partial sum when there is none).
fn sgemm_nt(a: ArrayView2<f32>, b: ArrayView2<f32>, alpha: f32, bias: Option<f32>) -> Array2<f32> {
    let mut out = Array2::zeros((a.nrows(), b.nrows()));
    if a.ncols() == 0 {
        out.fill(bias.unwrap_or(0.0));
        return out;
    }
    if a.nrows() == 1 && alpha == 1.0 {
        let x = a.row(0);
        let columns = b.nrows();
        // Columns go in blocks of four, then a pair, then a single one.
        let fours = columns / 4 * 4;
        for (n, (v, o)) in b.outer_iter().zip(out.iter_mut()).enumerate() {
            let mut lanes = [0.0f32; 8];
            for (i, (p, q)) in x.iter().zip(v.iter()).enumerate() {
                lanes[i % 8] += p * q;
            }
            let [l0, l1, l2, l3, l4, l5, l6, l7] = lanes;
            let sum = if n < fours {
                (((l0 + l1) + l2) + l3) + (((l4 + l5) + l6) + l7)
            } else if n < fours + ((columns % 4) & 2) {
                ((l0 + l2) + (l4 + l6)) + ((l1 + l3) + (l5 + l7))
            } else {
                ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
            };
            *o = sum + bias.unwrap_or(0.0);
        }
        return out;
    }
    let stride_k = mlas_stride_k(b.nrows(), a.ncols());
    let b = b.as_standard_layout();
    let vectors = b.as_slice().expect("standard layout is contiguous");
    let width = a.ncols();
    let mut row_buf = Vec::new();
    for (x, mut out_row) in a.outer_iter().zip(out.outer_iter_mut()) {
        let x = contiguous_row(x, &mut row_buf);
        let out_row = out_row.as_slice_mut().expect("fresh arrays are contiguous");
        // Four columns at a time so their independent chains of multiply-adds
        // overlap in the pipeline; each keeps its own order and rounding.
        let mut groups = vectors.chunks_exact(4 * width);
        let mut outs = out_row.chunks_exact_mut(4);
        for (group, out) in (&mut groups).zip(&mut outs) {
            let group: [&[f32]; 4] = std::array::from_fn(|g| &group[g * width..(g + 1) * width]);
            out.copy_from_slice(&sgemm_dots(x, group, stride_k, alpha, bias));
        }
        let remaining = groups.remainder().chunks_exact(width);
        for (v, o) in remaining.zip(outs.into_remainder()) {
            [*o] = sgemm_dots(x, [v], stride_k, alpha, bias);
        }
    }
    out
}

/// `alpha · x·v + bias` for each of `G` vectors, as MLAS's general kernel
/// rounds it: fused multiply-adds in order within each K slice of
/// `stride_k`, each slice's sum scaled and added to the output.
#[inline(always)]
fn sgemm_dots<const G: usize>(
    x: &[f32],
    vectors: [&[f32]; G],
    stride_k: usize,
    alpha: f32,
    bias: Option<f32>,
) -> [f32; G] {
    let mut totals = [bias; G];
    for start in (0..x.len()).step_by(stride_k) {
        let end = (start + stride_k).min(x.len());
        let mut acc = [0.0f32; G];
        for i in start..end {
            for (a, v) in acc.iter_mut().zip(&vectors) {
                *a = x[i].mul_add(v[i], *a);
            }
        }
        for (total, a) in totals.iter_mut().zip(acc) {
            *total = Some(match *total {
                None => a * alpha,
                Some(t) => a.mul_add(alpha, t),
            });
        }
    }
    totals.map(|t| t.unwrap_or(0.0))
}

/// The K stride MLAS's SGEMM uses for `n` output columns and depth `k`: 128,
/// halved while `k` fits in half of it, or (for narrow outputs) doubled as
/// the N stride (128, down to 16) halves while `n` fits in half of that.
fn mlas_stride_k(n: usize, k: usize) -> usize {
    let mut stride_k = 128usize;
    if n >= k {
        while stride_k > 1 && stride_k / 2 >= k {
            stride_k /= 2;
        }
    } else {
        let mut stride_n = 128usize;
        while stride_n > 16 && stride_n / 2 >= n {
            stride_k *= 2;
            stride_n /= 2;
        }
    }
    stride_k
}

/// libsvm's one-vs-one classifiers: support vectors grouped by class, one
/// decision function per pair of classes.
#[derive(Debug, Clone, PartialEq)]
struct Svc {
    kernel: SvmKernel,
    /// `[vectors, features]`.
    vectors: Array2<f32>,
    /// Per class, its first support vector and how many it has.
    ranges: Vec<(usize, usize)>,
    /// `[classes - 1, vectors]`: the pair (i, j) weighs class i's vectors
    /// with row j - 1 and class j's with row i.
    coefficients: Vec<f32>,
    /// Per pair, in (0,1), (0,2), .., (1,2), .. order.
    rho: Vec<f32>,
    /// Per pair, Platt's sigmoid (A, B), when the model has probabilities.
    platt: Option<Vec<(f32, f32)>>,
}

impl Svc {
    /// Per row of `kernels` (`[rows, vectors]`), each pair's decision value
    /// before rounding to f32, `[rows, pairs]`: class i's vectors weigh in
    /// with coefficient row j - 1, class j's with row i; products in f32,
    /// summed in f64 in vector order, plus rho, as onnxruntime computes it.
    /// Four rows go together so their independent sums overlap in the
    /// pipeline; each row's own order, and so its rounding, is unchanged.
    fn decisions(&self, kernels: &Array2<f32>) -> Vec<f64> {
        const ROWS: usize = 4;
        let classes = self.ranges.len();
        let pairs = classes * (classes - 1) / 2;
        let vectors = kernels.ncols();
        let flat = kernels.as_slice().expect("fresh arrays are contiguous");
        let mut sums = vec![0.0f64; kernels.nrows() * pairs];
        let mut blocks = flat.chunks_exact(ROWS * vectors);
        let mut outs = sums.chunks_exact_mut(ROWS * pairs);
        for (block, out) in (&mut blocks).zip(&mut outs) {
            let rows: [&[f32]; ROWS] =
                std::array::from_fn(|r| &block[r * vectors..(r + 1) * vectors]);
            self.pair_sums(rows, out);
        }
        for (row, out) in blocks
            .remainder()
            .chunks_exact(vectors)
            .zip(outs.into_remainder().chunks_exact_mut(pairs))
        {
            self.pair_sums([row], out);
        }
        sums
    }

    /// [`Svc::decisions`] for `R` rows' kernel values, into `out` (`[R, pairs]`).
    #[inline(always)]
    fn pair_sums<const R: usize>(&self, rows: [&[f32]; R], out: &mut [f64]) {
        let classes = self.ranges.len();
        let vectors = rows[0].len();
        let pairs = out.len() / R;
        let mut pair = 0;
        for i in 0..classes {
            for j in i + 1..classes {
                let (start_i, count_i) = self.ranges[i];
                let (start_j, count_j) = self.ranges[j];
                let row_i = &self.coefficients[(j - 1) * vectors..j * vectors];
                let row_j = &self.coefficients[i * vectors..(i + 1) * vectors];
                let mut sums = [0.0f64; R];
                for m in start_i..start_i + count_i {
                    for (sum, k) in sums.iter_mut().zip(&rows) {
                        *sum += (row_i[m] * k[m]) as f64;
                    }
                }
                for m in start_j..start_j + count_j {
                    for (sum, k) in sums.iter_mut().zip(&rows) {
                        *sum += (row_j[m] * k[m]) as f64;
                    }
                }
                for (r, sum) in sums.into_iter().enumerate() {
                    out[r * pairs + pair] = sum + self.rho[pair] as f64;
                }
                pair += 1;
            }
        }
    }
}

/// How the classifier scores a row.
#[derive(Debug, Clone, PartialEq)]
enum Machine {
    Svc(Svc),
    /// liblinear: `[classes, features]` weights and one intercept for all.
    Linear {
        weights: Array2<f32>,
        rho: f32,
    },
}

fn usize_of(attrs: &Attributes, name: &str, value: i64) -> TractResult<usize> {
    usize::try_from(value).map_err(|_| attrs.error(name, format!("has negative entry {value}")))
}

/// Checks that `name` has at least `len` entries (onnxruntime reads the
/// first `len` and ignores the rest).
fn expect_at_least<T>(attrs: &Attributes, name: &str, values: &[T], len: usize) -> TractResult<()> {
    if values.len() < len {
        return Err(attrs.error(
            name,
            format!("has {} entries, expected at least {len}", values.len()),
        ));
    }
    Ok(())
}

/// Splits `values` into rows of `width`, which must divide its length.
fn rows_of(
    attrs: &Attributes,
    name: &str,
    values: Vec<f32>,
    rows: usize,
    what: &str,
) -> TractResult<Array2<f32>> {
    if values.is_empty() || !values.len().is_multiple_of(rows) {
        return Err(attrs.error(
            name,
            format!(
                "has {} entries, not a non-zero multiple of {rows} {what}",
                values.len()
            ),
        ));
    }
    let width = values.len() / rows;
    Array2::from_shape_vec((rows, width), values).map_err(|e| attrs.error(name, e))
}

fn classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expansion(SvmClassifier::parse(node)?), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct SvmClassifier {
    labels: ClassLabels,
    machine: Machine,
    /// `prob_a`/`prob_b` are present: probability scores, vote-based label.
    probabilities: bool,
    post_transform: PostTransform,
    /// No coefficient is negative (the binary liblinear label rule).
    weights_all_positive: bool,
    features: usize,
}

impl SvmClassifier {
    fn parse(node: &NodeProto) -> TractResult<SvmClassifier> {
        let attrs = Attributes::new(node);
        let labels = ClassLabels::parse(&attrs, "classlabels_ints")?;
        let classes = labels.len();
        if classes > MAX_CLASSES {
            return Err(attrs.error(
                "classlabels_ints",
                format!("lists {classes} classes, onnxruntime supports at most {MAX_CLASSES}"),
            ));
        }
        let coefficients = attrs.required_floats_f32("coefficients")?;
        if coefficients.is_empty() {
            return Err(attrs.error("coefficients", "is empty"));
        }
        let rho = attrs.required_floats_f32("rho")?;
        let prob_a = attrs.floats_f32("prob_a")?.unwrap_or_default();
        let prob_b = attrs.floats_f32("prob_b")?.unwrap_or_default();
        attrs.expect_len("prob_b", &prob_b, prob_a.len())?;
        let probabilities = !prob_a.is_empty();
        let weights_all_positive = coefficients.iter().all(|&c| c >= 0.0);
        let post_transform = PostTransform::parse(&attrs)?;

        let per_class = attrs.ints("vectors_per_class").unwrap_or_default();
        let mut ranges = Vec::with_capacity(per_class.len());
        let mut total = 0usize;
        for &count in &per_class {
            let count = usize_of(&attrs, "vectors_per_class", count)?;
            ranges.push((total, count));
            total = total
                .checked_add(count)
                .ok_or_else(|| attrs.error("vectors_per_class", "overflows"))?;
        }

        let (machine, features) = if total > 0 {
            // libsvm.
            if classes < 2 {
                return Err(attrs.error(
                    "classlabels_ints",
                    "lists one class; a support vector classifier needs two or more",
                ));
            }
            attrs.expect_len("vectors_per_class", &per_class, classes)?;
            let pairs = classes * (classes - 1) / 2;
            let needed = (classes - 1)
                .checked_mul(total)
                .ok_or_else(|| attrs.error("vectors_per_class", "overflows"))?;
            expect_at_least(&attrs, "coefficients", &coefficients, needed)?;
            expect_at_least(&attrs, "rho", &rho, pairs)?;
            let platt = if probabilities {
                expect_at_least(&attrs, "prob_a", &prob_a, pairs)?;
                Some(prob_a.into_iter().zip(prob_b).take(pairs).collect())
            } else {
                None
            };
            let vectors = rows_of(
                &attrs,
                "support_vectors",
                attrs.required_floats_f32("support_vectors")?,
                total,
                "support vectors",
            )?;
            let features = vectors.ncols();
            let machine = Machine::Svc(Svc {
                kernel: SvmKernel::parse(&attrs)?,
                vectors,
                ranges,
                coefficients: coefficients[..needed].to_vec(),
                rho: rho[..pairs].to_vec(),
                platt,
            });
            (machine, features)
        } else {
            // liblinear: onnxruntime ignores kernel_type and uses rho[0] for
            // every class.
            let first_rho = *rho.first().ok_or_else(|| attrs.error("rho", "is empty"))?;
            let weights = rows_of(&attrs, "coefficients", coefficients, classes, "classes")?;
            let features = weights.ncols();
            (
                Machine::Linear {
                    weights,
                    rho: first_rho,
                },
                features,
            )
        };
        Ok(SvmClassifier {
            labels,
            machine,
            probabilities,
            post_transform,
            weights_all_positive,
            features,
        })
    }

    fn classes(&self) -> usize {
        self.labels.len()
    }

    /// Columns of the score output: one per pair for libsvm without
    /// probabilities (two for a binary model), else one per class.
    fn score_width(&self) -> usize {
        let classes = self.classes();
        match &self.machine {
            Machine::Svc(Svc { platt: None, .. }) if classes == 2 => 2,
            Machine::Svc(Svc { platt: None, .. }) => classes * (classes - 1) / 2,
            _ => classes,
        }
    }

    /// The winning class of a liblinear row, from its raw scores.
    fn linear_winner(&self, scores: &[f32]) -> usize {
        let best = first_max(scores);
        if self.classes() != 2 || self.probabilities {
            return best;
        }
        let max = scores[best];
        if (self.weights_all_positive && max >= 0.5) || (!self.weights_all_positive && max > 0.0) {
            1
        } else {
            best
        }
    }

    fn eval_linear(
        &self,
        input: ArrayView2<f32>,
        weights: &Array2<f32>,
        rho: f32,
        scores: &mut Array2<f32>,
        winners: &mut Vec<usize>,
    ) {
        scores.assign(&sgemm_nt(
            input,
            weights.view(),
            1.0,
            Some(rho).filter(|&r| r != 0.0),
        ));
        for mut out in scores.outer_iter_mut() {
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            winners.push(self.linear_winner(out));
            self.post_transform.apply_batched(out);
        }
    }

    fn eval_svc(
        &self,
        svc: &Svc,
        input: ArrayView2<f32>,
        scores: &mut Array2<f32>,
        winners: &mut Vec<usize>,
    ) {
        let classes = self.classes();
        let kernels = svc.kernel.matrix(input, svc.vectors.view());
        let pairs = classes * (classes - 1) / 2;
        let all_decisions = svc.decisions(&kernels);
        let mut votes = vec![0u32; classes];
        let mut pairwise = vec![0.0f32; classes * classes];
        let mut coupling = Coupling::new(classes);
        let mut decisions = vec![0.0f32; pairs];
        for (sums, mut out) in all_decisions
            .chunks_exact(pairs)
            .zip(scores.outer_iter_mut())
        {
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            for (d, &sum) in decisions.iter_mut().zip(sums) {
                *d = sum as f32;
            }
            votes.fill(0);
            let mut pair = 0;
            for i in 0..classes {
                for j in i + 1..classes {
                    votes[if sums[pair] > 0.0 { i } else { j }] += 1;
                    pair += 1;
                }
            }
            winners.push(first_max(&votes));

            match &svc.platt {
                Some(platt) => {
                    pairwise.fill(0.0);
                    let mut pair = 0;
                    for i in 0..classes {
                        for j in i + 1..classes {
                            let (a, b) = platt[pair];
                            let p = clamp_probability(1.0 - logistic(decisions[pair] * a + b));
                            pairwise[i * classes + j] = p;
                            pairwise[j * classes + i] = 1.0 - p;
                            pair += 1;
                        }
                    }
                    coupling.couple(&pairwise, out);
                    self.post_transform.apply_batched(out);
                }
                None if classes == 2 => {
                    let s = decisions[0];
                    let (a, b) = match self.post_transform {
                        PostTransform::None => (-s, s),
                        PostTransform::Logistic => (logistic(-s), logistic(s)),
                        PostTransform::Softmax | PostTransform::SoftmaxZero => (1.0 - s, s),
                        // onnxruntime leaves the second column unwritten.
                        PostTransform::Probit => (probit(s), 0.0),
                    };
                    out[0] = a;
                    out[1] = b;
                }
                None => {
                    out.copy_from_slice(&decisions);
                    self.post_transform.apply_batched(out);
                }
            }
        }
    }
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.features)
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        self.labels.classifier_outputs(self.score_width())
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let mut scores = Array2::<f32>::zeros((input.nrows(), self.score_width()));
        let mut winners = Vec::with_capacity(input.nrows());
        match &self.machine {
            Machine::Linear { weights, rho } => {
                self.eval_linear(input, weights, *rho, &mut scores, &mut winners)
            }
            Machine::Svc(svc) => self.eval_svc(svc, input, &mut scores, &mut winners),
        }
        Ok(tvec![self.labels.tensor(&winners), scores.into()])
    }
}

/// Clamps a pairwise probability into [1e-7, 1 - 1e-7] as onnxruntime does
/// (a NaN stays NaN).
fn clamp_probability(p: f32) -> f32 {
    let p = if p < 1.0e-7 { 1.0e-7 } else { p };
    let high = 1.0 - 1.0e-7;
    if high < p {
        high
    } else {
        p
    }
}

/// Scratch space for [`Coupling::couple`], allocated once per batch.
struct Coupling {
    q: Vec<f32>,
    qp: Vec<f32>,
}

impl Coupling {
    fn new(classes: usize) -> Coupling {
        Coupling {
            q: vec![0.0; classes * classes],
            qp: vec![0.0; classes],
        }
    }

    /// Class probabilities from pairwise ones (`r[i * k + j]`: class i beats
    /// class j), by the fixed-point iteration of Wu, Lin and Weng (2004), method
    /// 2, as libsvm's `multiclass_probability` and onnxruntime (in f32, at most
    /// 100 rounds) compute it.
    fn couple(&mut self, r: &[f32], p: &mut [f32]) {
        let k = self.qp.len();
        let kf = k as f32;
        let (q, qp) = (&mut self.q, &mut self.qp);
        q.fill(0.0);
        for i in 0..k {
            p[i] = 1.0 / kf;
            for j in 0..i {
                q[i * k + i] += r[j * k + i] * r[j * k + i];
                q[i * k + j] = q[j * k + i];
            }
            for j in i + 1..k {
                q[i * k + i] += r[j * k + i] * r[j * k + i];
                q[i * k + j] = -r[j * k + i] * r[i * k + j];
            }
        }
        let eps = 0.005 / kf;
        for _ in 0..100 {
            let mut pqp = 0.0f32;
            for i in 0..k {
                qp[i] = 0.0;
                for j in 0..k {
                    qp[i] += q[i * k + j] * p[j];
                }
                pqp += p[i] * qp[i];
            }
            let mut max_error = 0.0f32;
            for &v in qp.iter() {
                let error = (v - pqp).abs();
                if error > max_error {
                    max_error = error;
                }
            }
            if max_error < eps {
                break;
            }
            for i in 0..k {
                let diff = (-qp[i] + pqp) / q[i * k + i];
                p[i] += diff;
                pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i]))
                    / (1.0 + diff)
                    / (1.0 + diff);
                for j in 0..k {
                    qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                    p[j] /= 1.0 + diff;
                }
            }
        }
    }
}

fn regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expansion(SvmRegressor::parse(node)?), vec![]))
}

/// One target: `coefficients · kernel(x, vectors) + rho` (libsvm) or
/// `coefficients · x + rho` (liblinear).
#[derive(Debug, Clone, PartialEq)]
struct SvmRegressor {
    kernel: SvmKernel,
    /// `[vectors, features]`, `None` for liblinear.
    vectors: Option<Array2<f32>>,
    coefficients: Array1<f32>,
    rho: f32,
    /// Outputs the sign of the score, ±1 (one-class SVM).
    one_class: bool,
    features: usize,
}

impl SvmRegressor {
    fn parse(node: &NodeProto) -> TractResult<SvmRegressor> {
        let attrs = Attributes::new(node);
        let supports = attrs
            .int("n_supports")
            .ok_or_else(|| attrs.error("n_supports", "is required"))?;
        let supports = usize_of(&attrs, "n_supports", supports)?;
        let coefficients = attrs.required_floats_f32("coefficients")?;
        if coefficients.is_empty() {
            return Err(attrs.error("coefficients", "is empty"));
        }
        let rho = attrs.required_floats_f32("rho")?;
        let rho = *rho.first().ok_or_else(|| attrs.error("rho", "is empty"))?;
        // Parsed for its errors only: onnxruntime ignores post_transform here
        // (checked with 1.31.1), and so do we.
        PostTransform::parse(&attrs)?;
        let one_class = attrs.int("one_class").unwrap_or(0) != 0;
        let (kernel, vectors, features) = if supports > 0 {
            attrs.expect_len("coefficients", &coefficients, supports)?;
            let vectors = rows_of(
                &attrs,
                "support_vectors",
                attrs.required_floats_f32("support_vectors")?,
                supports,
                "support vectors",
            )?;
            let features = vectors.ncols();
            (SvmKernel::parse(&attrs)?, Some(vectors), features)
        } else {
            (SvmKernel::LINEAR, None, coefficients.len())
        };
        Ok(SvmRegressor {
            kernel,
            vectors,
            coefficients: Array1::from(coefficients),
            rho,
            one_class,
            features,
        })
    }
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn input_width(&self) -> Option<usize> {
        Some(self.features)
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: DatumType::F32,
            width: Width::Columns(1)
        }]
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let coefficients = self.coefficients.view().insert_axis(Axis(0));
        let mut y = match &self.vectors {
            // onnxruntime always adds rho here, zero or not.
            Some(vectors) => sgemm_nt(
                self.kernel.matrix(input, vectors.view()).view(),
                coefficients,
                1.0,
                Some(self.rho),
            ),
            None => sgemm_nt(
                input,
                coefficients,
                1.0,
                Some(self.rho).filter(|&r| r != 0.0),
            ),
        };
        if self.one_class {
            y.mapv_inplace(|v| if v > 0.0 { 1.0 } else { -1.0 });
        }
        Ok(tvec![y.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::super::post_transform::mlas_logistic;
    use super::*;
    use tract_onnx::pb::tensor_shape_proto::dimension;
    use tract_onnx::pb::{type_proto, AttributeProto};
    use tract_onnx::prelude::tract_ndarray::arr2;
    use tract_onnx::prelude::Framework;

    fn classifier_node(attrs: Vec<AttributeProto>) -> NodeProto {
        node("SVMClassifier", &["X"], &["L", "S"], attrs)
    }

    fn run(node: NodeProto, input: &Tensor) -> TVec<Tensor> {
        run_node(node, &[("X", input)]).unwrap()
    }

    /// Two classes (labels 10 and 20), one support vector each, a linear
    /// kernel: the decision is x·(1, 0) - x·(0, 1) + 0.5 = x0 - x1 + 0.5.
    fn linear_binary(extra: Vec<AttributeProto>) -> NodeProto {
        let mut attrs = vec![
            string("kernel_type", "LINEAR"),
            floats("kernel_params", &[0.0, 0.0, 3.0]),
            ints("vectors_per_class", &[1, 1]),
            floats("support_vectors", &[1.0, 0.0, 0.0, 1.0]),
            floats("coefficients", &[1.0, -1.0]),
            floats("rho", &[0.5]),
            ints("classlabels_ints", &[10, 20]),
        ];
        attrs.extend(extra);
        classifier_node(attrs)
    }

    #[test]
    fn linear_kernel_binary_by_hand() {
        let x: Tensor = arr2(&[[2.0f32, 1.0], [0.0, 3.0], [1.0, 1.5]]).into();
        // Decisions 1.5, -2.5 and 0: a positive one votes for the first class.
        let out = run(linear_binary(vec![]), &x);
        assert_eq!(values::<i64>(&out[0]), [10, 20, 20]);
        // Without probabilities a binary model gives [-d, d].
        assert_eq!(out[1].shape(), [3, 2]);
        assert_close(&out[1], &[-1.5, 1.5, 2.5, -2.5, 0.0, 0.0], 0.0);

        let out = run(
            linear_binary(vec![string("post_transform", "LOGISTIC")]),
            &x,
        );
        let l = |v: f32| 1.0 / (1.0 + (-v).exp());
        let expected = [l(-1.5), l(1.5), l(2.5), l(-2.5), 0.5, 0.5];
        assert_close(&out[1], &expected, 1e-6);
        assert_eq!(values::<i64>(&out[0]), [10, 20, 20]);

        // onnxruntime writes [1 - d, d] for the other transforms.
        let out = run(linear_binary(vec![string("post_transform", "SOFTMAX")]), &x);
        assert_close(&out[1], &[-0.5, 1.5, 3.5, -2.5, 1.0, 0.0], 0.0);
    }

    #[test]
    fn string_labels() {
        let node = classifier_node(
            linear_binary(vec![])
                .attribute
                .into_iter()
                .filter(|a| a.name != "classlabels_ints")
                .chain([strings("classlabels_strings", &["yes", "no"])])
                .collect(),
        );
        let out = run(node, &arr2(&[[2.0f32, 1.0], [0.0, 3.0]]).into());
        assert_eq!(values::<String>(&out[0]), ["yes", "no"]);
    }

    /// Three classes on a line, RBF kernel with gamma 0.5: class 0 has the
    /// vectors 0 and 0.5, class 1 has 2, class 2 has 4.
    fn rbf_three(extra: Vec<AttributeProto>) -> NodeProto {
        let mut attrs = vec![
            string("kernel_type", "RBF"),
            floats("kernel_params", &[0.5, 0.0, 3.0]),
            ints("vectors_per_class", &[2, 1, 1]),
            floats("support_vectors", &[0.0, 0.5, 2.0, 4.0]),
            // Row 0 weighs class 0's vectors against class 1 (and class 1's
            // and 2's against class 0); row 1 the rest.
            floats("coefficients", &[0.5, 0.7, -1.0, -0.8, 0.6, 0.4, 1.0, -1.2]),
            floats("rho", &[0.1, -0.2, 0.05]),
            ints("classlabels_ints", &[0, 1, 2]),
        ];
        attrs.extend(extra);
        classifier_node(attrs)
    }

    const PROB_A: [f32; 3] = [-2.0, -1.5, -3.0];
    const PROB_B: [f32; 3] = [0.1, -0.2, 0.3];

    /// The three pairwise decisions at `x`, in f64.
    fn rbf_three_decisions(x: f64) -> [f64; 3] {
        let k: Vec<f64> = [0.0, 0.5, 2.0, 4.0]
            .iter()
            .map(|v: &f64| (-0.5 * (x - v) * (x - v)).exp())
            .collect();
        [
            // (0, 1): class 0 with row 0, class 1 with row 0.
            0.5 * k[0] + 0.7 * k[1] - 1.0 * k[2] + 0.1,
            // (0, 2): class 0 with row 1, class 2 with row 0.
            0.6 * k[0] + 0.4 * k[1] - 0.8 * k[3] - 0.2,
            // (1, 2): class 1 with row 1, class 2 with row 1.
            1.0 * k[2] - 1.2 * k[3] + 0.05,
        ]
    }

    /// Platt's pairwise probabilities `r[i][j]` (class i beats class j).
    fn pairwise(d: [f64; 3]) -> [[f64; 3]; 3] {
        let mut r = [[0.0f64; 3]; 3];
        for (ix, &(i, j)) in [(0, 1), (0, 2), (1, 2)].iter().enumerate() {
            let p = 1.0 / (1.0 + (PROB_A[ix] as f64 * d[ix] + PROB_B[ix] as f64).exp());
            r[i][j] = p;
            r[j][i] = 1.0 - p;
        }
        r
    }

    /// libsvm's iteration for the coupling, written out in f64.
    fn coupled_iteratively(d: [f64; 3]) -> [f64; 3] {
        let r = pairwise(d);
        let mut q = [[0.0f64; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                q[i][j] = if i == j {
                    (0..3).filter(|&s| s != i).map(|s| r[s][i] * r[s][i]).sum()
                } else {
                    -r[j][i] * r[i][j]
                };
            }
        }
        let mut p = [1.0 / 3.0; 3];
        for _ in 0..100 {
            let qp: Vec<f64> = (0..3)
                .map(|i| (0..3).map(|j| q[i][j] * p[j]).sum())
                .collect();
            let pqp: f64 = (0..3).map(|i| p[i] * qp[i]).sum();
            if qp.iter().all(|v| (v - pqp).abs() < 0.005 / 3.0) {
                break;
            }
            for t in 0..3 {
                // Recomputed rather than updated: the same fixed point.
                let qp: Vec<f64> = (0..3)
                    .map(|i| (0..3).map(|j| q[i][j] * p[j]).sum())
                    .collect();
                let pqp: f64 = (0..3).map(|i| p[i] * qp[i]).sum();
                let diff = (pqp - qp[t]) / q[t][t];
                p[t] += diff;
                p.iter_mut().for_each(|v| *v /= 1.0 + diff);
            }
        }
        p
    }

    /// The exact optimum of the coupling problem (Wu, Lin and Weng's second
    /// method): minimise pᵀQp with Σp = 1, i.e. solve [Q 1; 1ᵀ 0].
    fn coupled_exactly(d: [f64; 3]) -> [f64; 3] {
        let r = pairwise(d);
        let mut a = [[0.0f64; 5]; 4];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] = if i == j {
                    (0..3).filter(|&s| s != i).map(|s| r[s][i] * r[s][i]).sum()
                } else {
                    -r[j][i] * r[i][j]
                };
            }
            a[i][3] = 1.0;
            a[3][i] = 1.0;
        }
        a[3][4] = 1.0;
        // Gaussian elimination with partial pivoting.
        for c in 0..4 {
            let pivot = (c..4)
                .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
                .unwrap();
            a.swap(c, pivot);
            let pivot_row = a[c];
            for (ix, row) in a.iter_mut().enumerate() {
                if ix != c {
                    let f = row[c] / pivot_row[c];
                    for (v, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                        *v -= f * p;
                    }
                }
            }
        }
        [a[0][4] / a[0][0], a[1][4] / a[1][1], a[2][4] / a[2][2]]
    }

    #[test]
    fn rbf_three_classes_decisions_by_hand() {
        let xs = [-0.5f32, 0.3, 1.2, 2.1, 3.0, 4.5];
        let x = Tensor::from_shape(&[6, 1], &xs).unwrap();
        let out = run(rbf_three(vec![]), &x);
        assert_eq!(out[1].shape(), [6, 3]);
        let scores = values::<f32>(&out[1]);
        let labels = values::<i64>(&out[0]);
        for (row, &x) in xs.iter().enumerate() {
            let d = rbf_three_decisions(x as f64);
            for (got, want) in scores[row * 3..row * 3 + 3].iter().zip(d) {
                assert!((*got as f64 - want).abs() < 1e-6, "{x}: {got} vs {want}");
            }
            let mut votes = [0; 3];
            for (ix, &(i, j)) in [(0, 1), (0, 2), (1, 2)].iter().enumerate() {
                votes[if d[ix] > 0.0 { i } else { j }] += 1;
            }
            let winner = (0..3).fold(0, |b, c| if votes[c] > votes[b] { c } else { b });
            assert_eq!(labels[row], winner as i64, "{x}");
        }
    }

    #[test]
    fn rbf_three_classes_with_probabilities() {
        let xs = [-0.5f32, 0.3, 1.2, 2.1, 3.0, 4.5];
        let x = Tensor::from_shape(&[6, 1], &xs).unwrap();
        let node = rbf_three(vec![floats("prob_a", &PROB_A), floats("prob_b", &PROB_B)]);
        let out = run(node, &x);
        assert_eq!(out[1].shape(), [6, 3]);
        let probabilities = values::<f32>(&out[1]);
        let labels = values::<i64>(&out[0]);
        let plain = values::<i64>(&run(rbf_three(vec![]), &x)[0]);
        for (row, &x) in xs.iter().enumerate() {
            let p = &probabilities[row * 3..row * 3 + 3];
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{x}: {p:?}");
            let d = rbf_three_decisions(x as f64);
            let iterated = coupled_iteratively(d);
            for (got, want) in p.iter().zip(iterated) {
                assert!(
                    (*got as f64 - want).abs() < 1e-5,
                    "{x}: {p:?} vs {iterated:?}"
                );
            }
            // The iteration stops once every (Qp)_i is within 0.005 / 3 of
            // pᵀQp, so it lands near, not on, the optimum.
            let exact = coupled_exactly(d);
            for (got, want) in p.iter().zip(exact) {
                assert!((*got as f64 - want).abs() < 5e-3, "{x}: {p:?} vs {exact:?}");
            }
            // The label is still the vote's, not the most probable class.
            assert_eq!(labels[row], plain[row]);
        }
    }

    #[test]
    fn coupling_of_two_classes_is_the_pairwise_probability() {
        let mut p = [0.0f32; 2];
        Coupling::new(2).couple(&[0.0, 0.8, 0.2, 0.0], &mut p);
        assert!(
            (p[0] - 0.8).abs() < 1e-3 && (p[1] - 0.2).abs() < 1e-3,
            "{p:?}"
        );
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn score_widths_follow_onnxruntime() {
        let four = |extra: Vec<AttributeProto>| {
            let mut attrs = vec![
                string("kernel_type", "RBF"),
                floats("kernel_params", &[0.5, 0.0, 3.0]),
                ints("vectors_per_class", &[1, 1, 1, 1]),
                floats("support_vectors", &[0.0, 1.0, 2.0, 3.0]),
                floats("coefficients", &[1.0; 12]),
                floats("rho", &[0.0; 6]),
                ints("classlabels_ints", &[0, 1, 2, 3]),
            ];
            attrs.extend(extra);
            SvmClassifier::parse(&classifier_node(attrs)).unwrap()
        };
        assert_eq!(four(vec![]).score_width(), 6);
        let probabilities = vec![floats("prob_a", &[-1.0; 6]), floats("prob_b", &[0.0; 6])];
        assert_eq!(four(probabilities).score_width(), 4);
        let binary = SvmClassifier::parse(&linear_binary(vec![])).unwrap();
        assert_eq!(binary.score_width(), 2);
        let liblinear = SvmClassifier::parse(&classifier_node(vec![
            floats("coefficients", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            floats("rho", &[0.0]),
            ints("classlabels_ints", &[0, 1, 2]),
        ]))
        .unwrap();
        assert_eq!(liblinear.score_width(), 3);
        assert_eq!(liblinear.features, 2);
    }

    #[test]
    fn symbolic_batch_gets_fixed_widths() {
        let x: Tensor = arr2(&[[0.0f32, 0.0]]).into();
        let mut model = model(vec![rbf_three_2d()], &[("X", &x)], &[], &["L", "S"], 1);
        let input = &mut model.graph.as_mut().unwrap().input[0];
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            panic!("no tensor type")
        };
        t.shape.as_mut().unwrap().dim[0].value = Some(dimension::Value::DimParam("N".into()));
        let mut onnx = tract_onnx::onnx();
        register(&mut onnx.op_register);
        let typed = onnx
            .model_for_proto_model(&model)
            .unwrap()
            .into_typed()
            .unwrap();
        let label = typed.output_fact(0).unwrap();
        let scores = typed.output_fact(1).unwrap();
        assert_eq!(label.datum_type, DatumType::I64);
        assert_eq!(label.shape.len(), 1);
        assert_eq!(scores.shape.len(), 2);
        assert!(
            scores.shape[0].to_i64().is_err(),
            "batch should stay symbolic"
        );
        assert_eq!(scores.shape[1], 3.to_dim());
    }

    /// `rbf_three` on two features (the second one ignored by the vectors).
    fn rbf_three_2d() -> NodeProto {
        let mut node = rbf_three(vec![]);
        for a in node.attribute.iter_mut() {
            if a.name == "support_vectors" {
                a.floats = vec![0.0, 0.0, 0.5, 0.0, 2.0, 0.0, 4.0, 0.0];
            }
        }
        node
    }

    #[test]
    fn liblinear_binary_label_rules() {
        // Scores x·w + rho[0] per class; rho[0] serves every class.
        let node = |coefficients: &[f32], extra: Vec<AttributeProto>| {
            let mut attrs = vec![
                floats("coefficients", coefficients),
                floats("rho", &[0.1, 99.0]),
                ints("classlabels_ints", &[0, 1]),
            ];
            attrs.extend(extra);
            classifier_node(attrs)
        };
        let x: Tensor = arr2(&[[1.0f32, 0.0], [0.0, 1.0], [0.3, 0.3]]).into();
        // Mixed weights: class 1 as soon as the best score is positive, else
        // the argmax.
        let out = run(node(&[-1.0, 0.5, 0.3, -2.0], vec![]), &x);
        assert_close(&out[1], &[-0.9, 0.4, 0.6, -1.9, -0.05, -0.41], 1e-6);
        assert_eq!(values::<i64>(&out[0]), [1, 1, 0]);
        // All weights positive: class 1 when the best score reaches 0.5.
        let out = run(node(&[1.0, 0.0, 0.0, 0.2], vec![]), &x);
        assert_close(&out[1], &[1.1, 0.1, 0.1, 0.3, 0.4, 0.16], 1e-6);
        assert_eq!(values::<i64>(&out[0]), [1, 1, 0]);
        // With probabilities: the argmax.
        let probabilities = vec![floats("prob_a", &[-1.0]), floats("prob_b", &[0.0])];
        let out = run(node(&[1.0, 0.0, 0.0, 0.2], probabilities), &x);
        assert_eq!(values::<i64>(&out[0]), [0, 1, 0]);
    }

    fn regressor_node(attrs: Vec<AttributeProto>) -> NodeProto {
        node("SVMRegressor", &["X"], &["Y"], attrs)
    }

    #[test]
    fn regressor_linear_rbf_and_one_class() {
        let x: Tensor = arr2(&[[1.0f32, 2.0], [3.0, 0.5]]).into();
        // liblinear: x·(1, -2) + 0.5; onnxruntime ignores post_transform.
        let out = run(
            regressor_node(vec![
                int("n_supports", 0),
                floats("coefficients", &[1.0, -2.0]),
                floats("rho", &[0.5]),
                string("post_transform", "LOGISTIC"),
            ]),
            &x,
        );
        assert_eq!(out[0].shape(), [2, 1]);
        assert_close(&out[0], &[-2.5, 2.5], 0.0);

        let svr = |one_class: i64| {
            regressor_node(vec![
                string("kernel_type", "RBF"),
                floats("kernel_params", &[0.25, 0.0, 3.0]),
                int("n_supports", 2),
                floats("support_vectors", &[1.0, 2.0, 0.0, 0.0]),
                floats("coefficients", &[2.0, -1.0]),
                floats("rho", &[-0.5]),
                int("one_class", one_class),
            ])
        };
        let k = |a: [f32; 2], b: [f32; 2]| {
            (-0.25 * ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))).exp()
        };
        let y = |a| 2.0 * k(a, [1.0, 2.0]) - k(a, [0.0, 0.0]) - 0.5;
        let expected = [y([1.0, 2.0]), y([3.0, 0.5])];
        assert!(expected[0] > 0.0 && expected[1] < 0.0);
        assert_close(&run(svr(0), &x)[0], &expected, 1e-6);
        assert_close(&run(svr(1), &x)[0], &[1.0, -1.0], 0.0);
    }

    #[test]
    fn kernels_and_mlas_arithmetic() {
        let kernel = |kind, gamma, coef0, degree| SvmKernel {
            kind,
            gamma,
            coef0,
            degree,
        };
        let x = arr2(&[[1.0f32, 2.0], [0.5, -1.0]]);
        let v = arr2(&[[0.5f32, 0.25], [-1.0, 1.0], [2.0, 0.0]]);
        let dots = [1.0f32, 1.0, 2.0, 0.0, -1.5, 1.0];
        let poly = kernel(KernelType::Poly, 0.5, 1.0, 3.0).matrix(x.view(), v.view());
        let want: Vec<f32> = dots.iter().map(|d| (0.5 * d + 1.0f32).powi(3)).collect();
        assert_eq!(poly.iter().copied().collect::<Vec<_>>(), want);
        let sigmoid = kernel(KernelType::Sigmoid, 0.5, -0.25, 0.0).matrix(x.view(), v.view());
        for (got, d) in sigmoid.iter().zip(dots) {
            assert!((got - (0.5 * d - 0.25f32).tanh()).abs() < 1e-6);
        }
        // MLAS's tanh: exact at 0, saturates past 9, keeps NaN.
        assert_eq!(mlas_tanh(0.0), 0.0);
        assert!((mlas_tanh(20.0) - 1.0).abs() < 1e-6);
        assert!(mlas_tanh(f32::NAN).is_nan());
        assert_eq!(mlas_logistic(0.0), 0.5);
        assert_eq!(mlas_logistic(-30.0), 0.0);

        // A one-row product sums eight lanes: 1e8 and -1e8 land in lane 0
        // and cancel before the ones in lanes 1 and 2 are added.
        let a = arr2(&[[1e8f32, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e8]]);
        let b = arr2(&[[1.0f32; 9]]);
        assert_eq!(sgemm_nt(a.view(), b.view(), 1.0, None)[(0, 0)], 2.0);
        // Several rows go through the fused, in-order kernel, where the ones
        // are absorbed by 1e8 first.
        let a2 = arr2(&[[1e8f32, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e8], [0.0; 9]]);
        assert_eq!(sgemm_nt(a2.view(), b.view(), 1.0, None)[(0, 0)], 0.0);
        assert_eq!(mlas_stride_k(100, 13), 16);
        assert_eq!(mlas_stride_k(1, 300), 1024);
    }

    #[test]
    fn malformed_attributes_fail_at_load() {
        let base = || linear_binary(vec![]).attribute;
        let with = |name: &str, attr: Option<AttributeProto>| {
            let mut attrs: Vec<_> = base().into_iter().filter(|a| a.name != name).collect();
            attrs.extend(attr);
            classifier_node(attrs)
        };
        let cases = [
            (
                with("kernel_params", Some(floats("kernel_params", &[0.5, 0.0]))),
                "kernel_params",
            ),
            (
                with("kernel_type", Some(string("kernel_type", "CUBIC"))),
                "kernel_type",
            ),
            (
                with(
                    "vectors_per_class",
                    Some(ints("vectors_per_class", &[1, 1, 1])),
                ),
                "vectors_per_class",
            ),
            (
                with(
                    "vectors_per_class",
                    Some(ints("vectors_per_class", &[2, -1])),
                ),
                "vectors_per_class",
            ),
            (
                with(
                    "support_vectors",
                    Some(floats("support_vectors", &[1.0, 0.0, 0.0])),
                ),
                "support_vectors",
            ),
            (with("support_vectors", None), "support_vectors"),
            (
                with("coefficients", Some(floats("coefficients", &[1.0]))),
                "coefficients",
            ),
            (with("rho", Some(floats("rho", &[]))), "rho"),
            (with("prob_a", Some(floats("prob_a", &[1.0]))), "prob_b"),
            (with("classlabels_ints", None), "classlabels_ints"),
            (
                with("post_transform", Some(string("post_transform", "CUBE"))),
                "post_transform",
            ),
        ];
        for (node, attribute) in cases {
            let error = SvmClassifier::parse(&node).unwrap_err().to_string();
            assert!(
                error.contains(&format!("`{attribute}`")),
                "{attribute}: {error}"
            );
            assert!(error.contains("SVMClassifier node"), "{error}");
        }
        let rbf_without_params = classifier_node(
            rbf_three(vec![])
                .attribute
                .into_iter()
                .filter(|a| a.name != "kernel_params")
                .collect(),
        );
        let error = SvmClassifier::parse(&rbf_without_params)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`kernel_params`"), "{error}");
        let probabilities_short =
            rbf_three(vec![floats("prob_a", &[1.0]), floats("prob_b", &[1.0])]);
        let error = SvmClassifier::parse(&probabilities_short)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`prob_a`"), "{error}");
        let liblinear_ragged = classifier_node(vec![
            floats("coefficients", &[1.0, 2.0, 3.0]),
            floats("rho", &[0.0]),
            ints("classlabels_ints", &[0, 1]),
        ]);
        let error = SvmClassifier::parse(&liblinear_ragged)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`coefficients`"), "{error}");

        let regressor = |attrs| {
            SvmRegressor::parse(&regressor_node(attrs))
                .unwrap_err()
                .to_string()
        };
        let error = regressor(vec![floats("coefficients", &[1.0]), floats("rho", &[0.0])]);
        assert!(error.contains("`n_supports`"), "{error}");
        let error = regressor(vec![
            int("n_supports", 2),
            floats("support_vectors", &[1.0, 2.0]),
            floats("coefficients", &[1.0]),
            floats("rho", &[0.0]),
        ]);
        assert!(error.contains("`coefficients`"), "{error}");
    }

    #[test]
    fn input_of_the_wrong_width_fails_at_load() {
        let x: Tensor = arr2(&[[1.0f32, 2.0, 3.0]]).into();
        let error = node_error(linear_binary(vec![]), &[("X", &x)]);
        assert!(error.contains("2 features"), "{error}");
    }
}

//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3).
//!
//! The trees are walked natively ([`forest`]: flattened nodes, rows in lock
//! step), so a forest costs one pass of comparisons per tree instead of
//! tract's linear scan of the leaf table.
//! Scores, base values and the binary-classification conventions follow
//! onnxruntime, which is what exporters test against.

use std::collections::HashSet;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2};
use tract_onnx::tract_hir::internal::*;

mod forest;

use self::forest::{Forest, Sums};
use super::attributes::Attributes;
use super::kernel::{expansion, Kernel, OutputSpec, Width};
use super::labels::ClassLabels;
use super::post_transform::{logistic, probit, PostTransform};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleClassifier", classifier);
    register.insert("TreeEnsembleRegressor", regressor);
}

fn classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let labels = ClassLabels::parse(&attrs, "classlabels_int64s")?;
    let forest = Forest::parse(&attrs, "class", labels.len())?;
    let base_values = attrs.floats("base_values")?.unwrap_or_default();
    if !(base_values.is_empty()
        || base_values.len() == labels.len()
        || (labels.len() == 2 && base_values.len() == 1))
    {
        return Err(attrs.error(
            "base_values",
            format!(
                "has {} entries for {} classes",
                base_values.len(),
                labels.len()
            ),
        ));
    }
    let targets: HashSet<u32> = forest.weights.iter().map(|w| w.target).collect();
    let kernel = TreeClassifier {
        binary_one_class: labels.len() == 2 && targets.len() == 1,
        weights_all_positive: forest.weights.iter().all(|w| w.value >= 0.0),
        post_transform: PostTransform::parse(&attrs)?,
        forest,
        labels,
        base_values,
    };
    Ok((expansion(kernel), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct TreeClassifier {
    forest: Forest,
    labels: ClassLabels,
    base_values: Vec<f64>,
    post_transform: PostTransform,
    /// Two classes but leaves only ever score one of them: the score is a
    /// margin or a probability for the positive class.
    binary_one_class: bool,
    weights_all_positive: bool,
}

/// How a binary model's single score becomes two columns (onnxruntime's
/// `add_second_class`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SecondClass {
    /// Probabilities: [1 - s, s].
    Complement,
    /// Margins, positive class winning: [-s, s] (or logistic of each).
    MarginPositive,
    /// Margins, negative class winning: [s, -s] (or logistic of -s, s).
    MarginNegative,
    /// No second column.
    None,
}

impl TreeClassifier {
    /// Final scores and winning class of one row, as onnxruntime computes them.
    fn finish_row(&self, sums: &mut [f64], scored: &mut [bool], out: &mut [f32]) -> usize {
        let classes = self.labels.len();
        if classes > 2 {
            for (k, &base) in self.base_values.iter().enumerate() {
                sums[k] = self.forest.add(sums[k], base);
                scored[k] = true;
            }
            let mut best: Option<usize> = None;
            for k in 0..classes {
                if scored[k] && best.is_none_or(|b| sums[k] > sums[b]) {
                    best = Some(k);
                }
            }
            for (o, &s) in out.iter_mut().zip(sums.iter()) {
                *o = s as f32;
            }
            self.post_transform.apply(out);
            return best.unwrap_or(0);
        }

        // Two classes.
        let mut second = SecondClass::None;
        let mut single = false;
        match self.base_values.len() {
            2 if scored[1] => {
                // onnxruntime's rule: class 1 takes class 0's sum plus its base.
                sums[1] = self.forest.add(self.base_values[1], sums[0]);
                sums[0] = -sums[1];
            }
            2 => {
                sums[0] = self.forest.add(sums[0], self.base_values[0]);
                sums[1] = self.forest.add(sums[1], self.base_values[1]);
            }
            1 => {
                sums[0] = self.forest.add(sums[0], self.base_values[0]);
                single = !scored[1];
            }
            _ => {
                second = SecondClass::MarginNegative;
                single = !scored[1];
            }
        }
        let positive = if !single && scored[1] {
            sums[1]
        } else if scored[0] {
            sums[0]
        } else {
            0.0
        };
        let winner = if self.binary_one_class {
            let wins = if self.weights_all_positive {
                positive > 0.5
            } else {
                positive > 0.0
            };
            second = match (self.weights_all_positive, wins) {
                (true, _) => SecondClass::Complement,
                (false, true) => SecondClass::MarginPositive,
                (false, false) => SecondClass::MarginNegative,
            };
            wins as usize
        } else {
            (positive > 0.0) as usize
        };
        if !single {
            out[0] = sums[0] as f32;
            out[1] = sums[1] as f32;
            self.post_transform.apply(out);
            return winner;
        }
        let s = sums[0] as f32;
        let pt = self.post_transform;
        let (a, b) = match (pt, second) {
            (PostTransform::Probit, _) => (probit(s), 0.0),
            (_, SecondClass::Complement) => (1.0 - s, s),
            (
                PostTransform::Logistic,
                SecondClass::MarginPositive | SecondClass::MarginNegative,
            ) => (logistic(-s), logistic(s)),
            (_, SecondClass::MarginPositive) => (-s, s),
            (_, SecondClass::MarginNegative) => (s, -s),
            (_, SecondClass::None) => (s, 0.0),
        };
        out[0] = a;
        out[1] = b;
        winner
    }
}

impl Kernel for TreeClassifier {
    fn name(&self) -> &'static str {
        "TreeEnsembleClassifier"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        self.labels.classifier_outputs(self.labels.len())
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let Sums {
            mut values,
            mut scored,
        } = self.forest.sums(&input)?;
        let classes = self.labels.len();
        let mut scores = Array2::<f32>::zeros((input.nrows(), classes));
        let mut winners = Vec::with_capacity(input.nrows());
        let rows = values
            .chunks_exact_mut(classes)
            .zip(scored.chunks_exact_mut(classes));
        for ((sums, scored), mut out) in rows.zip(scores.rows_mut()) {
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            winners.push(self.finish_row(sums, scored, out));
        }
        Ok(tvec![self.labels.tensor(&winners), scores.into()])
    }
}

/// How a regressor combines the trees' values for a target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

fn regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let targets = attrs.positive_int("n_targets", 1)?;
    let aggregate = attrs.choice(
        "aggregate_function",
        &[
            ("SUM", Aggregate::Sum),
            ("AVERAGE", Aggregate::Average),
            ("MIN", Aggregate::Min),
            ("MAX", Aggregate::Max),
        ],
    )?;
    let base_values = attrs.floats("base_values")?.unwrap_or_default();
    if !(base_values.is_empty() || base_values.len() == targets || base_values.len() == 1) {
        return Err(attrs.error(
            "base_values",
            format!("has {} entries for {targets} targets", base_values.len()),
        ));
    }
    let kernel = TreeRegressor {
        forest: Forest::parse(&attrs, "target", targets)?,
        aggregate,
        base_values,
        post_transform: PostTransform::parse(&attrs)?,
    };
    Ok((expansion(kernel), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct TreeRegressor {
    forest: Forest,
    aggregate: Aggregate,
    base_values: Vec<f64>,
    post_transform: PostTransform,
}

impl Kernel for TreeRegressor {
    fn name(&self) -> &'static str {
        "TreeEnsembleRegressor"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: DatumType::F32,
            width: Width::Columns(self.forest.targets)
        }]
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let (rows, targets, trees) = (input.nrows(), self.forest.targets, self.forest.trees());
        let mut output = Array2::<f32>::zeros((rows, targets));
        let acc = match self.aggregate {
            Aggregate::Sum | Aggregate::Average => self.forest.sums(&input)?.values,
            Aggregate::Min | Aggregate::Max => {
                let leaves = self.forest.leaves(&input)?;
                let mut acc = vec![0.0f64; rows * targets];
                let mut scored = vec![false; targets];
                for (row, acc) in acc.chunks_exact_mut(targets).enumerate() {
                    scored.fill(false);
                    for tree in 0..trees {
                        for w in self.forest.leaf_weights(leaves[tree * rows + row]) {
                            let (t, v) = (w.target as usize, w.value);
                            let better = match self.aggregate {
                                Aggregate::Min => v < acc[t],
                                _ => v > acc[t],
                            };
                            if !scored[t] || better {
                                acc[t] = v;
                                scored[t] = true;
                            }
                        }
                    }
                }
                acc
            }
        };
        for (acc, mut out) in acc.chunks_exact(targets).zip(output.rows_mut()) {
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            for (t, o) in out.iter_mut().enumerate() {
                let mut v = acc[t];
                if self.aggregate == Aggregate::Average {
                    v /= trees as f64;
                }
                v += match self.base_values.len() {
                    0 => 0.0,
                    1 => self.base_values[0],
                    _ => self.base_values[t],
                };
                *o = v as f32;
            }
            self.post_transform.apply(out);
        }
        Ok(tvec![output.into()])
    }
}

//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3).
//!
//! Trees are flattened into one node array; each row walks each tree from
//! its root with index arithmetic only, so a forest costs one pass of
//! comparisons per tree instead of tract's linear scan of the leaf table.
//! Scores, base values and the binary-classification conventions follow
//! onnxruntime, which is what exporters test against.

use std::collections::{HashMap, HashSet};

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2};
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{contiguous_row, expansion, Kernel, OutputSpec, Width};
use super::labels::ClassLabels;
use super::post_transform::{logistic, probit, PostTransform};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleClassifier", classifier);
    register.insert("TreeEnsembleRegressor", regressor);
}

/// How a branch node compares the feature with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl Mode {
    fn parse(name: &str) -> Option<Mode> {
        Some(match name {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => Mode::Leaf,
            _ => return None,
        })
    }
}

/// One node. For a branch, `next` holds the true and false children; for a
/// leaf, the range of its weights in [`Forest::weights`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    threshold: f64,
    feature: u32,
    mode: Mode,
    missing_goes_true: bool,
    next: [u32; 2],
}

/// A leaf's contribution to one class or target.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Weight {
    target: u32,
    value: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Forest {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    weights: Vec<Weight>,
    /// Width of the score vector: classes or targets.
    targets: usize,
    /// Largest feature index read; rows must be wider than this.
    max_feature: usize,
    /// Sums round to f32 after every addition, as onnxruntime's do for
    /// float attributes (ties such as 0.5 vs 0.5 then break the same way);
    /// f64 when the model uses the `*_as_tensor` double forms.
    single_precision: bool,
}

impl Forest {
    /// Parses the `nodes_*` attributes and the leaf attributes named
    /// `{leaf}_*` (`class` for classifiers, `target` for regressors).
    fn parse(attrs: &Attributes, leaf: &str, targets: usize) -> TractResult<Forest> {
        let tree_ids = attrs.required_ints("nodes_treeids")?;
        let n = tree_ids.len();
        if n == 0 {
            return Err(attrs.error("nodes_treeids", "is empty"));
        }
        let node_ids = attrs.required_ints("nodes_nodeids")?;
        let features = attrs.required_ints("nodes_featureids")?;
        let modes = attrs.required_strings("nodes_modes")?;
        let values = attrs
            .floats("nodes_values")?
            .unwrap_or_else(|| vec![0.0; n]);
        let true_ids = attrs.required_ints("nodes_truenodeids")?;
        let false_ids = attrs.required_ints("nodes_falsenodeids")?;
        let missing = attrs
            .ints("nodes_missing_value_tracks_true")
            .unwrap_or_else(|| vec![0; n]);
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", values.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
            ("nodes_missing_value_tracks_true", missing.len()),
        ] {
            if len != n {
                return Err(attrs.error(name, format!("has {len} entries, nodes_treeids has {n}")));
            }
        }

        let index: HashMap<(i64, i64), u32> = tree_ids
            .iter()
            .zip(&node_ids)
            .enumerate()
            .map(|(ix, (&t, &id))| ((t, id), ix as u32))
            .collect();
        if index.len() != n {
            return Err(attrs.error("nodes_nodeids", "repeats a (tree, node) pair"));
        }
        let child = |attr: &str, tree: i64, id: i64| {
            index.get(&(tree, id)).copied().ok_or_else(|| {
                attrs.error(
                    attr,
                    format!("names node {id}, which tree {tree} does not have"),
                )
            })
        };

        let mut nodes = Vec::with_capacity(n);
        let mut max_feature = 0;
        for ix in 0..n {
            let mode = Mode::parse(&modes[ix]).ok_or_else(|| {
                attrs.error("nodes_modes", format!("unknown mode `{}`", modes[ix]))
            })?;
            let (next, feature) = if mode == Mode::Leaf {
                ([0, 0], 0)
            } else {
                let feature = usize::try_from(features[ix])
                    .map_err(|_| attrs.error("nodes_featureids", "is negative"))?;
                max_feature = max_feature.max(feature);
                (
                    [
                        child("nodes_truenodeids", tree_ids[ix], true_ids[ix])?,
                        child("nodes_falsenodeids", tree_ids[ix], false_ids[ix])?,
                    ],
                    feature as u32,
                )
            };
            nodes.push(Node {
                threshold: values[ix],
                feature,
                mode,
                missing_goes_true: missing[ix] != 0,
                next,
            });
        }

        // Leaf weights, grouped by node so each leaf owns a contiguous range.
        let leaf_trees = attrs.required_ints(&format!("{leaf}_treeids"))?;
        let leaf_nodes = attrs.required_ints(&format!("{leaf}_nodeids"))?;
        let leaf_targets = attrs.required_ints(&format!("{leaf}_ids"))?;
        let leaf_values = attrs.required_floats(&format!("{leaf}_weights"))?;
        let m = leaf_trees.len();
        attrs.expect_len(&format!("{leaf}_nodeids"), &leaf_nodes, m)?;
        attrs.expect_len(&format!("{leaf}_ids"), &leaf_targets, m)?;
        attrs.expect_len(&format!("{leaf}_weights"), &leaf_values, m)?;
        let mut by_node: Vec<Vec<Weight>> = vec![Vec::new(); n];
        for w in 0..m {
            let node = child(&format!("{leaf}_nodeids"), leaf_trees[w], leaf_nodes[w])? as usize;
            let target = usize::try_from(leaf_targets[w])
                .ok()
                .filter(|&t| t < targets)
                .ok_or_else(|| {
                    attrs.error(
                        &format!("{leaf}_ids"),
                        format!("{} is not below {targets}", leaf_targets[w]),
                    )
                })?;
            by_node[node].push(Weight {
                target: target as u32,
                value: leaf_values[w],
            });
        }
        let mut weights = Vec::with_capacity(m);
        for (node, node_weights) in nodes.iter_mut().zip(by_node) {
            if node.mode == Mode::Leaf {
                let start = weights.len() as u32;
                weights.extend(node_weights);
                node.next = [start, weights.len() as u32];
            }
        }

        // Roots: per tree, the node no other node points at.
        let children: HashSet<u32> = nodes
            .iter()
            .filter(|n| n.mode != Mode::Leaf)
            .flat_map(|n| n.next)
            .collect();
        let mut roots: Vec<(i64, u32)> = (0..n as u32)
            .filter(|ix| !children.contains(ix))
            .map(|ix| (tree_ids[ix as usize], ix))
            .collect();
        roots.sort();
        let trees: HashSet<i64> = tree_ids.iter().copied().collect();
        if roots.len() != trees.len() {
            return Err(attrs.error(
                "nodes_truenodeids",
                "does not describe one tree per tree id",
            ));
        }
        let forest = Forest {
            nodes,
            roots: roots.into_iter().map(|(_, ix)| ix).collect(),
            weights,
            targets,
            max_feature,
            single_precision: !attrs.has("nodes_values_as_tensor")
                && !attrs.has(&format!("{leaf}_weights_as_tensor")),
        };
        forest.check_acyclic(attrs)?;
        Ok(forest)
    }

    /// Every node is reached at most once from the roots: no cycles, so a
    /// walk always ends at a leaf.
    fn check_acyclic(&self, attrs: &Attributes) -> TractResult<()> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<u32> = self.roots.clone();
        while let Some(ix) = stack.pop() {
            if std::mem::replace(&mut seen[ix as usize], true) {
                return Err(attrs.error("nodes_truenodeids", "makes the trees cyclic or shared"));
            }
            let node = &self.nodes[ix as usize];
            if node.mode != Mode::Leaf {
                stack.extend(node.next);
            }
        }
        Ok(())
    }

    /// The leaf `row` reaches in the tree rooted at `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[f32]) -> &Node {
        let mut node = &self.nodes[root as usize];
        loop {
            let x = row[node.feature as usize] as f64;
            let t = node.threshold;
            let goes_true = match node.mode {
                Mode::Leq => x <= t,
                Mode::Lt => x < t,
                Mode::Gte => x >= t,
                Mode::Gt => x > t,
                Mode::Eq => x == t,
                Mode::Neq => x != t,
                Mode::Leaf => return node,
            } || (node.missing_goes_true && x.is_nan());
            node = &self.nodes[node.next[!goes_true as usize] as usize];
        }
    }

    fn leaf_weights(&self, leaf: &Node) -> &[Weight] {
        &self.weights[leaf.next[0] as usize..leaf.next[1] as usize]
    }

    fn check_width(&self, input: &ArrayView2<f32>) -> TractResult<()> {
        if input.ncols() <= self.max_feature {
            bail!(
                "the trees read feature {}, the input has {} columns",
                self.max_feature,
                input.ncols()
            );
        }
        Ok(())
    }

    /// Summed leaf weights per target, and whether any leaf scored each target.
    fn sum_row(&self, row: &[f32], sums: &mut [f64], scored: &mut [bool]) {
        sums.fill(0.0);
        scored.fill(false);
        for &root in &self.roots {
            for w in self.leaf_weights(self.leaf(root, row)) {
                let t = w.target as usize;
                sums[t] = self.add(sums[t], w.value);
                scored[t] = true;
            }
        }
    }

    /// `a + b` in the precision onnxruntime sums in.
    #[inline]
    fn add(&self, a: f64, b: f64) -> f64 {
        if self.single_precision {
            (a as f32 + b as f32) as f64
        } else {
            a + b
        }
    }
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
        self.forest.check_width(&input)?;
        let classes = self.labels.len();
        let mut scores = Array2::<f32>::zeros((input.nrows(), classes));
        let mut winners = Vec::with_capacity(input.nrows());
        let mut sums = vec![0.0; classes];
        let mut scored = vec![false; classes];
        let mut row_buf = Vec::new();
        for (row, mut out) in input.rows().into_iter().zip(scores.rows_mut()) {
            let row = contiguous_row(row, &mut row_buf);
            self.forest.sum_row(row, &mut sums, &mut scored);
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            winners.push(self.finish_row(&mut sums, &mut scored, out));
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
        self.forest.check_width(&input)?;
        let targets = self.forest.targets;
        let trees = self.forest.roots.len() as f64;
        let mut output = Array2::<f32>::zeros((input.nrows(), targets));
        let mut acc = vec![0.0f64; targets];
        let mut scored = vec![false; targets];
        let mut row_buf = Vec::new();
        for (row, mut out) in input.rows().into_iter().zip(output.rows_mut()) {
            let row = contiguous_row(row, &mut row_buf);
            match self.aggregate {
                Aggregate::Sum | Aggregate::Average => {
                    self.forest.sum_row(row, &mut acc, &mut scored)
                }
                Aggregate::Min | Aggregate::Max => {
                    scored.fill(false);
                    for &root in &self.forest.roots {
                        for w in self.forest.leaf_weights(self.forest.leaf(root, row)) {
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
                    for (a, s) in acc.iter_mut().zip(&scored) {
                        if !s {
                            *a = 0.0;
                        }
                    }
                }
            }
            let out = out.as_slice_mut().expect("fresh arrays are contiguous");
            for (t, o) in out.iter_mut().enumerate() {
                let mut v = acc[t];
                if self.aggregate == Aggregate::Average {
                    v /= trees;
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

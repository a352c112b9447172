//! A tree ensemble's nodes, flattened for fast traversal.
//!
//! Every tree lives in one node array; a branch holds its two children's
//! indices and a leaf points at itself, so a walk is index arithmetic with
//! no branch on the comparison's outcome. A batch is walked tree by tree,
//! [`BLOCK`] rows at a time in lock step for as many steps as the tree is
//! deep: the rows' walks are independent, so their memory loads overlap
//! instead of waiting on each other, and no step asks whether the rows have
//! all arrived. Forests whose branches all compare the same way
//! (scikit-learn: `BRANCH_LEQ`; LightGBM, XGBoost: `BRANCH_LT`) get a walk
//! with that comparison built in.
//! Thresholds keep the precision the model gives them: f32 attributes are
//! compared in f32, `*_as_tensor` doubles in f64, as onnxruntime does.

use std::collections::{HashMap, HashSet};
use std::ops::AddAssign;

use tract_onnx::prelude::tract_ndarray::ArrayView2;
use tract_onnx::tract_hir::internal::*;

use super::super::attributes::Attributes;

/// Rows walked together through each tree.
const BLOCK: usize = 8;

/// How a branch node compares the feature with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A threshold type: f32 for the float attributes, f64 for `*_as_tensor`.
pub trait Threshold: Copy + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
}

impl Threshold for f32 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Threshold for f64 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// One node: what every step reads, 16 bytes with an f32 threshold. A
/// branch's `next` holds its true and false children; a leaf's holds its
/// own index twice, so stepping from a leaf stays there.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node<T> {
    threshold: T,
    feature: u32,
    next: [u32; 2],
}

/// What only some walks read (each node's own mode, which branches send NaN
/// to their true child), kept apart so the nodes stay small.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kind {
    mode: Mode,
    missing_goes_true: bool,
}

/// One tree: its root node and its depth (branches on its longest path).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tree {
    root: u32,
    depth: u32,
}

/// How branch nodes compare, fixed at compile time when a forest uses one
/// mode throughout.
trait Split {
    fn goes_true<T: Threshold>(mode: Mode, x: T, threshold: T) -> bool;
}

struct Leq;
impl Split for Leq {
    #[inline(always)]
    fn goes_true<T: Threshold>(_: Mode, x: T, threshold: T) -> bool {
        x <= threshold
    }
}

struct Lt;
impl Split for Lt {
    #[inline(always)]
    fn goes_true<T: Threshold>(_: Mode, x: T, threshold: T) -> bool {
        x < threshold
    }
}

/// `BRANCH_LEQ` where every branch sends NaN to its true child (LightGBM
/// exports): "not greater" is one comparison that is true for NaN.
struct LeqOrNan;
impl Split for LeqOrNan {
    #[inline(always)]
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // true for NaN, on purpose
    fn goes_true<T: Threshold>(_: Mode, x: T, threshold: T) -> bool {
        !(x > threshold)
    }
}

/// `BRANCH_LT` where every branch sends NaN to its true child.
struct LtOrNan;
impl Split for LtOrNan {
    #[inline(always)]
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // true for NaN, on purpose
    fn goes_true<T: Threshold>(_: Mode, x: T, threshold: T) -> bool {
        !(x >= threshold)
    }
}

/// Each node's own mode.
struct PerNode;
impl Split for PerNode {
    #[inline(always)]
    fn goes_true<T: Threshold>(mode: Mode, x: T, t: T) -> bool {
        match mode {
            Mode::Leq => x <= t,
            Mode::Lt => x < t,
            Mode::Gte => x >= t,
            Mode::Gt => x > t,
            Mode::Eq => x == t,
            Mode::Neq => x != t,
            Mode::Leaf => false,
        }
    }
}

/// A leaf's contribution to one class or target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weight {
    pub target: u32,
    pub value: f64,
}

/// The nodes, with thresholds in the model's precision.
#[derive(Debug, Clone, PartialEq)]
enum Nodes {
    Single(Vec<Node<f32>>),
    Double(Vec<Node<f64>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    nodes: Nodes,
    /// Per node, its mode and NaN routing.
    kinds: Vec<Kind>,
    /// The mode of every branch node, when they share one.
    uniform_mode: Option<Mode>,
    /// Which branch nodes send NaN to their true child.
    missing: Missing,
    trees: Vec<Tree>,
    /// Per node, the range of its weights in `weights` (empty for branches).
    weight_ranges: Vec<[u32; 2]>,
    pub weights: Vec<Weight>,
    /// Per node, its only weight, when every leaf has exactly one (boosted
    /// trees): summing then reads one weight per leaf, no range.
    sole_weights: Option<Vec<Weight>>,
    /// Width of the score vector: classes or targets.
    pub targets: usize,
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
    pub fn parse(attrs: &Attributes, leaf: &str, targets: usize) -> TractResult<Forest> {
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

        if targets == 0 {
            return Err(attrs.error(&format!("{leaf}_ids"), "name no class or target"));
        }
        let mut nodes: Vec<Node<f64>> = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut max_feature = 0;
        for ix in 0..n {
            let mode = Mode::parse(&modes[ix]).ok_or_else(|| {
                attrs.error("nodes_modes", format!("unknown mode `{}`", modes[ix]))
            })?;
            let (next, feature) = if mode == Mode::Leaf {
                ([ix as u32; 2], 0)
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
                next,
            });
            kinds.push(Kind {
                mode,
                missing_goes_true: missing[ix] != 0,
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
        let mut weight_ranges = Vec::with_capacity(n);
        for node_weights in by_node {
            let start = weights.len() as u32;
            weights.extend(node_weights);
            weight_ranges.push([start, weights.len() as u32]);
        }

        let sole_weights = kinds
            .iter()
            .zip(&weight_ranges)
            .all(|(k, [start, end])| k.mode != Mode::Leaf || end - start == 1)
            .then(|| {
                let first = |&[start, _]: &[u32; 2]| weights.get(start as usize).copied();
                let none = Weight {
                    target: 0,
                    value: 0.0,
                };
                // Branches are never summed: any weight will do for them.
                weight_ranges
                    .iter()
                    .map(|r| first(r).unwrap_or(none))
                    .collect()
            });

        // Roots: per tree, the node no other node points at.
        let children: HashSet<u32> = nodes
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| k.mode != Mode::Leaf)
            .flat_map(|(n, _)| n.next)
            .collect();
        let mut roots: Vec<(i64, u32)> = (0..n as u32)
            .filter(|ix| !children.contains(ix))
            .map(|ix| (tree_ids[ix as usize], ix))
            .collect();
        roots.sort();
        let distinct_tree_ids: HashSet<i64> = tree_ids.iter().copied().collect();
        if roots.len() != distinct_tree_ids.len() {
            return Err(attrs.error(
                "nodes_truenodeids",
                "does not describe one tree per tree id",
            ));
        }
        let double_thresholds = attrs.has("nodes_values_as_tensor");
        let branch_modes: HashSet<Mode> = kinds
            .iter()
            .map(|k| k.mode)
            .filter(|&m| m != Mode::Leaf)
            .collect();
        let roots: Vec<u32> = roots.into_iter().map(|(_, ix)| ix).collect();
        let trees = depths(attrs, &nodes, &kinds, &roots)?;
        let branches = || kinds.iter().filter(|k| k.mode != Mode::Leaf);
        let missing = match (
            branches().any(|n| n.missing_goes_true),
            branches().all(|n| n.missing_goes_true),
        ) {
            (false, _) => Missing::None,
            (true, true) => Missing::All,
            (true, false) => Missing::Some,
        };
        Ok(Forest {
            nodes: if double_thresholds {
                Nodes::Double(nodes)
            } else {
                Nodes::Single(nodes.into_iter().map(Node::to_single).collect())
            },
            kinds,
            missing,
            uniform_mode: match branch_modes.len() {
                1 => branch_modes.into_iter().next(),
                _ => None,
            },
            trees,
            weight_ranges,
            weights,
            sole_weights,
            targets,
            max_feature,
            single_precision: !double_thresholds
                && !attrs.has(&format!("{leaf}_weights_as_tensor")),
        })
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    /// The leaf each row of `input` reaches in each tree, `[trees, rows]`.
    pub fn leaves(&self, input: &ArrayView2<f32>) -> TractResult<Vec<u32>> {
        if input.ncols() <= self.max_feature {
            bail!(
                "the trees read feature {}, the input has {} columns",
                self.max_feature,
                input.ncols()
            );
        }
        let input = input.as_standard_layout();
        let data = input.as_slice().expect("standard layout is contiguous");
        let walk = Walk {
            trees: &self.trees,
            kinds: &self.kinds,
            input: data,
            width: input.ncols(),
        };
        Ok(match &self.nodes {
            Nodes::Single(nodes) => walk.nodes(nodes, self.uniform_mode, self.missing),
            Nodes::Double(nodes) => walk.nodes(nodes, self.uniform_mode, self.missing),
        })
    }

    /// The weights of the leaf at node index `leaf`.
    pub fn leaf_weights(&self, leaf: u32) -> &[Weight] {
        let [start, end] = self.weight_ranges[leaf as usize];
        &self.weights[start as usize..end as usize]
    }

    /// Each row's summed leaf weights per target, `[rows, targets]`, added
    /// in tree order as onnxruntime adds them, and whether any leaf scored
    /// each target. Tree by tree, so that one row's dependent additions
    /// overlap with the other rows'.
    pub fn sums(&self, input: &ArrayView2<f32>) -> TractResult<Sums> {
        let leaves = self.leaves(input)?;
        let cells = input.nrows() * self.targets;
        let mut scored = vec![false; cells];
        let values = if self.single_precision {
            // Summing in f32 rather than rounding an f64 after each addition
            // takes two conversions off the chain of dependent additions.
            let mut sums = vec![0.0f32; cells];
            self.add_leaves(&leaves, &mut sums, &mut scored);
            sums.into_iter().map(f64::from).collect()
        } else {
            let mut sums = vec![0.0f64; cells];
            self.add_leaves(&leaves, &mut sums, &mut scored);
            sums
        };
        Ok(Sums { values, scored })
    }

    /// Adds the weights of `leaves` (`[trees, rows]`, from
    /// [`Forest::leaves`]) into `sums` (`[rows, targets]`), flagging each
    /// target scored. Indexing is unchecked, as in the walk.
    #[allow(unsafe_code)]
    fn add_leaves<A: Threshold + AddAssign>(
        &self,
        leaves: &[u32],
        sums: &mut [A],
        scored: &mut [bool],
    ) {
        let rows = sums.len() / self.targets;
        if rows == 0 {
            return;
        }
        let mut add = |row: usize, w: &Weight| {
            let cell = row * self.targets + w.target as usize;
            debug_assert!(cell < sums.len() && cell < scored.len());
            // SAFETY: `row` is below `rows`, both slices hold
            // `rows * targets` cells, and `Forest::parse` checked every
            // weight's target is below `targets`.
            unsafe {
                *sums.get_unchecked_mut(cell) += A::from_f64(w.value);
                *scored.get_unchecked_mut(cell) = true;
            }
        };
        let tree_leaves = leaves.chunks_exact(rows);
        if let Some(sole_weights) = &self.sole_weights {
            for tree_leaves in tree_leaves {
                for (row, &leaf) in tree_leaves.iter().enumerate() {
                    debug_assert!((leaf as usize) < sole_weights.len());
                    // SAFETY: `leaves` holds node indices from the walk,
                    // and `sole_weights` has one entry per node.
                    add(row, unsafe { sole_weights.get_unchecked(leaf as usize) });
                }
            }
            return;
        }
        for tree_leaves in tree_leaves {
            for (row, &leaf) in tree_leaves.iter().enumerate() {
                debug_assert!((leaf as usize) < self.weight_ranges.len());
                // SAFETY: `leaves` holds node indices from the walk, and
                // `weight_ranges` has one entry per node.
                let [start, end] = *unsafe { self.weight_ranges.get_unchecked(leaf as usize) };
                debug_assert!(start <= end && end as usize <= self.weights.len());
                // SAFETY: `Forest::parse` built each range within `weights`.
                let weights = unsafe { self.weights.get_unchecked(start as usize..end as usize) };
                weights.iter().for_each(|w| add(row, w));
            }
        }
    }

    /// `a + b` in the precision onnxruntime sums in.
    #[inline]
    pub fn add(&self, a: f64, b: f64) -> f64 {
        if self.single_precision {
            (a as f32 + b as f32) as f64
        } else {
            a + b
        }
    }
}

/// Each tree's depth, checking that every node is reached at most once
/// from the roots: no cycles, so a walk always ends at a leaf.
fn depths(
    attrs: &Attributes,
    nodes: &[Node<f64>],
    kinds: &[Kind],
    roots: &[u32],
) -> TractResult<Vec<Tree>> {
    let mut seen = vec![false; nodes.len()];
    let mut trees = Vec::with_capacity(roots.len());
    for &root in roots {
        let mut depth = 0;
        let mut stack = vec![(root, 0)];
        while let Some((ix, level)) = stack.pop() {
            if std::mem::replace(&mut seen[ix as usize], true) {
                return Err(attrs.error("nodes_truenodeids", "makes the trees cyclic or shared"));
            }
            if kinds[ix as usize].mode == Mode::Leaf {
                depth = depth.max(level);
            } else {
                stack.extend(nodes[ix as usize].next.map(|child| (child, level + 1)));
            }
        }
        trees.push(Tree { root, depth });
    }
    Ok(trees)
}

impl Node<f64> {
    /// This node with its threshold as the f32 attribute gave it.
    fn to_single(self) -> Node<f32> {
        Node {
            threshold: f32::from_f64(self.threshold),
            feature: self.feature,
            next: self.next,
        }
    }
}

/// Each row's summed leaf weights, `[rows, targets]` (see [`Forest::sums`]).
pub struct Sums {
    pub values: Vec<f64>,
    pub scored: Vec<bool>,
}

/// Which branch nodes send NaN to their true child.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Missing {
    None,
    All,
    Some,
}

/// A batch to walk through the trees: `input` holds the rows, `width`
/// features each, at least one more than any node reads.
struct Walk<'a> {
    trees: &'a [Tree],
    kinds: &'a [Kind],
    input: &'a [f32],
    width: usize,
}

impl Walk<'_> {
    /// Picks the compiled walk for the forest's comparison and missing-value
    /// handling.
    fn nodes<T: Threshold>(
        &self,
        nodes: &[Node<T>],
        uniform_mode: Option<Mode>,
        missing: Missing,
    ) -> Vec<u32> {
        match (uniform_mode, missing) {
            (Some(Mode::Leq), Missing::None) => self.leaves::<T, Leq, false>(nodes),
            (Some(Mode::Leq), Missing::All) => self.leaves::<T, LeqOrNan, false>(nodes),
            (Some(Mode::Leq), Missing::Some) => self.leaves::<T, Leq, true>(nodes),
            (Some(Mode::Lt), Missing::None) => self.leaves::<T, Lt, false>(nodes),
            (Some(Mode::Lt), Missing::All) => self.leaves::<T, LtOrNan, false>(nodes),
            (Some(Mode::Lt), Missing::Some) => self.leaves::<T, Lt, true>(nodes),
            (_, Missing::None) => self.leaves::<T, PerNode, false>(nodes),
            (_, _) => self.leaves::<T, PerNode, true>(nodes),
        }
    }

    /// The leaf each row reaches in each tree, `[trees, rows]`. Tree by
    /// tree, so a tree's nodes stay in cache across the batch, [`BLOCK`]
    /// rows at a time in lock step. Indexing is unchecked: the bounds checks
    /// were a third of the walk's instructions, and the walk is nearly all
    /// of a forest's scoring time.
    #[allow(unsafe_code)]
    fn leaves<T: Threshold, S: Split, const MISSING: bool>(&self, nodes: &[Node<T>]) -> Vec<u32> {
        let width = self.width;
        let rows = self.input.len() / width;
        let mut leaves = vec![0u32; self.trees.len() * rows];
        if rows == 0 {
            return leaves;
        }
        // The child a row starting at `row_start` in `input` goes to from
        // node `ix`, comparing as `S` says. `MISSING`: some node of the
        // forest sends NaN to its true child (otherwise NaN fails every
        // comparison and goes false, as it should).
        let step = |ix: u32, row_start: usize| {
            debug_assert!((ix as usize) < nodes.len() && nodes.len() == self.kinds.len());
            // SAFETY: roots and every node's children index `nodes`
            // (`Forest::parse` resolved each id to an index into it), and
            // `kinds` has one entry per node.
            let (node, kind) = unsafe {
                (
                    nodes.get_unchecked(ix as usize),
                    self.kinds.get_unchecked(ix as usize),
                )
            };
            let at = row_start + node.feature as usize;
            debug_assert!((node.feature as usize) < width && at < self.input.len());
            // SAFETY: `row_start` starts a row of `width` values and every
            // node's feature is below `width` (`Forest::leaves` checks the
            // largest; leaves read feature 0).
            let x = unsafe { *self.input.get_unchecked(at) };
            let mut goes_true = S::goes_true(kind.mode, T::from_f32(x), node.threshold);
            if MISSING {
                goes_true |= kind.missing_goes_true & x.is_nan();
            }
            node.next[!goes_true as usize]
        };
        let blocked = rows - rows % BLOCK;
        for (tree, leaves) in self.trees.iter().zip(leaves.chunks_exact_mut(rows)) {
            let blocks = leaves.chunks_exact_mut(BLOCK);
            for (first, leaves) in (0..blocked).step_by(BLOCK).zip(blocks) {
                let starts: [usize; BLOCK] = std::array::from_fn(|b| (first + b) * width);
                let mut at = [tree.root; BLOCK];
                // Rows already at a leaf step onto it again: no branch per row.
                for _ in 0..tree.depth {
                    for (ix, &start) in at.iter_mut().zip(&starts) {
                        *ix = step(*ix, start);
                    }
                }
                leaves.copy_from_slice(&at);
            }
            // Left-over rows one at a time, each stopping at its leaf (the
            // only node that is its own child).
            for (r, leaf) in (blocked..rows).zip(&mut leaves[blocked..]) {
                let mut ix = tree.root;
                loop {
                    let next = step(ix, r * width);
                    if next == ix {
                        break;
                    }
                    ix = next;
                }
                *leaf = ix;
            }
        }
        leaves
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::pb::NodeProto;
    use tract_onnx::prelude::tract_ndarray::Array2;

    const MODES: [&str; 6] = [
        "BRANCH_LEQ",
        "BRANCH_LT",
        "BRANCH_GTE",
        "BRANCH_GT",
        "BRANCH_EQ",
        "BRANCH_NEQ",
    ];
    const FEATURES: usize = 5;

    /// A deterministic pseudo-random sequence (xorshift).
    struct Random(u64);
    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// One node in the attribute form: (tree, id, feature, mode, threshold,
    /// true id, false id, missing goes true).
    type SpecNode = (i64, i64, i64, &'static str, f32, i64, i64, i64);

    /// Random trees in the attribute form.
    struct Spec {
        nodes: Vec<SpecNode>,
    }

    /// `missing`: 0 no branch sends NaN to its true child, 1 all do, 2 some.
    fn random_forest(
        random: &mut Random,
        trees: i64,
        modes: &[&'static str],
        missing: usize,
    ) -> Spec {
        let mut nodes = Vec::new();
        for tree in 0..trees {
            // Grow each tree by splitting random leaves.
            let mut leaves = vec![0i64];
            let mut next_id = 1;
            let mut branches = Vec::new();
            for _ in 0..random.below(12) {
                let leaf = leaves.swap_remove(random.below(leaves.len()));
                branches.push((leaf, next_id, next_id + 1));
                leaves.extend([next_id, next_id + 1]);
                next_id += 2;
            }
            for (id, t, f) in branches {
                let threshold = [0.0f32, 0.5, 1.0, 2.0][random.below(4)];
                nodes.push((
                    tree,
                    id,
                    random.below(FEATURES) as i64,
                    modes[random.below(modes.len())],
                    threshold,
                    t,
                    f,
                    match missing {
                        0 | 1 => missing as i64,
                        _ => random.below(2) as i64,
                    },
                ));
            }
            for id in leaves {
                nodes.push((tree, id, 0, "LEAF", 0.0, 0, 0, 0));
            }
        }
        Spec { nodes }
    }

    impl Spec {
        fn node(&self, double: bool) -> NodeProto {
            let n = &self.nodes;
            let leaves: Vec<_> = n.iter().filter(|x| x.3 == "LEAF").collect();
            let values: Vec<f32> = n.iter().map(|x| x.4).collect();
            let mut attrs = vec![
                ints("nodes_treeids", &n.iter().map(|x| x.0).collect::<Vec<_>>()),
                ints("nodes_nodeids", &n.iter().map(|x| x.1).collect::<Vec<_>>()),
                ints(
                    "nodes_featureids",
                    &n.iter().map(|x| x.2).collect::<Vec<_>>(),
                ),
                strings("nodes_modes", &n.iter().map(|x| x.3).collect::<Vec<_>>()),
                ints(
                    "nodes_truenodeids",
                    &n.iter().map(|x| x.5).collect::<Vec<_>>(),
                ),
                ints(
                    "nodes_falsenodeids",
                    &n.iter().map(|x| x.6).collect::<Vec<_>>(),
                ),
                ints(
                    "nodes_missing_value_tracks_true",
                    &n.iter().map(|x| x.7).collect::<Vec<_>>(),
                ),
                ints(
                    "target_treeids",
                    &leaves.iter().map(|x| x.0).collect::<Vec<_>>(),
                ),
                ints(
                    "target_nodeids",
                    &leaves.iter().map(|x| x.1).collect::<Vec<_>>(),
                ),
                ints("target_ids", &vec![0; leaves.len()]),
                floats("target_weights", &vec![1.0; leaves.len()]),
            ];
            if double {
                let values: Vec<f64> = values.iter().map(|&v| v as f64).collect();
                attrs.push(tensor_attr("nodes_values_as_tensor", &tensor1(&values)));
            } else {
                attrs.push(floats("nodes_values", &values));
            }
            node("TreeEnsembleRegressor", &["X"], &["Y"], attrs)
        }

        /// The (tree, node id) of the leaf `row` reaches in `tree`, by the
        /// spec's words.
        fn reference_leaf(&self, tree: i64, row: &[f32]) -> (i64, i64) {
            let find = |id: i64| {
                self.nodes
                    .iter()
                    .find(|x| x.0 == tree && x.1 == id)
                    .unwrap()
            };
            let mut node = find(0);
            while node.3 != "LEAF" {
                let (x, t) = (row[node.2 as usize], node.4);
                let goes_true = match node.3 {
                    "BRANCH_LEQ" => x <= t,
                    "BRANCH_LT" => x < t,
                    "BRANCH_GTE" => x >= t,
                    "BRANCH_GT" => x > t,
                    "BRANCH_EQ" => x == t,
                    _ => x != t,
                } || (node.7 == 1 && x.is_nan());
                node = find(if goes_true { node.5 } else { node.6 });
            }
            (node.0, node.1)
        }
    }

    /// Every walk (lock-step blocks and the remainder, each comparison
    /// specialisation, f32 and f64 thresholds) reaches the leaf the
    /// specification's plain recursive walk reaches.
    #[test]
    fn every_walk_reaches_the_leaf_the_specification_does() {
        let mut random = Random(0x9e3779b97f4a7c15);
        let rows = 2 * BLOCK + 5;
        let input = Array2::from_shape_fn((rows, FEATURES), |_| {
            [0.0f32, 0.5, 1.0, 1.5, 2.0, f32::NAN][random.below(6)]
        });
        for modes in [&MODES[..], &MODES[..1], &MODES[1..2], &MODES[2..3]] {
            for (double, missing) in [false, true]
                .into_iter()
                .flat_map(|d| (0..3).map(move |m| (d, m)))
            {
                let spec = random_forest(&mut random, 7, modes, missing);
                let node = spec.node(double);
                let forest = Forest::parse(&Attributes::new(&node), "target", 1).unwrap();
                let leaves = forest.leaves(&input.view()).unwrap();
                for (r, row) in input.rows().into_iter().enumerate() {
                    let row = row.to_vec();
                    for tree in 0..forest.trees() {
                        let leaf = &spec.nodes[leaves[tree * rows + r] as usize];
                        assert_eq!(
                            (leaf.0, leaf.1),
                            spec.reference_leaf(tree as i64, &row),
                            "modes {modes:?}, double {double}, missing {missing}, row {row:?}, tree {tree}"
                        );
                    }
                }
            }
        }
    }
}

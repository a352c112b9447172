//! Replaces the `Scan` loop skl2onnx exports for pairwise distances with one
//! native op.
//!
//! skl2onnx exports KNeighborsClassifier (and anything else needing
//! `cdist`) as a `Scan` over the training points whose body computes the
//! distance from every input row to one point; a `Transpose` then turns the
//! stacked `[points, rows]` result into `[rows, points]`. A runtime pays a
//! whole subgraph execution per training point (~2 µs each in tract, so
//! 0.2 ms per request for 105 points). When the body is exactly that
//! distance (squared Euclidean: `Sub` then `ReduceSumSquare`; city-block:
//! `Sub`, `Abs`, `ReduceSum`) over a constant float matrix, the `Scan` and
//! its `Transpose` become one `FusedDistanceScan` node computing
//! `[rows, points]` directly, with the same per-element arithmetic. Any
//! other `Scan` is left to tract.

use tract_onnx::pb::{GraphProto, NodeProto};

use super::rewrite::{constant_ints, string_attribute, tensor_attribute};

/// The op type of the fused node (see `ops::distances`).
pub const FUSED_OP: &str = "FusedDistanceScan";
const FUSED_DOMAIN: &str = "ai.modelops";
const FLOAT: i32 = 1;

/// The distance a matched `Scan` body computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    SquaredEuclidean,
    CityBlock,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::SquaredEuclidean => "sqeuclidean",
            Metric::CityBlock => "cityblock",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        [Metric::SquaredEuclidean, Metric::CityBlock]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Fuses every distance `Scan` of `graph` (with its `Transpose`) into one node.
pub fn fuse_distance_scans(graph: &mut GraphProto) {
    while let Some((scan, transpose, fused)) = find_fusable(graph) {
        graph.node[scan] = fused;
        graph.node.remove(transpose);
    }
}

/// The first fusable `Scan`: its index, its `Transpose`'s, and the node
/// replacing both.
fn find_fusable(graph: &GraphProto) -> Option<(usize, usize, NodeProto)> {
    graph.node.iter().enumerate().find_map(|(ix, node)| {
        if node.op_type != "Scan" || !node.domain.is_empty() {
            return None;
        }
        let (transpose, fused) = fuse(graph, node)?;
        Some((ix, transpose, fused))
    })
}

fn fuse(graph: &GraphProto, scan: &NodeProto) -> Option<(usize, NodeProto)> {
    // One state (the input rows, passed through) and one scanned input.
    if scan.input.len() != 2 || scan.output.len() != 2 {
        return None;
    }
    for attr in &scan.attribute {
        let default = match attr.name.as_str() {
            "body" => continue,
            "num_scan_inputs" => attr.i == 1,
            "scan_input_axes" | "scan_output_axes" => attr.ints.iter().all(|&a| a == 0),
            "scan_input_directions" | "scan_output_directions" => attr.ints.iter().all(|&d| d == 0),
            _ => false,
        };
        if !default {
            return None;
        }
    }
    let body = scan
        .attribute
        .iter()
        .find(|a| a.name == "body")?
        .g
        .as_ref()?;
    let metric = body_metric(body)?;
    let points = graph.initializer.iter().find(|t| t.name == scan.input[1])?;
    if points.dims.len() != 2 || points.data_type != FLOAT {
        return None;
    }
    // The final state must be unused, the stacked distances read only by a
    // `Transpose` to `[rows, points]`.
    let consumers = |tensor: &str| {
        graph
            .node
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.input.iter().any(|i| i == tensor))
            .map(|(ix, _)| ix)
            .collect::<Vec<_>>()
    };
    let is_graph_output = |tensor: &str| graph.output.iter().any(|o| o.name == tensor);
    if !consumers(&scan.output[0]).is_empty() || is_graph_output(&scan.output[0]) {
        return None;
    }
    let [transpose] = consumers(&scan.output[1])[..] else {
        return None;
    };
    let t = &graph.node[transpose];
    let swaps_axes = t
        .attribute
        .iter()
        .find(|a| a.name == "perm")
        .is_none_or(|perm| perm.ints == [1, 0]);
    if t.op_type != "Transpose" || !t.domain.is_empty() || !swaps_axes {
        return None;
    }
    if is_graph_output(&scan.output[1]) {
        return None;
    }
    let fused = NodeProto {
        name: format!("{} (fused distance scan)", scan.name),
        op_type: FUSED_OP.to_string(),
        domain: FUSED_DOMAIN.to_string(),
        input: vec![scan.input[0].clone()],
        output: t.output.clone(),
        attribute: vec![
            tensor_attribute("points", points.clone()),
            string_attribute("metric", metric.name()),
        ],
        ..Default::default()
    };
    Some((transpose, fused))
}

/// The metric a `Scan` body computes: state `x` passed through unchanged,
/// scan output `reduce(f(x - point), axis 1)` with the axis dropped.
fn body_metric(body: &GraphProto) -> Option<Metric> {
    let [rows, point] = &body.input[..] else {
        return None;
    };
    let [state_out, scan_out] = &body.output[..] else {
        return None;
    };
    let source = |tensor| through_identities(body, tensor);
    if source(&state_out.name).0 != rows.name {
        return None;
    }
    let reduce = source(&scan_out.name).1?;
    if !reduces_axis_one(body, reduce) {
        return None;
    }
    let operand = source(&reduce.input[0]).1;
    let (metric, difference) = match (reduce.op_type.as_str(), operand) {
        ("ReduceSumSquare", Some(sub)) => (Metric::SquaredEuclidean, sub),
        ("ReduceSum", Some(abs)) if abs.op_type == "Abs" && abs.input.len() == 1 => {
            (Metric::CityBlock, source(&abs.input[0]).1?)
        }
        _ => return None,
    };
    let mut operands: Vec<&str> = difference.input.iter().map(|i| source(i).0).collect();
    operands.sort();
    let mut expected = vec![rows.name.as_str(), point.name.as_str()];
    expected.sort();
    (difference.op_type == "Sub" && operands == expected).then_some(metric)
}

/// Follows `Identity` nodes back from `tensor` to where it is computed:
/// that tensor's name and the body node producing it (none for an input).
fn through_identities<'g>(
    body: &'g GraphProto,
    mut tensor: &'g str,
) -> (&'g str, Option<&'g NodeProto>) {
    loop {
        let producer = body
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == tensor));
        match producer {
            Some(n) if n.op_type == "Identity" && n.input.len() == 1 => tensor = &n.input[0],
            found => return (tensor, found),
        }
    }
}

/// Whether `reduce` sums over axis 1 only and drops it: `axes` as an
/// attribute (before opset 13/18) or as a constant input of the body.
fn reduces_axis_one(body: &GraphProto, reduce: &NodeProto) -> bool {
    let attribute = |name: &str| reduce.attribute.iter().find(|a| a.name == name);
    if attribute("keepdims").is_none_or(|k| k.i != 0) {
        return false;
    }
    if attribute("noop_with_empty_axes").is_some_and(|a| a.i != 0) {
        return false;
    }
    let axes = match (attribute("axes"), reduce.input.get(1)) {
        (Some(axes), None) => axes.ints.clone(),
        (None, Some(input)) => match constant_ints(body, input) {
            Some(axes) => axes,
            None => return false,
        },
        _ => return false,
    };
    axes == [1] || axes == [-1]
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::testing::{count, zoo_graph};
    use super::*;

    /// skl2onnx's KNeighborsClassifier export (euclidean, 105 points).
    fn knn_graph() -> GraphProto {
        zoo_graph("knn_nozipmap")
    }

    fn body_mut(graph: &mut GraphProto) -> &mut GraphProto {
        let scan = graph.node.iter_mut().find(|n| n.op_type == "Scan").unwrap();
        let body = scan
            .attribute
            .iter_mut()
            .find(|a| a.name == "body")
            .unwrap();
        body.g.as_mut().unwrap()
    }

    #[test]
    fn the_knn_distance_scan_and_its_transpose_become_one_node() {
        let mut graph = knn_graph();
        let nodes = graph.node.len();
        let transposed = graph
            .node
            .iter()
            .find(|n| n.op_type == "Transpose")
            .unwrap()
            .output
            .clone();
        fuse_distance_scans(&mut graph);
        assert_eq!((count(&graph, "Scan"), count(&graph, "Transpose")), (0, 0));
        assert_eq!(graph.node.len(), nodes - 1);
        let fused = graph.node.iter().find(|n| n.op_type == FUSED_OP).unwrap();
        assert_eq!(fused.output, transposed);
        assert_eq!(fused.input, ["X"]);
        let metric = fused.attribute.iter().find(|a| a.name == "metric").unwrap();
        assert_eq!(metric.s, b"sqeuclidean");
    }

    #[test]
    fn a_scan_computing_anything_else_is_left_alone() {
        let mut graph = knn_graph();
        let sub = body_mut(&mut graph)
            .node
            .iter_mut()
            .find(|n| n.op_type == "Sub")
            .unwrap();
        sub.op_type = "Add".into();
        let before = graph.clone();
        fuse_distance_scans(&mut graph);
        assert_eq!(graph, before);
    }

    #[test]
    fn a_scan_whose_distances_are_read_untransposed_is_left_alone() {
        let mut graph = knn_graph();
        let transpose = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "Transpose")
            .unwrap();
        transpose.op_type = "Sqrt".into();
        let before = graph.clone();
        fuse_distance_scans(&mut graph);
        assert_eq!(graph, before);
    }

    #[test]
    fn a_reduction_that_keeps_its_axis_is_left_alone() {
        let mut graph = knn_graph();
        let reduce = body_mut(&mut graph)
            .node
            .iter_mut()
            .find(|n| n.op_type == "ReduceSumSquare")
            .unwrap();
        reduce.attribute.retain(|a| a.name != "keepdims");
        let before = graph.clone();
        fuse_distance_scans(&mut graph);
        assert_eq!(graph, before);
    }
}

//! Replaces `TopK` with a selection of few values, when k is a constant.
//!
//! Nearest-neighbour exports pick the k closest training points with `TopK`
//! over every distance of a row; tract sorts the whole row to do it (70% of
//! a 105-point KNN's scoring time at batch 64). With k fixed and small, a
//! single pass keeping the best k in order is cheaper. The replacement
//! `SmallTopK` node (see `ops::top_k`) selects along the last axis, ties in
//! index order, values sorted, as onnxruntime returns them.

use tract_onnx::pb::{GraphProto, NodeProto};

use super::rewrite::{constant_ints, int_attribute};

/// The op type of the replacement node.
pub const SMALL_TOP_K: &str = "SmallTopK";
const DOMAIN: &str = "ai.modelops";
/// Larger k is left to tract's sort.
const MAX_K: i64 = 64;

/// Replaces every `TopK` of `graph` along the last axis with a constant k
/// of at most [`MAX_K`].
pub fn replace_top_k(graph: &mut GraphProto) {
    for ix in 0..graph.node.len() {
        if let Some(replacement) = small_top_k(graph, &graph.node[ix]) {
            graph.node[ix] = replacement;
        }
    }
}

fn small_top_k(graph: &GraphProto, node: &NodeProto) -> Option<NodeProto> {
    if node.op_type != "TopK" || !node.domain.is_empty() {
        return None;
    }
    if node.output.len() != 2 || node.output.iter().any(String::is_empty) {
        return None;
    }
    let attribute = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let k = match (node.input.len(), attribute("k")) {
        // Opset 1 gives k as an attribute, later ones as a constant input.
        (1, Some(k)) => k.i,
        (2, None) => match constant_ints(graph, &node.input[1])?[..] {
            [k] => k,
            _ => return None,
        },
        _ => return None,
    };
    let axis = attribute("axis").map_or(-1, |a| a.i);
    if !(1..=MAX_K).contains(&k) || axis != -1 {
        return None;
    }
    let largest = attribute("largest").map_or(1, |a| a.i);
    Some(NodeProto {
        name: format!("{} (small top-k)", node.name),
        op_type: SMALL_TOP_K.to_string(),
        domain: DOMAIN.to_string(),
        input: vec![node.input[0].clone()],
        output: node.output.clone(),
        attribute: vec![int_attribute("k", k), int_attribute("largest", largest)],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::testing::zoo_graph;
    use super::*;

    fn knn_graph() -> GraphProto {
        zoo_graph("knn_nozipmap")
    }

    fn top_k(graph: &GraphProto) -> &NodeProto {
        graph
            .node
            .iter()
            .find(|n| n.op_type == "TopK" || n.op_type == SMALL_TOP_K)
            .unwrap()
    }

    #[test]
    fn the_knn_top_k_becomes_a_small_selection() {
        let mut graph = knn_graph();
        let before = top_k(&graph).clone();
        replace_top_k(&mut graph);
        let after = top_k(&graph);
        assert_eq!(after.op_type, SMALL_TOP_K);
        assert_eq!(
            (&after.input[..], &after.output),
            (&before.input[..1], &before.output)
        );
        let k = after.attribute.iter().find(|a| a.name == "k").unwrap();
        let largest = after
            .attribute
            .iter()
            .find(|a| a.name == "largest")
            .unwrap();
        assert_eq!((k.i, largest.i), (5, 0));
    }

    #[test]
    fn another_axis_or_a_computed_k_is_left_to_tract() {
        let mut graph = knn_graph();
        let node = graph.node.iter_mut().find(|n| n.op_type == "TopK").unwrap();
        node.attribute.push(int_attribute("axis", 0));
        let before = graph.clone();
        replace_top_k(&mut graph);
        assert_eq!(graph, before);

        let mut graph = knn_graph();
        let node = graph.node.iter_mut().find(|n| n.op_type == "TopK").unwrap();
        node.input[1] = "X".into();
        let before = graph.clone();
        replace_top_k(&mut graph);
        assert_eq!(graph, before);
    }
}

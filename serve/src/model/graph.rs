//! Graph fixes applied to the ONNX protobuf before tract sees it.
//!
//! Exporters wrap classifiers in things tract cannot or need not run: ZipMap
//! (maps of probabilities, which tract has no type for), string label paths
//! (tract's classifier ops cannot produce strings) and label outputs we
//! recompute anyway. We find the class-score tensor, remember the class
//! labels, and prune the graph down to what computes the scores. Distance
//! loops are fused into one native op ([`super::distance_scan`]), as are
//! dense layers ([`super::dense_fusion`]); a small constant `TopK` becomes a
//! one-pass selection ([`super::top_k`]).

use std::collections::{HashMap, HashSet};

use tract_onnx::data_resolver::MmapDataResolver;
use tract_onnx::pb::{self, type_proto, GraphProto, NodeProto, ValueInfoProto};
use tract_onnx::prelude::DatumType;
use tract_onnx::tensor::load_tensor;

use super::signature::ClassLabels;
use super::LoadError;
use super::{dense_fusion, distance_scan, top_k};

const ML_DOMAIN: &str = "ai.onnx.ml";
/// ai.onnx.ml classifier ops that carry their class labels as attributes.
const LABELLED_CLASSIFIERS: [&str; 3] = [
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
];
const FLOAT: i32 = 1;
const DOUBLE: i32 = 11;

/// What the graph says about the classifier inside it.
#[derive(Debug)]
pub struct ClassifierGraph {
    /// The tensor holding class scores, `[rows, classes]` (or `[rows, 1]`).
    pub scores: String,
    /// Class labels found in the graph (attributes or label constants).
    pub labels: Option<ClassLabels>,
    /// The label output of the ai.onnx.ml classifier op computing the
    /// scores, when there is one.
    pub label_output: Option<LabelOutput>,
}

/// A classifier op's own label tensor. Our native ops compute it exactly as
/// onnxruntime does, which is not always the argmax of the scores (an SVM
/// votes; binary margins have their own rules), so it is read when present.
#[derive(Debug)]
pub struct LabelOutput {
    pub tensor: String,
    /// The integer label of each class, in score-column order (string labels
    /// have been replaced by their indices).
    pub class_values: Vec<i64>,
}

/// Finds the class-score tensor, the class labels and the classifier's label
/// tensor, then prunes `graph` so that those two tensors are its outputs and
/// every node left is needed.
pub fn prepare_classifier(graph: &mut GraphProto) -> Result<ClassifierGraph, LoadError> {
    let producers = producers(graph);
    let scores = find_scores(graph, &producers)?;
    let labels = find_labels(graph, &producers, &scores)?;
    let is_classifier =
        |n: &NodeProto| LABELLED_CLASSIFIERS.contains(&n.op_type.as_str()) && n.output.len() == 2;
    let classifier = ancestors(graph, &producers, &scores)
        .into_iter()
        .find(|&ix| is_classifier(&graph.node[ix]));
    replace_string_labels(graph);
    let label_output = classifier.and_then(|ix| {
        let node = &graph.node[ix];
        let class_values = match attribute_labels(node)? {
            ClassLabels::Int(values) => values,
            ClassLabels::Str(_) => return None,
        };
        Some(LabelOutput {
            tensor: node.output[0].clone(),
            class_values,
        })
    });
    let mut outputs = vec![scores.clone()];
    outputs.extend(label_output.as_ref().map(|l| l.tensor.clone()));
    prune_to_outputs(graph, &outputs);
    distance_scan::fuse_distance_scans(graph);
    top_k::replace_top_k(graph);
    dense_fusion::fuse_dense_layers(graph);
    Ok(ClassifierGraph {
        scores,
        labels,
        label_output,
    })
}

/// The ops of `graph` (after pruning) that `is_supported` rejects, as
/// `(domain, op_type)` pairs, each once, in graph order.
pub fn unsupported_ops(
    graph: &GraphProto,
    is_supported: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    graph
        .node
        .iter()
        .filter(|n| !is_supported(&n.op_type))
        .map(|n| {
            let domain = if n.domain.is_empty() {
                "ai.onnx"
            } else {
                &n.domain
            };
            (domain.to_string(), n.op_type.clone())
        })
        .filter(|pair| seen.insert(pair.clone()))
        .collect()
}

/// Tensor name → index of the node producing it.
fn producers(graph: &GraphProto) -> HashMap<&str, usize> {
    let mut map = HashMap::new();
    for (ix, node) in graph.node.iter().enumerate() {
        for out in &node.output {
            map.insert(out.as_str(), ix);
        }
    }
    map
}

/// The score tensor: the input of a ZipMap output, else a float output
/// (preferring one whose name says "prob").
fn find_scores(graph: &GraphProto, producers: &HashMap<&str, usize>) -> Result<String, LoadError> {
    for out in &graph.output {
        if let Some(&ix) = producers.get(out.name.as_str()) {
            let node = &graph.node[ix];
            if node.op_type == "ZipMap" {
                return node.input.first().cloned().ok_or_else(|| {
                    LoadError::Signature(format!("ZipMap node `{}` has no input", node.name))
                });
            }
        }
    }
    let floats: Vec<&ValueInfoProto> = graph
        .output
        .iter()
        .filter(|o| matches!(element_type(o), Some(FLOAT | DOUBLE)))
        .collect();
    floats
        .iter()
        .find(|o| o.name.to_lowercase().contains("prob"))
        .or_else(|| floats.last())
        .map(|o| o.name.clone())
        .ok_or_else(|| {
            let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
            LoadError::Signature(format!(
                "no class-probability output: expected a ZipMap or a float tensor among outputs {names:?}"
            ))
        })
}

/// Class labels from, in order: a classifier op's or ZipMap's
/// `classlabels_*` attribute, or the constant a label output is looked up in.
fn find_labels(
    graph: &GraphProto,
    producers: &HashMap<&str, usize>,
    scores: &str,
) -> Result<Option<ClassLabels>, LoadError> {
    let labelled = graph
        .node
        .iter()
        .find(|n| LABELLED_CLASSIFIERS.contains(&n.op_type.as_str()) || n.op_type == "ZipMap");
    if let Some(labels) = labelled.and_then(attribute_labels) {
        return Ok(Some(labels));
    }
    // A label output computed as ArrayFeatureExtractor(classes, argmax(scores)).
    let initializers: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for out in graph.output.iter().filter(|o| o.name != scores) {
        for ix in ancestors(graph, producers, &out.name) {
            let node = &graph.node[ix];
            if !matches!(node.op_type.as_str(), "ArrayFeatureExtractor" | "Gather") {
                continue;
            }
            if let Some(tensor) = node
                .input
                .first()
                .and_then(|i| initializers.get(i.as_str()))
            {
                return tensor_labels(tensor).map(Some);
            }
        }
    }
    Ok(None)
}

fn attribute_labels(node: &NodeProto) -> Option<ClassLabels> {
    node.attribute.iter().find_map(|a| match a.name.as_str() {
        "classlabels_strings" if !a.strings.is_empty() => Some(ClassLabels::Str(
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )),
        "classlabels_int64s" | "classlabels_ints" if !a.ints.is_empty() => {
            Some(ClassLabels::Int(a.ints.clone()))
        }
        _ => None,
    })
}

fn tensor_labels(tensor: &pb::TensorProto) -> Result<ClassLabels, LoadError> {
    let bad =
        |e: String| LoadError::Signature(format!("class label constant `{}`: {e}", tensor.name));
    let t = load_tensor(&MmapDataResolver, tensor, None).map_err(|e| bad(e.to_string()))?;
    if t.datum_type() == DatumType::String {
        let labels = t
            .to_plain_array_view::<String>()
            .map_err(|e| bad(e.to_string()))?;
        return Ok(ClassLabels::Str(labels.iter().cloned().collect()));
    }
    let ints = t.cast_to::<i64>().map_err(|e| bad(e.to_string()))?;
    let ints = ints
        .to_plain_array_view::<i64>()
        .map_err(|e| bad(e.to_string()))?;
    Ok(ClassLabels::Int(ints.iter().copied().collect()))
}

/// Indices of the nodes `tensor` depends on, nearest first.
fn ancestors(graph: &GraphProto, producers: &HashMap<&str, usize>, tensor: &str) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut stack = vec![tensor];
    while let Some(name) = stack.pop() {
        if let Some(&ix) = producers.get(name) {
            if seen.insert(ix) {
                order.push(ix);
                stack.extend(graph.node[ix].input.iter().map(String::as_str));
            }
        }
    }
    order
}

/// Keeps only the nodes that `outputs` depend on and makes them the outputs.
fn prune_to_outputs(graph: &mut GraphProto, outputs: &[String]) {
    let producers = producers(graph);
    let keep: HashSet<usize> = outputs
        .iter()
        .flat_map(|o| ancestors(graph, &producers, o))
        .collect();
    let infos = outputs
        .iter()
        .map(|output| {
            graph
                .output
                .iter()
                .chain(graph.value_info.iter())
                .find(|o| &o.name == output)
                .cloned()
                .unwrap_or_else(|| ValueInfoProto {
                    name: output.clone(),
                    ..Default::default()
                })
        })
        .collect();
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter(|(ix, _)| keep.contains(ix))
        .map(|(_, n)| n)
        .collect();
    graph.output = infos;
}

/// Classifier ops get integer labels: the class index in place of each
/// string. The server maps indices back to the strings, and no tensor of
/// strings has to flow through the graph.
fn replace_string_labels(graph: &mut GraphProto) {
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.domain == ML_DOMAIN && LABELLED_CLASSIFIERS.contains(&n.op_type.as_str()))
    {
        let op_type = node.op_type.clone();
        for attr in node.attribute.iter_mut() {
            if attr.name == "classlabels_strings" && !attr.strings.is_empty() {
                // The spec names the integer form differently per op.
                attr.name = match op_type.as_str() {
                    "TreeEnsembleClassifier" => "classlabels_int64s",
                    _ => "classlabels_ints",
                }
                .to_string();
                attr.ints = (0..attr.strings.len() as i64).collect();
                attr.strings.clear();
                attr.r#type = pb::attribute_proto::AttributeType::Ints as i32;
            }
        }
    }
}

/// The ONNX element type code of a graph input or output.
pub fn element_type(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t.elem_type),
    }
}

/// The declared shape of a graph input: `Some(n)` per fixed dim, `None` per
/// symbolic or missing one. `None` overall when the input has no shape.
pub fn input_shape(info: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    use pb::tensor_shape_proto::dimension::Value;
    let type_proto::Value::TensorType(t) = info.r#type.as_ref()?.value.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            })
            .collect(),
    )
}

//! Fuses dense layers (`MatMul` + `Add` + `Relu`, or `Gemm` + `Relu`) over
//! constant weights into one native op.
//!
//! skl2onnx exports MLPClassifier as a chain of `MatMul(X, W)`, `Add(·, b)`,
//! `Relu` per layer. tract runs each as a general matrix product: it packs
//! the activations on every run, tiles, and pays per-op overhead that
//! dominates for matrices this small (64 features, 32 hidden units). When a
//! layer is provably a plain `[rows, K] × [K, M] (+ bias) (then ReLU)` over
//! float initializers, its nodes become one `FusedDense` node (see
//! `ops::dense`) reading the same input and writing the last node's output.
//! Anything else (a shared intermediate, a non-constant weight, a transposed
//! or scaled `Gemm`, an input not known to be a matrix) is left to tract.

use tract_onnx::pb::{type_proto, GraphProto, NodeProto, TensorProto};

use super::rewrite::{string_attribute, tensor_attribute};

/// The op type of the fused node (see `ops::dense`).
pub const FUSED_OP: &str = "FusedDense";
const FUSED_DOMAIN: &str = "ai.modelops";
const FLOAT: i32 = 1;
/// `TensorProto.data_location` of data stored outside the model file.
const EXTERNAL: i32 = 1;

/// What a fused layer applies after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    /// Over each row (the last axis), as a classifier's final layer.
    Softmax,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Softmax => "softmax",
        }
    }

    pub fn parse(name: &str) -> Option<Activation> {
        [Activation::Identity, Activation::Relu, Activation::Softmax]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Fuses every dense layer of `graph` into one node each.
pub fn fuse_dense_layers(graph: &mut GraphProto) {
    while let Some((first, mut absorbed, fused)) = find_fusable(graph) {
        // The fused node takes the first node's place: its input is ready
        // there, and everything reading its output comes later.
        graph.node[first] = fused;
        absorbed.sort_unstable();
        for ix in absorbed.into_iter().rev() {
            graph.node.remove(ix);
        }
    }
}

/// The first fusable layer: the index of its `MatMul`/`Gemm`, the indices of
/// the nodes it absorbs, and the node replacing them all.
fn find_fusable(graph: &GraphProto) -> Option<(usize, Vec<usize>, NodeProto)> {
    graph.node.iter().enumerate().find_map(|(ix, node)| {
        let (absorbed, fused) = fuse(graph, node)?;
        Some((ix, absorbed, fused))
    })
}

fn fuse(graph: &GraphProto, node: &NodeProto) -> Option<(Vec<usize>, NodeProto)> {
    if !node.domain.is_empty() || node.input.is_empty() || node.output.len() != 1 {
        return None;
    }
    let input = &node.input[0];
    let (weights, mut bias) = match node.op_type.as_str() {
        // MatMul broadcasts over leading axes and treats a rank-1 input as a
        // vector, so only an input known to be `[rows, K]` is a plain product.
        "MatMul" if node.input.len() == 2 && is_matrix(graph, input) => {
            (matrix(graph, &node.input[1])?, None)
        }
        // Gemm's A is a matrix by definition.
        "Gemm" if matches!(node.input.len(), 2 | 3) => gemm(graph, node)?,
        _ => return None,
    };
    let columns = weights.dims[1];
    let mut absorbed = vec![];
    let mut output = &node.output[0];
    if bias.is_none() {
        if let Some((ix, add)) = sole_consumer(graph, output, "Add") {
            let other = add.input.iter().find(|i| *i != output);
            if let Some(b) = other.and_then(|b| row_vector(graph, b, columns)) {
                (bias, output) = (Some(b), &add.output[0]);
                absorbed.push(ix);
            }
        }
    }
    let mut activation = Activation::Identity;
    if let Some((ix, relu)) = sole_consumer(graph, output, "Relu") {
        (activation, output) = (Activation::Relu, &relu.output[0]);
        absorbed.push(ix);
    } else if let Some((ix, softmax)) = sole_consumer(graph, output, "Softmax") {
        // Every opset's default axis, and 1 or -1, mean the rows of a matrix.
        let over_rows = softmax
            .attribute
            .iter()
            .all(|a| a.name == "axis" && (a.i == 1 || a.i == -1));
        if over_rows {
            (activation, output) = (Activation::Softmax, &softmax.output[0]);
            absorbed.push(ix);
        }
    }
    let mut attribute = vec![
        tensor_attribute("weights", weights),
        string_attribute("activation", activation.name()),
    ];
    attribute.extend(bias.map(|b| tensor_attribute("bias", b)));
    let fused = NodeProto {
        name: format!("{} (fused dense)", node.name),
        op_type: FUSED_OP.to_string(),
        domain: FUSED_DOMAIN.to_string(),
        input: vec![input.clone()],
        output: vec![output.clone()],
        attribute,
        ..Default::default()
    };
    Some((absorbed, fused))
}

/// The `[K, M]` weights and the bias of a `Gemm` computing `A × B (+ C)`:
/// `alpha = beta = 1`, A not transposed, B a float initializer (transposed
/// back here when `transB = 1`), C absent or a row vector.
fn gemm(graph: &GraphProto, node: &NodeProto) -> Option<(TensorProto, Option<TensorProto>)> {
    let mut trans_b = false;
    for attr in &node.attribute {
        match attr.name.as_str() {
            "alpha" | "beta" if attr.f == 1.0 => {}
            "transA" if attr.i == 0 => {}
            "transB" if attr.i == 0 || attr.i == 1 => trans_b = attr.i == 1,
            _ => return None,
        }
    }
    let b = matrix(graph, node.input.get(1)?)?;
    let weights = if trans_b { transposed(&b)? } else { b };
    let bias = match node.input.get(2).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(row_vector(graph, c, weights.dims[1])?),
    };
    Some((weights, bias))
}

/// Whether `tensor` is provably `[rows, columns]`: a graph input declared
/// with rank 2, or computed from one by ops that keep the shape, or the
/// output of an op whose output is always a matrix.
fn is_matrix(graph: &GraphProto, tensor: &str) -> bool {
    if let Some(input) = graph.input.iter().find(|i| i.name == tensor) {
        let is_initializer = graph.initializer.iter().any(|t| t.name == tensor);
        let rank = input.r#type.as_ref().and_then(|t| match t.value.as_ref()? {
            type_proto::Value::TensorType(t) => Some(t.shape.as_ref()?.dim.len()),
        });
        return !is_initializer && rank == Some(2);
    }
    let Some(producer) = graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == tensor))
    else {
        return false;
    };
    match (producer.domain.as_str(), producer.op_type.as_str()) {
        ("", "Cast" | "Identity" | "Relu") => is_matrix(graph, &producer.input[0]),
        // A matrix plus a constant of rank ≤ 2 broadcasts to a matrix; a
        // matrix times a constant matrix is one.
        ("", "Add") => {
            let [a, b] = &producer.input[..] else {
                return false;
            };
            let constant = |t: &str, ranks: &[usize]| {
                initializer(graph, t).is_some_and(|t| ranks.contains(&t.dims.len()))
            };
            (is_matrix(graph, a) && constant(b, &[0, 1, 2]))
                || (is_matrix(graph, b) && constant(a, &[0, 1, 2]))
        }
        ("", "MatMul") => {
            producer.input.len() == 2
                && is_matrix(graph, &producer.input[0])
                && matrix(graph, &producer.input[1]).is_some()
        }
        ("", "Gemm") | (FUSED_DOMAIN, FUSED_OP) => true,
        _ => false,
    }
}

/// `tensor` as a 2-D float initializer stored in the model file.
fn matrix(graph: &GraphProto, tensor: &str) -> Option<TensorProto> {
    initializer(graph, tensor)
        .filter(|t| t.dims.len() == 2 && t.dims.iter().all(|&d| d > 0))
        .cloned()
}

/// `tensor` as a float initializer of `columns` values shaped `[columns]` or
/// `[1, columns]`, so that adding it to `[rows, columns]` adds it to each row.
fn row_vector(graph: &GraphProto, tensor: &str, columns: i64) -> Option<TensorProto> {
    let t = initializer(graph, tensor)?;
    matches!(t.dims[..], [m] | [1, m] if m == columns).then(|| t.clone())
}

fn initializer<'g>(graph: &'g GraphProto, tensor: &str) -> Option<&'g TensorProto> {
    graph
        .initializer
        .iter()
        .find(|t| t.name == tensor)
        .filter(|t| t.data_type == FLOAT && t.data_location != Some(EXTERNAL))
}

/// The node of type `op_type` that alone reads `tensor`, when no other node
/// (nor any subgraph) reads it and it is not a graph output.
fn sole_consumer<'g>(
    graph: &'g GraphProto,
    tensor: &str,
    op_type: &str,
) -> Option<(usize, &'g NodeProto)> {
    if graph.output.iter().any(|o| o.name == tensor) {
        return None;
    }
    let mut readers = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| reads(n, tensor));
    let (ix, node) = readers.next()?;
    let only = readers.next().is_none();
    let fits = node.op_type == op_type && node.domain.is_empty() && node.output.len() == 1;
    (only && fits).then_some((ix, node))
}

/// Whether `node` reads `tensor`, directly or from a subgraph (a `Scan`,
/// `If` or `Loop` body may read outer tensors by name).
fn reads(node: &NodeProto, tensor: &str) -> bool {
    node.input.iter().any(|i| i == tensor)
        || node
            .attribute
            .iter()
            .flat_map(|a| a.g.iter().chain(&a.graphs))
            .flat_map(|g| &g.node)
            .any(|n| reads(n, tensor))
}

/// A `[M, K]` float matrix as `[K, M]`, when its values can be read here.
fn transposed(t: &TensorProto) -> Option<TensorProto> {
    let values: Vec<f32> = if !t.float_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
            .collect()
    };
    let (rows, columns) = (t.dims[0] as usize, t.dims[1] as usize);
    if values.len() != rows * columns {
        return None;
    }
    let float_data = (0..columns)
        .flat_map(|c| values.iter().skip(c).step_by(columns).copied())
        .collect();
    Some(TensorProto {
        name: t.name.clone(),
        dims: vec![t.dims[1], t.dims[0]],
        data_type: FLOAT,
        float_data,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
    use tract_onnx::pb::{AttributeProto, ModelProto, OperatorSetIdProto, ValueInfoProto};
    use tract_onnx::prelude::*;

    use super::super::rewrite::int_attribute;
    use super::super::rewrite::testing::{count, zoo_graph};
    use super::*;

    /// skl2onnx's MLPClassifier export (64 features, hidden 32 and 16, 10
    /// classes): `Cast`, then `MatMul`, `Add`, `Relu` per layer.
    fn mlp_graph() -> GraphProto {
        zoo_graph("mlp_nozipmap")
    }

    fn first<'g>(graph: &'g mut GraphProto, op_type: &str) -> &'g mut NodeProto {
        graph
            .node
            .iter_mut()
            .find(|n| n.op_type == op_type)
            .unwrap()
    }

    fn fused(graph: &GraphProto) -> Vec<&NodeProto> {
        graph
            .node
            .iter()
            .filter(|n| n.op_type == FUSED_OP)
            .collect()
    }

    fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
        node.attribute.iter().find(|a| a.name == name)
    }

    /// The first layer's `MatMul` + `Add` turned into a `Gemm` with the bias
    /// as C, its `Relu` reading the `Gemm`.
    fn gemm_graph(attribute: Vec<AttributeProto>) -> GraphProto {
        let mut graph = mlp_graph();
        let add = first(&mut graph, "Add").clone();
        let matmul = first(&mut graph, "MatMul");
        matmul.op_type = "Gemm".into();
        let bias = add.input.iter().find(|i| **i != matmul.output[0]).unwrap();
        matmul.input.push(bias.clone());
        matmul.output = add.output.clone();
        matmul.attribute = attribute;
        graph.node.retain(|n| n.name != add.name);
        graph
    }

    fn float_attribute(name: &str, f: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Float as i32,
            f,
            ..Default::default()
        }
    }

    #[test]
    fn each_mlp_layer_becomes_one_node() {
        let mut graph = mlp_graph();
        let relus: Vec<String> = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Relu")
            .map(|n| n.output[0].clone())
            .collect();
        let cast = first(&mut graph, "Cast").output[0].clone();
        let probabilities = first(&mut graph, "Softmax").output[0].clone();
        fuse_dense_layers(&mut graph);
        assert_eq!(
            (count(&graph, "MatMul"), count(&graph, "Add")),
            (0, 0),
            "{:?}",
            graph.node
        );
        assert_eq!(count(&graph, "Relu"), 0);
        let layers = fused(&graph);
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0].input, [cast]);
        assert_eq!(layers[0].output, relus[..1]);
        assert_eq!(layers[1].input, relus[..1]);
        assert_eq!(layers[1].output, relus[1..]);
        assert_eq!(layers[2].input, relus[1..]);
        let activations: Vec<&[u8]> = layers
            .iter()
            .map(|n| &attribute(n, "activation").unwrap().s[..])
            .collect();
        assert_eq!(activations, [&b"relu"[..], b"relu", b"softmax"]);
        assert_eq!(layers[2].output, [probabilities]);
        assert_eq!(count(&graph, "Softmax"), 0);
        let weights = |ix: usize| {
            attribute(layers[ix], "weights")
                .unwrap()
                .t
                .as_ref()
                .unwrap()
        };
        assert_eq!(weights(0).dims, [64, 32]);
        assert_eq!(weights(2).dims, [16, 10]);
        assert!(layers.iter().all(|n| attribute(n, "bias").is_some()));
    }

    #[test]
    fn weights_that_are_not_initializers_are_left_to_tract() {
        let mut graph = mlp_graph();
        let last_matmul = graph.node.iter().rfind(|n| n.op_type == "MatMul");
        let weights = last_matmul.unwrap().input[1].clone();
        graph.initializer.retain(|t| t.name != weights);
        graph.input.push(ValueInfoProto {
            name: weights,
            ..Default::default()
        });
        fuse_dense_layers(&mut graph);
        assert_eq!((count(&graph, "MatMul"), count(&graph, "Add")), (1, 1));
        assert_eq!(fused(&graph).len(), 2);
    }

    #[test]
    fn an_intermediate_read_elsewhere_ends_the_fused_chain() {
        let mut graph = mlp_graph();
        let sum = first(&mut graph, "Add").output[0].clone();
        graph.node.push(NodeProto {
            op_type: "Identity".into(),
            input: vec![sum.clone()],
            output: vec!["copy".into()],
            ..Default::default()
        });
        fuse_dense_layers(&mut graph);
        // The first layer keeps its `Relu`, which reads the fused `MatMul` + `Add`.
        assert_eq!((count(&graph, "Add"), count(&graph, "Relu")), (0, 1));
        let layers = fused(&graph);
        assert_eq!(layers[0].output, [sum]);
        assert_eq!(attribute(layers[0], "activation").unwrap().s, b"identity");
    }

    #[test]
    fn an_intermediate_graph_output_ends_the_fused_chain() {
        let mut graph = mlp_graph();
        let product = first(&mut graph, "MatMul").output[0].clone();
        graph.output.push(ValueInfoProto {
            name: product.clone(),
            ..Default::default()
        });
        fuse_dense_layers(&mut graph);
        assert_eq!((count(&graph, "Add"), count(&graph, "Relu")), (1, 1));
        assert_eq!(fused(&graph)[0].output, [product]);
    }

    #[test]
    fn a_softmax_over_the_other_axis_is_left_to_tract() {
        let mut graph = mlp_graph();
        first(&mut graph, "Softmax").attribute = vec![int_attribute("axis", 0)];
        fuse_dense_layers(&mut graph);
        assert_eq!(count(&graph, "Softmax"), 1);
        let activation = attribute(fused(&graph)[2], "activation").unwrap();
        assert_eq!(activation.s, b"identity");
    }

    #[test]
    fn a_matmul_of_an_input_not_known_to_be_a_matrix_is_left_to_tract() {
        let mut graph = mlp_graph();
        // MatMul broadcasts a `[batch, rows, K]` input over its first axis.
        let Some(type_proto::Value::TensorType(input)) =
            graph.input[0].r#type.as_mut().unwrap().value.as_mut()
        else {
            unreachable!()
        };
        let dims = &mut input.shape.as_mut().unwrap().dim;
        dims.insert(0, dims[0].clone());
        fuse_dense_layers(&mut graph);
        assert_eq!(count(&graph, "MatMul"), 3);
        assert!(fused(&graph).is_empty());
    }

    #[test]
    fn a_plain_gemm_and_its_relu_become_one_node() {
        let mut graph = gemm_graph(vec![
            float_attribute("alpha", 1.0),
            float_attribute("beta", 1.0),
            int_attribute("transA", 0),
        ]);
        fuse_dense_layers(&mut graph);
        assert_eq!(count(&graph, "Gemm"), 0);
        assert_eq!(count(&graph, "Relu"), 0);
        let layer = fused(&graph)[0];
        assert_eq!(attribute(layer, "activation").unwrap().s, b"relu");
        assert_eq!(
            attribute(layer, "bias").unwrap().t.as_ref().unwrap().dims,
            [1, 32]
        );
    }

    #[test]
    fn a_transposed_or_scaled_gemm_is_left_to_tract() {
        for attribute in [
            int_attribute("transA", 1),
            float_attribute("alpha", 2.0),
            float_attribute("beta", 0.5),
        ] {
            let mut graph = gemm_graph(vec![attribute]);
            fuse_dense_layers(&mut graph);
            assert_eq!(count(&graph, "Gemm"), 1);
            assert_eq!(fused(&graph).len(), 2);
        }
    }

    /// `Y = Relu(X × Bᵀ + C)` with B `[3, 2]`, as a `Gemm` with `transB = 1`.
    fn transposed_gemm_model() -> ModelProto {
        let floats = |name: &str, dims: Vec<i64>, values: &[f32]| TensorProto {
            name: name.into(),
            dims,
            data_type: FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let two = Dimension {
            value: Some(dimension::Value::DimValue(2)),
            ..Default::default()
        };
        let matrix_input = ValueInfoProto {
            name: "X".into(),
            r#type: Some(tract_onnx::pb::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: FLOAT,
                    shape: Some(tract_onnx::pb::TensorShapeProto {
                        dim: vec![two.clone(), two],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let node = |op: &str, input: &[&str], output: &str, attribute| NodeProto {
            op_type: op.into(),
            input: input.iter().map(|i| i.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![
                node(
                    "Gemm",
                    &["X", "B", "C"],
                    "G",
                    vec![int_attribute("transB", 1)],
                ),
                node("Relu", &["G"], "Y", vec![]),
            ],
            input: vec![matrix_input],
            initializer: vec![
                floats("B", vec![3, 2], &[1.0, 3.0, -2.0, 1.0, 0.5, -1.0]),
                floats("C", vec![3], &[-1.0, 0.0, 1.0]),
            ],
            output: vec![ValueInfoProto {
                name: "Y".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn run(model: &ModelProto, x: Tensor) -> Vec<f32> {
        let mut onnx = tract_onnx::onnx();
        crate::model::ops::register(&mut onnx.op_register);
        let plan = onnx
            .model_for_proto_model(model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let y = plan.run(tvec![x.into_tvalue()]).unwrap().remove(0);
        y.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn a_fused_gemm_with_transposed_weights_computes_what_tract_does() {
        let model = transposed_gemm_model();
        let mut fused_model = model.clone();
        fuse_dense_layers(fused_model.graph.as_mut().unwrap());
        assert_eq!(fused(fused_model.graph.as_ref().unwrap()).len(), 1);
        let x = Tensor::from_shape(&[2, 2], &[1.0f32, 2.0, -1.0, 0.5]).unwrap();
        // [1, 2] → relu([7 - 1, 0, -1.5 + 1]); [-1, 0.5] → relu([0.5 - 1, 2.5, -1 + 1])
        let expected = [6.0, 0.0, 0.0, 0.0, 2.5, 0.0];
        assert_eq!(run(&model, x.clone()), expected);
        assert_eq!(run(&fused_model, x), expected);
    }
}

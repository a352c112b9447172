//! Helpers the graph rewrites share (`distance_scan`, `top_k`,
//! `dense_fusion`): reading constants and building attributes on the ONNX
//! protobuf.

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, GraphProto, TensorProto};

const INT64: i32 = 7;

/// The int64 values of `tensor` when `graph` holds it as a constant
/// (an initializer or a `Constant` node).
pub fn constant_ints(graph: &GraphProto, tensor: &str) -> Option<Vec<i64>> {
    let proto = graph
        .initializer
        .iter()
        .find(|t| t.name == tensor)
        .or_else(|| {
            graph
                .node
                .iter()
                .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == tensor))?
                .attribute
                .iter()
                .find(|a| a.name == "value")?
                .t
                .as_ref()
        })?;
    if proto.data_type != INT64 {
        return None;
    }
    if !proto.int64_data.is_empty() {
        return Some(proto.int64_data.clone());
    }
    let raw = &proto.raw_data;
    (raw.len() % 8 == 0).then(|| {
        raw.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect()
    })
}

pub fn tensor_attribute(name: &str, tensor: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Tensor as i32,
        t: Some(tensor),
        ..Default::default()
    }
}

pub fn string_attribute(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// The graphs of committed zoo models, for the rewrites' unit tests.
#[cfg(test)]
pub mod testing {
    use tract_onnx::pb::{GraphProto, ModelProto};
    use tract_onnx::prelude::Framework;

    /// The graph of `models/zoo/{model}/1/model.onnx`.
    pub fn zoo_graph(model: &str) -> GraphProto {
        let path = format!(
            "{}/../models/zoo/{model}/1/model.onnx",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).expect("the zoo is committed");
        let model: ModelProto = tract_onnx::onnx()
            .proto_model_for_read(&mut bytes.as_slice())
            .expect("a valid model");
        model.graph.expect("a graph")
    }

    /// How many nodes of `graph` are `op_type`.
    pub fn count(graph: &GraphProto, op_type: &str) -> usize {
        graph.node.iter().filter(|n| n.op_type == op_type).count()
    }
}

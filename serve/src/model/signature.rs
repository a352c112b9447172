//! What a loaded model accepts and returns, as the transports advertise it.

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::DatumType;

/// The element type of the model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    F64,
    I32,
    I64,
}

impl ElementType {
    /// The ONNX `TensorProto.DataType` code, as found in model files.
    pub fn from_onnx(code: i32) -> Option<Self> {
        match code {
            1 => Some(ElementType::F32),
            11 => Some(ElementType::F64),
            6 => Some(ElementType::I32),
            7 => Some(ElementType::I64),
            _ => None,
        }
    }

    /// The Open Inference Protocol name of the type.
    pub fn v2_name(self) -> &'static str {
        match self {
            ElementType::F32 => "FP32",
            ElementType::F64 => "FP64",
            ElementType::I32 => "INT32",
            ElementType::I64 => "INT64",
        }
    }

    pub fn from_v2_name(name: &str) -> Option<Self> {
        match name {
            "FP32" => Some(ElementType::F32),
            "FP64" => Some(ElementType::F64),
            "INT32" => Some(ElementType::I32),
            "INT64" => Some(ElementType::I64),
            _ => None,
        }
    }

    pub fn datum_type(self) -> DatumType {
        match self {
            ElementType::F32 => DatumType::F32,
            ElementType::F64 => DatumType::F64,
            ElementType::I32 => DatumType::I32,
            ElementType::I64 => DatumType::I64,
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(self, ElementType::I32 | ElementType::I64)
    }
}

/// Class labels in probability-column order: integers or strings, as trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassLabels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl ClassLabels {
    /// `0..n`, the labels of a model that names none.
    pub fn indices(n: usize) -> Self {
        ClassLabels::Int((0..n as i64).collect())
    }

    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Open Inference Protocol datatype of the label output.
    pub fn v2_datatype(&self) -> &'static str {
        match self {
            ClassLabels::Int(_) => "INT64",
            ClassLabels::Str(_) => "BYTES",
        }
    }

    /// The label of class `index` as a JSON value.
    pub fn json(&self, index: usize) -> serde_json::Value {
        match self {
            ClassLabels::Int(v) => v[index].into(),
            ClassLabels::Str(v) => v[index].clone().into(),
        }
    }

    /// The label of class `index` as text (for map keys and messages).
    pub fn text(&self, index: usize) -> String {
        match self {
            ClassLabels::Int(v) => v[index].to_string(),
            ClassLabels::Str(v) => v[index].clone(),
        }
    }
}

/// The model's interface: one `[rows, features]` input, class scores out.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The ONNX graph's input name; clients address the input by it.
    pub input_name: String,
    pub input_type: ElementType,
    pub features: usize,
    /// Class labels, one per probability column.
    pub labels: ClassLabels,
    /// The graph output the probabilities are read from (after ZipMap pruning).
    pub scores_output: String,
}

impl Signature {
    pub fn classes(&self) -> usize {
        self.labels.len()
    }
}

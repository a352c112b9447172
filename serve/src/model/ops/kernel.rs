//! The glue between a native kernel and tract: one input, computed in plain
//! Rust, with outputs of fixed width.
//!
//! A [`Kernel`] says what it outputs and computes a batch; [`expansion`] turns
//! it into an op tract's ONNX parser can register. tract's type inference,
//! optimizer and plan treat it like any other op.
//!
//! By default a kernel reads a `[rows, features]` matrix of any numeric type,
//! cast to f32, and implements [`Kernel::eval`]. A kernel over other inputs
//! (int64 or string categories, tensors of any rank) says so with
//! [`Kernel::input_rank`] and [`Kernel::for_input`] and implements
//! [`Kernel::eval_tensor`] instead. [`contiguous_row`] and [`shaped_tensor`]
//! help kernels read rows and build outputs.

use std::fmt::Debug;

use tract_onnx::prelude::tract_ndarray::{ArrayD, ArrayView1, ArrayView2, Ix2, IxDyn};
use tract_onnx::tract_hir::internal::*;

/// The shape of one output, relative to the input's: `[rows]`,
/// `[rows, columns]`, or the input's own shape (with one more axis).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Width {
    /// A rank-1 output, one value per row (labels).
    Scalar,
    Columns(usize),
    /// As many columns as the input has (element-wise preprocessing).
    SameAsInput,
    /// The input's shape, whatever its rank (element-wise maps).
    SameShape,
    /// The input's shape with one more axis of this length (one-hot codes).
    AppendAxis(usize),
    /// The input's shape with its last axis this long (top-k selections).
    LastAxis(usize),
}

/// The rank a kernel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRank {
    /// `[rows, features]`.
    Matrix,
    /// Any rank; the kernel reads the tensor as it comes.
    Any,
}

/// One output of a kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputSpec {
    pub datum_type: DatumType,
    pub width: Width,
}

/// A natively computed operator over a batch of rows.
pub trait Kernel: Debug + Clone + PartialEq + Send + Sync + 'static {
    /// The ONNX op type, for error messages and model dumps.
    fn name(&self) -> &'static str;

    /// The outputs. Their number and widths are fixed at parse time; their
    /// datum types may depend on the input's (see [`Kernel::for_input`]).
    fn outputs(&self) -> TVec<OutputSpec>;

    fn input_rank(&self) -> InputRank {
        InputRank::Matrix
    }

    /// The number of features a [`InputRank::Matrix`] kernel reads, when it
    /// is fixed by its attributes: a model whose input is narrower or wider
    /// then fails to load (or, when the width is symbolic, to run) instead
    /// of misreading it; [`Kernel::eval`] only sees inputs of this width.
    fn input_width(&self) -> Option<usize> {
        None
    }

    /// The kernel that runs on inputs of `datum_type`, once tract knows it:
    /// `self` for most kernels; a kernel may refuse a type, or adapt its
    /// outputs to it (LabelEncoder-1 maps strings to ints or ints to
    /// strings). The default accepts any type and casts it to f32.
    fn for_input(&self, _datum_type: DatumType) -> TractResult<Self>
    where
        Self: Sized,
    {
        Ok(self.clone())
    }

    /// Computes every output for `input`, `[rows, features]` as f32. Kernels
    /// that override [`Kernel::eval_tensor`] need not implement it.
    fn eval(&self, _input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        bail!("{} has no f32 matrix evaluation", self.name())
    }

    /// Computes every output for `input` as tract hands it over. The default
    /// casts to f32 and calls [`Kernel::eval`].
    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        let input = input.cast_to::<f32>()?;
        let view = input
            .to_plain_array_view::<f32>()?
            .into_dimensionality::<Ix2>()?;
        if let Some(width) = self.input_width() {
            check_input_width(self.name(), width, view.ncols())?;
        }
        self.eval(view)
    }
}

fn check_input_width(name: &str, width: usize, columns: usize) -> TractResult<()> {
    if columns != width {
        bail!("{name} reads {width} features, its input has {columns} columns");
    }
    Ok(())
}

/// A row as a slice, copied into `buf` only when the view is strided.
pub fn contiguous_row<'a>(row: ArrayView1<'a, f32>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match row.to_slice() {
        Some(slice) => slice,
        None => {
            buf.clear();
            buf.extend(row.iter());
            buf
        }
    }
}

/// A tensor of `shape` holding `data` in row-major order.
pub fn shaped_tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(ArrayD::from_shape_vec(IxDyn(shape), data)?.into_tensor())
}

/// Wraps `kernel` as the op tract's ONNX parser builds for a node.
pub fn expansion<K: Kernel>(kernel: K) -> Box<dyn InferenceOp> {
    expand(NativeExpansion(kernel))
}

#[derive(Debug, Clone, PartialEq)]
struct NativeExpansion<K>(K);

impl<K: Kernel> Expansion for NativeExpansion<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.outputs().len())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        let specs = self.0.outputs();
        check_output_arity(outputs, specs.len())?;
        match self.0.input_rank() {
            InputRank::Matrix => {
                s.equals(&inputs[0].rank, 2)?;
                if let Some(width) = self.0.input_width() {
                    let name = self.0.name();
                    s.given(&inputs[0].shape[1], move |_, columns| {
                        match columns.to_usize() {
                            Ok(columns) => check_input_width(name, width, columns),
                            Err(_) => Ok(()),
                        }
                    })?;
                }
            }
            InputRank::Any => {}
        }
        s.given(&inputs[0].datum_type, move |s, datum_type| {
            let kernel = self.0.for_input(datum_type)?;
            for (output, spec) in outputs.iter().zip(kernel.outputs()) {
                s.equals(&output.datum_type, spec.datum_type)?;
            }
            Ok(())
        })?;
        for (ix, spec) in specs.into_iter().enumerate() {
            let output = &outputs[ix];
            match spec.width {
                Width::Scalar => {
                    s.equals(&output.rank, 1)?;
                    s.equals(&output.shape[0], &inputs[0].shape[0])?;
                }
                Width::Columns(columns) => {
                    s.equals(&output.rank, 2)?;
                    s.equals(&output.shape[0], &inputs[0].shape[0])?;
                    s.equals(&output.shape[1], columns.to_dim())?;
                }
                Width::SameAsInput => {
                    s.equals(&output.rank, 2)?;
                    s.equals(&output.shape[0], &inputs[0].shape[0])?;
                    s.equals(&output.shape[1], &inputs[0].shape[1])?;
                }
                Width::SameShape => {
                    s.equals(&output.shape, &inputs[0].shape)?;
                }
                Width::AppendAxis(len) => {
                    s.equals(&output.rank, inputs[0].rank.bex() + 1)?;
                    s.given(&inputs[0].shape, move |s, mut shape| {
                        shape.push(len.to_dim());
                        s.equals(&outputs[ix].shape, shape)
                    })?;
                }
                Width::LastAxis(len) => {
                    s.equals(&output.rank, &inputs[0].rank)?;
                    s.given(&inputs[0].shape, move |s, mut shape| {
                        if let Some(last) = shape.last_mut() {
                            *last = len.to_dim();
                        }
                        s.equals(&outputs[ix].shape, shape)
                    })?;
                }
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let kernel = self.0.for_input(model.outlet_fact(inputs[0])?.datum_type)?;
        model.wire_node(prefix, NativeOp(kernel), inputs)
    }
}

/// The typed op in the optimized plan.
#[derive(Debug, Clone, PartialEq)]
struct NativeOp<K>(K);

// tract compares ops to deduplicate nodes; kernels hold floats, so `Eq` is
// asserted rather than derived (a NaN attribute only makes two nodes unequal).
impl<K: Kernel> Eq for NativeOp<K> {}

impl<K: Kernel> Op for NativeOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for NativeOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(self
            .0
            .eval_tensor(input)?
            .into_iter()
            .map(IntoTValue::into_tvalue)
            .collect())
    }
}

impl<K: Kernel> TypedOp for NativeOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = &inputs[0].shape;
        self.0
            .outputs()
            .into_iter()
            .map(|spec| {
                let shape: TVec<TDim> = match spec.width {
                    Width::Scalar => tvec![input[0].clone()],
                    Width::Columns(c) => tvec![input[0].clone(), c.to_dim()],
                    Width::SameAsInput => tvec![input[0].clone(), input[1].clone()],
                    Width::SameShape => input.to_tvec(),
                    Width::AppendAxis(len) => {
                        let mut shape = input.to_tvec();
                        shape.push(len.to_dim());
                        shape
                    }
                    Width::LastAxis(len) => {
                        let mut shape = input.to_tvec();
                        if let Some(last) = shape.last_mut() {
                            *last = len.to_dim();
                        }
                        shape
                    }
                };
                Ok(TypedFact::dt_shape(spec.datum_type, shape))
            })
            .collect()
    }

    as_op!();
}

/// Building and running one-node ONNX models in unit tests.
#[cfg(test)]
pub mod testing {
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
    use tract_onnx::pb::{
        type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use tract_onnx::prelude::*;

    /// An attribute `name` of `kind`, its value set by `set`.
    fn attribute(
        name: &str,
        kind: AttributeType,
        set: impl FnOnce(&mut AttributeProto),
    ) -> AttributeProto {
        let mut attribute = AttributeProto {
            name: name.into(),
            r#type: kind as i32,
            ..Default::default()
        };
        set(&mut attribute);
        attribute
    }

    pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
        attribute(name, AttributeType::Ints, |a| a.ints = values.to_vec())
    }

    pub fn floats(name: &str, values: &[f32]) -> AttributeProto {
        attribute(name, AttributeType::Floats, |a| a.floats = values.to_vec())
    }

    pub fn strings(name: &str, values: &[&str]) -> AttributeProto {
        attribute(name, AttributeType::Strings, |a| {
            a.strings = values.iter().map(|s| s.as_bytes().to_vec()).collect()
        })
    }

    pub fn int(name: &str, value: i64) -> AttributeProto {
        attribute(name, AttributeType::Int, |a| a.i = value)
    }

    pub fn float(name: &str, value: f32) -> AttributeProto {
        attribute(name, AttributeType::Float, |a| a.f = value)
    }

    pub fn string(name: &str, value: &str) -> AttributeProto {
        attribute(name, AttributeType::String, |a| {
            a.s = value.as_bytes().to_vec()
        })
    }

    pub fn tensor_attr(name: &str, value: &Tensor) -> AttributeProto {
        attribute(name, AttributeType::Tensor, |a| {
            a.t = Some(tensor_proto(name, value))
        })
    }

    /// An ai.onnx.ml node (ai.onnx when `op` is a standard op we test).
    pub fn node(
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> NodeProto {
        let standard = matches!(op, "Cast" | "Gather" | "ArgMax" | "Reshape" | "Concat");
        NodeProto {
            name: format!("{op}_node"),
            op_type: op.into(),
            domain: if standard {
                String::new()
            } else {
                "ai.onnx.ml".into()
            },
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        }
    }

    fn data_type(dt: DatumType) -> DataType {
        match dt {
            DatumType::F32 => DataType::Float,
            DatumType::F64 => DataType::Double,
            DatumType::I32 => DataType::Int32,
            DatumType::I64 => DataType::Int64,
            DatumType::String => DataType::String,
            DatumType::Bool => DataType::Bool,
            other => panic!("no ONNX type for {other:?} in tests"),
        }
    }

    /// The elements of `t`, in order.
    pub fn values<T: Datum>(t: &Tensor) -> Vec<T> {
        t.to_plain_array_view::<T>()
            .unwrap()
            .iter()
            .cloned()
            .collect()
    }

    pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
        let mut proto = TensorProto {
            name: name.into(),
            dims: t.shape().iter().map(|&d| d as i64).collect(),
            data_type: data_type(t.datum_type()) as i32,
            ..Default::default()
        };
        match t.datum_type() {
            DatumType::F32 => proto.float_data = values::<f32>(t),
            DatumType::F64 => proto.double_data = values::<f64>(t),
            DatumType::I32 => proto.int32_data = values::<i32>(t),
            DatumType::I64 => proto.int64_data = values::<i64>(t),
            DatumType::String => {
                proto.string_data = values::<String>(t)
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect()
            }
            other => panic!("no ONNX data for {other:?} in tests"),
        }
        proto
    }

    fn value_info(name: &str, t: Option<&Tensor>) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: t.map(|t| TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: data_type(t.datum_type()) as i32,
                    shape: Some(TensorShapeProto {
                        dim: t
                            .shape()
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(dimension::Value::DimValue(d as i64)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A model of `nodes` with `inputs` (fed as given), `constants` (as
    /// initializers) and the named outputs, importing ai.onnx.ml `ml_opset`.
    pub fn model(
        nodes: Vec<NodeProto>,
        inputs: &[(&str, &Tensor)],
        constants: &[(&str, Tensor)],
        outputs: &[&str],
        ml_opset: i64,
    ) -> ModelProto {
        let graph = GraphProto {
            name: "test".into(),
            node: nodes,
            input: inputs
                .iter()
                .map(|(n, t)| value_info(n, Some(t)))
                .chain(constants.iter().map(|(n, t)| value_info(n, Some(t))))
                .collect(),
            initializer: constants.iter().map(|(n, t)| tensor_proto(n, t)).collect(),
            output: outputs.iter().map(|n| value_info(n, None)).collect(),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![
                OperatorSetIdProto {
                    domain: String::new(),
                    version: 17,
                },
                OperatorSetIdProto {
                    domain: "ai.onnx.ml".into(),
                    version: ml_opset,
                },
            ],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn onnx() -> tract_onnx::Onnx {
        let mut onnx = tract_onnx::onnx();
        super::super::register(&mut onnx.op_register);
        onnx
    }

    /// Parses, optimizes and runs `model` on `inputs`.
    pub fn run_model(model: &ModelProto, inputs: &[&Tensor]) -> TractResult<TVec<Tensor>> {
        let plan = onnx()
            .model_for_proto_model(model)?
            .into_optimized()?
            .into_runnable()?;
        let outputs = plan.run(inputs.iter().map(|t| (*t).clone().into_tvalue()).collect())?;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
    }

    /// Runs one ai.onnx.ml node (opset 2) on `input`; outputs `Y`/`Z`... as
    /// the node names them.
    pub fn run_node(node: NodeProto, inputs: &[(&str, &Tensor)]) -> TractResult<TVec<Tensor>> {
        run_node_opset(node, inputs, 2)
    }

    pub fn run_node_opset(
        node: NodeProto,
        inputs: &[(&str, &Tensor)],
        ml_opset: i64,
    ) -> TractResult<TVec<Tensor>> {
        let outputs: Vec<String> = node.output.clone();
        let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let model = model(vec![node], inputs, &[], &outputs, ml_opset);
        let feeds: Vec<&Tensor> = inputs.iter().map(|(_, t)| *t).collect();
        run_model(&model, &feeds)
    }

    /// The error loading (or running) `node` gives, as text.
    pub fn node_error(node: NodeProto, inputs: &[(&str, &Tensor)]) -> String {
        match run_node(node, inputs) {
            Ok(outputs) => panic!("expected an error, got {outputs:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    pub fn assert_close(actual: &Tensor, expected: &[f32], tolerance: f32) {
        let actual = values::<f32>(&actual.cast_to::<f32>().unwrap());
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            let same = (a.is_nan() && e.is_nan()) || (a - e).abs() <= tolerance || a == e;
            assert!(same, "{actual:?} vs {expected:?}");
        }
    }
}

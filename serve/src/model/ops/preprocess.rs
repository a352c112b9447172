//! Feature preprocessing ops of ai.onnx.ml, as onnxruntime computes them:
//! `Scaler`, `Normalizer`, `Binarizer`, `Imputer` and `ArrayFeatureExtractor`,
//! and the string conversions of ai.onnx's `Cast`.
//!
//! `Scaler` is plain arithmetic, wired as tract's own sub and mul by
//! constants so its optimizer can fuse it with its neighbours. The others
//! carry onnxruntime's edge cases (division guards, NaN handling, index
//! checks) and are computed natively. tract has a Normalizer (it divides by
//! the largest |x| and guards zero rows with an epsilon, where onnxruntime
//! divides by the largest x) and an ArrayFeatureExtractor (with other output
//! shapes than onnxruntime's and unchecked indices); both are replaced.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2};
use tract_onnx::tract_core::ops::array::Gather;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{expansion, shaped_tensor, InputRank, Kernel, OutputSpec, Width};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("Scaler", scaler);
    register.insert("Normalizer", normalizer);
    register.insert("Binarizer", binarizer);
    register.insert("Imputer", imputer);
    register.insert("ArrayFeatureExtractor", array_feature_extractor);
    register.insert("Cast", onnx_cast);
}

/// `Y = (X - offset) * scale`, per column or with one value for all.
#[derive(Debug, Clone, PartialEq)]
struct Scaler {
    node: String,
    offset: Vec<f32>,
    scale: Vec<f32>,
}

fn scaler(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let scale = attrs.floats_f32("scale")?.unwrap_or_default();
    let offset = attrs.floats_f32("offset")?.unwrap_or_default();
    if scale.is_empty() {
        return Err(attrs.error("scale", "is required and must not be empty"));
    }
    attrs.expect_len("offset", &offset, scale.len())?;
    Ok((
        expand(Scaler {
            node: node.name.clone(),
            offset,
            scale,
        }),
        vec![],
    ))
}

impl Scaler {
    fn error(&self, message: impl std::fmt::Display) -> TractError {
        format_err!("Scaler node `{}`: attribute `scale`: {message}", self.node)
    }

    /// Checks the attribute length against the input's last axis.
    fn check_width(&self, rank: usize, width: &TDim) -> TractResult<()> {
        if !(1..=2).contains(&rank) {
            return Err(self.error(format!("needs a rank 1 or 2 input, got rank {rank}")));
        }
        match width.to_usize() {
            Ok(w) if self.scale.len() != 1 && self.scale.len() != w => Err(self.error(format!(
                "has {} entries; the input has {w} features (1 or {w} expected)",
                self.scale.len()
            ))),
            _ => Ok(()),
        }
    }
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.given(&inputs[0].shape, move |_, shape| {
            let width = shape.last().cloned().unwrap_or_else(|| 1.to_dim());
            self.check_width(shape.len(), &width)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        self.check_width(rank, fact.shape.iter().last().unwrap_or(&1.to_dim()))?;
        // onnxruntime computes in the input type when it is double, in f32
        // otherwise (integers convert to float first), then rounds to f32.
        let work = if fact.datum_type == DatumType::F64 {
            DatumType::F64
        } else {
            DatumType::F32
        };
        let mut x = inputs[0];
        if fact.datum_type != work {
            x = model.wire_node(format!("{prefix}.cast"), cast(work), &[x])?[0];
        }
        let mut shape = vec![1usize; rank];
        shape[rank - 1] = self.scale.len();
        let constant = |values: &[f32]| -> TractResult<Arc<Tensor>> {
            let t = tensor1(values).into_shape(&shape)?;
            Ok(t.cast_to_dt(work)?.into_owned().into_arc_tensor())
        };
        let offset = model.add_const(format!("{prefix}.offset"), constant(&self.offset)?)?;
        let scale = model.add_const(format!("{prefix}.scale"), constant(&self.scale)?)?;
        x = model.wire_node(format!("{prefix}.sub"), math::sub(), &[x, offset])?[0];
        x = model.wire_node(format!("{prefix}.mul"), math::mul(), &[x, scale])?[0];
        if work != DatumType::F32 {
            x = model.wire_node(format!("{prefix}.to_f32"), cast(DatumType::F32), &[x])?[0];
        }
        Ok(tvec![x])
    }
}

/// The numeric input types onnxruntime's preprocessing ops accept.
fn check_numeric(op: &str, node: &str, datum_type: DatumType) -> TractResult<()> {
    match datum_type {
        DatumType::F32 | DatumType::F64 | DatumType::I32 | DatumType::I64 => Ok(()),
        other => bail!(
            "{op} node `{node}`: input of type {other:?}; expected float, double, int32 or int64"
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    Max,
    L1,
    L2,
}

/// Scales each row by its largest value, its L1 norm or its L2 norm; rows
/// whose norm is zero pass through.
#[derive(Debug, Clone, PartialEq)]
struct Normalizer {
    node: String,
    norm: Norm,
}

fn normalizer(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let norm = attrs.choice(
        "norm",
        &[("MAX", Norm::Max), ("L1", Norm::L1), ("L2", Norm::L2)],
    )?;
    Ok((
        expansion(Normalizer {
            node: node.name.clone(),
            norm,
        }),
        vec![],
    ))
}

impl Normalizer {
    /// Normalizes each row of `columns` values in `rows`. The norm is
    /// matched once per batch: per row, the dispatch and ndarray's row
    /// iteration cost more than a few classes' arithmetic.
    fn normalize(&self, rows: &mut [f32], columns: usize) {
        let rows = rows.chunks_exact_mut(columns.max(1));
        match self.norm {
            Norm::Max => rows.for_each(|row| {
                let mut max = f32::MIN;
                for &x in row.iter() {
                    if max < x {
                        max = x;
                    }
                }
                if max != 0.0 {
                    row.iter_mut().for_each(|x| *x /= max);
                }
            }),
            Norm::L1 => rows.for_each(|row| {
                let sum: f32 = row.iter().fold(0.0, |sum, x| sum + x.abs());
                if sum != 0.0 {
                    row.iter_mut().for_each(|x| *x /= sum);
                }
            }),
            Norm::L2 => rows.for_each(|row| {
                let sum: f32 = row.iter().fold(0.0, |sum, x| sum + x * x);
                if sum != 0.0 {
                    for x in row.iter_mut() {
                        let magnitude = (*x * *x / sum).sqrt();
                        *x = if *x < 0.0 { -magnitude } else { magnitude };
                    }
                }
            }),
        }
    }
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: DatumType::F32,
            width: Width::SameAsInput,
        }]
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        check_numeric("Normalizer", &self.node, datum_type)?;
        Ok(self.clone())
    }

    fn eval(&self, input: ArrayView2<'_, f32>) -> TractResult<TVec<Tensor>> {
        let mut output: Array2<f32> = input.as_standard_layout().into_owned();
        let columns = output.ncols();
        let flat = output
            .as_slice_mut()
            .expect("standard layout is contiguous");
        self.normalize(flat, columns);
        Ok(tvec![output.into()])
    }
}

/// `1` where `x > threshold`, else `0`, in the input's type. NaN is an error,
/// as in onnxruntime.
#[derive(Debug, Clone, PartialEq)]
struct Binarizer {
    node: String,
    threshold: f32,
    datum_type: DatumType,
}

fn binarizer(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    Ok((
        expansion(Binarizer {
            node: node.name.clone(),
            threshold: attrs.float("threshold").unwrap_or(0.0),
            datum_type: DatumType::F32,
        }),
        vec![],
    ))
}

impl Binarizer {
    fn binarize<T: Datum + float::Float>(&self, input: &Tensor) -> TractResult<Tensor> {
        let threshold = T::from_f32(self.threshold);
        let view = input.to_plain_array_view::<T>()?;
        if let Some(ix) = view.iter().position(|x| x.is_nan()) {
            bail!("Binarizer node `{}`: input value {ix} is NaN", self.node);
        }
        Ok(view
            .mapv(|x| if x > threshold { T::one() } else { T::zero() })
            .into_tensor())
    }
}

/// The little float arithmetic Binarizer needs for f32 and f64.
mod float {
    pub trait Float: Copy + PartialOrd {
        fn from_f32(v: f32) -> Self;
        fn one() -> Self;
        fn zero() -> Self;
        fn is_nan(self) -> bool;
    }
    impl Float for f32 {
        fn from_f32(v: f32) -> Self {
            v
        }
        fn one() -> Self {
            1.0
        }
        fn zero() -> Self {
            0.0
        }
        fn is_nan(self) -> bool {
            f32::is_nan(self)
        }
    }
    impl Float for f64 {
        fn from_f32(v: f32) -> Self {
            v as f64
        }
        fn one() -> Self {
            1.0
        }
        fn zero() -> Self {
            0.0
        }
        fn is_nan(self) -> bool {
            f64::is_nan(self)
        }
    }
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: self.datum_type,
            width: Width::SameShape,
        }]
    }

    fn input_rank(&self) -> InputRank {
        InputRank::Any
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        match datum_type {
            DatumType::F32 | DatumType::F64 => Ok(Binarizer {
                datum_type,
                ..self.clone()
            }),
            other => bail!(
                "Binarizer node `{}`: input of type {other:?}; expected float or double",
                self.node
            ),
        }
    }

    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        let output = match input.datum_type() {
            DatumType::F64 => self.binarize::<f64>(&input)?,
            _ => self.binarize::<f32>(&*input.cast_to::<f32>()?)?,
        };
        Ok(tvec![output])
    }
}

/// What an Imputer replaces, and with what.
#[derive(Debug, Clone, PartialEq)]
enum Imputation {
    /// Replaces `replaced` (or NaN, when `replaced` is NaN) in f32 inputs.
    Floats { values: Vec<f32>, replaced: f32 },
    /// Replaces `replaced` in int64 inputs.
    Ints { values: Vec<i64>, replaced: i64 },
}

/// Replaces a missing-value marker with a value per column (or one for
/// all). As in onnxruntime, a value list whose length is not the column
/// count uses its first value everywhere.
#[derive(Debug, Clone, PartialEq)]
struct Imputer {
    node: String,
    imputation: Imputation,
}

fn imputer(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let floats = attrs
        .floats_f32("imputed_value_floats")?
        .unwrap_or_default();
    let ints = attrs.ints("imputed_value_int64s").unwrap_or_default();
    let imputation = match (floats.is_empty(), ints.is_empty()) {
        (false, true) => Imputation::Floats {
            values: floats,
            replaced: attrs.float("replaced_value_float").unwrap_or(0.0),
        },
        (true, false) => Imputation::Ints {
            values: ints,
            replaced: attrs.int("replaced_value_int64").unwrap_or(0),
        },
        _ => {
            return Err(attrs.error(
                "imputed_value_floats",
                "exactly one of imputed_value_floats and imputed_value_int64s must list values",
            ))
        }
    };
    Ok((
        expansion(Imputer {
            node: node.name.clone(),
            imputation,
        }),
        vec![],
    ))
}

/// Replaces the elements `is_missing` selects with `values[column]` (or
/// `values[0]`), where `column` counts along axis 1 (axis 0 for a vector),
/// as onnxruntime indexes it.
fn impute<T: Datum + Copy>(
    input: &Tensor,
    values: &[T],
    is_missing: impl Fn(T) -> bool,
) -> TractResult<Tensor> {
    let view = input.to_plain_array_view::<T>()?;
    let shape = view.shape().to_vec();
    let stride = match shape.as_slice() {
        [] => bail!("Imputer needs an input of rank 1 or more"),
        [n] => *n,
        [_, n, ..] => *n,
    };
    let per_column = values.len() == stride;
    let data: Vec<T> = view
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if is_missing(x) {
                values[if per_column { i % stride } else { 0 }]
            } else {
                x
            }
        })
        .collect();
    shaped_tensor(&shape, data)
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        let datum_type = match self.imputation {
            Imputation::Floats { .. } => DatumType::F32,
            Imputation::Ints { .. } => DatumType::I64,
        };
        tvec![OutputSpec {
            datum_type,
            width: Width::SameShape,
        }]
    }

    fn input_rank(&self) -> InputRank {
        InputRank::Any
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        match (&self.imputation, datum_type) {
            (Imputation::Floats { .. }, DatumType::F32)
            | (Imputation::Ints { .. }, DatumType::I64 | DatumType::TDim) => Ok(self.clone()),
            (Imputation::Floats { .. }, other) => bail!(
                "Imputer node `{}`: attribute `imputed_value_floats` needs a float input, got {other:?}",
                self.node
            ),
            (Imputation::Ints { .. }, other) => bail!(
                "Imputer node `{}`: attribute `imputed_value_int64s` needs an int64 input, got {other:?}",
                self.node
            ),
        }
    }

    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        let output = match &self.imputation {
            Imputation::Floats { values, replaced } => {
                let replaced = *replaced;
                if replaced.is_nan() {
                    impute::<f32>(&input, values, |x| x.is_nan())?
                } else {
                    impute::<f32>(&input, values, |x| x == replaced)?
                }
            }
            Imputation::Ints { values, replaced } => {
                let replaced = *replaced;
                impute::<i64>(&*input.cast_to::<i64>()?, values, |x| x == replaced)?
            }
        };
        Ok(tvec![output])
    }
}

/// `ArrayFeatureExtractor(X, Y)`: the entries `Y` (flattened) of X's last
/// axis. As in onnxruntime the output is `X.shape[..-1] + [len(Y)]`, and
/// `[1, len(Y)]` for a vector X; indices must be within the axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ArrayFeatureExtractor {
    node: String,
}

fn array_feature_extractor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((
        expand(ArrayFeatureExtractor {
            node: node.name.clone(),
        }),
        vec![],
    ))
}

/// The output shape for data of `shape` and `count` indices.
fn extracted_shape<D: DimLike>(shape: &[D], count: D) -> TVec<D> {
    let mut out: TVec<D> = if shape.len() <= 1 {
        tvec![D::one()]
    } else {
        shape[..shape.len() - 1].into()
    };
    out.push(count);
    out
}

/// Checks `indices` against an axis of `len` entries.
fn check_indices(node: &str, indices: &[i64], len: Option<usize>) -> TractResult<()> {
    if indices.is_empty() {
        bail!("ArrayFeatureExtractor node `{node}`: no indices to extract");
    }
    for &ix in indices {
        let within = ix >= 0 && len.is_none_or(|len| (ix as u64) < len as u64);
        if !within {
            match len {
                Some(len) => bail!(
                    "ArrayFeatureExtractor node `{node}`: index {ix} is outside the {len} entries of the last axis"
                ),
                None => bail!("ArrayFeatureExtractor node `{node}`: index {ix} is negative"),
            }
        }
    }
    Ok(())
}

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given_2(
            &inputs[0].shape,
            &inputs[1].shape,
            move |s, data, indices| {
                let count: TDim = indices.iter().product();
                s.equals(&outputs[0].shape, extracted_shape(&data, count))
            },
        )
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let data = model.outlet_fact(inputs[0])?.clone();
        let indices = model.outlet_fact(inputs[1])?.clone();
        if data.rank() == 0 {
            bail!(
                "ArrayFeatureExtractor node `{}`: the data is a scalar",
                self.node
            );
        }
        let mut x = inputs[0];
        if data.rank() == 1 {
            x = model.wire_node(format!("{prefix}.as_row"), AxisOp::Add(0), &[x])?[0];
        }
        let axis = data.rank().max(2) - 1;
        let len = data.shape[data.rank() - 1].to_usize().ok();
        if let (Some(konst), Some(_)) = (&indices.konst, len) {
            // Constant indices (column selection) into an axis of known
            // length: tract's Gather, checked now.
            let ix: Vec<i64> = konst
                .cast_to::<i64>()?
                .to_plain_array_view::<i64>()?
                .iter()
                .copied()
                .collect();
            check_indices(&self.node, &ix, len)?;
            let ix =
                model.add_const(format!("{prefix}.indices"), tensor1(&ix).into_arc_tensor())?;
            return model.wire_node(prefix, Gather::new(axis), &[x, ix]);
        }
        let mut ix = inputs[1];
        if indices.datum_type != DatumType::I64 {
            ix = model.wire_node(format!("{prefix}.indices_i64"), cast(DatumType::I64), &[ix])?[0];
        }
        model.wire_node(
            prefix,
            ExtractLastAxis {
                node: self.node.clone(),
            },
            &[x, ix],
        )
    }
}

/// The typed op behind ArrayFeatureExtractor with computed indices: data of
/// rank 2 or more, any number of i64 indices, each checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ExtractLastAxis {
    node: String,
}

impl ExtractLastAxis {
    fn extract<T: Datum>(data: &Tensor, indices: &[i64]) -> TractResult<Tensor> {
        let view = data.to_plain_array_view::<T>()?;
        let shape = view.shape().to_vec();
        let len = *shape.last().unwrap_or(&1);
        let rows = view.len() / len.max(1);
        let flat = view.to_shape(rows * len)?;
        let mut out = Vec::with_capacity(rows * indices.len());
        for r in 0..rows {
            for &ix in indices {
                out.push(flat[r * len + ix as usize].clone());
            }
        }
        let out_shape = extracted_shape(&shape, indices.len());
        shaped_tensor(&out_shape, out)
    }
}

impl Op for ExtractLastAxis {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ExtractLastAxis {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (data, indices) = args_2!(inputs);
        let indices: Vec<i64> = indices
            .to_plain_array_view::<i64>()?
            .iter()
            .copied()
            .collect();
        let len = data.shape().last().copied().unwrap_or(1);
        check_indices(&self.node, &indices, Some(len))?;
        let data = data.into_tensor();
        let out = dispatch_datum!(Self::extract(data.datum_type())(&data, &indices))?;
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for ExtractLastAxis {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let count: TDim = inputs[1].shape.iter().product();
        Ok(tvec![inputs[0]
            .datum_type
            .fact(extracted_shape(inputs[0].shape.dims(), count))])
    }

    as_op!();
}

/// `Cast`, replacing tract's for strings. Numeric casts are wired exactly as
/// tract does (int64 targets become TDim, so shape arithmetic keeps its
/// symbols). Casts from and to strings follow onnxruntime, which tract does
/// not: numbers print as C's `%.8g` ("1e+20", "0.33333334", "NaN", "INF"),
/// integers in decimal; strings parse as C's `stod`/`stoll` (leading blanks,
/// "inf", "nan", trailing junk ignored) and a string cast to int64 gives
/// int64, where tract fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OnnxCast {
    node: String,
    to: DatumType,
}

fn onnx_cast(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let code = attrs
        .int("to")
        .ok_or_else(|| attrs.error("to", "is required"))?;
    let to = i32::try_from(code)
        .ok()
        .and_then(|c| tract_onnx::pb::tensor_proto::DataType::try_from(c).ok())
        .ok_or_else(|| attrs.error("to", format!("unknown type code {code}")))
        .and_then(|dt| DatumType::try_from(dt).map_err(|e| attrs.error("to", e)))?;
    Ok((
        expand(OnnxCast {
            node: node.name.clone(),
            to,
        }),
        vec![],
    ))
}

impl OnnxCast {
    fn output_type(&self, from: DatumType) -> DatumType {
        match (from, self.to) {
            (DatumType::String, to) => to,
            (_, DatumType::I64) => DatumType::TDim,
            (_, to) => to,
        }
    }
}

impl Expansion for OnnxCast {
    fn name(&self) -> StaticName {
        "onnx.Cast".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.given(&inputs[0].datum_type, move |s, from| {
            s.equals(&outputs[0].datum_type, self.output_type(from))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let from = model.outlet_fact(inputs[0])?.datum_type;
        let to = self.output_type(from);
        if (from == DatumType::String) != (to == DatumType::String) {
            model.wire_node(
                prefix,
                StringCast {
                    node: self.node.clone(),
                    to,
                },
                inputs,
            )
        } else {
            model.wire_node(prefix, cast(to), inputs)
        }
    }
}

/// Casts between strings and numbers, onnxruntime's way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StringCast {
    node: String,
    to: DatumType,
}

/// `%.8g`, as C's printf writes a double.
fn format_g8(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    const PRECISION: i32 = 8;
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, v);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`e` format has an exponent");
    let exponent: i32 = exponent.parse().expect("`e` format exponent is an integer");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..PRECISION).contains(&exponent) {
        trim(&format!("{:.*}", (PRECISION - 1 - exponent) as usize, v))
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    }
}

fn float_to_string(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v < 0.0 { "-INF" } else { "INF" }.into()
    } else {
        format_g8(v)
    }
}

/// The longest prefix of `s` (after blanks) C's `strtod` reads, as f64.
fn parse_stod(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let bytes = t.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let rest = t[end..].to_ascii_lowercase();
    for word in ["infinity", "inf", "nan"] {
        if rest.starts_with(word) {
            let negative = bytes.first() == Some(&b'-');
            let v = if word == "nan" {
                f64::NAN
            } else {
                f64::INFINITY
            };
            return Some(if negative { -v } else { v });
        }
    }
    let digits_from = end;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end < bytes.len() && bytes[end] == b'.' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
    }
    if !t[digits_from..end].bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if end < bytes.len() && matches!(bytes[end], b'e' | b'E') {
        let mut e = end + 1;
        if e < bytes.len() && matches!(bytes[e], b'+' | b'-') {
            e += 1;
        }
        if e < bytes.len() && bytes[e].is_ascii_digit() {
            while e < bytes.len() && bytes[e].is_ascii_digit() {
                e += 1;
            }
            end = e;
        }
    }
    t[..end].parse().ok()
}

/// The longest prefix of `s` (after blanks) C's `strtoll` reads.
fn parse_stoll(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let bytes = t.as_bytes();
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let start = end;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end == start {
        return None;
    }
    t[..end].parse().ok()
}

impl StringCast {
    fn print_strings(&self, input: &Tensor) -> TractResult<Tensor> {
        let strings: Vec<String> = match input.datum_type() {
            DatumType::F32 | DatumType::F64 | DatumType::F16 => input
                .cast_to::<f64>()?
                .to_plain_array_view::<f64>()?
                .iter()
                .map(|&v| float_to_string(v))
                .collect(),
            DatumType::Bool => input
                .to_plain_array_view::<bool>()?
                .iter()
                .map(|&b| if b { "1" } else { "0" }.to_string())
                .collect(),
            DatumType::U64 => input
                .to_plain_array_view::<u64>()?
                .iter()
                .map(u64::to_string)
                .collect(),
            dt if dt.is_integer() || dt == DatumType::TDim => input
                .cast_to::<i64>()?
                .to_plain_array_view::<i64>()?
                .iter()
                .map(i64::to_string)
                .collect(),
            other => bail!("Cast node `{}`: cannot cast {other:?} to string", self.node),
        };
        shaped_tensor(input.shape(), strings)
    }

    fn parse_strings(&self, input: &Tensor) -> TractResult<Tensor> {
        let strings = input.to_plain_array_view::<String>()?;
        let failed = |s: &str| {
            format_err!(
                "Cast node `{}`: cannot read `{s}` as {:?}",
                self.node,
                self.to
            )
        };
        let shape = input.shape();
        let out = if self.to.is_float() {
            let values = strings
                .iter()
                .map(|s| parse_stod(s).ok_or_else(|| failed(s)))
                .collect::<TractResult<Vec<f64>>>()?;
            shaped_tensor(shape, values)?
        } else if self.to.is_integer() || self.to == DatumType::Bool {
            let values = strings
                .iter()
                .map(|s| parse_stoll(s).ok_or_else(|| failed(s)))
                .collect::<TractResult<Vec<i64>>>()?;
            if self.to == DatumType::Bool {
                let bools: Vec<bool> = values.iter().map(|&v| v != 0).collect();
                return shaped_tensor(shape, bools);
            }
            shaped_tensor(shape, values)?
        } else {
            bail!(
                "Cast node `{}`: cannot cast string to {:?}",
                self.node,
                self.to
            )
        };
        // f64 → f32 rounds like C's narrowing; i64 → narrower ints wraps.
        Ok(out.cast_to_dt(self.to)?.into_owned())
    }
}

impl Op for StringCast {
    fn name(&self) -> StaticName {
        "onnx.Cast(string)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for StringCast {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let out = if self.to == DatumType::String {
            self.print_strings(&input)?
        } else {
            self.parse_strings(&input)?
        };
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for StringCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec![self.to.fact(inputs[0].shape.clone())])
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{arr1, arr2};

    fn ml(op: &str, attrs: Vec<tract_onnx::pb::AttributeProto>) -> NodeProto {
        node(op, &["X"], &["Y"], attrs)
    }

    fn run1(node: NodeProto, input: &Tensor) -> Tensor {
        run_node(node, &[("X", input)]).unwrap().remove(0)
    }

    #[test]
    fn scaler_per_column_and_broadcast() {
        let x: Tensor = arr2(&[[1.0f32, -2.0], [0.5, 0.25], [0.0, 0.0]]).into();
        let y = run1(
            ml(
                "Scaler",
                vec![floats("offset", &[1.0]), floats("scale", &[2.0])],
            ),
            &x,
        );
        assert_close(&y, &[0.0, -6.0, -1.0, -1.5, -2.0, -2.0], 0.0);
        let y = run1(
            ml(
                "Scaler",
                vec![floats("offset", &[1.0, 0.5]), floats("scale", &[2.0, 3.0])],
            ),
            &x,
        );
        assert_close(&y, &[0.0, -7.5, -1.0, -0.75, -2.0, -1.5], 0.0);
        // int64 inputs convert to float first; onnxruntime gives these.
        let xi: Tensor = arr2(&[[1i64, 0], [0, 5]]).into();
        let y = run1(
            ml(
                "Scaler",
                vec![floats("offset", &[1.0, 0.5]), floats("scale", &[2.0, 3.0])],
            ),
            &xi,
        );
        assert_eq!(y.datum_type(), DatumType::F32);
        assert_close(&y, &[0.0, -1.5, -2.0, 13.5], 0.0);
        // double inputs compute in double, then round.
        let xd: Tensor = arr2(&[[1.0f64, -2.0], [0.5, 0.25]]).into();
        let y = run1(
            ml(
                "Scaler",
                vec![floats("offset", &[0.1]), floats("scale", &[3.0])],
            ),
            &xd,
        );
        let e = |x: f64| ((x - 0.1f32 as f64) * 3.0) as f32;
        assert_close(&y, &[e(1.0), e(-2.0), e(0.5), e(0.25)], 0.0);
    }

    #[test]
    fn scaler_rejects_bad_lengths() {
        let x: Tensor = arr2(&[[1.0f32, -2.0, 3.0]]).into();
        let e = node_error(
            ml(
                "Scaler",
                vec![floats("offset", &[1.0, 2.0]), floats("scale", &[2.0, 1.0])],
            ),
            &[("X", &x)],
        );
        assert!(
            e.contains("Scaler node `Scaler_node`: attribute `scale`: has 2 entries"),
            "{e}"
        );
        let e = node_error(ml("Scaler", vec![floats("scale", &[2.0])]), &[("X", &x)]);
        assert!(
            e.contains("attribute `offset`: has 0 entries, expected 1"),
            "{e}"
        );
    }

    #[test]
    fn normalizer_matches_onnxruntime() {
        let x: Tensor = arr2(&[
            [1.0f32, -2.0, 3.0],
            [-1.0, -4.0, -0.5],
            [0.0, 0.0, 0.0],
            [f32::NAN, 1.0, 2.0],
        ])
        .into();
        let nan = f32::NAN;
        // Expected values: onnxruntime 1.31.1.
        let y = run1(ml("Normalizer", vec![string("norm", "MAX")]), &x);
        assert_close(
            &y,
            &[
                0.333_333_34,
                -0.666_666_7,
                1.0,
                2.0,
                8.0,
                1.0,
                0.0,
                0.0,
                0.0,
                nan,
                0.5,
                1.0,
            ],
            0.0,
        );
        let y = run1(ml("Normalizer", vec![string("norm", "L1")]), &x);
        assert_close(
            &y,
            &[
                0.166_666_67,
                -0.333_333_34,
                0.5,
                -0.181_818_19,
                -0.727_272_75,
                -0.090_909_09,
                0.0,
                0.0,
                0.0,
                nan,
                nan,
                nan,
            ],
            0.0,
        );
        let y = run1(ml("Normalizer", vec![string("norm", "L2")]), &x);
        assert_close(
            &y,
            &[
                0.267_261_24,
                -0.534_522_5,
                0.801_783_74,
                -0.240_771_71,
                -0.963_086_84,
                -0.120_385_855,
                0.0,
                0.0,
                0.0,
                nan,
                nan,
                nan,
            ],
            0.0,
        );
        let xi: Tensor = arr2(&[[3i64, -4]]).into();
        let y = run1(ml("Normalizer", vec![string("norm", "L2")]), &xi);
        assert_close(&y, &[0.6, -0.8], 0.0);
        let e = node_error(ml("Normalizer", vec![string("norm", "L3")]), &[("X", &x)]);
        assert!(
            e.contains("Normalizer node `Normalizer_node`: attribute `norm`: unknown value `L3`"),
            "{e}"
        );
    }

    #[test]
    fn binarizer_thresholds_and_refuses_nan() {
        let x: Tensor = arr2(&[[1.0f32, -2.0], [0.5, 0.25], [0.0, 0.1]]).into();
        let y = run1(ml("Binarizer", vec![float("threshold", 0.25)]), &x);
        assert_eq!(
            y,
            arr2(&[[1.0f32, 0.0], [1.0, 0.0], [0.0, 0.0]]).into_tensor()
        );
        // Default threshold 0: zero maps to zero.
        let y = run1(ml("Binarizer", vec![]), &x);
        assert_eq!(
            y,
            arr2(&[[1.0f32, 0.0], [1.0, 1.0], [0.0, 1.0]]).into_tensor()
        );
        let xd: Tensor = arr1(&[0.5f64, -1.0]).into();
        let y = run1(ml("Binarizer", vec![]), &xd);
        assert_eq!(y, arr1(&[1.0f64, 0.0]).into_tensor());
        let nan: Tensor = arr2(&[[1.0f32, f32::NAN]]).into();
        let e = node_error(ml("Binarizer", vec![]), &[("X", &nan)]);
        assert!(e.contains("input value 1 is NaN"), "{e}");
    }

    #[test]
    fn imputer_replaces_nan_or_marker() {
        let nan = f32::NAN;
        let x: Tensor = arr2(&[[1.0f32, nan, 3.0], [-1.0, 0.0, -0.5]]).into();
        let y = run1(
            ml(
                "Imputer",
                vec![
                    floats("imputed_value_floats", &[9.0, 8.0, 7.0]),
                    float("replaced_value_float", nan),
                ],
            ),
            &x,
        );
        assert_close(&y, &[1.0, 8.0, 3.0, -1.0, 0.0, -0.5], 0.0);
        // No replaced value: 0 is replaced (NaN is not).
        let y = run1(
            ml("Imputer", vec![floats("imputed_value_floats", &[9.0])]),
            &x,
        );
        assert_close(&y, &[1.0, nan, 3.0, -1.0, 9.0, -0.5], 0.0);
        // Neither 1 nor 3 values: the first one everywhere (onnxruntime).
        let y = run1(
            ml(
                "Imputer",
                vec![
                    floats("imputed_value_floats", &[9.0, 5.0]),
                    float("replaced_value_float", -1.0),
                ],
            ),
            &x,
        );
        assert_close(&y, &[1.0, nan, 3.0, 9.0, 0.0, -0.5], 0.0);
        let xi: Tensor = arr2(&[[1i64, 0, 3], [0, 5, 0]]).into();
        let y = run1(
            ml(
                "Imputer",
                vec![
                    ints("imputed_value_int64s", &[9, 8, 7]),
                    int("replaced_value_int64", 0),
                ],
            ),
            &xi,
        );
        assert_eq!(y, arr2(&[[1i64, 8, 3], [9, 5, 7]]).into_tensor());
        let e = node_error(
            ml("Imputer", vec![floats("imputed_value_floats", &[1.0])]),
            &[("X", &xi)],
        );
        assert!(
            e.contains(
                "Imputer node `Imputer_node`: attribute `imputed_value_floats` needs a float input"
            ),
            "{e}"
        );
        let e = node_error(ml("Imputer", vec![]), &[("X", &x)]);
        assert!(
            e.contains("attribute `imputed_value_floats`: exactly one"),
            "{e}"
        );
    }

    fn extract(data: Tensor, indices: Tensor, constant: bool) -> TractResult<Tensor> {
        let n = node("ArrayFeatureExtractor", &["X", "I"], &["Y"], vec![]);
        let model = if constant {
            model(
                vec![n],
                &[("X", &data)],
                &[("I", indices.clone())],
                &["Y"],
                1,
            )
        } else {
            model(vec![n], &[("X", &data), ("I", &indices)], &[], &["Y"], 1)
        };
        let feeds: Vec<&Tensor> = if constant {
            vec![&data]
        } else {
            vec![&data, &indices]
        };
        run_model(&model, &feeds).map(|mut o| o.remove(0))
    }

    #[test]
    fn array_feature_extractor_shapes_like_onnxruntime() {
        let x: Tensor = arr2(&[[1.0f32, -2.0], [0.5, 0.25], [0.0, 0.0]]).into();
        for constant in [true, false] {
            // [2, 1] indices flatten: output [3, 2].
            let y = extract(x.clone(), arr2(&[[1i64], [0]]).into(), constant).unwrap();
            assert_eq!(
                y,
                arr2(&[[-2.0f32, 1.0], [0.25, 0.5], [0.0, 0.0]]).into_tensor()
            );
            // A scalar index keeps the axis: [3, 1].
            let y = extract(x.clone(), tensor0(1i64), constant).unwrap();
            assert_eq!(y, arr2(&[[-2.0f32], [0.25], [0.0]]).into_tensor());
            // A vector becomes one row.
            let y = extract(
                arr1(&[1.0f32, 2.0, 3.0]).into(),
                arr2(&[[2i64, 0]]).into(),
                constant,
            )
            .unwrap();
            assert_eq!(y, arr2(&[[3.0f32, 1.0]]).into_tensor());
            // String labels.
            let classes: Tensor = arr1(&["a".to_string(), "b".into(), "c".into()]).into();
            let y = extract(classes, arr1(&[2i64, 0, 0]).into(), constant).unwrap();
            assert_eq!(
                y,
                arr2(&[["c".to_string(), "a".into(), "a".into()]]).into_tensor()
            );
            // Out of range: an error, at load for constants, at run otherwise.
            let e = extract(x.clone(), arr1(&[2i64]).into(), constant).unwrap_err();
            assert!(
                format!("{e:#}").contains("index 2 is outside the 2 entries"),
                "{e:#}"
            );
            let e = extract(x.clone(), arr1(&[-1i64]).into(), constant).unwrap_err();
            assert!(format!("{e:#}").contains("index -1 is"), "{e:#}");
        }
    }

    fn cast_to(input: Tensor, to: i64) -> TractResult<Tensor> {
        let n = node("Cast", &["X"], &["Y"], vec![int("to", to)]);
        run_node(n, &[("X", &input)]).map(|mut o| o.remove(0))
    }

    fn strings_of(v: &[&str]) -> Tensor {
        arr1(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).into()
    }

    #[test]
    fn cast_to_string_prints_like_onnxruntime() {
        // onnxruntime 1.31.1 on the same values.
        let f: Tensor = arr1(&[
            1.0f32,
            0.1,
            1e20,
            -2.5,
            f32::NAN,
            1.0 / 3.0,
            f32::NEG_INFINITY,
            1e-5,
            123456789.0,
        ])
        .into();
        let y = cast_to(f, 8).unwrap();
        assert_eq!(
            values::<String>(&y),
            [
                "1",
                "0.1",
                "1e+20",
                "-2.5",
                "NaN",
                "0.33333334",
                "-INF",
                "9.9999997e-06",
                "1.2345679e+08"
            ]
        );
        let i: Tensor = arr2(&[[1i64, 0, -3]]).into();
        assert_eq!(values::<String>(&cast_to(i, 8).unwrap()), ["1", "0", "-3"]);
    }

    #[test]
    fn cast_from_string_parses_like_onnxruntime() {
        let s = strings_of(&["1.5", " 2", "1e3", "inf", "-INF", "nan", "3.25abc"]);
        let y = cast_to(s, 1).unwrap();
        assert_eq!(y.datum_type(), DatumType::F32);
        assert_close(
            &y,
            &[
                1.5,
                2.0,
                1000.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                3.25,
            ],
            0.0,
        );
        let y = cast_to(strings_of(&["15", "-2", " 7x"]), 7).unwrap();
        assert_eq!(y, arr1(&[15i64, -2, 7]).into_tensor());
        let e = cast_to(strings_of(&["abc"]), 7).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read `abc` as I64"),
            "{e:#}"
        );
        // Numeric casts are tract's.
        let y = cast_to(arr1(&[1.7f32, -2.7]).into(), 7).unwrap();
        assert_eq!(
            y.cast_to::<i64>().unwrap().into_owned(),
            arr1(&[1i64, -2]).into_tensor()
        );
        let y = cast_to(arr2(&[[1i64, -5]]).into(), 1).unwrap();
        assert_eq!(y, arr2(&[[1.0f32, -5.0]]).into_tensor());
    }
}

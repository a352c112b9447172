//! Category encoders of ai.onnx.ml, which tract lacks: `LabelEncoder`
//! (opset 1's `classes_strings`, opsets 2-3's `keys_*`/`values_*` and
//! opset 4's `*_tensor` forms) and `OneHotEncoder`. They read int64 or string
//! tensors of any rank and follow onnxruntime on duplicate keys, defaults and
//! NaN keys.

use std::collections::HashMap;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{expansion, shaped_tensor, InputRank, Kernel, OutputSpec, Width};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("LabelEncoder", label_encoder);
    register.insert("OneHotEncoder", one_hot_encoder);
}

/// The ai.onnx.ml opset the model imports (1 when it does not say).
fn ml_opset(ctx: &ParsingContext) -> i64 {
    ctx.model
        .opset_import
        .iter()
        .find(|o| o.domain == "ai.onnx.ml")
        .map(|o| o.version)
        .unwrap_or(1)
}

/// A list of keys or values, in one of the types LabelEncoder maps.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Str(Vec<String>),
    Int(Vec<i64>),
    Float(Vec<f32>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Column::Str(_) => DatumType::String,
            Column::Int(_) => DatumType::I64,
            Column::Float(_) => DatumType::F32,
        }
    }

    fn from_tensor(t: &Tensor) -> TractResult<Column> {
        Ok(match t.datum_type() {
            DatumType::String => {
                Column::Str(t.to_plain_array_view::<String>()?.iter().cloned().collect())
            }
            DatumType::I64 => {
                Column::Int(t.to_plain_array_view::<i64>()?.iter().copied().collect())
            }
            DatumType::F32 => {
                Column::Float(t.to_plain_array_view::<f32>()?.iter().copied().collect())
            }
            other => bail!("holds {other:?}; supported: string, int64, float"),
        })
    }
}

/// A lookup key. Floats are compared by value: -0 and 0 are one key, and
/// NaN matches NaN only from opset 4 on (as in onnxruntime).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Int(i64),
    Float(u32),
}

fn float_key(x: f32, nan_matches: bool) -> Option<Key> {
    if x.is_nan() {
        nan_matches.then_some(Key::Float(f32::NAN.to_bits()))
    } else if x == 0.0 {
        Some(Key::Float(0.0f32.to_bits()))
    } else {
        Some(Key::Float(x.to_bits()))
    }
}

/// The default for unknown keys.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Float(f32),
}

/// Opset 1: one list of classes, mapping strings to their index or indices
/// to their string, depending on the input.
#[derive(Debug, Clone, PartialEq)]
struct ClassList {
    classes: Vec<String>,
    default_string: String,
    default_int64: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct LabelEncoder {
    node: String,
    /// Key → index into `values`.
    map: HashMap<Key, usize>,
    key_type: DatumType,
    values: Column,
    default: Value,
    nan_matches: bool,
    /// Set for the opset 1 form until the input type picks the direction.
    class_list: Option<ClassList>,
}

fn label_encoder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let opset = ml_opset(ctx);
    if let Some(classes) = attrs.strings("classes_strings") {
        let kernel = LabelEncoder {
            node: node.name.clone(),
            map: HashMap::new(),
            key_type: DatumType::String,
            values: Column::Int(vec![]),
            default: Value::Int(-1),
            nan_matches: false,
            class_list: Some(ClassList {
                classes,
                default_string: attrs
                    .string("default_string")
                    .unwrap_or_else(|| "_Unused".into()),
                default_int64: attrs.int("default_int64").unwrap_or(-1),
            }),
        };
        return Ok((expansion(kernel), vec![]));
    }

    let column = |name: &str, tensor_name: &str| -> TractResult<Column> {
        let mut found = vec![];
        if let Some(v) = attrs.strings(&format!("{name}_strings")) {
            found.push((format!("{name}_strings"), Column::Str(v)));
        }
        if let Some(v) = attrs.ints(&format!("{name}_int64s")) {
            found.push((format!("{name}_int64s"), Column::Int(v)));
        }
        if let Some(v) = attrs.floats_f32(&format!("{name}_floats"))? {
            found.push((format!("{name}_floats"), Column::Float(v)));
        }
        if let Some(t) = attrs.tensor(tensor_name)? {
            let c = Column::from_tensor(&t).map_err(|e| attrs.error(tensor_name, e))?;
            found.push((tensor_name.to_string(), c));
        }
        match found.len() {
            1 => Ok(found.remove(0).1),
            0 => Err(attrs.error(
                &format!("{name}_strings"),
                format!("one of {name}_strings, {name}_int64s, {name}_floats or {tensor_name} is required"),
            )),
            _ => Err(attrs.error(
                &found[1].0,
                format!("only one of {name}_* may be set, {} is set too", found[0].0),
            )),
        }
    };
    let keys = column("keys", "keys_tensor")?;
    let values = column("values", "values_tensor")?;
    if keys.len() != values.len() {
        return Err(attrs.error(
            "values",
            format!("{} values for {} keys", values.len(), keys.len()),
        ));
    }
    let nan_matches = opset >= 4;
    let mut map = HashMap::new();
    let key_type = keys.datum_type();
    // onnxruntime keeps the first value of a repeated key.
    match keys {
        Column::Str(k) => k.into_iter().enumerate().for_each(|(i, k)| {
            map.entry(Key::Str(k)).or_insert(i);
        }),
        Column::Int(k) => k.into_iter().enumerate().for_each(|(i, k)| {
            map.entry(Key::Int(k)).or_insert(i);
        }),
        Column::Float(k) => k.into_iter().enumerate().for_each(|(i, k)| {
            if let Some(key) = float_key(k, nan_matches) {
                map.entry(key).or_insert(i);
            }
        }),
    }
    let default = match attrs.tensor("default_tensor")? {
        Some(t) => match Column::from_tensor(&t).map_err(|e| attrs.error("default_tensor", e))? {
            Column::Str(v) if v.len() == 1 => Value::Str(v[0].clone()),
            Column::Int(v) if v.len() == 1 => Value::Int(v[0]),
            Column::Float(v) if v.len() == 1 => Value::Float(v[0]),
            _ => return Err(attrs.error("default_tensor", "must hold one value")),
        },
        None => match &values {
            Column::Str(_) => Value::Str(
                attrs
                    .string("default_string")
                    .unwrap_or_else(|| "_Unused".into()),
            ),
            Column::Int(_) => Value::Int(attrs.int("default_int64").unwrap_or(-1)),
            Column::Float(_) => Value::Float(attrs.float("default_float").unwrap_or(
                // Opset 4 made the default +0 unless keys are floats too.
                if opset >= 4 && key_type != DatumType::F32 {
                    0.0
                } else {
                    -0.0
                },
            )),
        },
    };
    if values.datum_type()
        != match default {
            Value::Str(_) => DatumType::String,
            Value::Int(_) => DatumType::I64,
            Value::Float(_) => DatumType::F32,
        }
    {
        return Err(attrs.error("default_tensor", "does not have the type of the values"));
    }
    let kernel = LabelEncoder {
        node: node.name.clone(),
        map,
        key_type,
        values,
        default,
        nan_matches,
        class_list: None,
    };
    Ok((expansion(kernel), vec![]))
}

impl LabelEncoder {
    /// The opset 1 form for keys of `key_type`.
    fn for_class_list(&self, list: &ClassList, key_type: DatumType) -> LabelEncoder {
        let mut map = HashMap::new();
        if key_type == DatumType::String {
            // onnxruntime's map keeps the last index of a repeated class.
            for (i, c) in list.classes.iter().enumerate() {
                map.insert(Key::Str(c.clone()), i);
            }
            LabelEncoder {
                map,
                key_type,
                values: Column::Int((0..list.classes.len() as i64).collect()),
                default: Value::Int(list.default_int64),
                class_list: None,
                ..self.clone()
            }
        } else {
            for i in 0..list.classes.len() {
                map.insert(Key::Int(i as i64), i);
            }
            LabelEncoder {
                map,
                key_type: DatumType::I64,
                values: Column::Str(list.classes.clone()),
                default: Value::Str(list.default_string.clone()),
                class_list: None,
                ..self.clone()
            }
        }
    }

    /// The index into `values` of each input element, `None` for unknown.
    fn lookup(&self, input: &Tensor) -> TractResult<Vec<Option<usize>>> {
        Ok(match self.key_type {
            DatumType::String => input
                .to_plain_array_view::<String>()?
                .iter()
                .map(|s| self.map.get(&Key::Str(s.clone())).copied())
                .collect(),
            DatumType::I64 => input
                .cast_to::<i64>()?
                .to_plain_array_view::<i64>()?
                .iter()
                .map(|&i| self.map.get(&Key::Int(i)).copied())
                .collect(),
            _ => input
                .to_plain_array_view::<f32>()?
                .iter()
                .map(|&x| float_key(x, self.nan_matches).and_then(|k| self.map.get(&k).copied()))
                .collect(),
        })
    }
}

fn gather<T: Clone>(values: &[T], default: &T, found: &[Option<usize>]) -> Vec<T> {
    found
        .iter()
        .map(|ix| ix.map_or_else(|| default.clone(), |i| values[i].clone()))
        .collect()
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: self.values.datum_type(),
            width: Width::SameShape,
        }]
    }

    fn input_rank(&self) -> InputRank {
        InputRank::Any
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        let datum_type = match datum_type {
            DatumType::TDim => DatumType::I64,
            other => other,
        };
        if let Some(list) = &self.class_list {
            return match datum_type {
                DatumType::String | DatumType::I64 => Ok(self.for_class_list(list, datum_type)),
                other => bail!(
                    "LabelEncoder node `{}`: attribute `classes_strings` maps string or int64 inputs, got {other:?}",
                    self.node
                ),
            };
        }
        if datum_type != self.key_type {
            bail!(
                "LabelEncoder node `{}`: attribute `keys`: keys of type {:?} cannot look up an input of type {datum_type:?}",
                self.node,
                self.key_type
            );
        }
        Ok(self.clone())
    }

    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        let found = self.lookup(&input)?;
        let shape = input.shape();
        let output = match (&self.values, &self.default) {
            (Column::Str(v), Value::Str(d)) => shaped_tensor(shape, gather(v, d, &found))?,
            (Column::Int(v), Value::Int(d)) => shaped_tensor(shape, gather(v, d, &found))?,
            (Column::Float(v), Value::Float(d)) => shaped_tensor(shape, gather(v, d, &found))?,
            _ => bail!(
                "LabelEncoder node `{}`: default of the wrong type",
                self.node
            ),
        };
        Ok(tvec![output])
    }
}

/// Categories of a OneHotEncoder: category → position.
#[derive(Debug, Clone, PartialEq)]
enum Categories {
    Int(HashMap<i64, usize>),
    Str(HashMap<String, usize>),
}

/// One float one-hot vector per input element, appended as a last axis.
#[derive(Debug, Clone, PartialEq)]
struct OneHotEncoder {
    node: String,
    categories: Categories,
    count: usize,
    /// Unknown categories give all zeros; otherwise they are an error.
    zeros: bool,
}

fn one_hot_encoder(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attributes::new(node);
    let ints = attrs.ints("cats_int64s").unwrap_or_default();
    let strings = attrs.strings("cats_strings").unwrap_or_default();
    // onnxruntime's map keeps the last position of a repeated category.
    let (categories, count) = match (ints.is_empty(), strings.is_empty()) {
        (false, true) => (
            Categories::Int(ints.iter().enumerate().map(|(i, &c)| (c, i)).collect()),
            ints.len(),
        ),
        (true, false) => (
            Categories::Str(
                strings
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, c)| (c, i))
                    .collect(),
            ),
            strings.len(),
        ),
        _ => {
            return Err(attrs.error(
                "cats_int64s",
                "exactly one of cats_int64s and cats_strings must list the categories",
            ))
        }
    };
    let kernel = OneHotEncoder {
        node: node.name.clone(),
        categories,
        count,
        zeros: attrs.int("zeros").unwrap_or(1) != 0,
    };
    Ok((expansion(kernel), vec![]))
}

impl OneHotEncoder {
    fn encode(
        &self,
        positions: impl Iterator<Item = Option<usize>>,
        shape: &[usize],
    ) -> TractResult<Tensor> {
        let elements: usize = shape.iter().product();
        let mut data = vec![0.0f32; elements * self.count];
        for (i, position) in positions.enumerate() {
            match position {
                Some(p) => data[i * self.count + p] = 1.0,
                None if self.zeros => {}
                None => bail!(
                    "OneHotEncoder node `{}`: input value {i} is not a known category (zeros = 0)",
                    self.node
                ),
            }
        }
        let mut out_shape = shape.to_vec();
        out_shape.push(self.count);
        shaped_tensor(&out_shape, data)
    }
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn outputs(&self) -> TVec<OutputSpec> {
        tvec![OutputSpec {
            datum_type: DatumType::F32,
            width: Width::AppendAxis(self.count),
        }]
    }

    fn input_rank(&self) -> InputRank {
        InputRank::Any
    }

    fn for_input(&self, datum_type: DatumType) -> TractResult<Self> {
        let fits = match self.categories {
            Categories::Int(_) => matches!(
                datum_type,
                DatumType::I64 | DatumType::I32 | DatumType::F32 | DatumType::F64 | DatumType::TDim
            ),
            Categories::Str(_) => datum_type == DatumType::String,
        };
        if !fits {
            let attr = match self.categories {
                Categories::Int(_) => "cats_int64s",
                Categories::Str(_) => "cats_strings",
            };
            bail!(
                "OneHotEncoder node `{}`: attribute `{attr}` cannot encode an input of type {datum_type:?}",
                self.node
            );
        }
        Ok(self.clone())
    }

    fn eval_tensor(&self, input: TValue) -> TractResult<TVec<Tensor>> {
        let shape = input.shape().to_vec();
        let output = match &self.categories {
            Categories::Str(map) => {
                let view = input.to_plain_array_view::<String>()?;
                self.encode(view.iter().map(|s| map.get(s).copied()), &shape)?
            }
            Categories::Int(map) => {
                // Floats truncate towards zero, as onnxruntime's cast does.
                let ints = match input.datum_type() {
                    DatumType::F32 | DatumType::F64 => {
                        let floats = input.cast_to::<f64>()?;
                        let floats = floats.to_plain_array_view::<f64>()?;
                        floats.iter().map(|&x| x as i64).collect::<Vec<i64>>()
                    }
                    _ => input
                        .cast_to::<i64>()?
                        .to_plain_array_view::<i64>()?
                        .iter()
                        .copied()
                        .collect(),
                };
                self.encode(ints.iter().map(|i| map.get(i).copied()), &shape)?
            }
        };
        Ok(tvec![output])
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{arr1, arr2, arr3};

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn le(
        attrs: Vec<tract_onnx::pb::AttributeProto>,
        input: &Tensor,
        opset: i64,
    ) -> TractResult<Tensor> {
        run_node_opset(
            node("LabelEncoder", &["X"], &["Y"], attrs),
            &[("X", input)],
            opset,
        )
        .map(|mut o| o.remove(0))
    }

    fn string_input() -> Tensor {
        tract_onnx::prelude::tract_ndarray::Array2::from_shape_vec(
            (2, 2),
            strs(&["a", "b", "zz", "c"]),
        )
        .unwrap()
        .into()
    }

    #[test]
    fn label_encoder_opset1_both_directions() {
        // Expected values: onnxruntime 1.31.1 (duplicate class: last index).
        let y = le(
            vec![strings("classes_strings", &["a", "c", "a"])],
            &string_input(),
            1,
        )
        .unwrap();
        assert_eq!(y, arr2(&[[2i64, -1], [-1, 1]]).into_tensor());
        let ints: Tensor = arr2(&[[1i64, 0, 3], [0, 5, 0]]).into();
        let y = le(vec![strings("classes_strings", &["a", "c"])], &ints, 1).unwrap();
        let expected: Tensor = tract_onnx::prelude::tract_ndarray::Array2::from_shape_vec(
            (2, 3),
            strs(&["c", "a", "_Unused", "a", "_Unused", "a"]),
        )
        .unwrap()
        .into();
        assert_eq!(y, expected);
        let y = le(
            vec![
                strings("classes_strings", &["a"]),
                string("default_string", "?"),
            ],
            &arr1(&[0i64, 4]).into(),
            1,
        )
        .unwrap();
        assert_eq!(y, arr1(&["a".to_string(), "?".into()]).into_tensor());
    }

    #[test]
    fn label_encoder_opset2_forms() {
        let input = string_input();
        // Repeated key: the first value wins.
        let y = le(
            vec![
                strings("keys_strings", &["a", "c", "a"]),
                ints("values_int64s", &[1, 2, 3]),
            ],
            &input,
            2,
        )
        .unwrap();
        assert_eq!(y, arr2(&[[1i64, -1], [-1, 2]]).into_tensor());
        let y = le(
            vec![
                strings("keys_strings", &["a", "c"]),
                floats("values_floats", &[1.0, 2.0]),
            ],
            &input,
            2,
        )
        .unwrap();
        assert_close(&y, &[1.0, -0.0, -0.0, 2.0], 0.0);
        assert!(values::<f32>(&y)[1].is_sign_negative());
        let y = le(
            vec![
                strings("keys_strings", &["a", "b"]),
                strings("values_strings", &["A", "B"]),
            ],
            &input,
            2,
        )
        .unwrap();
        assert_eq!(
            values::<String>(&y),
            strs(&["A", "B", "_Unused", "_Unused"])
        );
        let ints_in: Tensor = arr2(&[[1i64, 0, 3], [0, 5, 0]]).into();
        let y = le(
            vec![
                ints("keys_int64s", &[1, 5]),
                strings("values_strings", &["one", "five"]),
                string("default_string", "?"),
            ],
            &ints_in,
            2,
        )
        .unwrap();
        assert_eq!(
            values::<String>(&y),
            strs(&["one", "?", "?", "?", "five", "?"])
        );
        let y = le(
            vec![
                ints("keys_int64s", &[1, 5, 1]),
                ints("values_int64s", &[10, 50, 11]),
            ],
            &ints_in,
            2,
        )
        .unwrap();
        assert_eq!(y, arr2(&[[10i64, -1, -1], [-1, 50, -1]]).into_tensor());
        let f: Tensor = arr1(&[0.0f32, -0.0, f32::NAN, 1.5]).into();
        let attrs = || {
            vec![
                floats("keys_floats", &[0.0, f32::NAN, 1.5]),
                ints("values_int64s", &[1, 2, 3]),
            ]
        };
        // NaN keys match from opset 4 on; -0 finds 0.
        assert_eq!(
            le(attrs(), &f, 2).unwrap(),
            arr1(&[1i64, 1, -1, 3]).into_tensor()
        );
        assert_eq!(
            le(attrs(), &f, 4).unwrap(),
            arr1(&[1i64, 1, 2, 3]).into_tensor()
        );
        // Opset 4 tensor attributes.
        let y = le(
            vec![
                tensor_attr("keys_tensor", &arr1(&[1i64, 5]).into()),
                tensor_attr("values_tensor", &arr1(&[0.5f32, 2.0]).into()),
                tensor_attr("default_tensor", &arr1(&[7.0f32]).into()),
            ],
            &ints_in,
            4,
        )
        .unwrap();
        assert_close(&y, &[0.5, 7.0, 7.0, 7.0, 2.0, 7.0], 0.0);
    }

    #[test]
    fn label_encoder_rejects_bad_attributes_and_types() {
        let input = string_input();
        let e = le(
            vec![
                strings("keys_strings", &["a", "b"]),
                strings("values_strings", &["A"]),
            ],
            &input,
            2,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains(
                "LabelEncoder node `LabelEncoder_node`: attribute `values`: 1 values for 2 keys"
            ),
            "{e:#}"
        );
        let e = le(
            vec![ints("keys_int64s", &[1]), strings("values_strings", &["A"])],
            &input,
            2,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("keys of type I64 cannot look up an input of type String"),
            "{e:#}"
        );
        let e = le(vec![strings("values_strings", &["A"])], &input, 2).unwrap_err();
        assert!(
            format!("{e:#}").contains("attribute `keys_strings`: one of"),
            "{e:#}"
        );
    }

    #[test]
    fn one_hot_encoder_like_onnxruntime() {
        let x: Tensor = arr2(&[[1i64, 0, 3], [0, 5, 0]]).into();
        let y = run_node(
            node(
                "OneHotEncoder",
                &["X"],
                &["Y"],
                vec![ints("cats_int64s", &[0, 5, 3])],
            ),
            &[("X", &x)],
        )
        .unwrap()
        .remove(0);
        let expected = arr3(&[
            [[0.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        ]);
        assert_eq!(y, expected.into_tensor());
        let e = node_error(
            node(
                "OneHotEncoder",
                &["X"],
                &["Y"],
                vec![ints("cats_int64s", &[0, 5, 3]), int("zeros", 0)],
            ),
            &[("X", &x)],
        );
        assert!(e.contains("input value 0 is not a known category"), "{e}");
        // Floats truncate.
        let f: Tensor = arr2(&[[0.7f32, -0.9, 1.2]]).into();
        let y = run_node(
            node(
                "OneHotEncoder",
                &["X"],
                &["Y"],
                vec![ints("cats_int64s", &[0, 1, -1])],
            ),
            &[("X", &f)],
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            y,
            arr3(&[[[1.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).into_tensor()
        );
        let y = run_node(
            node(
                "OneHotEncoder",
                &["X"],
                &["Y"],
                vec![strings("cats_strings", &["a", "zz"])],
            ),
            &[("X", &string_input())],
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            y,
            arr3(&[[[1.0f32, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]]).into_tensor()
        );
        let e = node_error(
            node(
                "OneHotEncoder",
                &["X"],
                &["Y"],
                vec![strings("cats_strings", &["a"])],
            ),
            &[("X", &x)],
        );
        assert!(
            e.contains(
                "OneHotEncoder node `OneHotEncoder_node`: attribute `cats_strings` cannot encode"
            ),
            "{e}"
        );
    }

    #[test]
    fn one_hot_after_gather_and_cast_of_int64_columns() {
        // skl2onnx's OneHotEncoder export: Gather a column, Cast to int64
        // (a TDim inside tract), OneHotEncoder, Concat, Reshape.
        let x: Tensor = arr2(&[[1i64, 3], [2, 0], [7, 1]]).into();
        let mut nodes = vec![
            node("Gather", &["X", "c0"], &["g0"], vec![int("axis", 1)]),
            node("Gather", &["X", "c1"], &["g1"], vec![int("axis", 1)]),
            node("Cast", &["g0"], &["k0"], vec![int("to", 7)]),
            node("Cast", &["g1"], &["k1"], vec![int("to", 7)]),
            node(
                "OneHotEncoder",
                &["k0"],
                &["o0"],
                vec![ints("cats_int64s", &[0, 1, 2, 3]), int("zeros", 1)],
            ),
            node(
                "OneHotEncoder",
                &["k1"],
                &["o1"],
                vec![ints("cats_int64s", &[0, 1, 2, 3]), int("zeros", 1)],
            ),
            node("Concat", &["o0", "o1"], &["cat"], vec![int("axis", -1)]),
            node("Reshape", &["cat", "shape"], &["Y"], vec![]),
        ];
        for (i, n) in nodes.iter_mut().enumerate() {
            n.name = format!("n{i}");
        }
        let model = model(
            nodes,
            &[("X", &x)],
            &[
                ("c0", arr1(&[0i64]).into()),
                ("c1", arr1(&[1i64]).into()),
                ("shape", arr1(&[-1i64, 8]).into()),
            ],
            &["Y"],
            1,
        );
        let y = run_model(&model, &[&x]).unwrap().remove(0);
        let expected = arr2(&[
            [0.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        ]);
        assert_eq!(y, expected.into_tensor());
    }
}

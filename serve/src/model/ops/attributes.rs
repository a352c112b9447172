//! Reading ONNX node attributes with errors that name the op, the node and
//! the attribute, so an unsupported export says exactly what is unsupported.

use tract_onnx::data_resolver::MmapDataResolver;
use tract_onnx::pb::{AttributeProto, NodeProto};
use tract_onnx::tensor::load_tensor;
use tract_onnx::tract_hir::internal::*;

/// The attributes of one node.
pub struct Attributes<'a> {
    node: &'a NodeProto,
}

impl<'a> Attributes<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attributes { node }
    }

    /// An error about `attribute` of this node.
    pub fn error(&self, attribute: &str, message: impl std::fmt::Display) -> TractError {
        format_err!(
            "{} node `{}`: attribute `{attribute}`: {message}",
            self.node.op_type,
            self.node.name
        )
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// Whether the node sets `name` at all.
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The tensor an attribute of type TENSOR holds, loaded.
    pub fn tensor(&self, name: &str) -> TractResult<Option<Tensor>> {
        let Some(attr) = self.find(name) else {
            return Ok(None);
        };
        let proto = attr
            .t
            .as_ref()
            .ok_or_else(|| self.error(name, "holds no tensor"))?;
        load_tensor(&MmapDataResolver, proto, None)
            .map(Some)
            .map_err(|e| self.error(name, e))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.find(name).map(|a| a.i)
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.find(name).map(|a| a.f)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.find(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// A count that must be positive, `default` when absent.
    pub fn positive_int(&self, name: &str, default: i64) -> TractResult<usize> {
        let value = self.int(name).unwrap_or(default);
        usize::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.error(name, format!("must be positive, is {value}")))
    }

    /// The value of a string attribute that names one of `choices`; the
    /// first choice when the attribute is absent.
    pub fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> TractResult<T> {
        let Some(value) = self.string(name) else {
            return Ok(choices[0].1);
        };
        choices
            .iter()
            .find(|(choice, _)| *choice == value)
            .map(|&(_, v)| v)
            .ok_or_else(|| self.error(name, format!("unknown value `{value}`")))
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.find(name).map(|a| a.ints.clone())
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.find(name).map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    /// A float list from `name`, or from `name_as_tensor` (the double form
    /// opset 3 added); `None` when neither is present.
    pub fn floats(&self, name: &str) -> TractResult<Option<Vec<f64>>> {
        let tensor_name = format!("{name}_as_tensor");
        if let Some(attr) = self.find(&tensor_name) {
            let proto = attr
                .t
                .as_ref()
                .ok_or_else(|| self.error(&tensor_name, "holds no tensor"))?;
            let tensor = load_tensor(&MmapDataResolver, proto, None)
                .and_then(|t| t.cast_to::<f64>().map(|c| c.into_owned()))
                .map_err(|e| self.error(&tensor_name, e))?;
            let view = tensor
                .to_plain_array_view::<f64>()
                .map_err(|e| self.error(&tensor_name, e))?;
            return Ok(Some(view.iter().copied().collect()));
        }
        Ok(self
            .find(name)
            .map(|a| a.floats.iter().map(|&f| f as f64).collect()))
    }

    /// [`Attributes::floats`] rounded to f32, the precision most ops
    /// compute in.
    pub fn floats_f32(&self, name: &str) -> TractResult<Option<Vec<f32>>> {
        Ok(self
            .floats(name)?
            .map(|v| v.into_iter().map(|x| x as f32).collect()))
    }

    pub fn required_ints(&self, name: &str) -> TractResult<Vec<i64>> {
        self.ints(name)
            .ok_or_else(|| self.error(name, "is required"))
    }

    pub fn required_floats(&self, name: &str) -> TractResult<Vec<f64>> {
        self.floats(name)?
            .ok_or_else(|| self.error(name, "is required"))
    }

    pub fn required_floats_f32(&self, name: &str) -> TractResult<Vec<f32>> {
        self.floats_f32(name)?
            .ok_or_else(|| self.error(name, "is required"))
    }

    pub fn required_strings(&self, name: &str) -> TractResult<Vec<String>> {
        self.strings(name)
            .ok_or_else(|| self.error(name, "is required"))
    }

    /// Checks that a per-element attribute has `len` entries.
    pub fn expect_len<T>(&self, name: &str, values: &[T], len: usize) -> TractResult<()> {
        if values.len() == len {
            Ok(())
        } else {
            Err(self.error(
                name,
                format!("has {} entries, expected {len}", values.len()),
            ))
        }
    }
}

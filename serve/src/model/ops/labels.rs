//! The class labels of the ai.onnx.ml classifiers (`classlabels_strings` or
//! the integer form, whose name differs per op), the label and score outputs
//! they give a classifier, and how a winning class is picked.

use tract_onnx::prelude::tract_ndarray::Array1;
use tract_onnx::tract_hir::internal::*;

use super::attributes::Attributes;
use super::kernel::{OutputSpec, Width};

const STRINGS: &str = "classlabels_strings";

/// Class labels as the node declares them.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl ClassLabels {
    /// The labels listed by `ints_attribute` (`classlabels_int64s` for
    /// TreeEnsembleClassifier, `classlabels_ints` for the others) or by
    /// `classlabels_strings`: exactly one of them must list some.
    pub fn parse(attrs: &Attributes, ints_attribute: &str) -> TractResult<ClassLabels> {
        match listed(attrs, ints_attribute) {
            (Some(ints), None) => Ok(ClassLabels::Int(ints)),
            (None, Some(strings)) => Ok(ClassLabels::Str(strings)),
            _ => Err(attrs.error(
                ints_attribute,
                format!("exactly one of {ints_attribute} and {STRINGS} must list the classes"),
            )),
        }
    }

    /// Like [`ClassLabels::parse`], but `None` when neither attribute lists
    /// any label.
    pub fn parse_optional(
        attrs: &Attributes,
        ints_attribute: &str,
    ) -> TractResult<Option<ClassLabels>> {
        match listed(attrs, ints_attribute) {
            (Some(_), Some(_)) => Err(attrs.error(
                STRINGS,
                format!("only one of {ints_attribute} and {STRINGS} may be set"),
            )),
            (Some(ints), None) => Ok(Some(ClassLabels::Int(ints))),
            (None, Some(strings)) => Ok(Some(ClassLabels::Str(strings))),
            (None, None) => Ok(None),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    /// A classifier's outputs: one label per row, then `score_columns`
    /// scores per row.
    pub fn classifier_outputs(&self, score_columns: usize) -> TVec<OutputSpec> {
        let datum_type = match self {
            ClassLabels::Int(_) => DatumType::I64,
            ClassLabels::Str(_) => DatumType::String,
        };
        tvec![
            OutputSpec {
                datum_type,
                width: Width::Scalar,
            },
            OutputSpec {
                datum_type: DatumType::F32,
                width: Width::Columns(score_columns),
            },
        ]
    }

    /// The label output: the label of each row's winning class.
    pub fn tensor(&self, winners: &[usize]) -> Tensor {
        match self {
            ClassLabels::Int(v) => Array1::from_iter(winners.iter().map(|&i| v[i])).into(),
            ClassLabels::Str(v) => Array1::from_iter(winners.iter().map(|&i| v[i].clone())).into(),
        }
    }
}

/// The integer and string labels the node lists; an empty list counts as
/// none.
fn listed(attrs: &Attributes, ints_attribute: &str) -> (Option<Vec<i64>>, Option<Vec<String>>) {
    (
        attrs.ints(ints_attribute).filter(|v| !v.is_empty()),
        attrs.strings(STRINGS).filter(|v| !v.is_empty()),
    )
}

/// The index of the first largest value (`std::max_element`), as onnxruntime
/// picks a winning class from scores or votes.
pub fn first_max<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (ix, v) in values.iter().enumerate().skip(1) {
        if values[best] < *v {
            best = ix;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::super::kernel::testing::*;
    use super::*;

    fn parsed(
        attrs: Vec<tract_onnx::pb::AttributeProto>,
        ints_attribute: &str,
    ) -> (TractResult<ClassLabels>, TractResult<Option<ClassLabels>>) {
        let node = node("SomeClassifier", &["X"], &["L", "S"], attrs);
        let attrs = Attributes::new(&node);
        (
            ClassLabels::parse(&attrs, ints_attribute),
            ClassLabels::parse_optional(&attrs, ints_attribute),
        )
    }

    #[test]
    fn labels_come_from_the_op_specific_int_attribute_or_strings() {
        let (labels, optional) = parsed(
            vec![ints("classlabels_int64s", &[4, 7])],
            "classlabels_int64s",
        );
        assert_eq!(labels.unwrap(), ClassLabels::Int(vec![4, 7]));
        assert_eq!(optional.unwrap(), Some(ClassLabels::Int(vec![4, 7])));
        // An empty list counts as none.
        let (labels, _) = parsed(
            vec![
                ints("classlabels_ints", &[]),
                strings("classlabels_strings", &["a", "b"]),
            ],
            "classlabels_ints",
        );
        let labels = labels.unwrap();
        assert_eq!(labels, ClassLabels::Str(vec!["a".into(), "b".into()]));
        assert_eq!(labels.len(), 2);
        assert_eq!(
            labels.tensor(&[1, 0, 1]),
            tensor1(&["b".to_string(), "a".into(), "b".into()])
        );
        let outputs = labels.classifier_outputs(3);
        assert_eq!(outputs[0].datum_type, DatumType::String);
        assert_eq!(outputs[1].width, Width::Columns(3));
    }

    #[test]
    fn missing_or_doubled_labels_name_the_attribute() {
        // The other op's attribute name does not count.
        let (labels, optional) = parsed(
            vec![ints("classlabels_ints", &[0, 1])],
            "classlabels_int64s",
        );
        let e = labels.unwrap_err().to_string();
        assert!(
            e.contains("SomeClassifier node `SomeClassifier_node`: attribute `classlabels_int64s`: exactly one of classlabels_int64s and classlabels_strings"),
            "{e}"
        );
        assert_eq!(optional.unwrap(), None);
        let (labels, optional) = parsed(
            vec![
                ints("classlabels_ints", &[0, 1]),
                strings("classlabels_strings", &["a", "b"]),
            ],
            "classlabels_ints",
        );
        assert!(labels
            .unwrap_err()
            .to_string()
            .contains("attribute `classlabels_ints`: exactly one of"));
        let e = optional.unwrap_err().to_string();
        assert!(
            e.contains("attribute `classlabels_strings`: only one of classlabels_ints and classlabels_strings may be set"),
            "{e}"
        );
    }

    #[test]
    fn first_max_keeps_the_first_of_equal_values() {
        assert_eq!(first_max(&[1.0f32, 3.0, 3.0, 2.0]), 1);
        assert_eq!(first_max(&[2u32, 2]), 0);
        // NaN never wins against an earlier value, as with `std::max_element`.
        assert_eq!(first_max(&[1.0f32, f32::NAN, 0.5]), 0);
    }
}

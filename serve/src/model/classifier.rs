//! Classifier decoding: scores → probabilities and labels.
//!
//! The label comes from the classifier op's own label tensor when the graph
//! has one (our native ai.onnx.ml ops compute it as onnxruntime does: an SVM
//! votes, binary margins have their own rules); otherwise it is the argmax
//! of the scores. Either way it is a class index, mapped to the model's
//! class labels by the transports, so string labels never flow through tract.

use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

/// What a model said about a batch of rows.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub rows: usize,
    pub classes: usize,
    /// Row-major `[rows, classes]`.
    pub probabilities: Vec<f32>,
    /// Per row, the index of the winning class into the model's labels.
    pub label_indices: Vec<usize>,
    /// Time spent in the model itself.
    pub compute: Duration,
}

impl Predictions {
    pub fn row(&self, row: usize) -> &[f32] {
        &self.probabilities[row * self.classes..(row + 1) * self.classes]
    }

    /// Cuts a batch's predictions back into consecutive runs of `counts` rows.
    pub fn split(self, counts: &[usize]) -> Vec<Predictions> {
        if counts.len() == 1 {
            return vec![self];
        }
        let mut parts = Vec::with_capacity(counts.len());
        let mut start = 0;
        for &rows in counts {
            let end = start + rows;
            parts.push(Predictions {
                rows,
                classes: self.classes,
                probabilities: self.probabilities[start * self.classes..end * self.classes]
                    .to_vec(),
                label_indices: self.label_indices[start..end].to_vec(),
                compute: self.compute,
            });
            start = end;
        }
        parts
    }
}

/// Class indices from a classifier's label tensor, given the label value of
/// each class.
pub(super) fn label_indices(labels: &Tensor, class_values: &[i64]) -> Result<Vec<usize>, String> {
    let labels = labels
        .cast_to::<i64>()
        .map_err(|e| format!("labels are not integers: {e:#}"))?;
    let labels = labels
        .to_plain_array_view::<i64>()
        .map_err(|e| e.to_string())?;
    let labels = labels.as_slice().ok_or("labels are not contiguous")?;
    // Labels 0..n (most exports) are their own indices: no search per row.
    let identity = class_values
        .iter()
        .enumerate()
        .all(|(ix, &v)| v == ix as i64);
    let mut indices = Vec::with_capacity(labels.len());
    for &label in labels {
        let index = if identity {
            usize::try_from(label)
                .ok()
                .filter(|&ix| ix < class_values.len())
        } else {
            class_values.iter().position(|&v| v == label)
        };
        match index {
            Some(ix) => indices.push(ix),
            None => {
                return Err(format!(
                    "the model returned label {label}, which is not one of its classes"
                ))
            }
        }
    }
    Ok(indices)
}

/// Decodes raw scores. With `single_column`, `scores` holds P(class 1) per
/// row and P(class 0) = 1 - P(class 1) is added in front. `labels` are the
/// classifier's own class indices, if it has them; else the argmax is used.
pub(super) fn decode(
    scores: &[f32],
    rows: usize,
    classes: usize,
    single_column: bool,
    labels: Option<Vec<usize>>,
    started: Instant,
) -> Result<Predictions, String> {
    let columns = if single_column { 1 } else { classes };
    if scores.len() != rows * columns {
        return Err(format!(
            "the model returned {} scores for {rows} rows of {columns} columns",
            scores.len()
        ));
    }
    let probabilities = if single_column {
        scores.iter().flat_map(|&p| [1.0 - p, p]).collect()
    } else {
        scores.to_vec()
    };
    let label_indices = match labels {
        Some(labels) if labels.len() == rows => labels,
        Some(labels) => {
            return Err(format!(
                "the model returned {} labels for {rows} rows",
                labels.len()
            ))
        }
        None => probabilities.chunks_exact(classes).map(argmax).collect(),
    };
    Ok(Predictions {
        rows,
        classes,
        probabilities,
        label_indices,
        compute: started.elapsed(),
    })
}

/// Index of the largest score; the first one on ties, as numpy and
/// onnxruntime do.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (ix, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = ix;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_first_on_ties() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[0.9, 0.05, 0.05]), 0);
    }

    #[test]
    fn single_column_scores_become_two_probabilities() {
        let p = decode(&[0.25, 0.75], 2, 2, true, None, Instant::now()).unwrap();
        assert_eq!(p.probabilities, vec![0.75, 0.25, 0.25, 0.75]);
        assert_eq!(p.label_indices, vec![0, 1]);
    }

    #[test]
    fn a_classifier_label_tensor_wins_over_the_argmax() {
        let p = decode(&[0.6, 0.4], 1, 2, false, Some(vec![1]), Instant::now()).unwrap();
        assert_eq!(p.label_indices, vec![1]);
        let labels = Tensor::from(tract_ndarray::arr1(&[7i64, 3]));
        assert_eq!(label_indices(&labels, &[3, 7]).unwrap(), vec![1, 0]);
        assert!(label_indices(&labels, &[3, 4]).is_err());
        let labels = Tensor::from(tract_ndarray::arr1(&[2i64, 0, 1]));
        assert_eq!(label_indices(&labels, &[0, 1, 2]).unwrap(), vec![2, 0, 1]);
        let outside = Tensor::from(tract_ndarray::arr1(&[3i64]));
        assert!(label_indices(&outside, &[0, 1, 2]).is_err());
    }

    #[test]
    fn split_returns_each_requests_rows() {
        let p = decode(
            &[0.1, 0.9, 0.8, 0.2, 0.3, 0.7],
            3,
            2,
            false,
            None,
            Instant::now(),
        )
        .unwrap();
        let parts = p.split(&[1, 2]);
        assert_eq!(parts[0].probabilities, vec![0.1, 0.9]);
        assert_eq!(parts[0].label_indices, vec![1]);
        assert_eq!(parts[1].rows, 2);
        assert_eq!(parts[1].probabilities, vec![0.8, 0.2, 0.3, 0.7]);
        assert_eq!(parts[1].label_indices, vec![0, 1]);
    }

    #[test]
    fn wrong_score_count_is_an_error() {
        assert!(decode(&[0.1, 0.2, 0.7], 2, 3, false, None, Instant::now()).is_err());
    }
}

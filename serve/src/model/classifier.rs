//! Classifier decoding: scores → probabilities and labels.
//!
//! The label is always the argmax of the scores mapped through the class
//! labels, never the graph's own label output: tract computes wrong labels
//! for some binary tree ensembles, and string labels cannot pass through it.

use std::time::{Duration, Instant};

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
}

/// Decodes raw scores. With `single_column`, `scores` holds P(class 1) per
/// row and P(class 0) = 1 - P(class 1) is added in front.
pub(super) fn decode(
    scores: &[f32],
    rows: usize,
    classes: usize,
    single_column: bool,
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
    let label_indices = probabilities.chunks_exact(classes).map(argmax).collect();
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
        let p = decode(&[0.25, 0.75], 2, 2, true, Instant::now()).unwrap();
        assert_eq!(p.probabilities, vec![0.75, 0.25, 0.25, 0.75]);
        assert_eq!(p.label_indices, vec![0, 1]);
    }

    #[test]
    fn wrong_score_count_is_an_error() {
        assert!(decode(&[0.1, 0.2, 0.7], 2, 3, false, Instant::now()).is_err());
    }
}

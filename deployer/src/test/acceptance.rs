//! Acceptance tier: the held-back test set scored with the server's code
//! (`LoadedModel::predict`), measured, and judged against `model.toml`'s
//! thresholds and the production record.

use std::fmt::Write;

use serve::model::FeatureMatrix;

use super::item::Item;
use super::record::ProductionRecord;
use super::GateError;

/// Per-class quality.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// What the model said about the test set, and how good that is.
#[derive(Debug, Clone)]
pub struct Scores {
    pub labels: Vec<String>,
    /// Per row, the predicted class index.
    pub predicted: Vec<usize>,
    /// Row-major `[rows, classes]`.
    pub probabilities: Vec<f32>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<ClassScores>,
    pub accuracy: f64,
    /// The mean F1 over the classes that occur in the truth or the
    /// predictions (scikit-learn's `f1_score(average="macro")`).
    pub macro_f1: f64,
}

pub fn score(item: &Item) -> Result<Scores, GateError> {
    let signature = &item.model.signature;
    let values: Vec<f64> = item.test_set.rows.iter().flatten().copied().collect();
    let fail = |e: serve::ServeError| GateError::Acceptance(e.to_string());
    let features = FeatureMatrix::from_values(signature, &values, "test.csv").map_err(fail)?;
    let predictions = item.model.predict(features).map_err(fail)?;
    Ok(Scores::new(
        item.labels.clone(),
        &item.truth,
        predictions.label_indices,
        predictions.probabilities,
    ))
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Scores {
    pub fn new(
        labels: Vec<String>,
        truth: &[usize],
        predicted: Vec<usize>,
        probabilities: Vec<f32>,
    ) -> Scores {
        let n = labels.len();
        let mut confusion = vec![vec![0; n]; n];
        for (&t, &p) in truth.iter().zip(&predicted) {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..n).map(|c| confusion[c][c]).sum();
        let classes: Vec<ClassScores> = (0..n)
            .map(|c| {
                let support: usize = confusion[c].iter().sum();
                let predicted_as: usize = confusion.iter().map(|row| row[c]).sum();
                let precision = ratio(confusion[c][c], predicted_as);
                let recall = ratio(confusion[c][c], support);
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let present: Vec<f64> = (0..n)
            .filter(|&c| classes[c].support > 0 || confusion.iter().any(|row| row[c] > 0))
            .map(|c| classes[c].f1)
            .collect();
        Scores {
            accuracy: ratio(correct, truth.len()),
            macro_f1: present.iter().sum::<f64>() / present.len().max(1) as f64,
            labels,
            predicted,
            probabilities,
            confusion,
            classes,
        }
    }

    /// The printed report: totals, per-class precision/recall/F1, confusion.
    pub fn report(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = String::new();
        let rows: usize = self.classes.iter().map(|c| c.support).sum();
        let _ = writeln!(
            out,
            "  {rows} rows: accuracy {:.4}, macro-F1 {:.4}",
            self.accuracy, self.macro_f1
        );
        let _ = writeln!(
            out,
            "  {:width$}  precision  recall  f1      support",
            "class"
        );
        for (label, c) in self.labels.iter().zip(&self.classes) {
            let _ = writeln!(
                out,
                "  {label:width$}  {:.4}     {:.4}  {:.4}  {}",
                c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(
            out,
            "  confusion (row: true class, column: predicted, class order)"
        );
        for (label, row) in self.labels.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|n| format!("{n:>4}")).collect();
            let _ = writeln!(out, "  {label:width$} {}", cells.join(""));
        }
        out
    }
}

/// Fails unless accuracy and macro-F1 reach the manifest's thresholds and
/// stay within `margin` of the production record.
pub fn judge(
    scores: &Scores,
    acceptance: &serve::model::Acceptance,
    production: Option<&ProductionRecord>,
    margin: f64,
) -> Result<(), GateError> {
    let min_accuracy = acceptance.min_accuracy.ok_or_else(|| {
        GateError::Acceptance("model.toml sets no [acceptance] min_accuracy".into())
    })?;
    let min_macro_f1 = acceptance.min_macro_f1.unwrap_or(min_accuracy);
    let mut checks = vec![
        (
            "accuracy",
            scores.accuracy,
            min_accuracy,
            "model.toml".to_string(),
        ),
        (
            "macro-F1",
            scores.macro_f1,
            min_macro_f1,
            "model.toml".to_string(),
        ),
    ];
    match production {
        Some(record) => {
            let from = format!("production v{} - {margin}", record.version);
            checks.push((
                "accuracy",
                scores.accuracy,
                record.accuracy - margin,
                from.clone(),
            ));
            checks.push(("macro-F1", scores.macro_f1, record.macro_f1 - margin, from));
        }
        None => println!("  no production record: first release"),
    }
    let mut failures = Vec::new();
    for (what, value, min, from) in checks {
        let ok = value >= min;
        println!(
            "  {what} {value:.4} >= {min:.4} ({from}): {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failures.push(format!("{what} {value:.4} is below {min:.4} ({from})"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(GateError::Acceptance(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn metrics_match_scikit_learn() {
        // sklearn: accuracy_score = 4/6; f1_score(average="macro") over
        // a (p 1, r 0.5), b (p 0.5, r 1), c (p 1, r 0.5) = (2/3 + 2/3 + 2/3) / 3.
        let truth = [0, 0, 1, 2, 2, 1];
        let predicted = vec![0, 1, 1, 2, 1, 1];
        let s = Scores::new(labels(), &truth, predicted, vec![]);
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            s.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 1]]
        );
        assert!((s.classes[1].precision - 0.5).abs() < 1e-12);
        assert!((s.classes[0].recall - 0.5).abs() < 1e-12);
        assert!((s.macro_f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn classes_absent_from_truth_and_predictions_do_not_count() {
        let s = Scores::new(labels(), &[0, 1], vec![0, 1], vec![]);
        assert_eq!(s.macro_f1, 1.0);
        assert!(s.report().contains("macro-F1 1.0000"));
    }

    #[test]
    fn judging_uses_thresholds_and_the_production_record() {
        let s = Scores::new(labels(), &[0, 1, 2, 2], vec![0, 1, 2, 1], vec![]);
        let acceptance = serve::model::Acceptance {
            min_accuracy: Some(0.7),
            min_macro_f1: None,
        };
        assert!(judge(&s, &acceptance, None, 0.01).is_ok());
        let record = ProductionRecord {
            version: 1,
            model_sha256: "x".into(),
            accuracy: 0.9,
            macro_f1: 0.7,
        };
        let err = judge(&s, &acceptance, Some(&record), 0.1).unwrap_err();
        assert!(
            err.to_string().contains("accuracy 0.7500 is below 0.8000"),
            "{err}"
        );
        assert!(judge(&s, &acceptance, Some(&record), 0.2).is_ok());
        let none = serve::model::Acceptance::default();
        assert!(judge(&s, &none, None, 0.0).is_err());
    }
}

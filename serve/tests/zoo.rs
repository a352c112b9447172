//! Every export in the model zoo (`models/zoo/`: scikit-learn, XGBoost and
//! LightGBM classifiers, with and without ZipMap) served by the real server:
//! labels identical to onnxruntime's and probabilities within 1e-5, at batch
//! 1 and batch 64.

mod support;

use serde_json::Value;
use support::{output, repo_root, v2_request, Reference, Server};

const TOLERANCE: f64 = 1e-5;

/// The zoo's models: every folder with a `reference.json`.
fn zoo_models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("models/zoo"))
        .expect("models/zoo exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("reference.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Scores `rows` in requests of `batch` rows; returns labels and probabilities.
fn score(
    server: &Server,
    model: &str,
    rows: &[Vec<f64>],
    batch: usize,
) -> (Vec<Value>, Vec<Vec<f64>>) {
    let mut labels = Vec::new();
    let mut probabilities = Vec::new();
    for chunk in rows.chunks(batch) {
        let (status, body) = server.post_json(
            &format!("/v2/models/{model}/infer"),
            &v2_request("X", chunk),
        );
        assert_eq!(status, 200, "{model}: {body}");
        labels.extend(
            output(&body, "label")["data"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        let probs = output(&body, "probabilities");
        let classes = probs["shape"][1].as_u64().unwrap() as usize;
        let flat: Vec<f64> = probs["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        probabilities.extend(flat.chunks(classes).map(<[f64]>::to_vec));
    }
    (labels, probabilities)
}

#[test]
fn every_zoo_model_matches_onnxruntime_at_batch_1_and_64() {
    let server = Server::start(&["--models", "models/zoo"]);
    let mut failures = Vec::new();
    let models = zoo_models();
    assert!(models.len() >= 40, "the zoo has {} models", models.len());
    for model in &models {
        let reference = Reference::bundled(&format!("zoo/{model}"));
        let (status, _) = server.get(&format!("/v2/models/{model}/ready"));
        if status != 200 {
            let (_, index) = server.post("/v2/repository/index", "");
            let reason = index
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == model.as_str())
                .map(|e| e["reason"].to_string())
                .unwrap_or_default();
            failures.push(format!("{model}: does not load: {reason}"));
            continue;
        }
        for batch in [1, 64] {
            let (labels, probabilities) = score(&server, model, &reference.rows, batch);
            let mismatches = labels
                .iter()
                .zip(&reference.labels)
                .filter(|(a, b)| a != b)
                .count();
            let worst = probabilities
                .iter()
                .flatten()
                .zip(reference.probabilities.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let shapes_match = probabilities.len() == reference.probabilities.len()
                && probabilities
                    .iter()
                    .zip(&reference.probabilities)
                    .all(|(a, b)| a.len() == b.len());
            eprintln!("{model:38} batch {batch:2}: label mismatches {mismatches}, max |p - p_ort| {worst:.2e}");
            if mismatches > 0 || worst > TOLERANCE || !shapes_match {
                failures.push(format!(
                    "{model} batch {batch}: {mismatches} label mismatches, max probability difference {worst:e}, shapes match: {shapes_match}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "zoo parity failures:\n{}",
        failures.join("\n")
    );
}

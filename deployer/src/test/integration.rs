//! Integration tier: the real `serve` binary on the model (a one-model
//! repository, a free loopback port), asked over HTTP what a client would
//! ask, its answers compared with the acceptance tier's, then stopped with
//! SIGTERM, which must end it cleanly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::acceptance::Scores;
use super::item::Item;
use super::process::ServeProcess;
use super::GateError;
use crate::model_dir::ModelDir;

/// Rows per inference request (the server's default batch size).
const ROWS_PER_REQUEST: usize = 64;
/// Probabilities may differ in the last bits between batch sizes.
const TOLERANCE: f32 = 1e-5;

fn fail(reason: impl Into<String>) -> GateError {
    GateError::Integration(reason.into())
}

pub fn check(dir: &ModelDir, item: &Item, scores: &Scores, serve: &Path) -> Result<(), GateError> {
    if !serve.is_file() {
        return Err(fail(format!(
            "no serve binary at {} (build it with `cargo build --release -p serve`, \
             or name it with --serve-binary / MODELOPS_SERVE_BINARY)",
            serve.display()
        )));
    }
    let staging = dir.stage()?;
    let started = Instant::now();
    let mut command = Command::new(serve);
    command
        .arg("--models")
        .arg(&staging.root)
        .args(["--host", "127.0.0.1", "--port", "0", "--drain-seconds", "0"])
        .env("MODELOPS_TELEMETRY", "off");
    let process = ServeProcess::spawn(command, Duration::from_secs(120))
        .map_err(|e| fail(format!("{} did not start: {e}", serve.display())))?;
    println!(
        "  serve started on {} in {} ms",
        process.base,
        started.elapsed().as_millis()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let checked = talk(&agent, &process.base, dir, item, scores);
    if let Err(e) = &checked {
        return Err(fail(format!("{e}; serve's log:\n{}", process.log())));
    }
    let stopping = Instant::now();
    let status = process
        .terminate(Duration::from_secs(30))
        .map_err(|e| fail(format!("SIGTERM: {e}")))?;
    if !status.success() {
        return Err(fail(format!("serve exited with {status} after SIGTERM")));
    }
    println!(
        "  SIGTERM: serve exited cleanly (status 0) in {} ms",
        stopping.elapsed().as_millis()
    );
    Ok(())
}

/// (status, JSON body).
fn call(agent: &ureq::Agent, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let response = match body {
        Some(body) => agent.post(url).send_json(body),
        None => agent.get(url).call(),
    }
    .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn expect_ok(agent: &ureq::Agent, url: &str, body: Option<&Value>) -> Result<Value, String> {
    match call(agent, url, body)? {
        (200, value) => Ok(value),
        (status, value) => Err(format!("{url} answered {status}: {value}")),
    }
}

fn talk(
    agent: &ureq::Agent,
    base: &str,
    dir: &ModelDir,
    item: &Item,
    scores: &Scores,
) -> Result<(), String> {
    let model = &item.model;
    let signature = &model.signature;
    expect_ok(agent, &format!("{base}/v2/health/ready"), None)?;
    let model_url = format!("{base}/v2/models/{}", dir.name);
    expect_ok(agent, &format!("{model_url}/ready"), None)?;
    println!("  /v2/health/ready and /v2/models/{}/ready: 200", dir.name);

    let metadata = expect_ok(agent, &model_url, None)?;
    let expected = [
        ("/name", json!(dir.name)),
        ("/parameters/version", json!(model.version.to_string())),
        ("/parameters/sha256", json!(model.sha256)),
        ("/inputs/0/name", json!(signature.input_name)),
        ("/inputs/0/datatype", json!(signature.input_type.v2_name())),
        ("/inputs/0/shape", json!([-1, signature.features])),
        ("/parameters/class_labels", json!(signature.labels)),
    ];
    for (pointer, want) in expected {
        let got = metadata.pointer(pointer).unwrap_or(&Value::Null);
        if got != &want {
            return Err(format!("metadata {pointer} is {got}, expected {want}"));
        }
    }
    println!("  metadata: name, version, sha256, input signature and class labels match");

    let classes = scores.labels.len();
    let rows = &item.test_set.rows;
    let mut mismatches = 0;
    for (chunk_ix, chunk) in rows.chunks(ROWS_PER_REQUEST).enumerate() {
        let first = chunk_ix * ROWS_PER_REQUEST;
        let request = json!({
            "id": format!("gate-{first}"),
            "inputs": [{
                "name": signature.input_name,
                "shape": [chunk.len(), signature.features],
                "datatype": signature.input_type.v2_name(),
                "data": chunk,
            }]
        });
        let answer = expect_ok(agent, &format!("{model_url}/infer"), Some(&request))?;
        let output = |name: &str| -> Result<&Vec<Value>, String> {
            answer["outputs"]
                .as_array()
                .and_then(|outputs| outputs.iter().find(|o| o["name"] == name))
                .and_then(|o| o["data"].as_array())
                .ok_or_else(|| format!("the answer has no `{name}` output: {answer}"))
        };
        let labels = output("label")?;
        let probabilities = output("probabilities")?;
        if labels.len() != chunk.len() || probabilities.len() != chunk.len() * classes {
            return Err(format!(
                "rows {first}..: {} labels and {} probabilities for {} rows",
                labels.len(),
                probabilities.len(),
                chunk.len()
            ));
        }
        for (offset, label) in labels.iter().enumerate() {
            let row = first + offset;
            let text = label
                .as_str()
                .map_or_else(|| label.to_string(), str::to_string);
            let same_label = text == scores.labels[scores.predicted[row]];
            let same_probabilities = (0..classes).all(|c| {
                let served = probabilities[offset * classes + c]
                    .as_f64()
                    .unwrap_or(f64::NAN) as f32;
                (served - scores.probabilities[row * classes + c]).abs() <= TOLERANCE
            });
            if !(same_label && same_probabilities) {
                mismatches += 1;
                if mismatches <= 3 {
                    eprintln!(
                        "  row {row}: served {text}, acceptance scored {}",
                        scores.labels[scores.predicted[row]]
                    );
                }
            }
        }
    }
    if mismatches > 0 {
        return Err(format!(
            "{mismatches} of {} rows served differ from the acceptance tier's scores",
            rows.len()
        ));
    }
    println!(
        "  infer: {} rows in {} requests, labels equal and probabilities within {TOLERANCE} of the acceptance tier",
        rows.len(),
        rows.len().div_ceil(ROWS_PER_REQUEST)
    );
    Ok(())
}

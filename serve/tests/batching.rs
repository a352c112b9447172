//! Dynamic batching, admission control and the V2 extensions (binary
//! tensors, classification) over real HTTP.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{metric, output, v2_request, Reference, Server};

/// Many clients at once, each with its own rows: every answer is its own,
/// and the server did merge requests into shared model runs.
#[test]
fn concurrent_requests_are_batched_without_mixing_rows() {
    let server = Server::start(&[
        "--models",
        "models",
        "--max-queue-delay-us",
        "2000",
        "--workers",
        "4",
    ]);
    let reference = Reference::bundled("wine");
    let clients = 12;
    let requests_per_client = 25;
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (server, reference) = (&server, &reference);
            scope.spawn(move || {
                for i in 0..requests_per_client {
                    let rows = 1 + (client + i) % 3;
                    let start = (client * 7 + i * 5) % (reference.rows.len() - rows);
                    let (status, body) = server.post_json(
                        "/v2/models/wine/infer",
                        &v2_request("X", &reference.rows[start..start + rows]),
                    );
                    assert_eq!(status, 200, "{body}");
                    let labels = output(&body, "label")["data"].as_array().unwrap();
                    assert_eq!(
                        labels.as_slice(),
                        &reference.labels[start..start + rows],
                        "client {client} request {i}"
                    );
                    let probabilities = output(&body, "probabilities")["data"].as_array().unwrap();
                    let expected = reference.probabilities[start..start + rows]
                        .iter()
                        .flatten();
                    for (got, want) in probabilities.iter().zip(expected) {
                        assert!(
                            (got.as_f64().unwrap() - want).abs() <= 1e-5,
                            "client {client} request {i}"
                        );
                    }
                }
            });
        }
    });
    let (_, text) = server.get_text("/metrics");
    let requests = metric(
        &text,
        "modelops_inference_request_success_total{model=\"wine\",version=\"1\"}",
    );
    let executions = metric(
        &text,
        "modelops_inference_exec_count_total{model=\"wine\",version=\"1\"}",
    );
    let rows = metric(
        &text,
        "modelops_inference_count_total{model=\"wine\",version=\"1\"}",
    );
    let batched_rows = metric(
        &text,
        "modelops_batch_rows_sum{model=\"wine\",version=\"1\"}",
    );
    assert_eq!(requests, (clients * requests_per_client) as f64);
    assert_eq!(batched_rows, rows, "every scored row went through a batch");
    assert!(
        executions < requests,
        "{executions} executions for {requests} requests: nothing was batched"
    );
    eprintln!("{requests} requests, {rows} rows, {executions} model executions");
}

/// A full queue refuses at once with 429 and Retry-After; queued requests
/// still complete.
#[test]
fn a_full_queue_answers_429() {
    // Batches wait up to 2 s for more rows, so queued rows stay queued while
    // the third request arrives.
    let server = Server::start(&[
        "--models",
        "models",
        "--max-queue-rows",
        "8",
        "--max-batch-rows",
        "1000",
        "--max-queue-delay-us",
        "2000000",
    ]);
    let rows = vec![vec![5.0, 3.0, 1.0, 0.0]; 4];
    let request = v2_request("X", &rows);
    std::thread::scope(|scope| {
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let (server, request) = (&server, &request);
                let handle =
                    scope.spawn(move || server.post_json("/v2/models/iris/infer", request));
                std::thread::sleep(Duration::from_millis(300));
                handle
            })
            .collect();
        let body = request.to_string();
        let (status, headers, response) = server.post_bytes(
            "/v2/models/iris/infer",
            &[("content-type", "application/json".to_string())],
            body.as_bytes(),
            &["retry-after"],
        );
        let response: Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(status, 429, "{response}");
        assert_eq!(headers[0].as_deref(), Some("1"));
        assert!(
            response["error"].as_str().unwrap().contains("overloaded"),
            "{response}"
        );
        for handle in waiting {
            let (status, body) = handle.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(output(&body, "label")["data"], json!(vec!["setosa"; 4]));
        }
    });
    let (_, text) = server.get_text("/metrics");
    let refused = metric(&text, "modelops_inference_request_failure_total{model=\"iris\",version=\"1\",reason=\"overloaded\"}");
    assert_eq!(refused, 1.0);
}

/// Reads a binary response: the JSON header, then each output's bytes.
fn split_binary(body: &[u8], json_length: usize) -> (Value, Vec<&[u8]>) {
    let header: Value = serde_json::from_slice(&body[..json_length]).unwrap();
    let mut rest = &body[json_length..];
    let mut parts = Vec::new();
    for out in header["outputs"].as_array().unwrap() {
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        let (part, tail) = rest.split_at(size);
        parts.push(part);
        rest = tail;
    }
    assert!(rest.is_empty());
    (header, parts)
}

fn bytes_strings(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(bytes[4..4 + len].to_vec()).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}

#[test]
fn binary_and_json_tensors_give_identical_results() {
    let server = Server::start(&["--models", "models"]);
    let reference = Reference::bundled("iris");
    let rows = &reference.rows[..10];
    let (_, json_response) = server.post_json("/v2/models/iris/infer", &v2_request("X", rows));

    let raw: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect();
    let header = json!({
        "inputs": [{ "name": "X", "shape": [rows.len(), 4], "datatype": "FP32",
                     "parameters": { "binary_data_size": raw.len() } }],
        "outputs": [{ "name": "label", "parameters": { "binary_data": true } },
                    { "name": "probabilities", "parameters": { "binary_data": true } }],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(&raw);
    let (status, headers, response) = server.post_bytes(
        "/v2/models/iris/infer",
        &[("Inference-Header-Content-Length", header.len().to_string())],
        &body,
        &["inference-header-content-length"],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    let json_length: usize = headers[0]
        .as_deref()
        .expect("the binary header")
        .parse()
        .unwrap();
    let (meta, parts) = split_binary(&response, json_length);
    assert_eq!(meta["outputs"][0]["datatype"], "BYTES");
    assert_eq!(meta["outputs"][1]["shape"], json!([10, 3]));
    let labels: Vec<Value> = bytes_strings(parts[0])
        .into_iter()
        .map(Value::from)
        .collect();
    assert_eq!(
        &labels,
        output(&json_response, "label")["data"].as_array().unwrap()
    );
    let probabilities: Vec<f32> = parts[1]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expected: Vec<f32> = output(&json_response, "probabilities")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        probabilities, expected,
        "binary and JSON carry the same FP32 values"
    );

    // Integer labels travel as INT64.
    let wine = Reference::bundled("wine");
    let raw: Vec<u8> = wine.rows[..3]
        .iter()
        .flatten()
        .flat_map(|&v| v.to_le_bytes())
        .collect();
    let header = json!({
        "parameters": { "binary_data_output": true },
        "inputs": [{ "name": "X", "shape": [3, 13], "datatype": "FP64", "parameters": { "binary_data_size": raw.len() } }],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(&raw);
    let (status, headers, response) = server.post_bytes(
        "/v2/models/wine/infer",
        &[("Inference-Header-Content-Length", header.len().to_string())],
        &body,
        &["inference-header-content-length"],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    let (_, parts) = split_binary(&response, headers[0].as_deref().unwrap().parse().unwrap());
    let labels: Vec<Value> = parts[0]
        .chunks_exact(8)
        .map(|c| Value::from(i64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_eq!(labels.as_slice(), &wine.labels[..3]);

    // Sizes that do not add up are client errors.
    for (length, body, message) in [
        (
            body.len() + 1,
            body.clone(),
            "Inference-Header-Content-Length",
        ),
        (header.len() + 100, body.clone(), "trailing characters"),
        (header.len(), body[..body.len() - 8].to_vec(), "only"),
        (
            header.len(),
            [body.clone(), vec![0; 8]].concat(),
            "no input claims",
        ),
    ] {
        let (status, _, response) = server.post_bytes(
            "/v2/models/wine/infer",
            &[("Inference-Header-Content-Length", length.to_string())],
            &body,
            &[],
        );
        let response: Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(status, 400, "{response}");
        assert!(
            response["error"].as_str().unwrap().contains(message),
            "{response}"
        );
    }
}

#[test]
fn classification_extension_returns_the_top_classes() {
    let server = Server::start(&["--models", "models"]);
    let reference = Reference::bundled("digits");
    let rows = &reference.rows[..5];
    let mut request = v2_request("X", rows);
    request["outputs"] =
        json!([{ "name": "probabilities", "parameters": { "classification": 3 } }]);
    let (status, body) = server.post_json("/v2/models/digits/infer", &request);
    assert_eq!(status, 200, "{body}");
    let top = output(&body, "probabilities");
    assert_eq!(top["datatype"], "BYTES");
    assert_eq!(top["shape"], json!([5, 3]));
    let (_, full) = server.post_json("/v2/models/digits/infer", &v2_request("X", rows));
    let probabilities = output(&full, "probabilities")["data"].as_array().unwrap();
    for (row, entries) in top["data"].as_array().unwrap().chunks(3).enumerate() {
        let mut previous = f64::INFINITY;
        for entry in entries {
            let parts: Vec<&str> = entry.as_str().unwrap().split(':').collect();
            let (score, index, label): (f64, usize, &str) = (
                parts[0].parse().unwrap(),
                parts[1].parse().unwrap(),
                parts[2],
            );
            assert_eq!(
                score,
                probabilities[row * 10 + index].as_f64().unwrap(),
                "row {row}"
            );
            assert_eq!(label, index.to_string(), "digits' labels are 0..9");
            assert!(score <= previous, "most probable first");
            previous = score;
        }
        let top_index: usize = entries[0]
            .as_str()
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(Value::from(top_index as i64), reference.labels[row]);
    }
    for (k, message) in [(0, "between 1 and 10"), (11, "between 1 and 10")] {
        request["outputs"] =
            json!([{ "name": "probabilities", "parameters": { "classification": k } }]);
        let (status, body) = server.post_json("/v2/models/digits/infer", &request);
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
}

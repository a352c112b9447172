//! The REST surface over real HTTP on loopback: every endpoint, every error
//! class, and parity with onnxruntime on the bundled models' held-back sets.

mod support;

use serde_json::{json, Value};
use support::{error_text, output, repo_root, v2_request, Reference, Server};

const BUNDLED: [&str; 3] = ["iris", "wine", "digits"];

fn serve_bundled() -> Server {
    Server::start(&["--models", "models"])
}

#[test]
fn server_metadata_and_health() {
    let server = serve_bundled();
    let (status, body) = server.get("/v2");
    assert_eq!(status, 200);
    assert_eq!(body["name"], "modelops");
    assert!(body["extensions"].is_array());
    assert_eq!(
        server.get("/v2/health/live"),
        (200, json!({ "live": true }))
    );
    assert_eq!(
        server.get("/v2/health/ready"),
        (200, json!({ "ready": true }))
    );
}

#[test]
fn model_metadata_describes_the_signature() {
    let server = serve_bundled();
    let (status, body) = server.get("/v2/models/iris");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "iris");
    assert_eq!(body["versions"], json!(["1"]));
    assert_eq!(
        body["inputs"],
        json!([{ "name": "X", "datatype": "FP32", "shape": [-1, 4] }])
    );
    assert_eq!(
        body["outputs"],
        json!([
            { "name": "label", "datatype": "BYTES", "shape": [-1] },
            { "name": "probabilities", "datatype": "FP32", "shape": [-1, 3] },
        ])
    );
    assert_eq!(
        body["parameters"]["class_labels"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(body["parameters"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        body["parameters"]["lineage"]["training_script"],
        "models/train/train.py"
    );

    let (status, wine) = server.get("/v2/models/wine/versions/1");
    assert_eq!(status, 200);
    assert_eq!(wine["outputs"][0]["datatype"], "INT64");
    assert_eq!(wine["inputs"][0]["shape"], json!([-1, 13]));

    let (status, body) = server.get("/v2/models/iris/versions/7");
    assert_eq!(status, 404);
    assert_eq!(error_text(&body), "model `iris` has no version `7`");
    let (status, body) = server.get("/v2/models/nope");
    assert_eq!(status, 404);
    assert_eq!(error_text(&body), "model `nope` not found");
}

#[test]
fn model_readiness() {
    let server = serve_bundled();
    assert_eq!(
        server.get("/v2/models/iris/ready"),
        (200, json!({ "name": "iris", "ready": true }))
    );
    assert_eq!(server.get("/v2/models/iris/versions/1/ready").0, 200);
    assert_eq!(server.get("/v2/models/iris/versions/2/ready").0, 404);
    assert_eq!(server.get("/v2/models/nope/ready").0, 404);
}

/// Every bundled model, whole held-back set in one request, through V2 and V1:
/// labels equal onnxruntime's and probabilities are within 1e-5.
#[test]
fn bundled_models_match_onnxruntime() {
    let server = serve_bundled();
    for name in BUNDLED {
        let reference = Reference::bundled(name);
        let (status, body) = server.post_json(
            &format!("/v2/models/{name}/infer"),
            &v2_request("X", &reference.rows),
        );
        assert_eq!(status, 200, "{name}: {body}");
        let labels = output(&body, "label")["data"].as_array().unwrap();
        assert_eq!(
            labels, &reference.labels,
            "{name}: labels differ from onnxruntime"
        );
        let probabilities = output(&body, "probabilities");
        assert_eq!(
            probabilities["shape"],
            json!([reference.rows.len(), reference.classes.len()])
        );
        let flat: Vec<f64> = probabilities["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let expected: Vec<f64> = reference.probabilities.iter().flatten().copied().collect();
        let worst = flat
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert_eq!(flat.len(), expected.len());
        assert!(worst <= 1e-5, "{name}: max probability difference {worst}");
        eprintln!(
            "{name}: {} rows, labels identical, max |p - p_ort| = {worst:e}",
            reference.rows.len()
        );

        let (status, v1) = server.post_json(
            &format!("/v1/models/{name}:predict"),
            &json!({ "instances": reference.rows }),
        );
        assert_eq!(status, 200, "{name}: {v1}");
        let v1_labels: Vec<Value> = v1["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].clone())
            .collect();
        assert_eq!(&v1_labels, labels, "{name}: V1 and V2 labels differ");
    }
}

/// Scoring a row alone or inside a batch gives the same answer.
#[test]
fn batch_of_one_equals_batch_of_n() {
    let server = serve_bundled();
    for name in BUNDLED {
        let reference = Reference::bundled(name);
        let rows = &reference.rows[..reference.rows.len().min(64)];
        let (_, batch) =
            server.post_json(&format!("/v2/models/{name}/infer"), &v2_request("X", rows));
        let batch_probs = output(&batch, "probabilities")["data"]
            .as_array()
            .unwrap()
            .clone();
        let classes = reference.classes.len();
        for (i, row) in rows.iter().enumerate() {
            let (status, single) = server.post_json(
                &format!("/v2/models/{name}/infer"),
                &v2_request("X", std::slice::from_ref(row)),
            );
            assert_eq!(status, 200);
            assert_eq!(
                output(&single, "label")["data"][0],
                output(&batch, "label")["data"][i],
                "{name} row {i}"
            );
            let single_probs = output(&single, "probabilities")["data"].as_array().unwrap();
            for (c, p) in single_probs.iter().enumerate() {
                let q = &batch_probs[i * classes + c];
                let diff = (p.as_f64().unwrap() - q.as_f64().unwrap()).abs();
                assert!(
                    diff <= 1e-6,
                    "{name} row {i} class {c}: alone {p}, in batch {q}"
                );
            }
        }
    }
}

#[test]
fn datatypes_nesting_id_and_output_filter() {
    let server = serve_bundled();
    let row = [5.0, 3.0, 1.0, 0.0];
    let infer = |input: Value| {
        let (status, body) = server.post_json(
            "/v2/models/iris/infer",
            &json!({ "id": "req-42", "inputs": [input] }),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let base = infer(json!({ "name": "X", "shape": [1, 4], "datatype": "FP32", "data": row }));
    assert_eq!(base["id"], "req-42");
    assert_eq!(base["model_name"], "iris");
    assert_eq!(base["model_version"], "1");
    assert_eq!(output(&base, "label")["data"], json!(["setosa"]));
    for datatype in ["FP64", "INT32", "INT64"] {
        let body = infer(
            json!({ "name": "X", "shape": [1, 4], "datatype": datatype, "data": [5, 3, 1, 0] }),
        );
        assert_eq!(body["outputs"], base["outputs"], "{datatype}");
    }
    let nested = infer(json!({ "name": "X", "shape": [1, 4], "datatype": "FP32", "data": [row] }));
    assert_eq!(nested["outputs"], base["outputs"]);
    let one_dim = infer(json!({ "name": "X", "shape": [4], "datatype": "FP32", "data": row }));
    assert_eq!(one_dim["outputs"], base["outputs"]);

    let (status, filtered) = server.post_json(
        "/v2/models/iris/infer",
        &json!({ "inputs": [{ "name": "X", "shape": [2, 4], "datatype": "FP32", "data": [row, [6.3, 3.4, 5.6, 2.4]] }],
                 "outputs": [{ "name": "probabilities" }] }),
    );
    assert_eq!(status, 200);
    let outputs = filtered["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "probabilities");
    assert_eq!(outputs[0]["shape"], json!([2, 3]));
    assert!(filtered.get("id").is_none());
}

/// Each client mistake: the status, and an error that names what is wrong.
#[test]
fn client_errors_are_4xx_with_a_clear_message() {
    let server = Server::start(&["--models", "models", "--max-body-bytes", "4096"]);
    let input = |extra: Value| {
        let mut tensor = json!({ "name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.0, 3.0, 1.0, 0.0] });
        for (k, v) in extra.as_object().unwrap() {
            tensor[k] = v.clone();
        }
        json!({ "inputs": [tensor] })
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "{\"inputs\": [".into(),
            400,
            "invalid JSON body",
        ),
        ("not an object", "[1, 2]".into(), 400, "invalid JSON body"),
        (
            "trailing garbage",
            format!("{} x", input(json!({}))),
            400,
            "trailing characters",
        ),
        ("missing inputs", "{}".into(), 400, "missing field `inputs`"),
        (
            "missing data",
            json!({ "inputs": [{ "name": "X", "shape": [1, 4], "datatype": "FP32" }] }).to_string(),
            400,
            "has neither `data` nor `binary_data_size`",
        ),
        (
            "string in data",
            input(json!({ "data": [5.0, "a", 1.0, 0.0] })).to_string(),
            400,
            "inputs[0].data",
        ),
        (
            "ragged data",
            input(json!({ "data": [[5.0, 3.0], [1.0]] })).to_string(),
            400,
            "ragged",
        ),
        (
            "wrong datatype",
            input(json!({ "datatype": "BYTES" })).to_string(),
            400,
            "datatype `BYTES` is not supported",
        ),
        (
            "unknown datatype",
            input(json!({ "datatype": "FP8" })).to_string(),
            400,
            "datatype `FP8`",
        ),
        (
            "count mismatch",
            input(json!({ "shape": [2, 4] })).to_string(),
            400,
            "shape [2, 4] needs 8 values, `data` has 4",
        ),
        (
            "wrong feature count",
            input(json!({ "shape": [1, 3], "data": [1.0, 2.0, 3.0] })).to_string(),
            400,
            "expected 4 features per row",
        ),
        (
            "rank 3 shape",
            input(json!({ "shape": [1, 1, 4] })).to_string(),
            400,
            "must be [rows, 4]",
        ),
        (
            "negative shape",
            input(json!({ "shape": [-1, 4] })).to_string(),
            400,
            "negative dimension",
        ),
        (
            "nesting vs shape",
            input(json!({ "shape": [2, 4], "data": [[1, 2, 3, 4, 5, 6, 7, 8]] })).to_string(),
            400,
            "nested as",
        ),
        (
            "unknown input",
            input(json!({ "name": "features" })).to_string(),
            400,
            "unknown input `features`; model `iris` expects `X`",
        ),
        (
            "no inputs",
            json!({ "inputs": [] }).to_string(),
            400,
            "`inputs` is empty",
        ),
        (
            "not finite in FP32",
            input(json!({ "data": [5.0, 1e39, 1.0, 0.0] })).to_string(),
            400,
            "not a finite FP32 number",
        ),
        (
            "fraction in INT64",
            input(json!({ "datatype": "INT64", "data": [5, 3.5, 1, 0] })).to_string(),
            400,
            "non-integer 3.5",
        ),
        (
            "no rows",
            input(json!({ "shape": [0, 4], "data": [] })).to_string(),
            400,
            "has no rows",
        ),
        (
            "unknown output",
            json!({ "inputs": input(json!({}))["inputs"], "outputs": [{ "name": "scores" }] })
                .to_string(),
            400,
            "unknown output `scores`",
        ),
        (
            "body over the limit",
            input(json!({ "data": vec![1.0; 2000], "shape": [500, 4] })).to_string(),
            413,
            "larger than the limit of 4096 bytes",
        ),
    ];
    for (what, body, status, message) in cases {
        let (got, response) = server.post("/v2/models/iris/infer", &body);
        assert_eq!(got, status, "{what}: {response}");
        let text = error_text(&response);
        assert!(
            text.contains(message),
            "{what}: error {text:?} lacks {message:?}"
        );
    }

    let (status, body) = server.post("/v2/models/nope/infer", &input(json!({})).to_string());
    assert_eq!(
        (status, error_text(&body)),
        (404, "model `nope` not found".to_string())
    );
    let (status, body) = server.post(
        "/v2/models/iris/versions/3/infer",
        &input(json!({})).to_string(),
    );
    assert_eq!(
        (status, error_text(&body)),
        (404, "model `iris` has no version `3`".to_string())
    );
    let (status, body) = server.post(
        "/v2/models/iris/versions/x/infer",
        &input(json!({})).to_string(),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.get("/v3/anything");
    assert_eq!(
        (status, error_text(&body)),
        (404, "no route for GET /v3/anything".to_string())
    );
    let (status, body) = server.get("/v2/models/iris/infer");
    assert_eq!(status, 405);
    assert!(error_text(&body).contains("GET is not allowed"));
    // The server is still healthy after all of that.
    assert_eq!(server.get("/v2/health/ready").0, 200);
}

#[test]
fn v1_endpoints() {
    let server = serve_bundled();
    let (status, body) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "models": ["digits", "iris", "wine"] }));
    assert_eq!(
        server.get("/v1/models/iris"),
        (200, json!({ "name": "iris", "ready": true }))
    );
    assert_eq!(server.get("/v1/models/nope").0, 404);

    let (status, body) = server.post_json(
        "/v1/models/iris:predict",
        &json!({ "instances": [[5.0, 3.0, 1.0, 0.0], [6.3, 3.4, 5.6, 2.4]] }),
    );
    assert_eq!(status, 200, "{body}");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    assert_eq!(predictions[0]["label"], "setosa");
    assert_eq!(predictions[1]["label"], "virginica");
    let probabilities = predictions[0]["probabilities"].as_object().unwrap();
    let keys: Vec<&String> = probabilities.keys().collect();
    assert_eq!(keys.len(), 3);
    let total: f64 = probabilities.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
    assert!(probabilities["setosa"].as_f64().unwrap() > 0.9);

    for (body, message) in [
        (
            json!({ "instances": [5.0, 3.0, 1.0, 0.0] }),
            "must be a list of rows of 4 numbers",
        ),
        (
            json!({ "instances": [[5.0, 3.0, 1.0]] }),
            "expected 4 features per instance, got 3",
        ),
        (
            json!({ "rows": [[5.0, 3.0, 1.0, 0.0]] }),
            "missing field `instances`",
        ),
    ] {
        let (status, response) = server.post_json("/v1/models/iris:predict", &body);
        assert_eq!(status, 400, "{response}");
        assert!(error_text(&response).contains(message), "{response}");
    }
    let (status, _) = server.post_json(
        "/v1/models/nope:predict",
        &json!({ "instances": [[1, 2, 3, 4]] }),
    );
    assert_eq!(status, 404);
}

#[test]
fn metrics_count_requests_by_model_and_status() {
    let server = serve_bundled();
    let good = v2_request("X", &[vec![5.0, 3.0, 1.0, 0.0], vec![6.3, 3.4, 5.6, 2.4]]);
    for _ in 0..3 {
        assert_eq!(server.post_json("/v2/models/iris/infer", &good).0, 200);
    }
    assert_eq!(server.post("/v2/models/iris/infer", "{").0, 400);
    let (status, text) = server.get_text("/metrics");
    assert_eq!(status, 200);
    let value = |line_start: &str| support::metric(&text, line_start);
    assert_eq!(
        value("modelops_inference_request_success_total{model=\"iris\",version=\"1\"}"),
        3.0
    );
    assert_eq!(
        value("modelops_inference_count_total{model=\"iris\",version=\"1\"}"),
        6.0
    );
    assert_eq!(
        value("modelops_inference_exec_count_total{model=\"iris\",version=\"1\"}"),
        3.0
    );
    assert_eq!(
        value("modelops_inference_request_failure_total{model=\"iris\",version=\"1\",reason=\"invalid_input\"}"),
        1.0
    );
    assert_eq!(
        value("modelops_inference_compute_duration_seconds_count{model=\"iris\",version=\"1\"}"),
        3.0
    );
    assert!(text.contains(
        "modelops_inference_request_duration_seconds_bucket{model=\"iris\",version=\"1\",le="
    ));
    assert!(text.contains("modelops_inference_queue_duration_seconds_bucket"));
    assert_eq!(
        value("modelops_http_responses_total{method=\"POST\",route=\"/v2/models/{model}/infer\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        value("modelops_http_responses_total{method=\"POST\",route=\"/v2/models/{model}/infer\",status=\"400\"}"),
        1.0
    );
}

/// `--model PATH:NAME` serves single files; graph-only class labels (ints),
/// ZipMap and no-ZipMap exports agree with the string-labelled iris.
#[test]
fn single_model_files_with_and_without_zipmap() {
    let zipmap = support::fixture("iris_int_zipmap.onnx");
    let plain = support::fixture("iris_nozipmap.onnx");
    let server = Server::start(&[
        "--model",
        &format!("{}:zipmap", zipmap.display()),
        "--model",
        &plain.display().to_string(),
    ]);
    let (_, models) = server.get("/v1/models");
    assert_eq!(models, json!({ "models": ["iris_nozipmap", "zipmap"] }));
    let reference = Reference::bundled("iris");
    let request = v2_request("X", &reference.rows);
    let (_, a) = server.post_json("/v2/models/zipmap/infer", &request);
    let (_, b) = server.post_json("/v2/models/iris_nozipmap/infer", &request);
    assert_eq!(a["outputs"], b["outputs"]);
    let (_, meta) = server.get("/v2/models/zipmap");
    assert_eq!(meta["parameters"]["class_labels"], json!([0, 1, 2]));
    let names = ["setosa", "versicolor", "virginica"];
    let labels: Vec<Value> = output(&a, "label")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ix| json!(names[ix.as_u64().unwrap() as usize]))
        .collect();
    assert_eq!(labels, reference.labels);
}

/// tract's own label for binary random forests is wrong; ours is the argmax.
#[test]
fn binary_random_forest_matches_onnxruntime() {
    let model = support::fixture("binary_rf.onnx");
    let server = Server::start(&["--model", &format!("{}:rf", model.display())]);
    let reference = Reference::load(
        &support::fixture("binary_rf.test.csv"),
        &support::fixture("binary_rf.reference.json"),
    );
    let (status, body) = server.post_json("/v2/models/rf/infer", &v2_request("X", &reference.rows));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        output(&body, "label")["data"].as_array().unwrap(),
        &reference.labels
    );
    let flat: Vec<f64> = output(&body, "probabilities")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = reference.probabilities.iter().flatten().copied().collect();
    let worst = flat
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-5, "max probability difference {worst}");
}

#[test]
fn missing_repository_is_a_startup_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--models", "/nonexistent/models", "--port", "0"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read model repository /nonexistent/models"),
        "{stderr}"
    );
}

//! Third-party V2 clients, unmodified, against the real server: Triton's
//! `tritonclient` HTTP client with JSON tensors. `scripts/test` installs the
//! pinned client into a venv and points MODELOPS_TEST_PYTHON at it.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{output, v2_request, Server};

fn python() -> String {
    std::env::var("MODELOPS_TEST_PYTHON").expect(
        "MODELOPS_TEST_PYTHON must name a Python with scripts/requirements-test.txt installed; \
         scripts/test sets it up",
    )
}

#[test]
fn tritonclient_http_with_json_tensors() {
    let server = Server::start(&["--models", "models"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/tritonclient_http.py"
    );
    let run = Command::new(python())
        .arg(script)
        .arg(server.base.trim_start_matches("http://"))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "tritonclient failed:\n{}\n{stdout}\nserver log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        server.log()
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("client prints JSON");

    let rows = vec![
        vec![5.1, 3.5, 1.4, 0.2],
        vec![6.3, 3.4, 5.6, 2.4],
        vec![5.9, 3.0, 4.2, 1.5],
    ];
    let (_, direct) = server.post_json("/v2/models/iris/infer", &v2_request("X", &rows));
    assert_eq!(seen["server_name"], "modelops");
    assert_eq!(seen["input"]["name"], "X");
    assert_eq!(seen["id"], "triton-1");
    assert_eq!(&seen["labels"], &output(&direct, "label")["data"]);
    assert_eq!(seen["probabilities_shape"], serde_json::json!([3, 3]));
    assert_eq!(seen["probabilities_dtype"], "float32");
    let flat: Vec<f32> = seen["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|p| p.as_f64().unwrap() as f32)
        .collect();
    let expected: Vec<f32> = output(&direct, "probabilities")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(flat, expected, "the client decodes the same FP32 values");
    assert_eq!(
        seen["binary_labels"], seen["labels"],
        "binary and JSON labels agree"
    );
    assert_eq!(
        seen["binary_probabilities"], seen["probabilities"],
        "binary and JSON probabilities agree"
    );
    assert_eq!(
        seen["no_outputs_named"],
        serde_json::json!(["label", "probabilities"])
    );
    for (row, top) in seen["top_classes"].as_array().unwrap().iter().enumerate() {
        let first: Vec<&str> = top[0].as_str().unwrap().split(':').collect();
        assert_eq!(first.len(), 3, "score:index:label");
        assert_eq!(first[2], seen["labels"][row], "the top class is the label");
        let score: f32 = first[0].parse().unwrap();
        let index: usize = first[1].parse().unwrap();
        assert_eq!(
            score as f64,
            seen["probabilities"][row][index].as_f64().unwrap() as f32 as f64
        );
    }
    let error = seen["error"].as_str().expect("a bad request raises");
    assert!(error.contains("expected 4 features per row"), "{error}");
}

//! Telemetry's embedded default: `serve` with no settings writes one JSON
//! line per scored row (and per failed request) to a local file, flushed on
//! shutdown, and `serve report` reads it back into a table and an SVG chart.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::kafka::unique;
use support::{repo_root, report_columns, run_serve, v2_request, Reference, Server};

#[test]
fn serve_with_no_settings_writes_json_lines_and_the_report_reads_them() {
    let dir = std::env::temp_dir().join(unique("telemetry"));
    std::fs::create_dir_all(&dir).unwrap();
    let models = repo_root().join("models");
    let mut server = Server::start_in(
        &dir,
        &["--models", models.to_str().unwrap(), "--drain-seconds", "0"],
        &[],
    );
    let iris = Reference::bundled("iris");
    // 20 V2 requests of 2 rows, 5 V1 requests of 1 row, 3 that fail.
    for i in 0..20 {
        let rows = [iris.rows[2 * i].clone(), iris.rows[2 * i + 1].clone()];
        let (status, _) = server.post_json("/v2/models/iris/infer", &v2_request("X", &rows));
        assert_eq!(status, 200);
    }
    for i in 40..45 {
        let body = json!({ "instances": [iris.rows[i]] });
        assert_eq!(server.post_json("/v1/models/iris:predict", &body).0, 200);
    }
    for _ in 0..3 {
        let (status, _) =
            server.post_json("/v2/models/iris/infer", &v2_request("X", &[vec![1.0, 2.0]]));
        assert_eq!(status, 400);
    }
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).success());

    let file = dir.join("telemetry/predictions.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let documents: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(documents.len(), 48, "45 rows and 3 failed requests");
    let mut outcomes = HashMap::new();
    for document in &documents {
        *outcomes
            .entry(document["outcome"].as_str().unwrap())
            .or_insert(0) += 1;
        assert_eq!(document["source"], "rest");
        assert_eq!(document["model"], "iris");
        if document["outcome"] == "ok" {
            let row = document["row"].as_u64().unwrap() as usize;
            assert!(row < 2, "{document}");
        } else {
            assert!(
                document["error"].as_str().unwrap().contains("features"),
                "{document}"
            );
        }
    }
    assert_eq!(outcomes, HashMap::from([("ok", 45), ("invalid_input", 3)]));
    let labels: Vec<&Value> = documents.iter().map(|d| &d["label"]).collect();
    for expected in &iris.labels[..45] {
        assert!(labels.contains(&expected));
    }

    let svg = dir.join("report.svg");
    let table = run_serve(
        [
            "report".as_ref(),
            "--telemetry-file".as_ref(),
            file.as_os_str(),
            "--svg".as_ref(),
            svg.as_os_str(),
        ],
        &[],
    );
    assert_eq!(report_columns(&table, "iris"), ["iris", "1", "48", "6.25%"]);
    let mut expected_labels: HashMap<String, usize> = HashMap::new();
    for label in &iris.labels[..45] {
        *expected_labels
            .entry(label.as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    for (label, count) in &expected_labels {
        assert!(table.contains(&format!("{label} {count} (")), "{table}");
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    for label in expected_labels.keys() {
        assert!(chart.contains(&format!(">{label}</text>")), "{chart}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

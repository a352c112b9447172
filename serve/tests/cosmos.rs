//! Telemetry to Cosmos DB against a real Cosmos DB protocol server
//! (@vercel/cosmosdb-server behind scripts/cosmos-server/wrapper.js, started
//! by scripts/test; tests that stop it or inject faults start their own):
//! every field of every document, a server down at startup, killed and
//! restarted mid-run, throttling, and a wrong key.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::cosmos::{sdk_env, Cosmos, KEY};
use support::kafka::{brokers, create_topic, produce, unique, Outgoing};
use support::{repo_root, report_columns, run_serve, v2_request, Reference, Server};

const WAIT: Duration = Duration::from_secs(60);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `serve` writing telemetry to `container` of `cosmos`, with `extra` flags.
fn serve(cosmos: &Cosmos, container: &str, extra: &[&str]) -> Server {
    let mut args = cosmos.serve_args(container);
    args.extend(["--models", "models", "--drain-seconds", "0"].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = key_env(KEY);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_in(&repo_root(), &args, &env)
}

fn key_env(key: &str) -> Vec<(&'static str, String)> {
    let mut env = sdk_env();
    env.push(("COSMOS_KEY", key.to_string()));
    env
}

/// The sum of `server`'s metric samples whose line starts with
/// `line_start` (every `reason` of a counter without labels given).
fn telemetry_metric(server: &Server, line_start: &str) -> f64 {
    let (_, text) = server.get_text("/metrics");
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Prints the scenario's row of the fault table (documents expected,
/// arrived, dropped and retried), for the record in CI's output; returns
/// the dropped and retried counts.
fn fault_row(server: &Server, scenario: &str, expected: usize, arrived: usize) -> (u64, u64) {
    let dropped = telemetry_metric(server, "modelops_telemetry_dropped_total") as u64;
    let retried = telemetry_metric(server, "modelops_telemetry_retried_total") as u64;
    eprintln!(
        "fault table | {scenario} | expected {expected} | arrived {arrived} | dropped {dropped} \
         | retried {retried}"
    );
    (dropped, retried)
}

/// Waits until `server`'s telemetry metric `line_start` reaches `at_least`;
/// returns its value. (The writer runs in the SCHED_IDLE class: on a busy
/// machine it may wait a while for CPU, so nothing here is timed tightly.)
fn wait_metric(server: &Server, line_start: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = telemetry_metric(server, line_start);
        if value >= at_least {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{line_start} is {value}, waited for {at_least}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `server` has written `documents` telemetry documents.
fn wait_written(server: &Server, documents: usize) {
    let written = wait_metric(server, "modelops_telemetry_written_total", documents as f64);
    assert_eq!(written as usize, documents, "more written than recorded");
}

/// Scores iris' held-back row `i % rows` over V2 REST with request id
/// `rest-i`; returns the status.
fn post_row(server: &Server, iris: &Reference, i: usize) -> u16 {
    let mut body = v2_request("X", &[iris.rows[i % iris.rows.len()].clone()]);
    body["id"] = json!(format!("rest-{i}"));
    let headers = [
        ("content-type", "application/json".to_string()),
        ("traceparent", TRACEPARENT.to_string()),
    ];
    let path = "/v2/models/iris/infer";
    server
        .post_bytes(path, &headers, body.to_string().as_bytes(), &[])
        .0
}

fn post_rows(server: &Server, iris: &Reference, range: std::ops::Range<usize>) {
    for i in range {
        assert_eq!(post_row(server, iris, i), 200, "row {i}");
    }
}

#[test]
fn a_thousand_predictions_over_rest_and_kafka_arrive_with_every_field() {
    let cosmos = Cosmos::shared();
    let container = unique("predictions");
    let (input, output, dlq) = (unique("in"), unique("out"), unique("dlq"));
    for topic in [&input, &output, &dlq] {
        create_topic(topic, 1);
    }
    let brokers = brokers();
    let group = unique("group");
    let server = serve(
        &cosmos,
        &container,
        &[
            "--kafka-brokers",
            &brokers,
            "--kafka-input-topic",
            &input,
            "--kafka-output-topic",
            &output,
            "--kafka-dlq-topic",
            &dlq,
            "--kafka-group-id",
            &group,
            "--code-commit",
            "0123abcd",
            "--image-digest",
            "sha256:feedface",
            "--telemetry-input-sampling",
            "0.5",
        ],
    );
    let iris = Reference::bundled("iris");
    // 500 over REST, each its own request; 500 over Kafka, keyed.
    post_rows(&server, &iris, 0..500);
    let messages: Vec<Outgoing> = (500..1000)
        .map(|i| {
            let row = &iris.rows[i % iris.rows.len()];
            Outgoing::new(Some(&format!("kafka-{i}")), json!(row).to_string())
                .header("model", "iris")
                .header("traceparent", TRACEPARENT)
        })
        .collect();
    produce(&input, &messages);
    wait_written(&server, 1000);

    let documents = cosmos.documents(&container, "iris");
    assert_eq!(documents.len(), 1000, "documents in Cosmos DB");
    let ids: HashSet<&str> = documents
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000, "unique ids");

    let onnx = std::fs::read(repo_root().join("models/iris/1/model.onnx")).unwrap();
    let sha256 = format!("{:x}", Sha256::digest(&onnx));
    let (_, metadata) = server.get("/v2/models/iris");
    let mut lineage = metadata["parameters"]["lineage"].clone();
    lineage["code_commit"] = json!("0123abcd");
    lineage["image_digest"] = json!("sha256:feedface");
    assert!(lineage["training_data_sha256"].is_string(), "{lineage}");

    let mut by_source = HashMap::new();
    let mut with_inputs = 0;
    for document in &documents {
        let request_id = document["request_id"].as_str().unwrap();
        let (source, i) = request_id.split_once('-').unwrap();
        let i: usize = i.parse().unwrap();
        *by_source.entry(source.to_string()).or_insert(0) += 1;
        assert_eq!(document["source"], source, "{document}");
        let row = i % iris.rows.len();
        assert_eq!(document["model"], "iris");
        assert_eq!(document["version"], "1");
        assert_eq!(document["model_sha256"], sha256.as_str());
        assert_eq!(document["outcome"], "ok", "{document}");
        assert_eq!(document["error"], Value::Null);
        assert_eq!(document["row"], 0);
        assert_eq!(document["label"], iris.labels[row], "{document}");
        for (class, expected) in iris.classes.iter().zip(&iris.probabilities[row]) {
            let got = document["probabilities"][class.as_str().unwrap()]
                .as_f64()
                .unwrap();
            assert!((got - expected).abs() < 1e-4, "{document}");
        }
        assert_eq!(document["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(document["lineage"], lineage, "{document}");
        let latency = document["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < 60_000.0, "{document}");
        let timestamp = document["timestamp"].as_str().unwrap();
        assert_eq!(timestamp.len(), "2026-01-01T00:00:00.000000Z".len());
        if let Some(inputs) = document.get("inputs") {
            with_inputs += 1;
            // As the model saw them: FP32.
            let inputs: Vec<f64> = serde_json::from_value(inputs.clone()).unwrap();
            assert_eq!(inputs.len(), iris.features(), "{document}");
            for (got, sent) in inputs.iter().zip(&iris.rows[row]) {
                assert!((got - sent).abs() < 1e-6, "{document}");
            }
        }
        let expected_id = match source {
            "kafka" => format!("{group}-{input}-0-{}-0", i - 500),
            _ => document["id"].as_str().unwrap().to_string(),
        };
        assert_eq!(document["id"], expected_id.as_str());
    }
    assert_eq!(by_source["rest"], 500);
    assert_eq!(by_source["kafka"], 500);
    assert_eq!(with_inputs, 500, "input sampling 0.5 of 1000");
    let (dropped, _) = fault_row(&server, "REST + Kafka, no fault", 1000, documents.len());
    assert_eq!(dropped, 0);

    // The report reads the same documents back, one partition per model.
    let mut args = vec!["report".to_string(), "--model".into(), "iris".into()];
    args.extend(cosmos.serve_args(&container));
    let table = run_serve(&args, &key_env(KEY));
    assert_eq!(
        report_columns(&table, "iris"),
        ["iris", "1", "1000", "0.00%"]
    );
}

#[test]
fn cosmos_down_at_startup_gets_every_document_once_it_is_up() {
    let cosmos = Cosmos::private();
    cosmos.stop();
    let server = serve(&cosmos, "predictions", &[]);
    assert!(server.log().contains("not reachable"), "{}", server.log());
    let iris = Reference::bundled("iris");
    // Scoring works while the store is down.
    post_rows(&server, &iris, 0..200);
    wait_metric(&server, "modelops_telemetry_retried_total", 1.0);
    assert_eq!(
        telemetry_metric(&server, "modelops_telemetry_written_total"),
        0.0
    );

    cosmos.restart();
    wait_written(&server, 200);
    let arrived = cosmos.documents("predictions", "iris").len();
    assert_eq!(arrived, 200);
    let (dropped, _) = fault_row(&server, "down at startup", 200, arrived);
    assert_eq!(dropped, 0);
}

#[test]
fn cosmos_killed_mid_run_loses_nothing_within_the_queue_and_counts_the_rest() {
    let cosmos = Cosmos::private();
    let server = serve(&cosmos, "predictions", &["--telemetry-queue", "300"]);
    let iris = Reference::bundled("iris");
    let dropped = |server: &Server| {
        telemetry_metric(
            server,
            r#"modelops_telemetry_dropped_total{reason="queue_full"}"#,
        ) as usize
    };
    post_rows(&server, &iris, 0..100);
    wait_written(&server, 100);
    assert_eq!(cosmos.documents("predictions", "iris").len(), 100);

    // Killed (its memory with it): 200 requests fit the queue of 300.
    cosmos.stop();
    post_rows(&server, &iris, 100..300);
    cosmos.restart();
    wait_written(&server, 300);
    let arrived = cosmos.documents("predictions", "iris").len();
    assert_eq!(arrived, 200);
    assert_eq!(dropped(&server), 0);
    fault_row(&server, "killed, 200 within a queue of 300", 200, arrived);

    // Killed again: 500 requests, 300 queued, 200 dropped and counted.
    cosmos.stop();
    post_rows(&server, &iris, 300..800);
    cosmos.restart();
    wait_written(&server, 600);
    let arrived = cosmos.documents("predictions", "iris").len();
    assert_eq!(arrived, 300);
    assert_eq!(dropped(&server), 500 - arrived, "dropped = missing");
    fault_row(
        &server,
        "killed again, 500 beyond a queue of 300",
        500,
        arrived,
    );
    assert!(
        server.log().contains("telemetry documents dropped"),
        "{}",
        server.log()
    );
}

#[test]
fn throttled_every_second_write_all_documents_arrive() {
    let cosmos = Cosmos::private();
    let server = serve(&cosmos, "predictions", &[]);
    cosmos.faults(r#"{"throttle_every": 2, "retry_after_ms": 20}"#);
    let iris = Reference::bundled("iris");
    post_rows(&server, &iris, 0..300);
    wait_written(&server, 300);
    let arrived = cosmos.documents("predictions", "iris").len();
    assert_eq!(arrived, 300);
    let (dropped, retried) = fault_row(&server, "429 on every 2nd write", 300, arrived);
    assert_eq!(dropped, 0);
    let counters = &cosmos.faults("")["counters"];
    let throttled = counters["throttled"].as_u64().unwrap();
    // Writes are batches: every second one was throttled, the others each
    // landed a batch of 1 to 100 documents.
    let landed = counters["document_writes"].as_u64().unwrap() - throttled;
    assert!((3..=300).contains(&landed), "{counters}");
    assert!(throttled >= landed - 1, "{counters}");
    // Each 429 was retried once, by the writer (honouring retry-after).
    assert_eq!(retried, throttled);
}

#[test]
fn a_wrong_key_stops_the_start_or_only_warns_and_scoring_goes_on() {
    let cosmos = Cosmos::shared();
    let wrong = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==";
    let args = cosmos.serve_args("predictions");
    let failed = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--port", "0", "--models", "models"])
        .args(&args)
        .envs(key_env(wrong))
        .current_dir(repo_root())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{log}");
    assert!(
        log.contains("the telemetry store refused the connection") && log.contains("401"),
        "{log}"
    );
    assert!(!log.contains(wrong), "the key is never logged: {log}");

    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--models", "models", "--cosmos-on-auth-error", "warn"]);
    let env = key_env(wrong);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(&repo_root(), &args, &env);
    let iris = Reference::bundled("iris");
    post_rows(&server, &iris, 0..50);
    let refused = r#"modelops_telemetry_dropped_total{reason="refused"}"#;
    let deadline = Instant::now() + WAIT;
    while telemetry_metric(&server, refused) < 50.0 {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (dropped, _) = fault_row(&server, "wrong key, --cosmos-on-auth-error warn", 50, 0);
    assert_eq!(dropped, 50, "all of them for the refusal");
    assert_eq!(
        telemetry_metric(&server, "modelops_telemetry_written_total"),
        0.0
    );
    assert!(
        server.log().contains("refused the connection"),
        "{}",
        server.log()
    );
    assert!(!server.log().contains(wrong));
}

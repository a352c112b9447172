//! The model repository: versions, broken models next to good ones, and
//! readiness that says which is which.

mod support;

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use support::{error_text, output, repo_root, v2_request, Server};

/// A scratch repository under the target dir, removed on drop.
struct ScratchRepo(std::path::PathBuf);

impl ScratchRepo {
    fn new(name: &str) -> ScratchRepo {
        let dir = std::env::temp_dir().join(format!("modelops-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        ScratchRepo(dir)
    }

    fn add(&self, model: &str, version: u64, onnx: &[u8]) {
        let dir = self.0.join(model).join(version.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("model.onnx"), onnx).unwrap();
    }

    fn manifest(&self, model: &str, text: &str) {
        fs::write(self.0.join(model).join("model.toml"), text).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ScratchRepo {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn iris_onnx() -> Vec<u8> {
    fs::read(repo_root().join("models/iris/1/model.onnx")).unwrap()
}

/// The iris graph with its `Normalizer` op renamed to an op nobody implements.
/// Same-length replacement keeps the protobuf valid.
fn with_unknown_op() -> Vec<u8> {
    let mut bytes = iris_onnx();
    let (from, to) = (b"Normalizer", b"Frobnicate");
    let mut replaced = 0;
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    bytes
}

fn index_entry<'a>(index: &'a Value, name: &str, version: &str) -> &'a Value {
    index
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name && e["version"] == version)
        .unwrap_or_else(|| panic!("{name}/{version} not in {index}"))
}

#[test]
fn broken_models_are_reported_and_good_ones_serve() {
    let repo = ScratchRepo::new("broken");
    let iris_toml = fs::read_to_string(repo_root().join("models/iris/model.toml")).unwrap();
    repo.add("good", 1, &iris_onnx());
    repo.manifest("good", &iris_toml);
    repo.add("garbage", 1, b"this is not an ONNX model");
    repo.add("unknown_op", 1, &with_unknown_op());
    repo.add("bad_manifest", 1, &iris_onnx());
    repo.manifest("bad_manifest", "labels = [\"a\", \"b\"");
    repo.add("wrong_labels", 1, &iris_onnx());
    repo.manifest("wrong_labels", "labels = [\"a\", \"b\"]");
    fs::create_dir_all(repo.0.join("no_file/1")).unwrap();
    fs::create_dir_all(repo.0.join("not_a_model")).unwrap(); // ignored: no versions, no manifest

    let server = Server::start(&["--models", repo.path()]);
    assert_eq!(server.get("/v2/health/ready").0, 200);
    assert_eq!(server.get("/v2/models/good/ready").0, 200);
    let (status, _) = server.post_json(
        "/v2/models/good/infer",
        &v2_request("X", &[vec![5.0, 3.0, 1.0, 0.0]]),
    );
    assert_eq!(status, 200);

    let expectations = [
        ("garbage", "is not a valid ONNX model"),
        (
            "unknown_op",
            "unsupported operator Frobnicate in ai.onnx.ml",
        ),
        ("bad_manifest", "invalid"),
        (
            "wrong_labels",
            "2 class labels (from model.toml) for 3 score columns",
        ),
        ("no_file", "cannot read"),
    ];
    let (status, index) = server.post("/v2/repository/index", "");
    assert_eq!(status, 200);
    assert_eq!(index_entry(&index, "good", "1")["state"], "READY");
    assert!(!index
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "not_a_model"));
    for (model, reason) in expectations {
        let entry = index_entry(&index, model, "1");
        assert_eq!(entry["state"], "UNAVAILABLE", "{model}");
        assert!(
            entry["reason"].as_str().unwrap().contains(reason),
            "{model}: {entry}"
        );

        let (status, body) = server.get(&format!("/v2/models/{model}/ready"));
        assert_eq!(status, 503, "{model}: {body}");
        assert_eq!(body["ready"], false);
        assert!(
            body["error"].as_str().unwrap().contains(reason),
            "{model}: {body}"
        );

        let (status, body) = server.post_json(
            &format!("/v2/models/{model}/infer"),
            &v2_request("X", &[vec![1.0; 4]]),
        );
        assert_eq!(status, 503, "{model}: {body}");
        assert!(error_text(&body).contains(reason), "{model}: {body}");
    }
    assert!(
        server.log().contains("unsupported operator Frobnicate"),
        "the log names the failure"
    );
}

#[test]
fn nothing_ready_means_not_ready() {
    let repo = ScratchRepo::new("none-ready");
    repo.add("garbage", 1, b"not onnx");
    let server = Server::start(&["--models", repo.path()]);
    let (status, body) = server.get("/v2/health/ready");
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    assert_eq!(server.get("/v2/health/live").0, 200);
}

#[test]
fn versions_resolve_latest_ready_and_explicit() {
    let repo = ScratchRepo::new("versions");
    repo.add("m", 1, &iris_onnx());
    repo.add("m", 2, &iris_onnx());
    repo.add("m", 3, b"broken newest version");
    let server = Server::start(&["--models", repo.path()]);
    let (_, meta) = server.get("/v2/models/m");
    assert_eq!(meta["versions"], json!(["1", "2", "3"]));
    assert_eq!(
        meta["parameters"]["version"], "2",
        "the highest ready version serves by default"
    );
    let request = v2_request("X", &[vec![5.0, 3.0, 1.0, 0.0]]);
    let (_, body) = server.post_json("/v2/models/m/infer", &request);
    assert_eq!(body["model_version"], "2");
    let (_, body) = server.post_json("/v2/models/m/versions/1/infer", &request);
    assert_eq!(body["model_version"], "1");
    assert_eq!(output(&body, "label")["data"], json!(["setosa"]));
    assert_eq!(
        server
            .post_json("/v2/models/m/versions/3/infer", &request)
            .0,
        503
    );
}

#[test]
fn duplicate_model_names_are_refused() {
    let model = repo_root().join("models/iris/1/model.onnx");
    let spec = format!("{}:iris", model.display());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["--models", "models", "--model", &spec, "--port", "0"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("two models are named `iris`"));
    assert!(Path::new(&model).exists());
}

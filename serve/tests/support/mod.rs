//! Test support: runs the real `serve` binary on a free loopback port and
//! talks to it over HTTP.

#![allow(dead_code)] // each test target uses a different part of this module

pub mod cosmos;
pub mod kafka;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (where `models/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A running `serve` process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `serve --port 0 ARGS...` in the repository and waits until it
    /// listens. Telemetry is off unless ARGS turn it on (tests of other
    /// concerns write no files into the repository).
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(&repo_root(), args, &[("MODELOPS_TELEMETRY", "off")])
    }

    /// Starts `serve --port 0 ARGS...` in `dir` with `envs` added to the
    /// environment, and waits until it listens.
    pub fn start_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "serve did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child: Some(child),
            base: format!("http://{addr}"),
            log,
            agent,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `GET path` → (status, JSON body or the raw text as a JSON string).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = self.agent.get(&self.url(path)).call().expect("GET");
        read(response)
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let mut response = self.agent.get(&self.url(path)).call().expect("GET");
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .agent
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(body)
            .expect("POST");
        read(response)
    }

    /// `POST path` with raw bytes and extra headers; returns the status, the
    /// response headers that were asked for, and the raw body.
    pub fn post_bytes(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        read_headers: &[&str],
    ) -> (u16, Vec<Option<String>>, Vec<u8>) {
        let mut request = self.agent.post(&self.url(path));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send(body).expect("POST");
        let status = response.status().as_u16();
        let found = read_headers
            .iter()
            .map(|h| {
                response
                    .headers()
                    .get(*h)
                    .map(|v| v.to_str().unwrap().to_string())
            })
            .collect();
        (status, found, response.body_mut().read_to_vec().unwrap())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, &body.to_string())
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.unwrap().success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Runs `serve ARGS...` to its end in the repository with `envs` added
/// (`serve report`), asserts that it succeeded and returns its output.
pub fn run_serve<I, S>(args: I, envs: &[(&str, String)]) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The first four columns (model, version, count, error rate) of `model`'s
/// line in a `serve report` table.
pub fn report_columns(table: &str, model: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(model))
        .unwrap_or_else(|| panic!("no {model} in\n{table}"));
    line.split_whitespace().take(4).map(String::from).collect()
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A held-back test set and onnxruntime's answers on it.
pub struct Reference {
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<Value>,
    pub probabilities: Vec<Vec<f64>>,
    pub classes: Vec<Value>,
}

impl Reference {
    /// Reads `test.csv` (features then `label`) and `reference.json`.
    pub fn load(test_csv: &Path, reference_json: &Path) -> Reference {
        let rows = serve::model::TestSet::read(test_csv).unwrap().rows;
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(reference_json).unwrap()).unwrap();
        let probabilities = reference["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .collect()
            })
            .collect();
        Reference {
            rows,
            labels: reference["labels"].as_array().unwrap().clone(),
            probabilities,
            classes: reference["classes"].as_array().unwrap().clone(),
        }
    }

    /// The bundled model `name` under `models/`.
    pub fn bundled(name: &str) -> Reference {
        let dir = repo_root().join("models").join(name);
        Reference::load(&dir.join("test.csv"), &dir.join("reference.json"))
    }

    pub fn features(&self) -> usize {
        self.rows[0].len()
    }
}

/// A V2 inference request body for `rows` as FP32 with a flat `data`.
pub fn v2_request(input: &str, rows: &[Vec<f64>]) -> Value {
    let width = rows.first().map_or(0, Vec::len);
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    serde_json::json!({
        "inputs": [{ "name": input, "shape": [rows.len(), width], "datatype": "FP32", "data": data }]
    })
}

/// The named output tensor of a V2 response.
pub fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {response}"))
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {response}"))
}

/// An error body's message, asserting the body has the `{"error": ...}` shape.
pub fn error_text(body: &Value) -> String {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
        .to_string()
}

/// The value of the first Prometheus sample line starting with `line_start`.
pub fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

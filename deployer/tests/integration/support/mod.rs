//! Test support: a scratch folder, the `deployer` binary, model
//! repositories to deploy, a namespace on the test cluster with its kubelet
//! stand-in, and client traffic to the Service's pods.

mod kubelet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{json, Value};

// The workspace root, scratch folders and the serve binary, as the other
// deployer tests find them.
#[path = "../../support/mod.rs"]
mod shared;
pub use shared::{repo_root, serve_binary, Scratch};

/// `deployer ARGS` with `envs`, run to its end from the repository root.
pub fn deployer(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(repo_root())
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a test release serves under the name iris.
#[derive(Clone, Copy)]
pub enum Model {
    /// The bundled iris model.
    Iris,
    /// Bytes that are no ONNX model: serve never gets ready.
    Corrupt,
}

/// A model repository holding `model` as iris `version`: the folder to
/// give `--model-root`, and the model folder to give `--model-dir`.
pub fn model_repository(scratch: &Path, version: u32, model: Model) -> (PathBuf, PathBuf) {
    let root = scratch.join(format!("repo-{version}"));
    let model_dir = root.join("iris");
    let version_dir = model_dir.join(version.to_string());
    std::fs::create_dir_all(&version_dir).unwrap();
    let source = repo_root().join("models/iris");
    std::fs::copy(source.join("model.toml"), model_dir.join("model.toml")).unwrap();
    let onnx = version_dir.join("model.onnx");
    match model {
        Model::Corrupt => std::fs::write(onnx, b"not an ONNX model").unwrap(),
        Model::Iris => std::fs::copy(source.join("1/model.onnx"), onnx)
            .map(drop)
            .unwrap(),
    }
    (root, model_dir)
}

/// A namespace of its own on the test cluster (scripts/kube-cluster,
/// MODELOPS_TEST_KUBECONFIG), with a kubelet stand-in running its pods.
pub struct TestCluster {
    pub client: Client,
    pub namespace: String,
    pub kubeconfig: String,
    pub scratch: Scratch,
    overlay: PathBuf,
    kubelet: Option<kubelet::Kubelet>,
}

impl TestCluster {
    pub async fn new(name: &str) -> Self {
        let kubeconfig = std::env::var("MODELOPS_TEST_KUBECONFIG").expect(
            "MODELOPS_TEST_KUBECONFIG: run scripts/test, or scripts/kube-cluster start DIR and point this at DIR/kubeconfig",
        );
        deployer::rollout::install_tls_provider();
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = Client::try_from(config).unwrap();
        let namespace = format!("{name}-{}", std::process::id());
        let ns: Api<Namespace> = Api::all(client.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
        let scratch = Scratch::new(name);
        let logs = scratch.0.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let overlay = test_overlay(&scratch.0);
        let kubelet = kubelet::Kubelet::start(client.clone(), &namespace, logs);
        Self {
            client,
            namespace,
            kubeconfig,
            scratch,
            overlay,
            kubelet: Some(kubelet),
        }
    }

    /// `deployer rollout` of iris `version` from `root`/`model_dir`, with
    /// image digest `digest` (the stand-in never pulls it); returns the
    /// output and how long it took.
    pub async fn rollout(
        &self,
        root: &Path,
        model_dir: &Path,
        version: u32,
        digest: char,
    ) -> (Output, Duration) {
        let image = format!(
            "localhost/modelops-serve@sha256:{}",
            digest.to_string().repeat(64)
        );
        let args: Vec<String> = [
            "rollout",
            "--overlay",
            self.overlay.to_str().unwrap(),
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--model-version",
            &version.to_string(),
            "--model-root",
            root.to_str().unwrap(),
            "--image",
            &image,
            "--git-commit",
            "0123abc",
            "--namespace",
            &self.namespace,
            "--drain-seconds",
            "2",
            "--shutdown-timeout-seconds",
            "2",
            "--timeout",
            "180",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.run(args).await
    }

    /// `deployer ARGS` against this cluster (KUBECONFIG set), off the async
    /// runtime; with the time it took.
    pub async fn run(&self, args: Vec<String>) -> (Output, Duration) {
        let kubeconfig = self.kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = deployer(&args, &[("KUBECONFIG", &kubeconfig)]);
            (output, started.elapsed())
        })
        .await
        .unwrap()
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.scratch.0.join("logs"))
            .unwrap()
            .flatten()
        {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            all += &format!(
                "--- {}\n{}\n",
                entry.file_name().to_string_lossy(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        all
    }

    /// Starts client traffic to the Service's pods.
    pub fn traffic(&self) -> Traffic {
        Traffic::start(self.client.clone(), &self.namespace)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        drop(self.kubelet.take()); // stops every serve process
        let client = self.client.clone();
        let namespace = self.namespace.clone();
        // Best effort: a namespace left behind costs nothing but etcd rows.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let ns: Api<Namespace> = Api::all(client);
                    let _ = ns.delete(&namespace, &DeleteParams::default()).await;
                })
        })
        .join();
    }
}

/// The base with what the 1.20 test server and the stand-in need: two
/// replicas (the HPA is not served), a short progress deadline, no preStop
/// sleep (Kubernetes 1.29+), no telemetry, one HTTP worker.
fn test_overlay(scratch: &Path) -> PathBuf {
    let dir = scratch.join("overlay");
    std::fs::create_dir_all(&dir).unwrap();
    let base = repo_root().join("k8s/base");
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\npatches:\n  - path: deployment.yaml\n  - path: configmap.yaml\n",
            base.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("deployment.yaml"),
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: modelops-serve
spec:
  replicas: 2
  progressDeadlineSeconds: 20
  template:
    spec:
      containers:
        - name: serve
          lifecycle: null
",
    )
    .unwrap();
    std::fs::write(
        dir.join("configmap.yaml"),
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: modelops-serve
data:
  MODELOPS_TELEMETRY: \"off\"
  MODELOPS_TELEMETRY_FILE: null
  MODELOPS_WORKERS: \"1\"
",
    )
    .unwrap();
    dir
}

/// Requests to the Service's pods, one after another, round robin, until
/// stopped: to the pods the endpoints controller would list (Ready, not
/// terminating), read afresh before each request. (The real Endpoints
/// object cannot be used: it refuses the stand-in's loopback pod IPs.)
pub struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<TrafficReport>>,
}

#[derive(Debug, Default)]
pub struct TrafficReport {
    pub ok: usize,
    pub failures: Vec<String>,
    /// Successful answers per model version.
    pub versions: BTreeMap<String, usize>,
    /// The version of the last successful answer.
    pub last_version: Option<String>,
}

impl Traffic {
    fn start(client: Client, namespace: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let selector = ListParams::default().labels("app.kubernetes.io/name=modelops-serve");
        let handle = tokio::runtime::Handle::current();
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut r = TrafficReport::default();
            let mut turn = 0usize;
            while !flag.load(Ordering::SeqCst) {
                turn += 1;
                let pods = handle
                    .block_on(api.list(&selector))
                    .map(|l| l.items)
                    .unwrap_or_default();
                let addresses: Vec<String> = pods
                    .iter()
                    .filter(|p| serving(p))
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .map(|ip| format!("{ip}:8080"))
                    .collect();
                let Some(address) = addresses.get(turn % addresses.len().max(1)) else {
                    r.failures.push("no serving pod".into());
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let body = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
                match agent
                    .post(&format!("http://{address}/v2/models/iris/infer"))
                    .send_json(&body)
                {
                    Ok(mut response) if response.status() == 200 => {
                        let answer: Value = response.body_mut().read_json().unwrap_or_default();
                        let version = answer["model_version"].as_str().unwrap_or("?").to_owned();
                        r.ok += 1;
                        *r.versions.entry(version.clone()).or_default() += 1;
                        r.last_version = Some(version);
                    }
                    Ok(response) => r
                        .failures
                        .push(format!("{address}: HTTP {}", response.status())),
                    Err(e) => r.failures.push(format!("{address}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> TrafficReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Ready and not terminating: what the endpoints controller routes to.
fn serving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

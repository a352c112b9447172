//! The kubelet stand-in: the test cluster has an API server and a
//! controller manager but no scheduler and no kubelet, so this plays both
//! for one namespace. It polls the namespace's pods; binds each new pod to
//! the node `standin`; runs the real `serve` binary with the container's
//! args and environment (literal `env` and `envFrom` ConfigMaps), on a
//! loopback address of its own (pods share the host's network here, so
//! each gets a 127.x.y.z "pod IP"); reports phase, pod IP and the Ready
//! condition from the pod's own readinessProbe (an HTTP GET on the real
//! process) through pods/status; and on deletion sends SIGTERM, waits for
//! the process to exit (serve drains first) and removes the pod, as a
//! kubelet does after the grace period.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Running {
    child: Child,
    ip: Ipv4Addr,
    probe: Option<String>,
    ready: Option<bool>,
    terminating: bool,
}

impl Kubelet {
    /// Starts playing the kubelet for `namespace`; serve's output goes to
    /// `logs/POD.log`.
    pub fn start(client: Client, namespace: &str, logs: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let namespace = namespace.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(client, namespace, logs, flag));
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(client: Client, namespace: String, logs: PathBuf, stop: Arc<AtomicBool>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok(list) = pods.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        for pod in &list.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let deleting = pod.metadata.deletion_timestamp.is_some();
            match running.get_mut(&name) {
                None if deleting => remove(&pods, &name).await,
                None => {
                    let started = start_pod(&pods, &config_maps, pod, &logs).await;
                    running.insert(name, started);
                }
                Some(r) if deleting => {
                    if !r.terminating {
                        let _ = Command::new("kill")
                            .args(["-TERM", &r.child.id().to_string()])
                            .status();
                        r.terminating = true;
                    }
                    if r.child.try_wait().ok().flatten().is_some() {
                        running.remove(&name);
                        remove(&pods, &name).await;
                    }
                }
                Some(r) => {
                    let ready = r.probe.as_ref().is_some_and(|url| {
                        r.child.try_wait().ok().flatten().is_none()
                            && agent.get(url).call().is_ok_and(|resp| resp.status() == 200)
                    });
                    if r.ready != Some(ready) {
                        report(&pods, &name, r.ip, ready).await;
                        r.ready = Some(ready);
                    }
                }
            }
        }
        // Pods gone from the server (deleted with no grace period).
        let listed: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        running.retain(|name, r| {
            let keep = listed.contains(name);
            if !keep {
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
            keep
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in running.values_mut() {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

async fn start_pod(
    pods: &Api<Pod>,
    config_maps: &Api<ConfigMap>,
    pod: &Pod,
    logs: &std::path::Path,
) -> Running {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.node_name.is_none() {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "standin"}
        });
        let _: Result<Value, _> = pods
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
    }
    let container = &spec.containers[0];
    let port = http_port(container);
    let ip = free_ip(port);
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        if let Some(cm) = &source.config_map_ref {
            if let Ok(cm) = config_maps.get(&cm.name).await {
                env.extend(cm.data.unwrap_or_default());
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            env.push((var.name.clone(), value.clone()));
        }
    }
    // The pod's own network: its address, the container's port.
    env.push(("MODELOPS_HOST".into(), ip.to_string()));
    env.push(("MODELOPS_PORT".into(), port.to_string()));
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    let child = Command::new(super::serve_binary())
        .args(container.args.iter().flatten())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start serve");
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|h| format!("http://{ip}:{port}{}", h.path.as_deref().unwrap_or("/")));
    Running {
        child,
        ip,
        probe,
        ready: None,
        terminating: false,
    }
}

/// The container's port named `http` (what the probes and Service use).
fn http_port(container: &Container) -> u16 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .map(|p| p.container_port as u16)
        .unwrap_or(8080)
}

/// A loopback address whose `port` is free: 127.<from the PID>.x.y, the
/// last two from a counter shared by every stand-in of this process, so
/// tests running side by side (as threads or processes) do not meet.
fn free_ip(port: u16) -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) + 1;
        let ip = Ipv4Addr::new(
            127,
            100 + (std::process::id() % 150) as u8,
            (n / 250) as u8,
            (n % 250 + 2) as u8,
        );
        if TcpListener::bind((ip, port)).is_ok() {
            return ip;
        }
    }
}

async fn report(pods: &Api<Pod>, name: &str, ip: Ipv4Addr, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready}
        ]
    }});
    let _ = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
}

async fn remove(pods: &Api<Pod>, name: &str) {
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
}

//! `deployer push` against real registries (Debian's docker-registry, plain
//! and TLS with basic auth), checked with skopeo; the pushed image run
//! with podman; and each failure (wrong credentials, untrusted or
//! unreachable registry) a clear message with nothing left referenced.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deployer::package::layout;
use deployer::test::ServeProcess;
use serde_json::{json, Value};
use support::{deployer, model, run_ok, stripped_serve, Registry, Run, Scratch};

/// Packages iris into `dir`; returns the manifest digest.
fn package_iris(dir: &Path) -> String {
    let run = support::package(dir, &[&model("iris")], &stripped_serve());
    assert_eq!(run.code, 0, "{}", run.output());
    layout::read(dir, None).unwrap().manifest.digest
}

fn push(dir: &Path, to: &str, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut args = vec!["push", dir.to_str().unwrap(), "--to", to];
    args.extend_from_slice(extra);
    deployer(&args, envs)
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo")
}

#[test]
fn push_to_a_plain_registry_keeps_the_digest() {
    let registry = Registry::get("plain");
    let scratch = Scratch::new("push-plain");
    let dir = scratch.path("image");
    let digest = package_iris(&dir);
    let to = format!("{}/modelops/iris:plain", registry.address);

    let run = push(&dir, &to, &["--plain-http"], &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains(&format!("@{digest}")), "{}", run.stdout);
    assert!(run.stdout.contains("digest verified"), "{}", run.stdout);

    let remote = format!("docker://{to}");
    let inspected = run_ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &remote]));
    let inspected: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &remote]));
    assert_eq!(
        raw.as_bytes(),
        layout::read(&dir, None).unwrap().manifest.data.as_slice()
    );

    // skopeo copies it back into a layout: the same manifest digest.
    let pulled = scratch.path("pulled");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--tls-verify=false",
        &remote,
        &format!("oci:{}:back", pulled.display()),
    ]));
    assert_eq!(
        layout::read(&pulled, Some("back")).unwrap().manifest.digest,
        digest
    );

    // Pushing again uploads nothing.
    let run = push(&dir, &to, &["--plain-http"], &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout.contains("(0 blobs uploaded, 4 already there"),
        "{}",
        run.stdout
    );
}

#[test]
fn push_over_tls_with_credentials() {
    let registry = Registry::get("tls");
    let scratch = Scratch::new("push-tls");
    let dir = scratch.path("image");
    let digest = package_iris(&dir);
    let to = format!("{}/modelops/iris:tls", registry.address);
    let ca = registry.state.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let (user, password) = (registry.secret("username"), registry.secret("password"));
    let good = [
        ("DEPLOYER_REGISTRY_USERNAME", user.as_str()),
        ("DEPLOYER_REGISTRY_PASSWORD", password.as_str()),
        ("DEPLOYER_REGISTRY_CA_FILE", ca),
    ];

    // Wrong password: refused, the password never printed, nothing tagged.
    let wrong = [
        good[0],
        ("DEPLOYER_REGISTRY_PASSWORD", "not-the-password"),
        good[2],
    ];
    let run = push(&dir, &to, &[], &wrong);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr
            .contains("refused the credentials (user `modelops` from the environment)"),
        "{}",
        run.stderr
    );
    assert!(!run.output().contains("not-the-password"));
    let creds = format!("{user}:{password}");
    let cert_dir = scratch.path("certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(registry.state.join("ca.pem"), cert_dir.join("ca.crt")).unwrap();
    let cert_dir = cert_dir.to_str().unwrap().to_string();
    let inspect = || {
        skopeo(&[
            "inspect",
            "--cert-dir",
            &cert_dir,
            "--creds",
            &creds,
            &format!("docker://{to}"),
        ])
    };
    assert!(
        !inspect().status.success(),
        "no manifest after a refused push"
    );

    // Without the CA the registry's certificate is not trusted.
    let run = push(&dir, &to, &[], &good[..2]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );

    let run = push(&dir, &to, &[], &good);
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        !run.output().contains(&password),
        "the password is never printed"
    );
    let out = inspect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());

    // The same credentials from a Docker config.json.
    let config = scratch.path("docker");
    std::fs::create_dir_all(&config).unwrap();
    let auth = base64_encode(&creds);
    std::fs::write(
        config.join("config.json"),
        json!({"auths": {registry.address.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let config = config.join("config.json");
    let run = push(
        &dir,
        &format!("{}/modelops/iris:from-config", registry.address),
        &["--docker-config", config.to_str().unwrap()],
        &good[2..],
    );
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout.contains("config.json (registry"),
        "{}",
        run.stdout
    );
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn an_unreachable_registry_is_reported() {
    let scratch = Scratch::new("push-unreachable");
    let dir = scratch.path("image");
    package_iris(&dir);
    // Port 1 on loopback: nothing listens there.
    let run = push(&dir, "127.0.0.1:1/modelops/iris:x", &["--plain-http"], &[]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr.contains("cannot reach registry 127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );

    let run = push(
        &scratch.path("no-layout"),
        "127.0.0.1:1/modelops/iris:x",
        &[],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("index.json"), "{}", run.stderr);
}

/// The image pulled from the registry runs under podman: non-root, ready,
/// answers inference, and stops cleanly on SIGTERM as PID 1.
#[test]
fn the_pushed_image_runs_under_podman() {
    let registry = Registry::get("plain");
    let scratch = Scratch::new("podman");
    let dir = scratch.path("image");
    let digest = package_iris(&dir);
    let image = format!(
        "{}/modelops/iris:podman-{}",
        registry.address,
        std::process::id()
    );
    let run = push(&dir, &image, &["--plain-http"], &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    run_ok(Command::new("podman").args(["pull", "-q", "--tls-verify=false", &image]));

    let name = format!("deployer-test-{}", std::process::id());
    let mut command = Command::new("podman");
    command.args([
        "run",
        "--rm",
        "--name",
        &name,
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        // The host's loopback: serve binds a free port there and says which.
        "--network",
        "host",
        "-e",
        "MODELOPS_HOST=127.0.0.1",
        "-e",
        "MODELOPS_PORT=0",
        "-e",
        "MODELOPS_DRAIN_SECONDS=0",
        &image,
    ]);
    let server =
        ServeProcess::spawn(command, Duration::from_secs(120)).expect("the container serves");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let ready = agent
        .get(format!("{}/v2/health/ready", server.base))
        .call()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
                                  "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]});
    let mut answer = agent
        .post(format!("{}/v2/models/iris/infer", server.base))
        .send_json(&body)
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.body_mut().read_json().unwrap();
    assert_eq!(answer["outputs"][0]["data"], json!(["setosa", "virginica"]));

    let user = run_ok(Command::new("podman").args(["top", &name, "user"]));
    assert_eq!(
        user.lines().nth(1).map(str::trim),
        Some("nonroot"),
        "{user}"
    );
    let inspected = run_ok(Command::new("podman").args([
        "inspect",
        "--format",
        "{{.Config.User}} {{.Digest}}",
        &image,
    ]));
    assert_eq!(inspected.trim(), format!("65532:65532 {digest}"));

    // `podman run` passes SIGTERM to serve (PID 1) and exits with its status.
    let status = server.terminate(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{status}");
    run_ok(Command::new("podman").args(["rmi", &image]));
}

//! `deployer render`: the committed manifests render with the image pinned
//! and the model's lineage, pass `kubernetes-validate --strict` for the
//! Kubernetes version AKS runs, and template mistakes are named.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{deployer, repo_root, text, Scratch};

const KUBERNETES: &str = "1.33.0";

fn image() -> String {
    format!("acr.example/modelops-serve@sha256:{}", "ab".repeat(32))
}

fn render(extra: &[&str]) -> Output {
    let image = image();
    let mut args = vec![
        "render",
        "--model-dir",
        "models/iris",
        "--image",
        &image,
        "--git-commit",
        "0123abcdef",
    ];
    args.extend_from_slice(extra);
    deployer(&args, &[])
}

/// kubernetes-validate from the venv scripts/test makes
/// (MODELOPS_TEST_KUBERNETES_VALIDATE).
fn kubernetes_validate(files: &[&Path]) -> Output {
    let program = std::env::var("MODELOPS_TEST_KUBERNETES_VALIDATE").expect(
        "MODELOPS_TEST_KUBERNETES_VALIDATE: run scripts/test (it installs kubernetes-validate)",
    );
    Command::new(program)
        .args(["--strict", "-k", KUBERNETES])
        .args(files)
        .output()
        .unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("---\n")
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_aks_overlay_renders_pinned_with_lineage_and_validates_strictly() {
    let scratch = Scratch::new("render-aks");
    let out = render(&[
        "--set",
        "COSMOS_ENDPOINT=https://acct.documents.azure.com:443/",
        "--output",
        scratch.0.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut files: Vec<_> = std::fs::read_dir(&scratch.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "01-configmap-modelops-serve.yaml",
            "02-service-modelops-serve.yaml",
            "03-deployment-modelops-serve.yaml",
            "04-horizontalpodautoscaler-modelops-serve.yaml",
            "05-poddisruptionbudget-modelops-serve.yaml"
        ]
    );
    let deployment: Value =
        serde_norway::from_str(&std::fs::read_to_string(&files[2]).unwrap()).unwrap();
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], image());
    let lineage = &deployment["metadata"]["annotations"];
    assert_eq!(lineage, &pod["metadata"]["annotations"]);
    assert_eq!(lineage["modelops.io/model"], "iris");
    assert_eq!(lineage["modelops.io/model-version"], "1");
    assert_eq!(
        lineage["modelops.io/model-sha256"],
        sha256_of(&repo_root().join("models/iris/1/model.onnx"))
    );
    let toml = std::fs::read_to_string(repo_root().join("models/iris/model.toml")).unwrap();
    let training = lineage["modelops.io/training-data-sha256"]
        .as_str()
        .unwrap();
    assert!(
        toml.contains(&format!("training_data_sha256 = \"{training}\"")),
        "{training}"
    );
    assert_eq!(lineage["modelops.io/git-commit"], "0123abcdef");
    assert_eq!(lineage["modelops.io/image"], image());
    // serve's drain window, the preStop sleep and the grace period agree:
    // 5 s preStop + 5 s drain + 30 s in flight + 5 s slack.
    assert_eq!(container["args"][1], "--drain-seconds=5");
    assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 45);
    // The overlay's additions: the Cosmos DB key from a Secret, endpoint set.
    assert_eq!(
        container["env"][2]["valueFrom"]["secretKeyRef"]["name"],
        "modelops-cosmos"
    );
    let config: Value =
        serde_norway::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(
        config["data"]["MODELOPS_COSMOS_ENDPOINT"],
        "https://acct.documents.azure.com:443/"
    );
    assert!(config["data"].get("MODELOPS_TELEMETRY_FILE").is_none());

    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let check = kubernetes_validate(&paths);
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
}

#[test]
fn the_base_alone_renders_to_stdout_and_validates_strictly() {
    let out = render(&["--overlay", "none", "--namespace", "serving"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let docs = documents(&yaml);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Service",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget"
        ]
    );
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "serving"));
    let scratch = Scratch::new("render-base");
    let file = scratch.0.join("all.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let check = kubernetes_validate(&[&file]);
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );

    // The validator is strict: a field Kubernetes does not know fails it.
    std::fs::write(
        &file,
        yaml.replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: true\n      readOnlyRootFs: true",
        ),
    )
    .unwrap();
    let check = kubernetes_validate(&[&file]);
    assert!(!check.status.success(), "{}", text(&check.stdout));
}

/// An overlay of the base in `scratch`, with `patch` as its one patch file.
fn overlay(scratch: &Path, patch: &str) -> String {
    let base = repo_root().join("k8s/base");
    std::fs::write(
        scratch.join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\npatches:\n  - path: patch.yaml\n",
            base.display()
        ),
    )
    .unwrap();
    std::fs::write(scratch.join("patch.yaml"), patch).unwrap();
    scratch.to_str().unwrap().to_owned()
}

fn fails_with(out: Output, message: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "succeeded; stdout:\n{}",
        text(&out.stdout)
    );
    assert!(stderr.contains(message), "wanted {message:?} in:\n{stderr}");
}

#[test]
fn template_mistakes_are_named_and_fail() {
    fails_with(
        render(&["--overlay", "nope"]),
        "unknown overlay `nope`: k8s/overlays/ has aks",
    );
    // The aks overlay needs a value only an operator can give.
    fails_with(
        render(&[]),
        "k8s/overlays/aks/configmap.yaml:7: ${COSMOS_ENDPOINT} has no value (give it with --set COSMOS_ENDPOINT=VALUE)",
    );
    fails_with(
        deployer(
            &[
                "render",
                "--model-dir",
                "models/iris",
                "--image",
                "acr.example/serve:latest",
                "--git-commit",
                "0123abc",
            ],
            &[],
        ),
        "--image: `acr.example/serve:latest` is not REPO@sha256:<64 hex digits>",
    );

    let scratch = Scratch::new("render-mistakes");
    let dir = overlay(
        &scratch.0,
        "kind: Deployment\nmetadata:\n  name: modelops-serve\nspec: [unclosed\n",
    );
    fails_with(render(&["--overlay", &dir]), "patch.yaml: invalid YAML");
    let dir = overlay(
        &scratch.0,
        "kind: Deployment\nmetadata:\n  name: other\nspec: {}\n",
    );
    fails_with(
        render(&["--overlay", &dir]),
        "patch.yaml: the patch targets Deployment `other`, which no resource defines",
    );
    // An overlay cannot swap the digest for a tag.
    let dir = overlay(
        &scratch.0,
        "kind: Deployment\nmetadata:\n  name: modelops-serve\nspec:\n  template:\n    spec:\n      containers:\n        - name: serve\n          image: acr.example/serve:latest\n",
    );
    fails_with(
        render(&["--overlay", &dir]),
        "container `serve` of Deployment `modelops-serve` runs `acr.example/serve:latest`, not an image pinned by digest",
    );

    // A model without training-data lineage is no release.
    let model = scratch.0.join("model/iris");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::copy(
        repo_root().join("models/iris/1/model.onnx"),
        model.join("1/model.onnx"),
    )
    .unwrap();
    std::fs::write(model.join("model.toml"), "description = \"x\"\n").unwrap();
    let image = image();
    fails_with(
        deployer(
            &[
                "render",
                "--overlay",
                "none",
                "--model-dir",
                model.to_str().unwrap(),
                "--image",
                &image,
                "--git-commit",
                "0123abc",
            ],
            &[],
        ),
        "model.toml: no [lineage] training_data_sha256",
    );
}

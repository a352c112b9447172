//! `deployer rollout`, `rollback` and `status` against the test cluster.
//! Each test has its own namespace; its pods are real `serve` processes
//! (the kubelet stand-in), its client traffic goes to the pods the Service
//! would route to. Timings are printed for the record.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use kube::Api;

use crate::support::{deployer, model_repository, text, Model, Scratch, TestCluster};

fn annotation(d: &Deployment, key: &str) -> String {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

async fn deployment(cluster: &TestCluster) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.get("modelops-serve").await.unwrap()
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Iris version 1 (image digest aaaa...), rolled out.
async fn deploy_version_1(cluster: &TestCluster) {
    let (root, model_dir) = model_repository(&cluster.scratch.0, 1, Model::Iris);
    let (out, _) = cluster.rollout(&root, &model_dir, 1, 'a').await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_model_rolls_out_and_serves() {
    let cluster = TestCluster::new("good").await;
    let (root, model_dir) = model_repository(&cluster.scratch.0, 1, Model::Iris);
    let (out, took) = cluster.rollout(&root, &model_dir, 1, 'a').await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    eprintln!(
        "timing: good rollout of 2 replicas took {:.1}s",
        took.as_secs_f64()
    );
    assert!(
        text(&out.stdout).contains("rolled out Deployment modelops-serve"),
        "{}",
        text(&out.stdout)
    );
    // The 1.20 server serves neither autoscaling/v2 nor policy/v1.
    assert!(stderr.contains("skipped HorizontalPodAutoscaler/modelops-serve: the server does not serve autoscaling/v2"), "{stderr}");
    assert!(
        stderr.contains(
            "skipped PodDisruptionBudget/modelops-serve: the server does not serve policy/v1"
        ),
        "{stderr}"
    );

    let d = deployment(&cluster).await;
    let status = d.status.clone().unwrap();
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(
        annotation(&d, "modelops.io/model-sha256"),
        sha256_of(&model_dir.join("1/model.onnx"))
    );
    assert_eq!(
        annotation(&d, "modelops.io/image"),
        format!("localhost/modelops-serve@sha256:{}", "a".repeat(64))
    );
    // Server-side apply, by the field manager `deployer`.
    let managers: Vec<String> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| Some(format!("{}/{}", m.manager.clone()?, m.operation.clone()?)))
        .collect();
    assert!(
        managers.contains(&"deployer/Apply".to_string()),
        "{managers:?}"
    );

    let report = cluster.traffic();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let report = report.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.ok > 0);
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_gets_ready_is_rolled_back_while_the_old_one_serves() {
    let cluster = TestCluster::new("corrupt").await;
    deploy_version_1(&cluster).await;

    let traffic = cluster.traffic();
    let (bad_root, bad_dir) = model_repository(&cluster.scratch.0, 2, Model::Corrupt);
    let (out, took) = cluster.rollout(&bad_root, &bad_dir, 2, 'b').await;
    let report = traffic.stop();
    let stderr = text(&out.stderr);
    eprintln!(
        "timing: failed rollout + automatic rollback took {:.1}s",
        took.as_secs_f64()
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rolled back Deployment modelops-serve to revision 1 (model iris 1, image localhost/modelops-serve@sha256:aaaa"),
        "{stderr}"
    );
    // The old version kept serving throughout: every request answered, by it.
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.ok > 10, "{report:?}");
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["1"]);

    // The cluster is on the last good revision: its template, its lineage,
    // and the failed ReplicaSet scaled to zero.
    let d = deployment(&cluster).await;
    assert_eq!(annotation(&d, "modelops.io/model-version"), "1");
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), "3");
    let rs: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for r in rs.list(&ListParams::default()).await.unwrap() {
        let version = r.metadata.annotations.as_ref().unwrap()["modelops.io/model-version"].clone();
        let replicas = r.spec.unwrap().replicas.unwrap();
        assert_eq!(
            replicas,
            if version == "1" { 2 } else { 0 },
            "ReplicaSet of version {version}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_version_replaces_the_first_without_downtime_and_rollback_returns() {
    let cluster = TestCluster::new("update").await;
    deploy_version_1(&cluster).await;

    let traffic = cluster.traffic();
    let (root2, model_dir2) = model_repository(&cluster.scratch.0, 2, Model::Iris);
    let (out, took) = cluster.rollout(&root2, &model_dir2, 2, 'b').await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        cluster.logs()
    );
    // Requests go on a moment after the rollout, so the last answers come
    // from the new version only.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let report = traffic.stop();
    eprintln!(
        "timing: zero-downtime update took {:.1}s ({} requests, {:?})",
        took.as_secs_f64(),
        report.ok,
        report.versions
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report.versions.get("1").is_some_and(|n| *n > 0),
        "{report:?}"
    );
    assert!(
        report.versions.get("2").is_some_and(|n| *n > 0),
        "{report:?}"
    );
    assert_eq!(report.last_version.as_deref(), Some("2"));

    // `deployer status` names what serves and the history.
    let (out, _) = cluster
        .run(vec![
            "status".into(),
            "--namespace".into(),
            cluster.namespace.clone(),
        ])
        .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("serving:   model iris 2, image localhost/modelops-serve@sha256:bbbb"),
        "{stdout}"
    );
    assert!(stdout.contains("state:     rolled out"), "{stdout}");
    assert!(
        stdout.contains("2  model iris 2, image localhost/modelops-serve@sha256:bbbb"),
        "{stdout}"
    );

    // `deployer rollback` goes back to version 1, again without downtime.
    let traffic = cluster.traffic();
    let (out, took) = cluster
        .run(vec![
            "rollback".into(),
            "--namespace".into(),
            cluster.namespace.clone(),
            "--timeout".into(),
            "120".into(),
        ])
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let report = traffic.stop();
    eprintln!("timing: deployer rollback took {:.1}s", took.as_secs_f64());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rolled back Deployment modelops-serve to revision 1 (model iris 1, image localhost/modelops-serve@sha256:aaaa"),
        "{}",
        text(&out.stdout)
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.last_version.as_deref(), Some("1"));
    let d = deployment(&cluster).await;
    assert_eq!(annotation(&d, "modelops.io/model-version"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_context_and_refused_rights_are_clear_errors() {
    let cluster = TestCluster::new("rights").await;
    let args = |context: &str| -> Vec<String> {
        vec![
            "status".into(),
            "--namespace".into(),
            cluster.namespace.clone(),
            "--context".into(),
            context.into(),
        ]
    };
    let (out, _) = cluster.run(args("nope")).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no context `nope` in the kubeconfig (it has: test, viewer)"),
        "{}",
        text(&out.stderr)
    );
    // `viewer` is authenticated but bound to no role.
    let (out, _) = cluster.run(args("viewer")).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not allowed to read Deployment modelops-serve"),
        "{stderr}"
    );
    assert!(
        stderr.contains("User \"viewer\" cannot get resource \"deployments\""),
        "{stderr}"
    );
}

#[test]
fn no_reachable_cluster_is_a_clear_error() {
    let scratch = Scratch::new("unreachable");
    let kubeconfig = scratch.0.join("kubeconfig");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let image = format!("localhost/modelops-serve@sha256:{}", "a".repeat(64));
    let out = deployer(
        &[
            "rollout",
            "--overlay",
            "none",
            "--model-dir",
            "models/iris",
            "--image",
            &image,
            "--git-commit",
            "0123abc",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(stderr.contains("onnection refused"), "{stderr}");
    assert!(
        stderr.contains("is the cluster up, and is this the right context?"),
        "{stderr}"
    );
}

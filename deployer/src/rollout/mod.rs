//! `deployer rollout`, `rollback` and `status`: a release goes to the
//! cluster by server-side apply, is watched as `kubectl rollout status`
//! watches it, and is rolled back to the previous revision automatically if
//! it fails or times out, so the cluster is left on the last good revision.

mod apply;
mod cluster;
mod history;
mod watch;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};

pub use cluster::{install_tls_provider, ClusterArgs};

use crate::render;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("cannot {doing}: {message} (is the cluster up, and is this the right context?)")]
    Unreachable { doing: String, message: String },
    #[error("not allowed to {doing}: {message} (RBAC: `kubectl auth can-i` shows what this user may do)")]
    Forbidden { doing: String, message: String },
    #[error("cannot {doing}: the server does not accept these credentials: {message}")]
    Unauthorized { doing: String, message: String },
    #[error("cannot {doing}: {code}: {message}")]
    Api {
        doing: String,
        code: u16,
        message: String,
    },
    #[error("cannot {doing}: {message}")]
    Kube { doing: String, message: String },
    #[error("watching Deployment {name} failed: {message}")]
    Watch { name: String, message: String },
    #[error("{what} does not exist")]
    NotFound { what: String },
    #[error("a rendered object is not a Kubernetes object: {0}")]
    Manifest(String),
    #[error("{reason}")]
    Failed { reason: String },
    #[error("Deployment {name} has no revision before {current} to roll back to")]
    NoPreviousRevision { name: String, current: u64 },
    #[error("rollout failed: {reason}; Deployment {name} had no earlier revision, so it stays on this failing one")]
    FirstRevisionFailed { name: String, reason: String },
    #[error("rollout failed: {reason}; rolled back Deployment {name} to revision {revision} ({release}), which is available")]
    RolledBack {
        name: String,
        reason: String,
        revision: u64,
        release: String,
    },
    #[error("rollout failed: {reason}; the automatic rollback failed too: {rollback}")]
    RollbackFailed {
        reason: String,
        rollback: Box<Error>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub release: render::Args,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Seconds the rollout may take before it is rolled back (the
    /// Deployment's progressDeadlineSeconds fails it sooner when pods stop
    /// progressing).
    #[arg(long, env = "MODELOPS_ROLLOUT_TIMEOUT", default_value_t = 900)]
    pub timeout: u64,
}

/// The Deployment `rollback` and `status` act on.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Namespace (default: the kubeconfig context's).
    #[arg(long, env = "MODELOPS_NAMESPACE")]
    pub namespace: Option<String>,

    /// The Deployment.
    #[arg(long, env = "MODELOPS_DEPLOYMENT", default_value = "modelops-serve")]
    pub deployment: String,
}

pub async fn rollout(args: &RolloutArgs) -> Result<(), Error> {
    let objects = render::render(&args.release)?;
    let client = cluster::connect(&args.cluster).await?;
    let namespace = args
        .release
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    // Only a Deployment that already had a revision can be rolled back.
    let mut before = Vec::new();
    for object in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let current = watch::current(&api, name).await?;
        before.push((
            name.to_owned(),
            current.and_then(|d| history::revision(d.metadata.annotations.as_ref())),
        ));
    }
    let applied = apply::apply(&client, &namespace, &objects).await?;
    let timeout = Duration::from_secs(args.timeout);
    for (name, revision_before) in before {
        match watch::wait(&api, &name, timeout).await {
            Ok(()) => {}
            Err(Error::Failed { reason }) if revision_before.is_none() => {
                return Err(Error::FirstRevisionFailed { name, reason })
            }
            Err(Error::Failed { reason }) => {
                eprintln!("rollout failed: {reason}; rolling back");
                return Err(match roll_back(&client, &api, &name, timeout).await {
                    Ok((revision, release)) => Error::RolledBack {
                        name,
                        reason,
                        revision,
                        release,
                    },
                    Err(e) => Error::RollbackFailed {
                        reason,
                        rollback: Box::new(e),
                    },
                });
            }
            Err(other) => return Err(other),
        }
    }
    for name in &applied.deployments {
        let d = api
            .get(name)
            .await
            .map_err(|e| cluster::describe(e, &format!("read Deployment {name}")))?;
        println!(
            "rolled out Deployment {name} in namespace {namespace}: {}",
            release(&d)
        );
    }
    if !applied.skipped.is_empty() {
        println!(
            "not applied, this cluster does not serve their API versions: {}",
            applied.skipped.join(", ")
        );
    }
    Ok(())
}

pub async fn rollback(args: &TargetArgs, timeout: Duration) -> Result<(), Error> {
    let client = cluster::connect(&args.cluster).await?;
    let api = deployments(&client, args);
    let (revision, release) = roll_back(&client, &api, &args.deployment, timeout).await?;
    println!(
        "rolled back Deployment {} to revision {revision} ({release})",
        args.deployment
    );
    Ok(())
}

pub async fn status(args: &TargetArgs) -> Result<(), Error> {
    let client = cluster::connect(&args.cluster).await?;
    let api = deployments(&client, args);
    let d = watch::current(&api, &args.deployment)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("Deployment {}", args.deployment),
        })?;
    let current = history::revision(d.metadata.annotations.as_ref());
    let state = match watch::evaluate(&d) {
        watch::Progress::Done => "rolled out".to_owned(),
        watch::Progress::Waiting(message) => format!("rolling out: {message}"),
        watch::Progress::Failed(reason) => format!("failed: {reason}"),
    };
    let s = d.status.clone().unwrap_or_default();
    println!(
        "Deployment {} (namespace {})",
        args.deployment,
        d.metadata.namespace.as_deref().unwrap_or_default()
    );
    println!("  serving:   {}", release(&d));
    println!("  state:     {state}");
    println!(
        "  replicas:  {} desired, {} updated, {} ready, {} available",
        d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default(),
        s.updated_replicas.unwrap_or_default(),
        s.ready_replicas.unwrap_or_default(),
        s.available_replicas.unwrap_or_default()
    );
    println!("  revisions:");
    for rs in history::revisions(&client, &d).await? {
        let revision = history::revision(rs.metadata.annotations.as_ref());
        let mark = if revision == current {
            " (current)"
        } else {
            ""
        };
        println!(
            "    {:>3}  {}  {} ready{mark}",
            revision.map_or("?".into(), |r| r.to_string()),
            annotations_release(rs.metadata.annotations.as_ref()),
            rs.status.and_then(|s| s.ready_replicas).unwrap_or_default()
        );
    }
    Ok(())
}

/// Undo, then wait for the restored revision to be available.
async fn roll_back(
    client: &Client,
    api: &Api<Deployment>,
    name: &str,
    timeout: Duration,
) -> Result<(u64, String), Error> {
    let revision = history::undo(client, api, name).await?;
    eprintln!("restored revision {revision} of Deployment {name}");
    watch::wait(api, name, timeout).await?;
    let d = api
        .get(name)
        .await
        .map_err(|e| cluster::describe(e, &format!("read Deployment {name}")))?;
    Ok((revision, release(&d)))
}

fn deployments(client: &Client, args: &TargetArgs) -> Api<Deployment> {
    let namespace = args
        .namespace
        .as_deref()
        .unwrap_or(client.default_namespace());
    Api::namespaced(client.clone(), namespace)
}

/// "model iris 1, image REPO@sha256:..." from the lineage annotations
/// `deployer render` writes (and `undo` restores).
fn release(d: &Deployment) -> String {
    annotations_release(d.metadata.annotations.as_ref())
}

fn annotations_release(annotations: Option<&std::collections::BTreeMap<String, String>>) -> String {
    let get = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .map_or("?", String::as_str)
    };
    format!(
        "model {} {}, image {}",
        get("modelops.io/model"),
        get("modelops.io/model-version"),
        get("modelops.io/image")
    )
}

//! `deployer render`: the Kubernetes manifests of one model release, built
//! from `k8s/` (base + overlay), with the image pinned by digest and the
//! model's lineage filled in. Knows nothing of clusters.

mod kustomize;
mod lineage;
mod values;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use lineage::Lineage;

/// What went wrong rendering; each names the file or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error(transparent)]
    Template(#[from] crate::template::Error),
    #[error("unknown overlay `{name}`: {k8s_dir}/overlays/ has {available}")]
    UnknownOverlay {
        name: String,
        k8s_dir: PathBuf,
        available: String,
    },
    #[error("{path}: {message}")]
    Kustomization { path: PathBuf, message: String },
    #[error("{path}: the patch targets {kind} `{name}`, which no resource defines")]
    PatchTarget {
        path: PathBuf,
        kind: String,
        name: String,
    },
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("container `{container}` of {kind} `{name}` runs `{image}`, not an image pinned by digest (REPO@sha256:...)")]
    ImageNotPinned {
        kind: String,
        name: String,
        container: String,
        image: String,
    },
}

/// One model release, as `render` and `rollout` take it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifests: a folder with `base/` and `overlays/<name>/`.
    #[arg(long, env = "MODELOPS_K8S_DIR", default_value = "k8s")]
    pub k8s_dir: PathBuf,

    /// The overlay: a name under <k8s-dir>/overlays/, a folder holding a
    /// kustomization.yaml, or `none` for the base alone.
    #[arg(long, env = "MODELOPS_OVERLAY", default_value = "aks")]
    pub overlay: String,

    /// The model's folder (`<name>/model.toml`, `<name>/<version>/model.onnx`).
    #[arg(long, env = "MODELOPS_MODEL_DIR", value_name = "DIR")]
    pub model_dir: PathBuf,

    /// The model version to deploy (default: the highest in the model's folder).
    #[arg(long, env = "MODELOPS_MODEL_VERSION")]
    pub model_version: Option<u32>,

    /// The serving image, pinned by digest: `REPO@sha256:<64 hex>`.
    #[arg(long, env = "MODELOPS_IMAGE", value_name = "REPO@sha256:DIGEST")]
    pub image: String,

    /// The git commit the image was built from (lineage).
    #[arg(long, env = "MODELOPS_GIT_COMMIT")]
    pub git_commit: String,

    /// Where the image holds the model repository (serve --models).
    #[arg(long, env = "MODELOPS_MODEL_ROOT", default_value = "/models")]
    pub model_root: String,

    /// serve --drain-seconds; also the preStop sleep.
    #[arg(long, env = "MODELOPS_DRAIN_SECONDS", default_value_t = 5)]
    pub drain_seconds: u32,

    /// serve --shutdown-timeout-seconds (in-flight requests after the drain).
    #[arg(long, env = "MODELOPS_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30)]
    pub shutdown_timeout_seconds: u32,

    /// Namespace written into every manifest (default: none, the cluster's
    /// context decides).
    #[arg(long, env = "MODELOPS_NAMESPACE")]
    pub namespace: Option<String>,

    #[command(flatten)]
    pub values: crate::template::SetArgs,
}

/// The rendered objects, in apply order (ConfigMaps before the Deployment
/// that reads them).
pub fn render(args: &Args) -> Result<Vec<Value>, Error> {
    let lineage = Lineage::read(&args.model_dir, args.model_version)?;
    let values = values::release_values(args, &lineage)?;
    let dir = overlay_dir(&args.k8s_dir, &args.overlay)?;
    let mut objects = kustomize::build(&dir, &values)?;
    for object in &mut objects {
        if let Some(namespace) = &args.namespace {
            object["metadata"]["namespace"] = Value::String(namespace.clone());
        }
        check_images(object)?;
    }
    Ok(objects)
}

/// Multi-document YAML.
pub fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_norway::to_string(o).expect("JSON values always serialise to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One file per object, numbered in apply order: `01-configmap-NAME.yaml`.
pub fn write_dir(objects: &[Value], dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for (i, object) in objects.iter().enumerate() {
        let file = format!(
            "{:02}-{}-{}.yaml",
            i + 1,
            object["kind"].as_str().unwrap_or("object").to_lowercase(),
            object["metadata"]["name"].as_str().unwrap_or("unnamed")
        );
        std::fs::write(dir.join(file), to_yaml(std::slice::from_ref(object))).map_err(io)?;
    }
    Ok(())
}

fn overlay_dir(k8s_dir: &Path, overlay: &str) -> Result<PathBuf, Error> {
    if overlay == "none" {
        return Ok(k8s_dir.join("base"));
    }
    let named = k8s_dir.join("overlays").join(overlay);
    for dir in [named, PathBuf::from(overlay)] {
        if dir.join("kustomization.yaml").is_file() {
            return Ok(dir);
        }
    }
    let mut available: Vec<String> = std::fs::read_dir(k8s_dir.join("overlays"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("kustomization.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    available.sort();
    Err(Error::UnknownOverlay {
        name: overlay.to_owned(),
        k8s_dir: k8s_dir.to_owned(),
        available: if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        },
    })
}

/// An overlay could swap the image for a tag; a release is only ever a digest.
fn check_images(object: &Value) -> Result<(), Error> {
    let containers = object["spec"]["template"]["spec"]["containers"].as_array();
    for container in containers.into_iter().flatten() {
        let image = container["image"].as_str().unwrap_or_default();
        if !values::is_pinned(image) {
            return Err(Error::ImageNotPinned {
                kind: object["kind"].as_str().unwrap_or_default().to_owned(),
                name: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                container: container["name"].as_str().unwrap_or_default().to_owned(),
                image: image.to_owned(),
            });
        }
    }
    Ok(())
}

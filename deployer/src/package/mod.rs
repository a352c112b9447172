//! `deployer package`: an OCI image built the way ko and Jib build them, no
//! daemon: files straight into reproducible layers, written as an OCI image
//! layout (for air-gapped use, and what `push` sends).
//!
//! Layers, from the least to the most often changed, so a model change
//! rebuilds only its own layer: the base (libraries, CA bundle, users; see
//! `base`), the serve binary, then one layer per model. Lineage goes into
//! the config's labels and the manifest's annotations.

mod base;
pub mod image;
pub mod layer;
pub mod layout;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use thiserror::Error;

use crate::model_dir::{ModelDir, ModelDirError};
use crate::progress::{human_bytes, Step};
use image::{ImageConfig, Manifest, RootFs, RuntimeConfig, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use layer::{Blob, Layer, LayerBuilder};
pub use layout::LayoutError;

/// The port the image's server listens on.
pub const PORT: u16 = 8080;
const SERVE_PATH: &str = "usr/local/bin/serve";

#[derive(Debug, Error)]
pub enum PackageError {
    #[error(transparent)]
    Model(#[from] ModelDirError),
    #[error("serve binary {path}: {reason}")]
    Serve { path: String, reason: String },
    #[error("base layer: {0}")]
    Base(String),
    #[error("two models are named `{0}`")]
    DuplicateModel(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    // Sources are printed by the caller (`{:#}`), so not repeated here.
    #[error("writing a layer")]
    Layer(#[from] std::io::Error),
    #[error("image layout")]
    Layout(#[from] LayoutError),
    #[error("invalid SOURCE_DATE_EPOCH {0}")]
    Epoch(u64),
}

/// `deployer package`: build the image of the serve binary and models.
#[derive(Debug, Clone, Args)]
pub struct PackageArgs {
    /// Model folders to ship (each one's latest version and model.toml).
    #[arg(
        required = true,
        env = "MODELOPS_PACKAGE_MODELS",
        value_delimiter = ','
    )]
    pub models: Vec<PathBuf>,

    /// The OCI image layout folder to write (replaced if it holds one).
    #[arg(long, short, env = "MODELOPS_IMAGE_LAYOUT", default_value = "image")]
    pub output: PathBuf,

    /// The tag the image gets in the layout's index.
    #[arg(long, env = "MODELOPS_IMAGE_TAG", default_value = "latest")]
    pub tag: String,

    /// The serve binary to ship (use a release build). Default: `serve`
    /// next to this binary.
    #[arg(long, env = "MODELOPS_SERVE_BINARY", value_name = "PATH")]
    pub serve_binary: Option<PathBuf>,

    /// The time stamped on every file and on the image (seconds since 1970).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub source_date_epoch: u64,

    /// The source revision recorded in the image. Default: `git rev-parse
    /// HEAD` in the first model folder.
    #[arg(long, env = "MODELOPS_GIT_COMMIT")]
    pub git_commit: Option<String>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct PackageReport {
    /// The manifest digest: the image's identity.
    pub digest: String,
    pub layers: Vec<Layer>,
    pub config_size: u64,
    pub manifest_size: u64,
}

impl PackageReport {
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size()).sum::<u64>()
            + self.config_size
            + self.manifest_size
    }
}

pub fn run(args: &PackageArgs) -> Result<PackageReport, PackageError> {
    let serve = args
        .serve_binary
        .clone()
        .unwrap_or_else(crate::test::default_serve_binary);
    if !serve.is_file() {
        return Err(PackageError::Serve {
            path: serve.display().to_string(),
            reason: "not found".into(),
        });
    }
    let epoch = args.source_date_epoch;
    let created = rfc3339(epoch)?;
    let mut annotations = BTreeMap::new();
    let mut layers = Vec::new();

    let mut models = Vec::new();
    for dir in &args.models {
        let model_dir = ModelDir::open(dir)?;
        if models
            .iter()
            .any(|(m, _): &(ModelDir, _)| m.name == model_dir.name)
        {
            return Err(PackageError::DuplicateModel(model_dir.name));
        }
        let step = Step::start(format!("loading model {}", model_dir.name));
        let model = model_dir.load_latest()?;
        step.done(&format!("version {}", model.version));
        models.push((model_dir, model));
    }

    let step = Step::start("base layer (host Debian packages)");
    let mut base_files = LayerBuilder::default();
    let packages = base::add(&mut base_files, &serve)?;
    let base = base_files.finish("base: libraries, CA bundle, users", epoch)?;
    step.done(&human_bytes(base.blob.size()));
    let list: Vec<String> = packages.iter().map(|(n, v)| format!("{n}={v}")).collect();
    annotations.insert("io.modelops.base.packages".into(), list.join(","));
    layers.push(base);

    let step = Step::start(format!("serve layer ({})", serve.display()));
    let binary = read(&serve)?;
    let mut serve_files = LayerBuilder::default();
    serve_files.file(SERVE_PATH, 0o755, binary);
    let serve_layer = serve_files.finish("serve binary", epoch)?;
    step.done(&human_bytes(serve_layer.blob.size()));
    layers.push(serve_layer);

    for (model_dir, model) in &models {
        let name = &model_dir.name;
        let step = Step::start(format!("model layer {name}"));
        let mut files = LayerBuilder::default();
        let manifest_path = model_dir.dir.join("model.toml");
        if manifest_path.is_file() {
            files.file(
                &format!("models/{name}/model.toml"),
                0o644,
                read(&manifest_path)?,
            );
        }
        // `model.path` points into the staging folder, gone by now.
        let onnx = read(
            &model_dir
                .dir
                .join(model.version.to_string())
                .join("model.onnx"),
        )?;
        files.file(
            &format!("models/{name}/{}/model.onnx", model.version),
            0o644,
            onnx,
        );
        let layer = files.finish(&format!("model {name} version {}", model.version), epoch)?;
        step.done(&human_bytes(layer.blob.size()));
        layers.push(layer);

        let key = |k: &str| format!("io.modelops.model.{name}.{}", k.replace('_', "-"));
        annotations.insert(key("version"), model.version.to_string());
        annotations.insert(key("sha256"), model.sha256.clone());
        for (k, v) in &model_dir.manifest.lineage {
            annotations.insert(key(k), v.clone());
        }
    }
    let names: Vec<String> = models
        .iter()
        .map(|(d, m)| format!("{} v{}", d.name, m.version))
        .collect();
    let revision = args
        .git_commit
        .clone()
        .unwrap_or_else(|| git_head(&models[0].0.dir));
    annotations.extend([
        (
            "org.opencontainers.image.title".to_string(),
            "modelops-serve".to_string(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            format!("modelops serve with {}", names.join(", ")),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            created.clone(),
        ),
        ("org.opencontainers.image.revision".to_string(), revision),
        (
            "io.modelops.models".to_string(),
            models
                .iter()
                .map(|(d, _)| d.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);

    let config = ImageConfig {
        created: created.clone(),
        architecture: image::architecture(),
        os: "linux",
        config: RuntimeConfig {
            user: format!("{0}:{0}", base::USER_ID),
            exposed_ports: [(format!("{PORT}/tcp"), Default::default())].into(),
            env: vec![
                "PATH=/usr/local/bin".into(),
                "MODELOPS_HOST=0.0.0.0".into(),
                format!("MODELOPS_PORT={PORT}"),
                "MODELOPS_MODELS=/models".into(),
                // The rollout turns on Cosmos DB; a file in the container would be lost.
                "MODELOPS_TELEMETRY=off".into(),
            ],
            entrypoint: vec![format!("/{SERVE_PATH}")],
            working_dir: "/home/nonroot".into(),
            labels: annotations.clone(),
            stop_signal: "SIGTERM",
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        history: layers
            .iter()
            .map(|l| image::History {
                created: created.clone(),
                created_by: format!("deployer package: {}", l.name),
            })
            .collect(),
    };
    let config = Blob::new(CONFIG_MEDIA_TYPE, to_json(&config));
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        config: layout::descriptor(&config),
        layers: layers.iter().map(|l| layout::descriptor(&l.blob)).collect(),
        annotations,
    };
    let manifest = Blob::new(MANIFEST_MEDIA_TYPE, to_json(&manifest));

    let step = Step::start(format!("writing {}", args.output.display()));
    let mut blobs: Vec<&Blob> = layers.iter().map(|l| &l.blob).collect();
    blobs.push(&config);
    layout::write(&args.output, &blobs, &manifest, &args.tag)?;
    step.done("");

    let report = PackageReport {
        digest: manifest.digest.clone(),
        config_size: config.size(),
        manifest_size: manifest.size(),
        layers,
    };
    print!("{}", report.text(&args.output, &args.tag));
    Ok(report)
}

impl PackageReport {
    /// The summary printed after a build.
    pub fn text(&self, output: &Path, tag: &str) -> String {
        let mut out = format!(
            "image {}:{tag}\n  digest {}\n",
            output.display(),
            self.digest
        );
        for layer in &self.layers {
            out += &format!(
                "  layer {} {:>10} gzip {:>10} tar  {}\n",
                &layer.blob.digest[..19],
                human_bytes(layer.blob.size()),
                human_bytes(layer.tar_size),
                layer.name
            );
        }
        out += &format!(
            "  total {} compressed\n",
            human_bytes(self.compressed_size())
        );
        out
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(path).map_err(|e| PackageError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("image documents serialize")
}

fn rfc3339(epoch: u64) -> Result<String, PackageError> {
    let time = i64::try_from(epoch)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(PackageError::Epoch(epoch))?;
    time.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| PackageError::Epoch(epoch))
}

/// `git rev-parse HEAD` in `dir`, or "unknown" outside a repository.
fn git_head(dir: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

//! One model folder of the repository (`models/<name>/`): its manifest, its
//! held-back test set, its production record, and its latest version loaded
//! exactly as the server loads it.
//!
//! The server reads a *repository* (a folder of model folders), so a model
//! folder is staged as a one-model repository (a symlink in a temporary
//! folder): the gate and `serve` then run the same discovery and loading code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serve::model::{LoadedModel, Manifest, ModelRepository, ModelSource, VersionState};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelDirError {
    #[error("{0} is not a model folder: {1}")]
    NotAFolder(String, String),
    #[error("{0}")]
    Manifest(String),
    #[error("cannot read the staged repository: {0}")]
    Repository(String),
    #[error("cannot stage {0} as a model repository: {1}")]
    Stage(String, std::io::Error),
    #[error("model `{0}` has no version folders (expected {0}/<integer>/model.onnx)")]
    NoVersions(String),
    #[error("model `{name}` version {version} does not load: {reason}")]
    Load {
        name: String,
        version: u64,
        reason: String,
    },
}

/// A model folder: `<dir>/model.toml`, `<dir>/<version>/model.onnx`, `<dir>/test.csv`.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<ModelDir, ModelDirError> {
        let shown = dir.display().to_string();
        let dir = dir
            .canonicalize()
            .map_err(|e| ModelDirError::NotAFolder(shown.clone(), e.to_string()))?;
        if !dir.is_dir() {
            return Err(ModelDirError::NotAFolder(shown, "not a directory".into()));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| ModelDirError::NotAFolder(shown, "no folder name".into()))?;
        let manifest = Manifest::read_optional(&dir.join("model.toml"))
            .map_err(|e| ModelDirError::Manifest(e.to_string()))?;
        Ok(ModelDir {
            name,
            dir,
            manifest,
        })
    }

    pub fn test_set(&self) -> PathBuf {
        self.dir.join("test.csv")
    }

    /// Where the metrics of the version in production are kept.
    pub fn production_record(&self) -> PathBuf {
        self.dir.join("production.toml")
    }

    /// Stages this folder as a one-model repository.
    pub fn stage(&self) -> Result<Staging, ModelDirError> {
        Staging::new(self)
    }

    /// Loads the highest version with the server's repository code. The
    /// highest version must load: an older one that does is no excuse.
    pub fn load_latest(&self) -> Result<Arc<LoadedModel>, ModelDirError> {
        let staging = self.stage()?;
        let repository = ModelRepository::load(&[ModelSource::Repository(staging.root.clone())])
            .map_err(|e| ModelDirError::Repository(e.to_string()))?;
        let entry = repository
            .entry(&self.name)
            .map_err(|_| ModelDirError::NoVersions(self.name.clone()))?;
        match entry.versions.last_key_value() {
            Some((_, VersionState::Ready(model))) => Ok(model.clone()),
            Some((&version, VersionState::Failed(reason))) => Err(ModelDirError::Load {
                name: self.name.clone(),
                version,
                reason: reason.clone(),
            }),
            None => Err(ModelDirError::NoVersions(self.name.clone())),
        }
    }
}

/// A temporary repository holding one model folder (a symlink to it),
/// removed when dropped.
#[derive(Debug)]
pub struct Staging {
    pub root: PathBuf,
}

impl Staging {
    fn new(model: &ModelDir) -> Result<Staging, ModelDirError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "deployer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let fail = |e| ModelDirError::Stage(model.dir.display().to_string(), e);
        std::fs::create_dir_all(&root).map_err(fail)?;
        let staging = Staging { root };
        std::os::unix::fs::symlink(&model.dir, staging.root.join(&model.name)).map_err(fail)?;
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

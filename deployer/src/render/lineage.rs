//! What a release serves, read from the model's folder: name, version, the
//! model file's sha256 and the training data's (from model.toml).

use std::path::{Path, PathBuf};

use serve::model::Manifest;
use sha2::{Digest, Sha256};

use super::Error;

#[derive(Debug, Clone)]
pub struct Lineage {
    pub name: String,
    pub version: u32,
    pub model_sha256: String,
    pub training_data_sha256: String,
}

impl Lineage {
    /// `dir` is `models/<name>`; `version` defaults to the highest
    /// `<version>/model.onnx` there.
    pub fn read(dir: &Path, version: Option<u32>) -> Result<Self, Error> {
        let model_err = |path: PathBuf, message: String| Error::Model { path, message };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| model_err(dir.to_owned(), "not a model folder".into()))?;
        let version = match version {
            Some(v) => v,
            None => highest_version(dir)?,
        };
        let model = dir.join(version.to_string()).join("model.onnx");
        let bytes = std::fs::read(&model).map_err(|source| Error::Io {
            path: model.clone(),
            source,
        })?;
        // model.toml as the server reads it.
        let toml_path = dir.join("model.toml");
        let manifest = Manifest::read_optional(&toml_path)
            .map_err(|e| model_err(toml_path.clone(), e.to_string()))?;
        let training_data_sha256 = manifest
            .lineage
            .get("training_data_sha256")
            .cloned()
            .ok_or_else(|| {
                model_err(
                    toml_path,
                    "no [lineage] training_data_sha256: a release must say what it was trained on"
                        .into(),
                )
            })?;
        Ok(Self {
            name,
            version,
            model_sha256: format!("{:x}", Sha256::digest(&bytes)),
            training_data_sha256,
        })
    }
}

fn highest_version(dir: &Path) -> Result<u32, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    entries
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or_else(|| Error::Model {
            path: dir.to_owned(),
            message: "no <version>/model.onnx here".into(),
        })
}

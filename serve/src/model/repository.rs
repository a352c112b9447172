//! The model repository: named models, each with integer versions, loaded
//! once at start-up. A version that fails to load is kept with its reason so
//! readiness and metadata can say what is wrong, while the rest serve.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::loader::{panic_message, LoadError, LoadedModel};
use super::manifest::Manifest;
use crate::ServeError;

const MODEL_FILE: &str = "model.onnx";
const MANIFEST_FILE: &str = "model.toml";

/// Where models come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// `DIR/<name>/<version>/model.onnx` with optional `DIR/<name>/model.toml`.
    Repository(PathBuf),
    /// One ONNX file served as version 1; named after the file unless given.
    File { path: PathBuf, name: Option<String> },
}

impl ModelSource {
    /// Parses `PATH[:NAME]`.
    pub fn file_spec(spec: &str) -> ModelSource {
        match spec.rsplit_once(':') {
            Some((path, name)) if !name.is_empty() && !name.contains('/') => ModelSource::File {
                path: path.into(),
                name: Some(name.into()),
            },
            _ => ModelSource::File {
                path: spec.into(),
                name: None,
            },
        }
    }
}

/// The load outcome of one version.
#[derive(Debug, Clone)]
pub enum VersionState {
    Ready(Arc<LoadedModel>),
    Failed(String),
}

/// A named model and its versions.
#[derive(Debug)]
pub struct ModelEntry {
    pub name: String,
    pub manifest: Arc<Manifest>,
    pub versions: BTreeMap<u64, VersionState>,
}

impl ModelEntry {
    /// The highest version that loaded.
    pub fn latest_ready(&self) -> Option<&Arc<LoadedModel>> {
        self.versions.values().rev().find_map(|v| match v {
            VersionState::Ready(m) => Some(m),
            VersionState::Failed(_) => None,
        })
    }

    /// Why no version is ready (the newest failure), for error messages.
    pub fn failure(&self) -> String {
        self.versions
            .iter()
            .rev()
            .find_map(|(v, s)| match s {
                VersionState::Failed(reason) => Some(format!("version {v}: {reason}")),
                VersionState::Ready(_) => None,
            })
            .unwrap_or_else(|| "no versions found".to_string())
    }
}

/// Every model the server knows, by name.
#[derive(Debug, Default)]
pub struct ModelRepository {
    models: BTreeMap<String, ModelEntry>,
}

/// A version to load: (model name, version, ONNX path, manifest).
type Job = (String, u64, PathBuf, Arc<Manifest>);

impl ModelRepository {
    /// Discovers and loads every model in `sources`. Fails only when a source
    /// cannot be read at all or two models share a name; a model that fails
    /// to load is recorded as failed.
    pub fn load(sources: &[ModelSource]) -> Result<ModelRepository, LoadError> {
        let mut repo = ModelRepository::default();
        let mut jobs: Vec<Job> = Vec::new();
        for source in sources {
            for (name, manifest, versions) in discover(source)? {
                if repo.models.contains_key(&name) {
                    return Err(LoadError::Repository(format!(
                        "two models are named `{name}`"
                    )));
                }
                let mut entry = ModelEntry {
                    name: name.clone(),
                    manifest: manifest.clone(),
                    versions: BTreeMap::new(),
                };
                match versions {
                    Ok(versions) => {
                        for (version, path) in versions {
                            jobs.push((name.clone(), version, path, manifest.clone()));
                        }
                    }
                    Err(reason) => {
                        entry.versions.insert(1, VersionState::Failed(reason));
                    }
                }
                repo.models.insert(name, entry);
            }
        }
        for ((name, version, _, _), state) in jobs.iter().zip(load_all(&jobs)) {
            if let Some(entry) = repo.models.get_mut(name) {
                entry.versions.insert(*version, state);
            }
        }
        Ok(repo)
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    pub fn entry(&self, name: &str) -> Result<&ModelEntry, ServeError> {
        self.models
            .get(name)
            .ok_or_else(|| ServeError::ModelNotFound(name.to_string()))
    }

    /// The model to serve for `name` and an optional `version` (the highest
    /// ready version when none is given).
    pub fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<LoadedModel>, ServeError> {
        let entry = self.entry(name)?;
        let not_ready = |reason: String| ServeError::ModelNotReady {
            model: name.to_string(),
            reason,
        };
        match version {
            None => entry
                .latest_ready()
                .cloned()
                .ok_or_else(|| not_ready(entry.failure())),
            Some(text) => {
                let missing = || ServeError::VersionNotFound {
                    model: name.to_string(),
                    version: text.to_string(),
                };
                let number: u64 = text.parse().map_err(|_| missing())?;
                match entry.versions.get(&number).ok_or_else(missing)? {
                    VersionState::Ready(model) => Ok(model.clone()),
                    VersionState::Failed(reason) => {
                        Err(not_ready(format!("version {number}: {reason}")))
                    }
                }
            }
        }
    }

    /// True when at least one model version can serve.
    pub fn any_ready(&self) -> bool {
        self.models.values().any(|m| m.latest_ready().is_some())
    }
}

/// One discovered model: name, manifest, and its versions or why none could be listed.
type Discovered = (String, Arc<Manifest>, Result<Vec<(u64, PathBuf)>, String>);

fn discover(source: &ModelSource) -> Result<Vec<Discovered>, LoadError> {
    match source {
        ModelSource::File { path, name } => {
            let name = match name {
                Some(name) => name.clone(),
                None => path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        LoadError::Repository(format!("{} names no file", path.display()))
                    })?,
            };
            let manifest_path = path.with_file_name(MANIFEST_FILE);
            let (manifest, versions) = match Manifest::read_optional(&manifest_path) {
                Ok(m) => (m, Ok(vec![(1, path.clone())])),
                Err(e) => (Manifest::default(), Err(e.to_string())),
            };
            Ok(vec![(name, Arc::new(manifest), versions)])
        }
        ModelSource::Repository(dir) => {
            let read_error = |e: std::io::Error| {
                LoadError::Repository(format!(
                    "cannot read model repository {}: {e}",
                    dir.display()
                ))
            };
            let mut found = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(read_error)? {
                let path = entry.map_err(read_error)?.path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !path.is_dir() || name.starts_with('.') {
                    continue;
                }
                let versions = version_dirs(&path);
                let has_manifest = path.join(MANIFEST_FILE).is_file();
                // Folders with neither versions nor a manifest (scripts, data) are not models.
                if versions.is_empty() && !has_manifest {
                    continue;
                }
                let (manifest, versions) = match Manifest::read_optional(&path.join(MANIFEST_FILE))
                {
                    Ok(_) if versions.is_empty() => (
                        Manifest::default(),
                        Err(format!("no version folders in {}", path.display())),
                    ),
                    Ok(m) => (m, Ok(versions)),
                    Err(e) => (Manifest::default(), Err(e.to_string())),
                };
                found.push((name, Arc::new(manifest), versions));
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(found)
        }
    }
}

/// `<model>/<integer>/model.onnx` entries, by version.
fn version_dirs(model_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(model_dir) else {
        return Vec::new();
    };
    let mut versions: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u64>().ok()?;
            Some((version, e.path().join(MODEL_FILE)))
        })
        .collect();
    versions.sort();
    versions
}

/// Loads every job, spread over the available cores.
fn load_all(jobs: &[Job]) -> Vec<VersionState> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let states = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let ix = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(ix) else { break };
                let state = load_one(job);
                states.lock().unwrap_or_else(|e| e.into_inner())[ix] = Some(state);
            });
        }
    });
    let states = states.into_inner().unwrap_or_else(|e| e.into_inner());
    states
        .into_iter()
        .map(|s| s.unwrap_or_else(|| VersionState::Failed("not loaded".into())))
        .collect()
}

fn load_one((name, version, path, manifest): &Job) -> VersionState {
    // tract may panic on a malformed graph; one bad file must not stop the server.
    let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        LoadedModel::load(name, *version, path, manifest.clone())
    }))
    .unwrap_or_else(|panic| {
        Err(LoadError::Tract(format!(
            "the loader panicked: {}",
            panic_message(&panic)
        )))
    });
    match loaded {
        Ok(model) => {
            tracing::info!(
                model = %name, version, sha256 = %model.sha256,
                load_ms = model.load_time.as_millis() as u64, "model ready"
            );
            VersionState::Ready(Arc::new(model))
        }
        Err(e) => {
            tracing::error!(model = %name, version, error = %e, "model failed to load");
            VersionState::Failed(e.to_string())
        }
    }
}

//! `deployer infra`: the Azure resources modelops runs on, as ARM templates
//! (`infra/templates/NAME.json`) with one parameter file each
//! (`infra/parameters/NAME.parameters.json`, `${NAME}` values filled by
//! `--set`). `render` fills the parameter files; `validate` checks templates
//! and filled parameters offline (see `arm`). Knows nothing of Kubernetes.

mod arm;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::template::{self, Values};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error(transparent)]
    Template(#[from] template::Error),
    #[error("{dir}: no templates (*.json)")]
    NoTemplates { dir: PathBuf },
    #[error("{} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder with templates/ and parameters/.
    #[arg(long, env = "MODELOPS_INFRA_DIR", default_value = "infra")]
    pub infra_dir: PathBuf,

    #[command(flatten)]
    pub values: template::SetArgs,
}

/// A template and its filled parameter file.
pub struct Deployment {
    pub name: String,
    pub template: Value,
    pub parameters: Value,
}

/// Every template with its parameter file filled in.
pub fn render(args: &Args) -> Result<Vec<Deployment>, Error> {
    let values = Values::new(Default::default(), &args.values.set)?;
    let templates = args.infra_dir.join("templates");
    let mut names: Vec<String> = std::fs::read_dir(&templates)
        .map_err(|source| Error::Io {
            path: templates.clone(),
            source,
        })?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .collect();
    if names.is_empty() {
        return Err(Error::NoTemplates { dir: templates });
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let template = json(&templates.join(format!("{name}.json")), None)?;
            let parameters_path = args
                .infra_dir
                .join("parameters")
                .join(format!("{name}.parameters.json"));
            let parameters = json(&parameters_path, Some(&values))?;
            Ok(Deployment {
                name,
                template,
                parameters,
            })
        })
        .collect()
}

/// The problems of every template and parameter file, all at once.
pub fn validate(deployments: &[Deployment]) -> Result<(), Error> {
    let problems: Vec<String> = deployments
        .iter()
        .flat_map(|d| {
            let template = arm::check_template(&d.template);
            let parameters = arm::check_parameters(&d.template, &d.parameters);
            template
                .into_iter()
                .map(|p| format!("templates/{}.json: {p}", d.name))
                .chain(
                    parameters
                        .into_iter()
                        .map(|p| format!("parameters/{}.parameters.json: {p}", d.name)),
                )
                .collect::<Vec<_>>()
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Writes `NAME.parameters.json` for each deployment into `dir`.
pub fn write_parameters(deployments: &[Deployment], dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for d in deployments {
        let text = serde_json::to_string_pretty(&d.parameters).expect("a JSON value serialises");
        std::fs::write(dir.join(format!("{}.parameters.json", d.name)), text + "\n").map_err(io)?;
    }
    Ok(())
}

fn json(path: &Path, values: Option<&Values>) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = match values {
        Some(values) => values.substitute(&text, path)?,
        None => text,
    };
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

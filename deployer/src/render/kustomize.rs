//! The kustomize subset `k8s/` uses: a `kustomization.yaml` lists
//! `resources` (files, or folders with their own kustomization) and
//! `patches` (`- path: FILE`), each patch a strategic merge onto the object
//! of the same kind and name. Manifests go through `${NAME}` substitution
//! before they are parsed.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::Error;
use crate::template::Values;

/// Unknown fields are errors: a kustomize feature this subset lacks must
/// not be silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kustomization {
    #[serde(rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    _kind: Option<IgnoredAny>,
    #[serde(default)]
    resources: Vec<PathBuf>,
    #[serde(default)]
    patches: Vec<Patch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    path: PathBuf,
}

/// The objects of the kustomization in `dir`, patches applied.
pub fn build(dir: &Path, values: &Values) -> Result<Vec<Value>, Error> {
    let path = dir.join("kustomization.yaml");
    let text = read(&path)?;
    let kustomization: Kustomization =
        serde_norway::from_str(&text).map_err(|e| Error::Kustomization {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let mut objects = Vec::new();
    for resource in &kustomization.resources {
        let resource = dir.join(resource);
        if resource.is_dir() {
            objects.extend(build(&resource, values)?);
        } else {
            objects.extend(documents(&resource, values)?);
        }
    }
    for patch in &kustomization.patches {
        let path = dir.join(&patch.path);
        for patch in documents(&path, values)? {
            let (kind, name) = (&patch["kind"], &patch["metadata"]["name"]);
            let target = objects
                .iter_mut()
                .find(|o| &o["kind"] == kind && &o["metadata"]["name"] == name)
                .ok_or_else(|| Error::PatchTarget {
                    path: path.clone(),
                    kind: kind.as_str().unwrap_or("?").to_owned(),
                    name: name.as_str().unwrap_or("?").to_owned(),
                })?;
            merge(target, patch);
        }
    }
    Ok(objects)
}

/// The YAML documents of a manifest file, after substitution; each must be
/// an object with a kind and a name.
fn documents(path: &Path, values: &Values) -> Result<Vec<Value>, Error> {
    let text = values.substitute(&read(path)?, path)?;
    let yaml_err = |message: String| Error::Yaml {
        path: path.to_owned(),
        message,
    };
    let mut out = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| yaml_err(e.to_string()))?;
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        if !value["kind"].is_string() || !value["metadata"]["name"].is_string() {
            return Err(yaml_err(
                "a manifest needs `kind` and `metadata.name`".into(),
            ));
        }
        out.push(value);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Strategic merge, as far as these manifests need it: maps merge key by
/// key, `null` deletes, lists of named objects (containers, env, ports,
/// volumes) merge item by `name`, anything else is replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else if let Some(existing) = target.get_mut(&key) {
                    merge(existing, value);
                } else {
                    target.insert(key, value);
                }
            }
        }
        (Value::Array(target), Value::Array(patch))
            if patch.iter().all(|i| i["name"].is_string()) =>
        {
            for item in patch {
                match target.iter_mut().find(|t| t["name"] == item["name"]) {
                    Some(existing) => merge(existing, item),
                    None => target.push(item),
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_strategic_for_named_lists_and_deletes_nulls() {
        let mut target = json!({
            "spec": {"containers": [
                {"name": "serve", "image": "a", "env": [{"name": "X", "value": "1"}], "lifecycle": {"preStop": {}}},
                {"name": "side", "image": "b"}
            ], "args": ["--a", "--b"]}
        });
        merge(
            &mut target,
            json!({"spec": {"containers": [
                {"name": "serve", "env": [{"name": "Y", "value": "2"}], "lifecycle": null}
            ], "args": ["--c"]}}),
        );
        assert_eq!(
            target,
            json!({"spec": {"containers": [
                {"name": "serve", "image": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "side", "image": "b"}
            ], "args": ["--c"]}})
        );
    }
}

//! `${NAME}` templates, shared by `render` (Kubernetes manifests) and
//! `infra` (ARM parameter files). Values are substituted as text, so the
//! template decides each value's type (quoted or not); a value must be
//! plain enough that this cannot change the document's structure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}: ${{{name}}} has no value (give it with --set {name}=VALUE)")]
    MissingValue {
        path: PathBuf,
        line: usize,
        name: String,
    },
    #[error("{flag}: {message}")]
    BadValue { flag: String, message: String },
}

/// `--set KEY=VALUE`: template values the command does not compute.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// A template value, `KEY=VALUE` (repeatable; comma-separated in the
    /// environment variable): COSMOS_ENDPOINT for the aks overlay, PREFIX
    /// and LOCATION for the infra parameter files.
    #[arg(
        long = "set",
        env = "MODELOPS_SET",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub set: Vec<String>,
}

/// Template values by name.
#[derive(Debug, Default)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    /// Values computed by the caller, then `--set KEY=VALUE` pairs, which
    /// may not override computed ones.
    pub fn new(computed: BTreeMap<String, String>, set: &[String]) -> Result<Self, Error> {
        let mut values = computed;
        for pair in set {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(bad("--set", format!("`{pair}` is not KEY=VALUE")));
            };
            if !is_name(key) {
                return Err(bad(
                    "--set",
                    format!("`{key}` is not a value name (A-Z, 0-9, _)"),
                ));
            }
            if values.contains_key(key) {
                return Err(bad(
                    "--set",
                    format!("{key} is computed by deployer; use its own flag"),
                ));
            }
            values.insert(key.to_owned(), value.to_owned());
        }
        for (key, value) in &values {
            if let Some(c) = value
                .chars()
                .find(|c| c.is_control() || matches!(c, '"' | '\\'))
            {
                return Err(bad(
                    key,
                    format!("the value holds {c:?}, which templates cannot quote"),
                ));
            }
        }
        Ok(Self(values))
    }

    /// `text` with every `${NAME}` replaced; a name without a value is an
    /// error naming the file and line. `${` not followed by a name and `}`
    /// is left alone.
    pub fn substitute(&self, text: &str, path: &Path) -> Result<String, Error> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after
                .find('}')
                .map(|end| &after[..end])
                .filter(|n| is_name(n))
            {
                Some(name) => {
                    let offset = text.len() - rest.len() + start;
                    let value = self.0.get(name).ok_or_else(|| Error::MissingValue {
                        path: path.to_owned(),
                        line: text[..offset].matches('\n').count() + 1,
                        name: name.to_owned(),
                    })?;
                    out.push_str(value);
                    rest = &after[name.len() + 1..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

pub fn bad(flag: &str, message: String) -> Error {
    Error::BadValue {
        flag: flag.to_owned(),
        message,
    }
}

fn is_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[&str]) -> Values {
        let set: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
        Values::new(BTreeMap::new(), &set).unwrap()
    }

    #[test]
    fn substitutes_names_and_leaves_other_dollars() {
        let v = values(&["A=1", "B_2=two"]);
        let out = v
            .substitute("x: ${A}\ny: \"${B_2}\" ${lower} $A ${", Path::new("f"))
            .unwrap();
        assert_eq!(out, "x: 1\ny: \"two\" ${lower} $A ${");
    }

    #[test]
    fn a_missing_value_names_file_and_line() {
        let err = values(&["A=1"])
            .substitute("a: ${A}\nb: 2\n${NOPE}: c\n", Path::new("k8s/x.yaml"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "k8s/x.yaml:3: ${NOPE} has no value (give it with --set NOPE=VALUE)"
        );
    }

    #[test]
    fn set_rejects_overrides_bad_names_and_unquotable_values() {
        let computed: BTreeMap<_, _> = [("IMAGE".to_string(), "x".to_string())].into();
        let err = |set: &str| {
            Values::new(computed.clone(), &[set.to_string()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("IMAGE=y"),
            "--set: IMAGE is computed by deployer; use its own flag"
        );
        assert_eq!(
            err("lower=y"),
            "--set: `lower` is not a value name (A-Z, 0-9, _)"
        );
        assert_eq!(err("NOEQUALS"), "--set: `NOEQUALS` is not KEY=VALUE");
        assert_eq!(
            err("A=x\"y"),
            "A: the value holds '\"', which templates cannot quote"
        );
    }
}

//! Registry credentials: a user and password (or token) from the
//! environment, else the registry's entry in a Docker `config.json`, else
//! anonymous. Secrets never appear in messages.

use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::PushError;

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Where a Docker config lives: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_docker_config() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|dir| dir.join("config.json"))
}

/// The credentials to use for `registry` (host[:port]).
pub fn resolve(
    registry: &str,
    username: Option<&str>,
    password: Option<&str>,
    docker_config: Option<&Path>,
) -> Result<(RegistryAuth, String), PushError> {
    match (username, password) {
        (Some(user), Some(password)) => {
            return Ok((
                RegistryAuth::Basic(user.into(), password.into()),
                format!("user `{user}` from the environment"),
            ))
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(PushError::Credentials(
                "set both DEPLOYER_REGISTRY_USERNAME and DEPLOYER_REGISTRY_PASSWORD, or neither"
                    .into(),
            ))
        }
        (None, None) => {}
    }
    let Some(path) = docker_config.filter(|p| p.is_file()) else {
        return Ok((RegistryAuth::Anonymous, "anonymous".into()));
    };
    let bad = |reason: String| PushError::Credentials(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    // Keys may be `host`, `https://host` or `https://host/v1/`.
    let entry = config.auths.iter().find(|(key, _)| {
        let host = key.split("://").last().unwrap_or(key);
        host.split('/').next() == Some(registry)
    });
    let from = format!("{} (registry {registry})", path.display());
    match entry {
        Some((_, auth)) => {
            if let (Some(user), Some(password)) = (&auth.username, &auth.password) {
                return Ok((RegistryAuth::Basic(user.clone(), password.clone()), from));
            }
            if let Some(encoded) = &auth.auth {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "the `auth` of {registry} is not base64 of user:password"
                        ))
                    })?;
                let (user, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| bad(format!("the `auth` of {registry} is not user:password")))?;
                return Ok((RegistryAuth::Basic(user.into(), password.into()), from));
            }
            if auth.identitytoken.is_some() {
                return Err(bad(format!(
                    "{registry} has only an identity token (OAuth2 refresh token), which is not \
                     supported: use a registry token or admin user in DEPLOYER_REGISTRY_USERNAME/PASSWORD"
                )));
            }
            Err(bad(format!("the entry of {registry} holds no credentials")))
        }
        None => {
            let helper = config
                .cred_helpers
                .get(registry)
                .or(config.creds_store.as_ref());
            match helper {
                Some(helper) => Err(bad(format!(
                    "{registry} uses the credential helper `{helper}`, which is not supported: \
                     set DEPLOYER_REGISTRY_USERNAME/PASSWORD"
                ))),
                None => Ok((RegistryAuth::Anonymous, "anonymous".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "deployer-auth-{}-{}.json",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn basic(auth: RegistryAuth) -> (String, String) {
        match auth {
            RegistryAuth::Basic(u, p) => (u, p),
            _ => panic!("not basic"),
        }
    }

    #[test]
    fn docker_config_entries_are_matched_by_host() {
        // "alice:s3cret" in base64.
        let path =
            config(r#"{"auths": {"https://reg.example:5000/v1/": {"auth": "YWxpY2U6czNjcmV0"}}}"#);
        let (auth, from) = resolve("reg.example:5000", None, None, Some(&path)).unwrap();
        assert_eq!(basic(auth), ("alice".into(), "s3cret".into()));
        assert!(!from.contains("s3cret"));
        let (auth, _) = resolve("other.example", None, None, Some(&path)).unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_environment_wins_and_must_be_complete() {
        let (auth, _) = resolve("r", Some("u"), Some("p"), None).unwrap();
        assert_eq!(basic(auth), ("u".into(), "p".into()));
        let err = resolve("r", Some("u"), None, None).unwrap_err();
        assert!(err.to_string().contains("DEPLOYER_REGISTRY_PASSWORD"));
    }

    #[test]
    fn credential_helpers_are_reported() {
        let path = config(r#"{"auths": {}, "credsStore": "desktop"}"#);
        let err = resolve("r.example", None, None, Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("credential helper `desktop`"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }
}

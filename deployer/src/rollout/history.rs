//! A Deployment's revisions (its ReplicaSets, numbered by the controller's
//! `deployment.kubernetes.io/revision`) and `undo`, as `kubectl rollout
//! undo` does it: the previous revision's pod template and annotations go
//! back into the Deployment, and the controller scales that ReplicaSet up.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, PostParams};
use kube::Api;

use super::{cluster, Error};

pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// The controller's bookkeeping on a ReplicaSet, which must not be copied
/// back into the Deployment.
const NOT_COPIED: [&str; 4] = [
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
];

pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> Option<u64> {
    annotations?.get(REVISION)?.parse().ok()
}

/// The Deployment's ReplicaSets, newest revision first.
pub async fn revisions(
    client: &kube::Client,
    deployment: &Deployment,
) -> Result<Vec<ReplicaSet>, Error> {
    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let uid = deployment.metadata.uid.as_deref();
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| cluster::describe(e, &format!("list the ReplicaSets of Deployment {name}")))?;
    let mut owned: Vec<ReplicaSet> = list
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .collect();
    owned.sort_by_key(|rs| std::cmp::Reverse(revision(rs.metadata.annotations.as_ref())));
    Ok(owned)
}

/// Puts the revision before the current one back; returns its number (the
/// controller gives it a new, highest number once it observes the change).
pub async fn undo(client: &kube::Client, api: &Api<Deployment>, name: &str) -> Result<u64, Error> {
    let mut deployment = api
        .get(name)
        .await
        .map_err(|e| cluster::describe(e, &format!("read Deployment {name}")))?;
    let current = revision(deployment.metadata.annotations.as_ref()).unwrap_or(0);
    let previous = revisions(client, &deployment)
        .await?
        .into_iter()
        .find(|rs| revision(rs.metadata.annotations.as_ref()).is_some_and(|r| r < current))
        .ok_or_else(|| Error::NoPreviousRevision {
            name: name.to_owned(),
            current,
        })?;
    let number = revision(previous.metadata.annotations.as_ref()).unwrap_or_default();
    let mut template = previous
        .spec
        .and_then(|s| s.template)
        .ok_or_else(|| Error::Kube {
            doing: format!("read revision {number} of Deployment {name}"),
            message: "its ReplicaSet has no pod template".into(),
        })?;
    // The controller adds this label to its ReplicaSets' templates only.
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let spec = deployment
        .spec
        .as_mut()
        .expect("a Deployment read from the server has a spec");
    spec.template = template;
    let annotations = deployment
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in previous.metadata.annotations.into_iter().flatten() {
        if !NOT_COPIED.contains(&key.as_str()) {
            annotations.insert(key, value);
        }
    }
    // A replace carries the resourceVersion read above: if anyone changed the
    // Deployment since, the server refuses (409) instead of losing a change.
    api.replace(
        name,
        &PostParams {
            field_manager: Some("deployer".into()),
            ..Default::default()
        },
        &deployment,
    )
    .await
    .map_err(|e| cluster::describe(e, &format!("roll back Deployment {name}")))?;
    Ok(number)
}

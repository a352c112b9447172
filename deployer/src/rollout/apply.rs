//! Server-side apply of rendered objects (field manager `deployer`), after
//! asking the server which kinds it serves: an object of a kind it does not
//! serve (an `autoscaling/v2` HPA on a 1.20 server) is skipped and named,
//! the rest still applied.

use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client};
use serde_json::Value;

use super::{cluster, Error};

pub const FIELD_MANAGER: &str = "deployer";

/// What was applied, by `Kind/name`, and what the server cannot serve.
#[derive(Debug, Default)]
pub struct Applied {
    pub deployments: Vec<String>,
    pub skipped: Vec<String>,
}

pub async fn apply(client: &Client, namespace: &str, objects: &[Value]) -> Result<Applied, Error> {
    let typed: Vec<(GroupVersionKind, DynamicObject)> = objects
        .iter()
        .map(|o| {
            let object: DynamicObject =
                serde_json::from_value(o.clone()).map_err(|e| Error::Manifest(e.to_string()))?;
            let types = object
                .types
                .as_ref()
                .ok_or_else(|| Error::Manifest("an object without apiVersion/kind".into()))?;
            let gvk =
                GroupVersionKind::try_from(types).map_err(|e| Error::Manifest(e.to_string()))?;
            Ok((gvk, object))
        })
        .collect::<Result<_, Error>>()?;
    let mut groups: Vec<&str> = typed.iter().map(|(gvk, _)| gvk.group.as_str()).collect();
    groups.sort();
    groups.dedup();
    let discovery = Discovery::new(client.clone())
        .filter(&groups)
        .run()
        .await
        .map_err(|e| cluster::describe(e, "discover the server's API groups"))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Applied::default();
    for (gvk, object) in &typed {
        let name = object.metadata.name.clone().unwrap_or_default();
        let id = format!("{}/{name}", gvk.kind);
        let Some((resource, capabilities)) = discovery.resolve_gvk(gvk) else {
            let api_version = object
                .types
                .as_ref()
                .map(|t| t.api_version.as_str())
                .unwrap_or_default();
            eprintln!(
                "skipped {id}: the server does not serve {api_version} {}",
                gvk.kind
            );
            applied.skipped.push(id);
            continue;
        };
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| cluster::describe(e, &format!("apply {id} in namespace {namespace}")))?;
        eprintln!("applied {id}");
        if gvk.group == "apps" && gvk.kind == "Deployment" {
            applied.deployments.push(name);
        }
    }
    Ok(applied)
}

//! Waiting for a Deployment as `kubectl rollout status` does: the
//! controller must have observed the latest spec, then every replica must be
//! updated, no old replica left, and every updated replica available. The
//! controller's `ProgressDeadlineExceeded` condition is a failure.

use std::time::Duration;

use futures_util::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::watch_object;
use kube::Api;

use super::{cluster, Error};

/// Where a rollout stands, with kubectl's wording.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Waiting(String),
    Done,
    Failed(String),
}

pub fn evaluate(deployment: &Deployment) -> Progress {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or_default();
    if status.observed_generation.unwrap_or_default() < generation {
        return Progress::Waiting("waiting for the deployment spec update to be observed".into());
    }
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    if let Some(c) = progressing.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        return Progress::Failed(format!(
            "deployment {name:?} exceeded its progress deadline: {}",
            c.message.as_deref().unwrap_or_default()
        ));
    }
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas);
    let updated = status.updated_replicas.unwrap_or_default();
    let replicas = status.replicas.unwrap_or_default();
    let available = status.available_replicas.unwrap_or_default();
    if let Some(desired) = desired.filter(|d| updated < *d) {
        return Progress::Waiting(format!(
            "{updated} out of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Progress::Done
}

/// Watches `name` until it has rolled out, failed, or `timeout` passed;
/// prints each new state.
pub async fn wait(api: &Api<Deployment>, name: &str, timeout: Duration) -> Result<(), Error> {
    let watch = async {
        let mut last = String::new();
        let mut events = std::pin::pin!(watch_object(api.clone(), name));
        while let Some(event) = events.try_next().await.map_err(|e| Error::Watch {
            name: name.to_owned(),
            message: e.to_string(),
        })? {
            let Some(deployment) = event else {
                return Err(Error::NotFound {
                    what: format!("Deployment {name}"),
                });
            };
            match evaluate(&deployment) {
                Progress::Waiting(message) if message != last => {
                    eprintln!("Waiting for deployment {name:?} rollout to finish: {message}");
                    last = message;
                }
                Progress::Waiting(_) => {}
                Progress::Done => {
                    eprintln!("deployment {name:?} successfully rolled out");
                    return Ok(());
                }
                Progress::Failed(reason) => return Err(Error::Failed { reason }),
            }
        }
        Err(Error::Watch {
            name: name.to_owned(),
            message: "the watch ended".into(),
        })
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(result) => result,
        Err(_) => Err(Error::Failed {
            reason: format!(
                "deployment {name:?} did not finish rolling out within {}s",
                timeout.as_secs()
            ),
        }),
    }
}

/// The Deployment, or None when there is none yet.
pub async fn current(api: &Api<Deployment>, name: &str) -> Result<Option<Deployment>, Error> {
    api.get_opt(name)
        .await
        .map_err(|e| cluster::describe(e, &format!("read Deployment {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, observed: i64, desired: i32, counts: [i32; 3]) -> Deployment {
        let [replicas, updated, available] = counts;
        Deployment {
            metadata: kube::api::ObjectMeta {
                name: Some("d".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn follows_kubectl_rollout_status() {
        let waiting = |s: &str| Progress::Waiting(s.into());
        assert_eq!(
            evaluate(&deployment(2, 1, 2, [2, 2, 2])),
            waiting("waiting for the deployment spec update to be observed")
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 2, [3, 1, 2])),
            waiting("1 out of 2 new replicas have been updated")
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 2, [3, 2, 2])),
            waiting("1 old replicas are pending termination")
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 2, [2, 2, 1])),
            waiting("1 of 2 updated replicas are available")
        );
        assert_eq!(evaluate(&deployment(2, 2, 2, [2, 2, 2])), Progress::Done);
    }

    #[test]
    fn progress_deadline_is_a_failure() {
        let mut d = deployment(2, 2, 2, [3, 1, 2]);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"d-1\" has timed out progressing.".into()),
            ..Default::default()
        }]);
        assert_eq!(
            evaluate(&d),
            Progress::Failed(
                "deployment \"d\" exceeded its progress deadline: ReplicaSet \"d-1\" has timed out progressing."
                    .into()
            )
        );
    }
}

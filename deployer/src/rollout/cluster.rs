//! Connecting to a cluster (kubeconfig as kubectl loads it: `KUBECONFIG`,
//! `~/.kube/config`, in-cluster; `--context`) and turning the client's
//! errors into messages an operator can act on.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::Error;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig context (default: the current one; KUBECONFIG and
    /// in-cluster service accounts are honoured as kubectl does).
    #[arg(long, env = "MODELOPS_KUBE_CONTEXT")]
    pub context: Option<String>,
}

/// Picks rustls' crypto provider for the process. Needed once the build
/// enables more than one (the workspace's Cosmos DB client brings
/// aws-lc-rs, kube here ring): rustls then refuses to guess and kube's
/// client would panic. Installing twice is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the cluster, after checking that the server answers (so an
/// unreachable cluster is reported as such, before anything else).
pub async fn connect(args: &ClusterArgs) -> Result<Client, Error> {
    install_tls_provider();
    let config = match &args.context {
        Some(context) => {
            let kubeconfig = Kubeconfig::read().map_err(|e| Error::Config(e.to_string()))?;
            if !kubeconfig.contexts.iter().any(|c| &c.name == context) {
                let known: Vec<&str> = kubeconfig
                    .contexts
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(Error::Config(format!(
                    "no context `{context}` in the kubeconfig (it has: {})",
                    known.join(", ")
                )));
            }
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    client
        .apiserver_version()
        .await
        .map_err(|e| describe(e, &format!("reach the Kubernetes API server at {url}")))?;
    Ok(client)
}

/// What a failed call means for whoever runs `deployer`; `doing` says what
/// was attempted ("patch Deployment/x in namespace y").
pub fn describe(error: kube::Error, doing: &str) -> Error {
    match error {
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            doing: doing.to_owned(),
            message: status.message,
        },
        kube::Error::Api(status) if status.code == 401 => Error::Unauthorized {
            doing: doing.to_owned(),
            message: status.message,
        },
        kube::Error::Api(status) => Error::Api {
            doing: doing.to_owned(),
            code: status.code,
            message: status.message,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
            doing: doing.to_owned(),
            message: error_chain(&error),
        },
        other => Error::Kube {
            doing: doing.to_owned(),
            message: error_chain(&other),
        },
    }
}

/// The error and its causes on one line ("connection refused" sits deep in
/// a client error).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = e.source();
    }
    message
}

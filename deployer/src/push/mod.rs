//! `deployer push`: an OCI image layout to a registry with oci-client,
//! digests unchanged (blobs and the manifest go up as the bytes `package`
//! wrote). Every blob is uploaded, or found already there, and confirmed
//! before the manifest that references them is pushed, last; then the
//! registry's manifest digest is checked against ours. A failed push leaves
//! at most unreferenced blobs, which the registry's garbage collection removes.

mod auth;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use thiserror::Error;

use crate::package::image::MANIFEST_MEDIA_TYPE;
use crate::package::layout::{self, LayoutError, StoredImage};
use crate::progress::{human_bytes, Step};

#[derive(Debug, Error)]
pub enum PushError {
    // The source is printed by the caller (`{:#}`), so not repeated here.
    #[error("image layout")]
    Layout(#[from] LayoutError),
    #[error("invalid image reference `{0}`: {1}")]
    Reference(String, String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS with registry {registry} failed (a private CA needs --ca-file): {reason}")]
    Tls { registry: String, reason: String },
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry} refused the credentials ({how}): {reason}")]
    Unauthorized {
        registry: String,
        how: String,
        reason: String,
    },
    #[error("registry {registry}, {step}: {reason}")]
    Registry {
        registry: String,
        step: String,
        reason: String,
    },
    #[error("the registry holds manifest {remote}, we pushed {local}")]
    DigestMismatch { local: String, remote: String },
}

/// `deployer push`: send an image layout to a registry.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The OCI image layout `deployer package` wrote.
    #[arg(env = "MODELOPS_IMAGE_LAYOUT", default_value = "image")]
    pub layout: PathBuf,

    /// Where to push: REGISTRY/REPOSITORY:TAG (e.g. myacr.azurecr.io/modelops/serve:1.4.0).
    #[arg(long, env = "MODELOPS_IMAGE")]
    pub to: String,

    /// Which image of the layout to push, by its tag there (default: the only one).
    #[arg(long, env = "MODELOPS_IMAGE_TAG")]
    pub tag: Option<String>,

    /// Registry user (ACR: the admin user, or the token name).
    #[arg(long, env = "DEPLOYER_REGISTRY_USERNAME")]
    pub username: Option<String>,

    /// Registry password or token. Prefer the environment variable: a flag
    /// shows in the process list.
    #[arg(long, env = "DEPLOYER_REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Docker config with the registry's credentials, used when no user is
    /// given. Default: $DOCKER_CONFIG/config.json or ~/.docker/config.json.
    #[arg(long, env = "DEPLOYER_DOCKER_CONFIG", value_name = "PATH")]
    pub docker_config: Option<PathBuf>,

    /// PEM file of a CA to trust besides the system's (a private registry).
    #[arg(long, env = "DEPLOYER_REGISTRY_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Talk plain HTTP to the registry (a local test registry only).
    #[arg(long, env = "DEPLOYER_REGISTRY_PLAIN_HTTP")]
    pub plain_http: bool,
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub uploaded: usize,
    pub already_there: usize,
}

pub fn run(args: &PushArgs) -> Result<PushReport, PushError> {
    let image = layout::read(&args.layout, args.tag.as_deref())?;
    let reference: Reference = args.to.parse().map_err(|e: oci_client::ParseError| {
        PushError::Reference(args.to.clone(), e.to_string())
    })?;
    let registry = reference.resolve_registry().to_string();
    let docker_config = args
        .docker_config
        .clone()
        .or_else(auth::default_docker_config);
    let (credentials, how) = auth::resolve(
        &registry,
        args.username.as_deref(),
        args.password.as_deref(),
        docker_config.as_deref(),
    )?;
    let mut config = ClientConfig {
        protocol: if args.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    };
    if let Some(path) = &args.ca_file {
        let data = std::fs::read(path).map_err(|e| PushError::CaFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let pusher = Pusher {
        client: Client::new(config),
        reference,
        registry,
        credentials,
        how,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| pusher.error("starting the runtime", e.into()))?;
    let report = runtime.block_on(pusher.push(&image))?;
    println!(
        "pushed {}@{} ({} blobs uploaded, {} already there; digest verified)",
        report.reference, report.digest, report.uploaded, report.already_there
    );
    Ok(report)
}

struct Pusher {
    client: Client,
    reference: Reference,
    registry: String,
    credentials: RegistryAuth,
    /// Where the credentials came from, for messages (never the secret).
    how: String,
}

impl Pusher {
    async fn push(&self, image: &StoredImage) -> Result<PushReport, PushError> {
        let (reference, client) = (&self.reference, &self.client);
        println!(
            "pushing {}:{} to {reference} as {}",
            image.dir.display(),
            image.tag,
            self.how
        );
        client
            .auth(reference, &self.credentials, RegistryOperation::Push)
            .await
            .map_err(|e| self.error("authenticating", e))?;
        let (mut uploaded, mut already_there) = (0, 0);
        let total = image.blobs().count();
        for (ix, descriptor) in image.blobs().enumerate() {
            let what = format!(
                "blob {}/{total} {} ({})",
                ix + 1,
                descriptor.digest,
                human_bytes(descriptor.size)
            );
            if self.exists(&descriptor.digest).await? {
                println!("  {what}: already there");
                already_there += 1;
                continue;
            }
            let blob = layout::read_blob(&image.dir, descriptor)?;
            let step = Step::start(format!("uploading {what}"));
            client
                .push_blob(reference, blob.data, &blob.digest)
                .await
                .map_err(|e| self.error(&format!("uploading {}", descriptor.digest), e))?;
            step.done("");
            uploaded += 1;
        }
        // The manifest may only reference blobs the registry confirms.
        for descriptor in image.blobs() {
            if !self.exists(&descriptor.digest).await? {
                return Err(PushError::Registry {
                    registry: self.registry.clone(),
                    step: "confirming blobs".into(),
                    reason: format!("{} is missing after its upload", descriptor.digest),
                });
            }
        }
        let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        client
            .push_manifest_raw(reference, image.manifest.data.clone(), content_type)
            .await
            .map_err(|e| self.error("pushing the manifest", e))?;
        let remote = client
            .fetch_manifest_digest(reference, &self.credentials)
            .await
            .map_err(|e| self.error("fetching the manifest digest", e))?;
        if remote != image.manifest.digest {
            return Err(PushError::DigestMismatch {
                local: image.manifest.digest.clone(),
                remote,
            });
        }
        Ok(PushReport {
            reference: reference.whole(),
            digest: remote,
            uploaded,
            already_there,
        })
    }

    async fn exists(&self, digest: &str) -> Result<bool, PushError> {
        self.client
            .blob_exists(&self.reference, digest)
            .await
            .map_err(|e| self.error(&format!("checking {digest}"), e))
    }

    /// Sorts a client error into unreachable, refused credentials, or other.
    fn error(&self, step: &str, e: OciDistributionError) -> PushError {
        let reason = chain(&e);
        let registry = self.registry.clone();
        let status = match &e {
            OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
            OciDistributionError::ServerError { code, .. } => Some(*code),
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => Some(401),
            _ => None,
        };
        match (&e, status) {
            (OciDistributionError::RequestError(_), None) if reason.contains("certificate") => {
                PushError::Tls { registry, reason }
            }
            (OciDistributionError::RequestError(r), None) if r.is_connect() || r.is_timeout() => {
                PushError::Unreachable { registry, reason }
            }
            (_, Some(401 | 403)) => PushError::Unauthorized {
                registry,
                how: self.how.clone(),
                reason,
            },
            _ => PushError::Registry {
                registry,
                step: step.to_string(),
                reason,
            },
        }
    }
}

/// An error and its causes, `: `-separated (reqwest hides the cause, such
/// as "Connection refused", in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

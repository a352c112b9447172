//! `deployer`: ships modelops models. The release gate (`test`), OCI
//! packaging without a daemon (`package`) and the registry push (`push`);
//! Kubernetes manifests (`render`) and the Azure infrastructure (`infra`),
//! both offline; the rollout with automatic rollback (`rollout`), which
//! talks to a Kubernetes API server. Each command lives in its own folder;
//! `main.rs` only dispatches.

pub mod infra;
pub mod model_dir;
pub mod package;
mod progress;
pub mod push;
pub mod render;
pub mod rollout;
mod template;
pub mod test;

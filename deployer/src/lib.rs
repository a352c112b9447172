//! The `deployer` binary's library: one module per concern. `render` and
//! `infra` work offline; `rollout` talks to a Kubernetes API server.

#![forbid(unsafe_code)]

pub mod infra;
pub mod render;
pub mod rollout;
mod template;

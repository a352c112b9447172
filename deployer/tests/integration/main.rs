//! deployer's integration tests: the real binary, on real files, against a
//! real Kubernetes API server and controller manager (scripts/kube-cluster)
//! whose pods run the real `serve`.

mod infra;
mod render;
mod rollout;
mod support;

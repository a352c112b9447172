//! `deployer`: the release gate (`test`), OCI packaging without a daemon
//! (`package`) and the registry push (`push`) of modelops models. Each
//! command lives in its own folder; `main.rs` only dispatches.

pub mod model_dir;
pub mod package;
mod progress;
pub mod push;
pub mod test;

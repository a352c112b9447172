//! modelops `serve`: an inference server for ONNX classifiers.
//!
//! The domain (`model`) knows nothing of transports; transports (`http`) parse
//! their wire format into the domain's request and map [`ServeError`] back.

// Unsafe code only where a profile justified it, each block with its SAFETY
// argument (the tree walk's unchecked indexing).
#![deny(unsafe_code)]

pub mod batch;
pub mod config;
pub mod error;
pub mod http;
pub mod model;
pub mod prometheus;
pub mod shutdown;
pub mod stream;
pub mod telemetry;

pub use error::ServeError;

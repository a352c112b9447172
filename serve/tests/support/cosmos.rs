//! Test support for Cosmos DB: the server scripts/test started (its state
//! folder in `MODELOPS_TEST_COSMOS_STATE`), private servers for tests that
//! stop one or inject faults (same CA and leaf, so one `SSL_CERT_FILE`
//! trusts all), its fault-control port, and documents read back with the
//! SDK.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, FeedScope, Query, RoutingStrategy,
};
use futures_util::TryStreamExt;
use serde_json::Value;

use super::kafka::unique;
use super::repo_root;

/// The emulator's well-known key, which the server checks signatures with.
pub const KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// The files of the shared server's throw-away PKI a private server reuses.
const PKI: [&str; 4] = ["ca.pem", "ca-key.pem", "leaf.pem", "leaf-key.pem"];

fn shared_state() -> PathBuf {
    std::env::var_os("MODELOPS_TEST_COSMOS_STATE")
        .map(PathBuf::from)
        .expect(
            "MODELOPS_TEST_COSMOS_STATE is not set: run the tests with scripts/test, which \
             starts the Cosmos DB server (or scripts/cosmos-server/run start DIR and export \
             MODELOPS_TEST_COSMOS_STATE=DIR)",
        )
}

/// What the SDK needs against the test server (see
/// scripts/cosmos-server/SDK-NOTES.md), for `serve` and for this process.
pub fn sdk_env() -> Vec<(&'static str, String)> {
    vec![
        ("COSMOS_DISABLE_IMDS", "1".into()),
        (
            "AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED",
            "false".into(),
        ),
        ("AZURE_COSMOS_BINARY_ENCODING_ENABLED", "false".into()),
        (
            "SSL_CERT_FILE",
            shared_state().join("ca.pem").display().to_string(),
        ),
    ]
}

/// A Cosmos DB test server.
pub struct Cosmos {
    state: PathBuf,
    pub endpoint: String,
    /// Started by this test: stopped and removed when dropped.
    private: bool,
}

impl Cosmos {
    /// The server scripts/test started; tests on it use containers of their
    /// own and inject no faults.
    pub fn shared() -> Cosmos {
        Cosmos::at(shared_state(), false)
    }

    /// A server of this test's own (to stop, restart or throttle).
    pub fn private() -> Cosmos {
        let state = std::env::temp_dir().join(unique("cosmos-state"));
        std::fs::create_dir_all(&state).unwrap();
        for file in PKI {
            std::fs::copy(shared_state().join(file), state.join(file)).unwrap();
        }
        run(&["start", state.to_str().unwrap()]);
        Cosmos::at(state, true)
    }

    fn at(state: PathBuf, private: bool) -> Cosmos {
        Cosmos {
            endpoint: read_state(&state, "endpoint"),
            state,
            private,
        }
    }

    /// Stops the server (by the PID it was started with); its data is gone.
    pub fn stop(&self) {
        assert!(self.private, "only a private server may be stopped");
        run(&["stop", self.state.to_str().unwrap()]);
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&self) {
        let port = self
            .endpoint
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap();
        run(&["start", self.state.to_str().unwrap(), port]);
    }

    /// Sets the faults (see scripts/cosmos-server/README.md); returns the
    /// server's `{"faults", "counters"}`. An empty `body` only reads them.
    pub fn faults(&self, body: &str) -> Value {
        // Read each time: a restart gets a new control port.
        let control = read_state(&self.state, "control");
        let rest = control.strip_prefix("http://").unwrap();
        let (hostport, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = std::net::TcpStream::connect(hostport).unwrap();
        let method = if body.is_empty() { "GET" } else { "POST" };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: {hostport}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body.trim()).unwrap()
    }

    /// `serve` flags writing telemetry to `container` of this server.
    pub fn serve_args(&self, container: &str) -> Vec<String> {
        [
            "--telemetry",
            "cosmos",
            "--cosmos-endpoint",
            &self.endpoint,
            "--cosmos-database",
            "modelops-test",
            "--cosmos-container",
            container,
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// Every document of `model` in `container` (one partition), read with
    /// the SDK: `SELECT * FROM c WHERE c.model = @model`.
    pub fn documents(&self, container: &str, model: &str) -> Vec<Value> {
        use_sdk_env();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let endpoint: AccountEndpoint = self.endpoint.parse().unwrap();
            let account = AccountReference::with_authentication_key(endpoint, KEY.to_string());
            let client = CosmosClient::builder()
                .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
                .await
                .unwrap();
            let container = client
                .database_client("modelops-test")
                .container_client(container, None)
                .await
                .unwrap();
            let query = Query::from("SELECT * FROM c WHERE c.model = @model")
                .with_parameter("@model", model)
                .unwrap();
            container
                .query_items::<Value>(query, FeedScope::partition(model.to_string()), None)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap()
        })
    }
}

impl Drop for Cosmos {
    fn drop(&mut self) {
        if self.private {
            run(&["stop", self.state.to_str().unwrap()]);
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

/// A file the start script wrote in the server's state folder.
fn read_state(state: &Path, name: &str) -> String {
    std::fs::read_to_string(state.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", state.display()))
        .trim()
        .to_string()
}

fn run(args: &[&str]) {
    let script: &Path = &repo_root().join("scripts/cosmos-server/run");
    let output = Command::new(script).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "scripts/cosmos-server/run {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The SDK reads its settings from this process' environment.
fn use_sdk_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in sdk_env() {
            std::env::set_var(name, value);
        }
    });
}

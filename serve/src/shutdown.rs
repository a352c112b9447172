//! Graceful shutdown. The first SIGTERM or SIGINT flips readiness to 503 and
//! keeps serving for the drain window (load balancers need time to notice),
//! then the listener closes and in-flight requests finish. A second signal
//! ends the drain window early.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Shared "are we going away" flag: the readiness endpoint reads it, the
/// Kafka scorer waits for it to stop consuming.
#[derive(Debug, Clone)]
pub struct Draining(Arc<watch::Sender<bool>>);

impl Default for Draining {
    fn default() -> Self {
        Draining(Arc::new(watch::channel(false).0))
    }
}

impl Draining {
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once draining has started (at once if it has).
    pub async fn started(&self) {
        let mut changes = self.0.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = changes.wait_for(|draining| *draining).await;
    }

    /// Starts draining: readiness reports 503, Kafka stops consuming, and
    /// the server shuts down as on a signal.
    pub fn start(&self) {
        self.0.send_replace(true);
    }
}

/// SIGTERM and SIGINT, caught from the moment this is created (create it
/// before announcing the listener, or an early signal kills the process).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Waits for a signal (or draining started from within), drains, then stops
/// `server` gracefully. Without an
/// HTTP server (Kafka only) there is no load balancer to wait for: draining
/// starts and that is all.
pub async fn on_signal(
    signals: Signals,
    server: Option<ServerHandle>,
    draining: Draining,
    drain: Duration,
) {
    let Signals { mut term, mut int } = signals;
    let cause = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        // Started from within (a transport that cannot go on).
        _ = draining.started() => "failure",
    };
    draining.start();
    tracing::info!(
        cause,
        drain_seconds = drain.as_secs_f64(),
        "draining: readiness reports 503"
    );
    let Some(server) = server else {
        return;
    };
    tokio::select! {
        _ = tokio::time::sleep(drain) => {}
        _ = term.recv() => tracing::info!("second signal: ending the drain window"),
        _ = int.recv() => tracing::info!("second signal: ending the drain window"),
    }
    tracing::info!("closing the listener; finishing in-flight requests");
    server.stop(true).await;
}

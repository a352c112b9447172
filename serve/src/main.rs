//! The `serve` binary: wiring only.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serve::batch::Scheduler;
use serve::config::Config;
use serve::http::{self, AppState, HttpOptions};
use serve::model::ModelRepository;
use serve::shutdown::{self, Draining};
use serve::stream::StreamScorer;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let metrics = serve::prometheus::install().map_err(anyhow::Error::msg)?;
    let repository = ModelRepository::load(&config.model_sources()).context("loading models")?;
    let scheduler = Scheduler::start(&repository, config.batching());
    let draining = Draining::default();
    let state = AppState {
        repository: Arc::new(repository),
        scheduler: Arc::new(scheduler),
        draining: draining.clone(),
        metrics,
        max_body_bytes: config.max_body_bytes,
    };
    let options = HttpOptions {
        host: config.host.clone(),
        port: config.port,
        workers: config.workers,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_seconds),
    };
    let signals = shutdown::Signals::install().context("installing signal handlers")?;
    let served: Vec<&str> = state.repository.models().map(|m| m.name.as_str()).collect();
    let stream = match config.kafka(&served) {
        Some(kafka) => Some(
            StreamScorer::start(
                kafka,
                state.repository.clone(),
                state.scheduler.clone(),
                draining.clone(),
            )
            .context("starting Kafka scoring")?,
        ),
        None => None,
    };
    let drain = Duration::from_secs_f64(config.drain_seconds.max(0.0));
    if config.no_rest {
        shutdown::on_signal(signals, None, draining, drain).await;
    } else {
        let (server, addrs) = http::bind(state, &options)
            .with_context(|| format!("binding {}:{}", config.host, config.port))?;
        for addr in &addrs {
            tracing::info!("listening on http://{addr}");
        }
        actix_web::rt::spawn(shutdown::on_signal(
            signals,
            Some(server.handle()),
            draining,
            drain,
        ));
        server.await.context("HTTP server")?;
    }
    if let Some(stream) = stream {
        stream.join().context("Kafka scoring")?;
    }
    tracing::info!("stopped");
    Ok(())
}

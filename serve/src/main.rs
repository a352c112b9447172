//! The `serve` binary: wiring only.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serve::batch::Scheduler;
use serve::config::{Command, Config, ReportArgs};
use serve::http::{self, AppState, HttpOptions};
use serve::model::ModelRepository;
use serve::shutdown::{self, Draining};
use serve::stream::StreamScorer;
use serve::telemetry::{report, Store, Telemetry};

fn main() -> anyhow::Result<()> {
    // Before any thread starts (setting the environment is not thread-safe).
    no_library_backtraces();
    actix_web::rt::System::new().block_on(run())
}

/// `RUST_BACKTRACE=1` keeps its meaning for panics, but libraries' errors
/// no longer capture a backtrace each (unless `RUST_LIB_BACKTRACE` asks):
/// the Azure SDK makes and drops one per telemetry batch (an absent
/// response header), a backtrace walk that was 8 % of the writer's work.
fn no_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(Command::Report(args)) = &config.command {
        return print_report(args).await;
    }

    let metrics = serve::prometheus::install().map_err(anyhow::Error::msg)?;
    let repository = ModelRepository::load(&config.model_sources()).context("loading models")?;
    let scheduler = Scheduler::start(&repository, config.batching());
    let store = config.telemetry.store()?;
    let telemetry = Arc::new(
        Telemetry::open(&store, config.telemetry_options()).context("starting telemetry")?,
    );
    match &store {
        Store::Off => tracing::info!("telemetry off"),
        Store::File(path) => tracing::info!("telemetry to {}", path.display()),
        Store::Cosmos(cosmos) => tracing::info!(
            "telemetry to Cosmos DB {} ({}/{})",
            cosmos.endpoint,
            cosmos.database,
            cosmos.container
        ),
    }
    let draining = Draining::default();
    let state = AppState {
        repository: Arc::new(repository),
        scheduler: Arc::new(scheduler),
        draining: draining.clone(),
        metrics,
        max_body_bytes: config.max_body_bytes,
        telemetry: telemetry.clone(),
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
                telemetry.clone(),
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
    telemetry.shutdown(Duration::from_secs_f64(
        config.telemetry_flush_seconds.max(0.0),
    ));
    tracing::info!("stopped");
    Ok(())
}

/// `serve report`: the table on stdout, the chart where asked.
async fn print_report(args: &ReportArgs) -> anyhow::Result<()> {
    let store = args.telemetry.store()?;
    let models = args
        .models()
        .with_context(|| format!("listing models in {}", args.repository.display()))?;
    let documents = store.read(&models).await?;
    let summaries = report::summarize(&documents);
    print!("{}", report::text(&summaries));
    if let Some(path) = &args.svg {
        std::fs::write(path, report::svg(&summaries))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

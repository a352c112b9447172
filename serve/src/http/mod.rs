//! The REST transport (actix-web): Open Inference Protocol V2, the V1
//! `:predict` shape, health and metrics. Handlers parse their wire format,
//! call the model domain, and map [`crate::ServeError`] in `error.rs`.

mod body;
mod error;
mod health;
mod infer;
mod inference_route;
mod metrics;
mod numbers;
mod v1;
mod v2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, Resource};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::batch::Scheduler;
use crate::model::ModelRepository;
use crate::shutdown::Draining;
use crate::telemetry::Telemetry;
pub use error::error_body;
// The JSON wire formats, parsed here once and reused by the Kafka transport.
pub(crate) use body::parse_json;
pub(crate) use numbers::NestedNumbers;
pub(crate) use v2::parse_request as parse_v2_request;

/// What every handler shares.
pub struct AppState {
    pub repository: Arc<ModelRepository>,
    pub scheduler: Arc<Scheduler>,
    pub draining: Draining,
    pub metrics: PrometheusHandle,
    pub max_body_bytes: usize,
    pub telemetry: Arc<Telemetry>,
}

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub host: String,
    pub port: u16,
    pub workers: Option<usize>,
    pub shutdown_timeout: Duration,
}

/// Binds the listener and returns the server (not yet awaited) and the
/// addresses it listens on. Signals are handled by [`crate::shutdown`].
pub fn bind(state: AppState, options: &HttpOptions) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(inference_route::route_inference))
            .wrap(from_fn(metrics::count_responses))
            .configure(routes)
            .default_service(web::to(no_route))
    })
    .disable_signals()
    .shutdown_timeout(options.shutdown_timeout.as_secs())
    .bind((options.host.as_str(), options.port))?;
    if let Some(workers) = options.workers {
        server = server.workers(workers);
    }
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Every route, each answering 405 with a JSON error for other methods.
///
/// actix tries patterns in this order, and each pattern with a `{param}` is a
/// regex run: inference requests mostly skip the router altogether
/// (`inference_route`), and come first here for those it hands on.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(inference_route::INFER).route(web::post().to(v2::infer)))
        .service(resource(inference_route::INFER_VERSION).route(web::post().to(v2::infer)))
        .service(resource("/v2").route(web::get().to(v2::server_metadata)))
        .service(resource("/v2/health/live").route(web::get().to(health::live)))
        .service(resource("/v2/health/ready").route(web::get().to(health::ready)))
        .service(
            resource("/v2/repository/index")
                .route(web::post().to(v2::repository_index))
                .route(web::get().to(v2::repository_index)),
        )
        .service(resource("/v2/models/{model}").route(web::get().to(v2::model_metadata)))
        .service(resource("/v2/models/{model}/ready").route(web::get().to(v2::model_ready)))
        .service(
            resource("/v2/models/{model}/versions/{version}")
                .route(web::get().to(v2::model_metadata)),
        )
        .service(
            resource("/v2/models/{model}/versions/{version}/ready")
                .route(web::get().to(v2::model_ready)),
        )
        .service(resource("/v1/models").route(web::get().to(v1::list_models)))
        .service(resource("/v1/models/{model}:predict").route(web::post().to(v1::predict)))
        .service(resource("/v1/models/{model}").route(web::get().to(v1::model_status)))
        .service(resource("/metrics").route(web::get().to(metrics::render)));
}

/// A route's resource, named after its pattern: the name labels its
/// responses in `/metrics`.
fn resource(path: &str) -> Resource {
    web::resource(path)
        .name(path)
        .default_service(web::to(method_not_allowed))
}

async fn no_route(request: HttpRequest) -> HttpResponse {
    error_body(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", request.method(), request.path()),
    )
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} is not allowed on {}", request.method(), request.path()),
    )
}

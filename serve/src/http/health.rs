//! Liveness and readiness. Ready means: not draining, and at least one model
//! version loaded (`/v2/repository/index` tells which failed and why).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// `GET /v2/health/live`: the process is up and answering.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "live": true }))
}

/// `GET /v2/health/ready`.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "ready": false, "error": "the server is shutting down" }));
    }
    if !state.repository.any_ready() {
        return HttpResponse::ServiceUnavailable().json(
            json!({ "ready": false, "error": "no model is ready; see /v2/repository/index" }),
        );
    }
    HttpResponse::Ok().json(json!({ "ready": true }))
}

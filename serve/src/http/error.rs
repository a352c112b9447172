//! The one place a [`ServeError`] becomes an HTTP status and a JSON body
//! `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::ServeError;

impl ResponseError for ServeError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServeError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ServeError::ModelNotFound(_) | ServeError::VersionNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ServeError::ModelNotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Inference { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_body(self.status_code(), &self.to_string());
        if let ServeError::Overloaded { .. } = self {
            // The queue drains in milliseconds; one second is the smallest the header says.
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// A JSON error response, for errors that are not about a model (routing).
pub fn error_body(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

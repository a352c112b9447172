//! `/metrics` and the middleware that counts every response by route and status.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse};

use super::inference_route::RoutedAs;
use super::AppState;
use crate::prometheus::record_http;

/// `GET /metrics`: Prometheus text format.
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Counts the response to every request, labelled by the matched route
/// pattern (never the raw path, which would explode label cardinality).
pub async fn count_responses(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Methods outside HTTP's standard set count as one, so that clients
    // cannot grow the label set (and the counters kept per thread) at will.
    let method = match request.method() {
        &Method::GET
        | &Method::POST
        | &Method::PUT
        | &Method::DELETE
        | &Method::HEAD
        | &Method::OPTIONS
        | &Method::PATCH
        | &Method::CONNECT
        | &Method::TRACE => request.method().clone(),
        _ => Method::from_bytes(b"OTHER").expect("a valid method token"),
    };
    let response = next.call(request).await?;
    // Every route's resource is named after its pattern (see `resource`),
    // which actix hands out without building a String; inference requests
    // routed ahead of the router say which pattern they matched.
    let routed_as = response.request().extensions().get::<RoutedAs>().copied();
    let route = match routed_as {
        Some(RoutedAs(pattern)) => pattern,
        None => response.request().match_name().unwrap_or("unmatched"),
    };
    record_http(&method, route, response.status().as_u16());
    Ok(response)
}

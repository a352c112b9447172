//! Inference requests are routed here, ahead of actix's router.
//!
//! actix matches every pattern with a `{param}` by running a regex
//! (regex-lite's PikeVM): about 14k instructions for an inference path, 7% of
//! a 64-row request's CPU. The two inference patterns are recognised by
//! splitting the path instead. Anything else, and any path this does not
//! recognise exactly (percent-escapes, other methods), goes to the router.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, ResponseError};

use super::{v2, AppState};

/// The route pattern a request was answered by, when this module routed it
/// (the router's own requests carry it as their resource's name).
#[derive(Debug, Clone, Copy)]
pub struct RoutedAs(pub &'static str);

pub const INFER: &str = "/v2/models/{model}/infer";
pub const INFER_VERSION: &str = "/v2/models/{model}/versions/{version}/infer";

/// `{model}` and `{version}` of an inference path, and its pattern.
fn parse_path(path: &str) -> Option<(&str, Option<&str>, &'static str)> {
    let rest = path.strip_prefix("/v2/models/")?.strip_suffix("/infer")?;
    if rest.contains('%') {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [model] if !model.is_empty() => Some((model, None, INFER)),
        [model, "versions", version] if !model.is_empty() && !version.is_empty() => {
            Some((model, Some(version), INFER_VERSION))
        }
        _ => None,
    }
}

/// Middleware: answers `POST` inference requests itself, passes the rest on.
pub async fn route_inference(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let route = match request.method() {
        &Method::POST => parse_path(request.path()).map(|(model, version, pattern)| {
            (model.to_owned(), version.map(str::to_owned), pattern)
        }),
        _ => None,
    };
    let Some((model, version, pattern)) = route else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("the app has its state")
        .clone();
    let (http, mut payload) = request.into_parts();
    http.extensions_mut().insert(RoutedAs(pattern));
    let payload = web::Payload::from_request(&http, &mut payload).await?;
    let response = v2::infer_model(&state, &model, version.as_deref(), &http, payload)
        .await
        .unwrap_or_else(|e| e.error_response());
    Ok(ServiceResponse::new(http, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_inference_paths_are_recognised() {
        assert_eq!(
            parse_path("/v2/models/iris/infer"),
            Some(("iris", None, INFER))
        );
        assert_eq!(
            parse_path("/v2/models/iris/versions/2/infer"),
            Some(("iris", Some("2"), INFER_VERSION))
        );
        for other in [
            "/v2/models//infer",
            "/v2/models/iris/infer/",
            "/v2/models/a/b/infer",
            "/v2/models/iris/versions//infer",
            "/v2/models/my%20model/infer",
            "/v2/models/iris",
            "/v1/models/iris/infer",
        ] {
            assert_eq!(parse_path(other), None, "{other}");
        }
    }
}

//! Reading request bodies: a size limit answered with 413, and JSON parsing
//! whose errors name the field that is wrong (`inputs[0].data`).

use actix_web::web;
use serde::de::DeserializeOwned;

use crate::ServeError;

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_limited(payload: web::Payload, limit: usize) -> Result<web::Bytes, ServeError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ServeError::invalid(format!(
            "cannot read the request body: {e}"
        ))),
        Err(_) => Err(ServeError::PayloadTooLarge { limit }),
    }
}

/// Parses `body` as JSON into `T`, naming the offending field on error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServeError> {
    // Tracking the path costs about a third of parsing a 64-row body, and
    // only a failed parse needs it: parse again to say where.
    serde_json::from_slice(body).map_err(|_| explain_error::<T>(body))
}

/// Why `body` is not a `T`, with the path of the field at fault.
fn explain_error<T: DeserializeOwned>(body: &[u8]) -> ServeError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        let path = e.path().to_string();
        return if path == "." || path.is_empty() {
            ServeError::invalid(format!("invalid JSON body: {}", e.inner()))
        } else {
            ServeError::invalid(format!("invalid JSON body at `{path}`: {}", e.inner()))
        };
    }
    // Anything after the document is a mistake (or a wrong binary header).
    match deserializer.end() {
        Err(e) => ServeError::invalid(format!("invalid JSON body: {e}")),
        Ok(()) => ServeError::invalid("invalid JSON body"),
    }
}

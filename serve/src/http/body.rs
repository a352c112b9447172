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
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            ServeError::invalid(format!("invalid JSON body: {}", e.inner()))
        } else {
            ServeError::invalid(format!("invalid JSON body at `{path}`: {}", e.inner()))
        }
    })?;
    // Anything after the document is a mistake (or a wrong binary header).
    deserializer
        .end()
        .map_err(|e| ServeError::invalid(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

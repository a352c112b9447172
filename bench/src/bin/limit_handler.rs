//! The "limit" for `bench/load/run.sh`: an actix-web server that does
//! everything an Open Inference Protocol V2 classifier server must do on the
//! wire *except* inference. It parses the V2 JSON request body into typed
//! structs (serde, the numbers into `Vec<f32>`), checks the shape, and answers
//! with a fixed V2 response of the same layout and (about) the same size as
//! modelops' for the iris model: one `label` (BYTES) and one `probabilities`
//! (FP32, 3 per row) output. Responses are rendered once per row count and
//! reused, so the handler's cost is HTTP + JSON parsing only.
//!
//! Usage: `limit_handler [--host 127.0.0.1] [--port 8080] [--workers 1]`
//!
//! Routes: `POST /v2/models/{model}/infer`, `GET /v2/health/ready`,
//! `GET /v2/health/live`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

/// Largest body accepted (the same as serve's default).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Class labels of the iris model, cycled through the fixed response.
const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];
/// Fixed probabilities per row: f32 values whose shortest forms are as long
/// as typical iris outputs (8-11 characters), so the response size matches.
const PROBABILITIES: [f32; 3] = [0.978_631_6, 0.021_368_094, 3.171_928_4e-7];

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[allow(dead_code)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    #[allow(dead_code)]
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: Vec<f32>,
}

#[derive(Debug, Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    outputs: (LabelTensor, ProbabilityTensor),
}

#[derive(Debug, Serialize)]
struct LabelTensor {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 1],
    data: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct ProbabilityTensor {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Vec<f32>,
}

fn render(model: &str, rows: usize) -> Bytes {
    let response = InferResponse {
        model_name: model,
        model_version: "1",
        outputs: (
            LabelTensor {
                name: "label",
                datatype: "BYTES",
                shape: [rows],
                data: (0..rows).map(|i| LABELS[i % LABELS.len()]).collect(),
            },
            ProbabilityTensor {
                name: "probabilities",
                datatype: "FP32",
                shape: [rows, PROBABILITIES.len()],
                data: PROBABILITIES
                    .iter()
                    .copied()
                    .cycle()
                    .take(rows * 3)
                    .collect(),
            },
        ),
    };
    Bytes::from(serde_json::to_vec(&response).expect("serialisable"))
}

/// Rendered responses, by (model, rows): built on first use, then reused.
#[derive(Default)]
struct Responses(RwLock<HashMap<(String, usize), Bytes>>);

impl Responses {
    fn get(&self, model: &str, rows: usize) -> Bytes {
        let key = (model.to_owned(), rows);
        if let Some(bytes) = self.0.read().expect("lock").get(&key) {
            return bytes.clone();
        }
        let bytes = render(model, rows);
        self.0.write().expect("lock").insert(key, bytes.clone());
        bytes
    }
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": message.into() }))
}

async fn infer(
    responses: web::Data<Responses>,
    model: web::Path<String>,
    body: Bytes,
) -> HttpResponse {
    let request: InferRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(format!("invalid request: {e}")),
    };
    let [input] = request.inputs.as_slice() else {
        return bad_request("expected exactly one input tensor");
    };
    if input.datatype != "FP32" {
        return bad_request("expected datatype FP32");
    }
    let (rows, features) = match input.shape.as_slice() {
        [rows, features] => (*rows, *features),
        _ => return bad_request("expected shape [rows, features]"),
    };
    if rows.checked_mul(features) != Some(input.data.len()) {
        return bad_request("shape does not match the data");
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(responses.get(&model, rows))
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "ready": true }))
}

struct Args {
    host: String,
    port: u16,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 8080,
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => args.host = value()?,
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?
            }
            "-h" | "--help" => {
                println!("usage: limit_handler [--host H] [--port P] [--workers N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("limit_handler: {e}");
            std::process::exit(2);
        }
    };
    let responses = web::Data::from(Arc::new(Responses::default()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(responses.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route("/v2/models/{model}/infer", web::post().to(infer))
            .route("/v2/health/ready", web::get().to(ready))
            .route("/v2/health/live", web::get().to(ready))
    })
    .workers(args.workers.max(1))
    .bind((args.host.as_str(), args.port))?;
    for addr in server.addrs() {
        eprintln!("limit_handler listening on http://{addr}");
    }
    server.run().await
}

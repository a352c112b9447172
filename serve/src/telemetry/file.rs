//! The embedded default: documents as JSON lines appended to a local file.

use std::collections::hash_map::{Entry, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::sink::SinkFuture;
use super::{Document, EncodedDocument, Sink, SinkError, TelemetryError};

/// Appends one JSON document per line. A document written again after a
/// failed flush may appear twice; readers keep the last line per `id`.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

impl FileSink {
    /// Opens `path` for appending, creating it and its folder if missing.
    pub fn open(path: &Path) -> Result<FileSink, TelemetryError> {
        let opened = (|| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(path)
        })();
        let file = opened.map_err(|source| TelemetryError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Mutex::new(BufWriter::new(file)),
        })
    }

    fn io_error(&self, e: std::io::Error) -> SinkError {
        // A full disk or a lost mount may come back.
        SinkError::Retryable {
            reason: format!("writing {}: {e}", self.path.display()),
            after: None,
        }
    }
}

/// Lines written with one lock and one system call at most (a buffer full).
const MAX_BATCH: usize = 256;

impl Sink for FileSink {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn write<'a>(&'a self, documents: &'a [EncodedDocument]) -> SinkFuture<'a> {
        Box::pin(async move {
            let size = documents.iter().map(|d| d.json.len() + 1).sum();
            let mut lines = Vec::with_capacity(size);
            for document in documents {
                lines.extend_from_slice(&document.json);
                lines.push(b'\n');
            }
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&lines).map_err(|e| self.io_error(e))
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.flush().map_err(|e| self.io_error(e))
    }
}

/// Every document in a JSON-lines file, the last line per `id` winning.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, TelemetryError> {
    let file_error = |source| TelemetryError::File {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(file_error)?);
    let mut documents: Vec<Document> = Vec::new();
    let mut index_of = HashMap::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(file_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let document: Document =
            serde_json::from_str(&line).map_err(|e| TelemetryError::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                reason: e.to_string(),
            })?;
        match index_of.entry(document.id.clone()) {
            Entry::Occupied(at) => documents[*at.get()] = document,
            Entry::Vacant(at) => {
                at.insert(documents.len());
                documents.push(document);
            }
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_documents_read_back_with_the_last_line_per_id_winning() {
        let dir = std::env::temp_dir().join(format!("file-sink-{}", std::process::id()));
        let path = dir.join("nested/predictions.jsonl");
        let sink = FileSink::open(&path).unwrap();
        let line = |id: &str, latency_ms: f64| {
            format!(
                r#"{{"id":"{id}","request_id":null,"model":"iris","version":"1","model_sha256":"00","source":"kafka","timestamp":"2026-01-01T00:00:00.000000Z","latency_ms":{latency_ms},"row":0,"label":"setosa","probabilities":{{"setosa":1.0}},"outcome":"ok","error":null,"trace_id":null,"lineage":{{}}}}"#
            )
        };
        let encoded = |line: String| EncodedDocument {
            model: "iris".into(),
            json: line.into_bytes(),
        };
        let first = encoded(line("a", 1.0));
        let again = encoded(line("a", 2.0));
        let other = encoded(line("b", 3.0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(sink.write(&[first, other.clone()]))
            .unwrap();
        runtime
            .block_on(sink.write(std::slice::from_ref(&again)))
            .unwrap();
        sink.flush().unwrap();
        let documents = read_documents(&path).unwrap();
        let expected = [again, other].map(|d| d.decode().unwrap());
        assert_eq!(documents, expected);
        std::fs::write(&path, "{\"id\": 1}\n").unwrap();
        let error = read_documents(&path).unwrap_err().to_string();
        assert!(
            error.contains("predictions.jsonl:1: not a telemetry document"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The embedded default: documents as JSON lines appended to a local file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::sink::SinkFuture;
use super::{Document, Sink, SinkError, TelemetryError};

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

impl Sink for FileSink {
    fn write<'a>(&'a self, document: &'a Document) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut line =
                serde_json::to_vec(document).map_err(|e| SinkError::Permanent(e.to_string()))?;
            line.push(b'\n');
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line).map_err(|e| self.io_error(e))
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
    let mut by_id = std::collections::HashMap::new();
    let mut order = Vec::new();
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
        if by_id.insert(document.id.clone(), order.len()).is_none() {
            order.push(document);
        } else {
            let at = by_id[&document.id];
            order[at] = document;
        }
    }
    Ok(order)
}

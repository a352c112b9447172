//! Progress of long steps on stderr (stdout carries reports): a line when a
//! step starts, and one with its duration when it ends or fails.

use std::time::Instant;

pub struct Step {
    what: String,
    started: Instant,
    finished: bool,
}

impl Step {
    pub fn start(what: impl Into<String>) -> Step {
        let what = what.into();
        eprintln!("  {what} ...");
        Step {
            what,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Ends the step; `detail` (may be empty) follows the duration.
    pub fn done(mut self, detail: &str) {
        self.finished = true;
        let sep = if detail.is_empty() { "" } else { ", " };
        eprintln!(
            "  {} done in {:.2} s{sep}{detail}",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            eprintln!(
                "  {} FAILED after {:.2} s",
                self.what,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Bytes in MB (or kB below a megabyte) with one decimal, for people.
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

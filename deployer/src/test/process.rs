//! A `serve` process (or a container running one) started for a check: its
//! address is read from its log ("listening on http://ADDR", which `serve`
//! prints once bound, so `--port 0` needs no port guessing), and it is
//! stopped with SIGTERM like an orchestrator would, or killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    child: Child,
    /// `http://ADDR`
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Spawns `command` (its stderr is read) and waits up to `timeout` for
    /// it to listen.
    pub fn spawn(mut command: Command, timeout: Duration) -> Result<ServeProcess, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '\x1b')
                        .collect();
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut process = ServeProcess {
            child,
            base: String::new(),
            log,
        };
        match rx.recv_timeout(timeout) {
            Ok(addr) => {
                process.base = format!("http://{addr}");
                Ok(process)
            }
            Err(_) => {
                let status = process.child.try_wait().ok().flatten();
                Err(match status {
                    Some(status) => format!("it exited ({status}) before listening"),
                    None => format!("it did not listen within {} s", timeout.as_secs()),
                } + &format!("; its log:\n{}", process.log()))
            }
        }
    }

    /// The last lines of its stderr.
    pub fn log(&self) -> String {
        let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let start = lines.len().saturating_sub(30);
        lines[start..].join("\n")
    }

    /// SIGTERM, then waits up to `timeout` for it to exit.
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the PID of our own child, which has not been
        // reaped yet (so the PID cannot have been reused).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!("SIGTERM: {}", std::io::Error::last_os_error()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait().map_err(|e| e.to_string())? {
                Some(status) => return Ok(status),
                None if Instant::now() >= deadline => {
                    return Err(format!(
                        "still running {} s after SIGTERM; its log:\n{}",
                        timeout.as_secs(),
                        self.log()
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! Where log lines go: an in-memory buffer in front of stdout, written out when it holds 64 KiB
//! and at least every 100 ms by a flusher thread (and at exit).
//!
//! A line costs a short mutex hold and a copy, not a system call or a thread wake-up, which matters
//! when every request logs a line. The price: a process killed outright loses at most the last
//! 100 ms of log lines (never data: logs are not acknowledged writes).
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const CAPACITY: usize = 64 * 1024;
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct BufferedStdout {
    shared: Arc<Shared>,
}

struct Shared {
    buffer: Mutex<Vec<u8>>,
    stop: Mutex<bool>,
}

impl Shared {
    fn flush(&self) {
        let Ok(mut buffer) = self.buffer.lock() else { return };
        if buffer.is_empty() {
            return;
        }
        let mut out = io::stdout().lock();
        let _ = out.write_all(&buffer);
        let _ = out.flush();
        buffer.clear();
    }
}

/// Flushes what is left when dropped; keep it alive until the process ends.
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        if let Some(flusher) = self.flusher.take() {
            flusher.thread().unpark();
            let _ = flusher.join();
        }
        self.shared.flush();
    }
}

impl BufferedStdout {
    pub fn new() -> (Self, FlushGuard) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(CAPACITY)),
            stop: Mutex::new(false),
        });
        let background = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                while !background.stop.lock().map(|s| *s).unwrap_or(true) {
                    std::thread::park_timeout(INTERVAL);
                    background.flush();
                }
            })
            .ok();
        (
            BufferedStdout { shared: shared.clone() },
            FlushGuard { shared, flusher },
        )
    }
}

/// One log line's writer.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let full = {
            let mut buffer = self
                .shared
                .buffer
                .lock()
                .map_err(|_| io::Error::other("log buffer poisoned"))?;
            buffer.extend_from_slice(line);
            buffer.len() >= CAPACITY
        };
        if full {
            self.shared.flush();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = LineWriter<'a>;
    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { shared: &self.shared }
    }
}

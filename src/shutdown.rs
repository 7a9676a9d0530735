//! One shutdown signal shared by the server and every background task.
//!
//! Shutdown runs in two steps: `request` (readiness turns 503, serving goes on for the grace
//! period so load balancers notice) and then `stop` (no new connections; in-flight requests and
//! background tasks drain).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    stop: CancellationToken,
    draining: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the service to shut down (a signal arrived, or a test wants it to stop).
    pub fn request(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.requested.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub async fn requested(&self) {
        self.requested.cancelled().await;
    }

    pub(crate) fn stop_now(&self) {
        self.stop.cancel();
    }

    /// Cancelled when the server stops accepting work; background tasks watch this.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Waits for SIGTERM or SIGINT, asks for shutdown, and exits at once on a second signal.
pub async fn watch_signals(shutdown: Shutdown) {
    let signal = next_signal().await;
    tracing::info!(signal, "shutdown signal received");
    shutdown.request();
    let signal = next_signal().await;
    tracing::warn!(signal, "second shutdown signal: exiting now without draining");
    std::process::exit(130);
}

#[cfg(unix)]
async fn next_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
            std::future::pending().await
        }
    }
}

#[cfg(not(unix))]
async fn next_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}

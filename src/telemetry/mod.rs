//! Logging: JSON lines on stdout (or a human format for a terminal), buffered so that logging a
//! line never waits for the consumer of stdout. Panics are logged as events too.
pub mod access;
pub mod context;
mod json;
pub mod metrics;
pub mod otel;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::build_info;
use crate::config::{LogConfig, LogFormat};

/// Spans meant for traces only (HTTP request, database operations) use this target at debug
/// level: the log output never sees them, and without an exporter they are disabled at the
/// call site for the cost of one atomic load.
pub const OTEL_TARGET: &str = "otel";

static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn traces_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Flushes buffered log lines and pending spans when dropped; keep it alive until the process ends.
pub struct LogGuard {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    _logs: writer::FlushGuard,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            // Sends what the batch still holds (bounded by the exporter's timeout).
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "pending trace spans could not be flushed");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(config: &LogConfig) -> LogGuard {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| config.level.clone());
    let (writer, guard) = writer::BufferedStdout::new();

    let statics = [("service", build_info::SERVICE_NAME), ("version", build_info::VERSION)];
    let output: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Json => Box::new(json::JsonLayer::new(writer.clone(), &statics)),
        LogFormat::Pretty => Box::new(tracing_subscriber::fmt::layer().with_writer(writer.clone())),
    };
    // A plain level is a static filter, far cheaper per span and event than directives.
    let filtered: Box<dyn Layer<Registry> + Send + Sync> = match directives.trim().parse::<LevelFilter>() {
        Ok(level) => Box::new(output.with_filter(level)),
        Err(_) => Box::new(
            output.with_filter(
                EnvFilter::builder()
                    .parse(&directives)
                    .unwrap_or_else(|_| EnvFilter::new("info")),
            ),
        ),
    };
    let (traces, traces_layer, traces_error) = if otel::requested(|k| std::env::var(k).ok()) {
        match otel::build() {
            Ok((provider, tracer)) => {
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(Targets::new().with_target(OTEL_TARGET, LevelFilter::DEBUG));
                (Some(provider), Some(layer), None)
            }
            Err(e) => (None, None, Some(e)),
        }
    } else {
        (None, None, None)
    };
    let installed = tracing_subscriber::registry()
        .with(filtered)
        .with(traces_layer)
        .try_init()
        .is_ok();
    TRACING.store(installed && traces.is_some(), Ordering::Relaxed);
    if installed && matches!(config.format, LogFormat::Json) {
        access::write_json_directly(writer, json::statics(&statics));
    }
    if let Some(error) = traces_error {
        tracing::warn!(error, "traces are off: the OTLP exporter could not be set up");
    }
    install_panic_hook();
    LogGuard { traces, _logs: guard }
}

/// A panic becomes one structured error event (inside the request's span, so it carries the
/// request id) instead of free text on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(panic = %message, location, "panic");
    }));
}

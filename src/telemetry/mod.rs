//! Logging: JSON lines on stdout (or a human format for a terminal), buffered so that logging a
//! line never waits for the consumer of stdout. Panics are logged as events too.
pub mod context;
mod json;
mod writer;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::build_info;
use crate::config::{LogConfig, LogFormat};

/// Flushes buffered log lines when dropped; keep it alive until the process ends.
pub struct LogGuard(#[allow(dead_code)] writer::FlushGuard);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(config: &LogConfig) -> LogGuard {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| config.level.clone());
    let (writer, guard) = writer::BufferedStdout::new();

    let output: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Json => Box::new(json::JsonLayer::new(
            writer,
            &[("service", build_info::SERVICE_NAME), ("version", build_info::VERSION)],
        )),
        LogFormat::Pretty => Box::new(tracing_subscriber::fmt::layer().with_writer(writer)),
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
    let _ = tracing_subscriber::registry().with(filtered).try_init();
    install_panic_hook();
    LogGuard(guard)
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

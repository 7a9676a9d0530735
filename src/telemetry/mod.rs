//! Logging: JSON lines on stdout (or a human format for a terminal), through a non-blocking writer
//! so a slow log consumer never stalls a request. Panics are logged as events too.
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::build_info;
use crate::config::{LogConfig, LogFormat};

/// Flushes buffered log lines when dropped; keep it alive until the process ends.
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(config: &LogConfig) -> LogGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| EnvFilter::builder().parse(directives).ok())
        .or_else(|| EnvFilter::builder().parse(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stdout());

    let output: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Json => {
            let mut layer = json_subscriber::JsonLayer::new(writer);
            layer
                .with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_flattened_event()
                .with_top_level_flattened_span_list();
            layer.add_static_field("service", serde_json::json!(build_info::SERVICE_NAME));
            layer.add_static_field("version", serde_json::json!(build_info::VERSION));
            Box::new(layer)
        }
        LogFormat::Pretty => Box::new(tracing_subscriber::fmt::layer().with_writer(writer)),
    };
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .try_init();
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

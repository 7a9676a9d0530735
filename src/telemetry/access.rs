//! The access log: one `request completed` line per request, with its id, method, route,
//! status, latency and client (and trace ids when traced).
//!
//! Every request writes one, so in the JSON format the line is written straight into the log
//! buffer, with the very bytes the JSON layer writes for the same event (see the test), instead
//! of going through tracing's dispatch, layer filters and field visitors, which cost more than the
//! rest of the line. The log filter still decides: the line is written only when tracing would
//! write it (`enabled!` at this target and level). The other format goes through tracing.
use std::sync::OnceLock;

use tracing::Level;

use super::json;
use super::writer::BufferedStdout;

/// The access lines' target, as it has always been (the request layer's module), so that filters
/// such as `billing_api::http::middleware::request=warn` keep working.
pub const TARGET: &str = "billing_api::http::middleware::request";
const MESSAGE: &str = "request completed";

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    /// The time from the request's arrival to its answer, logged as `latency_ms` (3 decimals).
    pub latency_us: u64,
    pub client: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
}

/// Where JSON lines go and the `,"service":…,"version":…` each carries; set when the JSON
/// format's subscriber is the one installed.
struct Direct {
    writer: BufferedStdout,
    statics: Vec<u8>,
}

static DIRECT: OnceLock<Direct> = OnceLock::new();

pub(super) fn write_json_directly(writer: BufferedStdout, statics: Vec<u8>) {
    let _ = DIRECT.set(Direct { writer, statics });
}

/// Writes the access line at `level` (debug for probes, warn for server errors, info otherwise).
pub fn log(level: Level, access: &Access<'_>) {
    let enabled = if level == Level::DEBUG {
        tracing::enabled!(target: TARGET, Level::DEBUG)
    } else if level == Level::WARN {
        tracing::enabled!(target: TARGET, Level::WARN)
    } else {
        tracing::enabled!(target: TARGET, Level::INFO)
    };
    if !enabled {
        return;
    }
    match DIRECT.get() {
        Some(direct) => json::write_line(&direct.writer, |line| {
            json::access_line(line, &direct.statics, level, TARGET, MESSAGE, access);
        }),
        None => through_tracing(level, access),
    }
}

/// The same line as an event (other formats, and a process without our subscriber).
fn through_tracing(level: Level, a: &Access<'_>) {
    let Access {
        request_id,
        method,
        route,
        status,
        latency_us,
        client,
        trace_id,
        span_id,
    } = *a;
    #[allow(clippy::cast_precision_loss)] // exact below 2^53 µs (285 years)
    let latency_ms = latency_us as f64 / 1000.0;
    if level == Level::DEBUG {
        tracing::debug!(target: TARGET, request_id, method, route, status, latency_ms, client, trace_id, span_id, "request completed");
    } else if level == Level::WARN {
        tracing::warn!(target: TARGET, request_id, method, route, status, latency_ms, client, trace_id, span_id, "request completed");
    } else {
        tracing::info!(target: TARGET, request_id, method, route, status, latency_ms, client, trace_id, span_id, "request completed");
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::json::tests::Capture;

    /// The line without its timestamp (the one part that differs between two writes).
    fn untimed(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    }

    #[test]
    fn the_direct_line_is_the_json_layers_line() {
        let statics = [("service", "billing-api"), ("version", "1.2.3")];
        let cases = [
            (
                Level::INFO,
                Access {
                    request_id: "req-1",
                    method: "GET",
                    route: "/v1/customers/{id}",
                    status: 200,
                    latency_us: 61,
                    client: Some("127.0.0.1"),
                    trace_id: None,
                    span_id: None,
                },
            ),
            (
                Level::WARN,
                Access {
                    request_id: "Ab-9_x.y:z+w=v/u@t",
                    method: "POST",
                    route: "unmatched",
                    status: 503,
                    latency_us: 1_234_500,
                    client: None,
                    trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                    span_id: Some("00f067aa0ba902b7"),
                },
            ),
            (
                Level::DEBUG,
                Access {
                    request_id: "r",
                    method: "GET",
                    route: "/health/live",
                    status: 200,
                    latency_us: 0,
                    client: Some("::1"),
                    trace_id: None,
                    span_id: None,
                },
            ),
        ];
        for (level, access) in cases {
            let capture = Capture::default();
            let layer = json::JsonLayer::new(capture.clone(), &statics);
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || through_tracing(level, &access));
            let through_tracing = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();

            let mut direct = Vec::new();
            json::access_line(&mut direct, &json::statics(&statics), level, TARGET, MESSAGE, &access);
            let direct = String::from_utf8(direct).unwrap();

            assert_eq!(untimed(&direct), untimed(&through_tracing));
            let parsed: serde_json::Value = serde_json::from_str(&direct).unwrap();
            assert_eq!(parsed["request_id"], access.request_id);
            assert_eq!(parsed["status"], access.status);
            assert!(direct.ends_with("}\n"));
        }
    }
}

//! JSON log lines, one per event: `timestamp`, `level`, `target`, the service's name and version,
//! the event's fields (`message` among them), the request being served (`request_id`, `method`,
//! `route`; see [`super::context`]), then the fields of every span the event is in, outermost first.
//!
//! Written for the hot path: a span's fields are serialized once, when they are recorded, and an
//! event is written in one pass into a reused buffer, without building a JSON tree.
use std::cell::RefCell;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Id, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A span's fields as a JSON fragment: `,"key":value,"key":value`.
struct SpanFields(Vec<u8>);

pub struct JsonLayer<W> {
    make_writer: W,
    /// `,"service":"…","version":"…"`, prepared once.
    statics: Vec<u8>,
}

impl<W> JsonLayer<W> {
    pub fn new(make_writer: W, statics: &[(&str, &str)]) -> Self {
        JsonLayer {
            make_writer,
            statics: self::statics(statics),
        }
    }
}

/// The fields every line carries, as a JSON fragment: `,"key":"value",…`.
pub(super) fn statics(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut prefix = Vec::new();
    for (key, value) in pairs {
        prefix.push(b',');
        push_str(&mut prefix, key);
        prefix.push(b':');
        push_str(&mut prefix, value);
    }
    prefix
}

/// The start of every line: `{"timestamp":"…","level":"…","target":"…"` and the statics.
fn line_start(buf: &mut Vec<u8>, level: &tracing::Level, target: &str, statics: &[u8]) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf);
    buf.extend_from_slice(b"\",\"level\":\"");
    buf.extend_from_slice(level.as_str().as_bytes());
    buf.push(b'"');
    push_key(buf, "target");
    push_str(buf, target);
    buf.extend_from_slice(statics);
}

/// The access line the JSON layer would write for `super::access`'s event, byte for byte: the
/// same fields in the same order (`message` first, as tracing records it, then the event's
/// fields; an absent optional field is left out), the latency as serde_json writes the `f64`.
/// Written in a few copies: every value is plain by construction (request ids are kept only
/// when made of `[A-Za-z0-9-_.:+=/@]`, methods are HTTP tokens, routes our templates, clients
/// addresses, trace ids hex), so nothing needs escaping.
pub(super) fn access_line(
    buf: &mut Vec<u8>,
    statics: &[u8],
    level: tracing::Level,
    target: &str,
    message: &str,
    a: &super::access::Access<'_>,
) {
    buf.reserve(400);
    line_start(buf, &level, target, statics);
    buf.extend_from_slice(b",\"message\":\"");
    buf.extend_from_slice(plain(message));
    buf.extend_from_slice(b"\",\"request_id\":\"");
    buf.extend_from_slice(plain(a.request_id));
    buf.extend_from_slice(b"\",\"method\":\"");
    buf.extend_from_slice(plain(a.method));
    buf.extend_from_slice(b"\",\"route\":\"");
    buf.extend_from_slice(plain(a.route));
    buf.extend_from_slice(b"\",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(a.status).as_bytes());
    buf.extend_from_slice(b",\"latency_ms\":");
    push_millis(buf, a.latency_us);
    for (key, value) in [
        (&b",\"client\":\""[..], a.client),
        (b",\"trace_id\":\"", a.trace_id),
        (b",\"span_id\":\"", a.span_id),
    ] {
        if let Some(value) = value {
            buf.extend_from_slice(key);
            buf.extend_from_slice(plain(value));
            buf.push(b'"');
        }
    }
    buf.extend_from_slice(b"}\n");
}

/// A value that needs no escaping, as bytes (checked in debug builds).
fn plain(s: &str) -> &[u8] {
    debug_assert!(
        !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
        "not plain: {s:?}"
    );
    s.as_bytes()
}

/// Microseconds as milliseconds, written as serde_json writes the `f64` `micros / 1000`
/// (shortest form that reads back the same: `0.061`, `12.5`, `3.0`).
fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    let mut digits = itoa::Buffer::new();
    buf.extend_from_slice(digits.format(micros / 1000).as_bytes());
    buf.push(b'.');
    let fraction = micros % 1000;
    if fraction == 0 {
        buf.push(b'0');
        return;
    }
    let text = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    let len = if text[2] != b'0' {
        3
    } else if text[1] != b'0' {
        2
    } else {
        1
    };
    buf.extend_from_slice(&text[..len]);
}

/// Formats one line in this thread's reused buffer and hands it to `writer`.
pub(super) fn write_line<W>(writer: &W, format: impl FnOnce(&mut Vec<u8>))
where
    W: for<'w> MakeWriter<'w>,
{
    BUFFER.with(|buffer| {
        let Ok(mut buf) = buffer.try_borrow_mut() else { return };
        buf.clear();
        format(&mut buf);
        let _ = writer.make_writer().write_all(&buf);
    });
}

/// A JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// A string's contents escaped as JSON requires: `"`, `\` and control characters. Runs that need
/// nothing (nearly everything) are copied in one go.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Checked without branching per byte, so the compiler can vectorize the common case.
    let plain = !bytes
        .iter()
        .fold(false, |special, &b| special | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `,"key":`. Keys are field names, which are Rust identifiers: nothing to escape.
fn push_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends fields as `,"key":value`.
struct Fields<'a>(&'a mut Vec<u8>);

impl Fields<'_> {
    fn str(&mut self, key: &str, value: &str) {
        push_key(self.0, key);
        push_str(self.0, value);
    }
    // Numbers go through serde_json too: itoa and ryu, without the formatting machinery.
    fn u64(&mut self, key: &str, value: u64) {
        push_key(self.0, key);
        let _ = serde_json::to_writer(&mut *self.0, &value);
    }
    fn f64(&mut self, key: &str, value: f64) {
        push_key(self.0, key);
        // Non-finite numbers are written as null.
        let _ = serde_json::to_writer(&mut *self.0, &value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.str(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        push_key(self.0, field.name());
        let _ = serde_json::to_writer(&mut *self.0, &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.u64(field.name(), value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.f64(field.name(), value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        push_key(self.0, field.name());
        self.0.extend_from_slice(if value { b"true" } else { b"false" });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        push_key(self.0, field.name());
        self.0.push(b'"');
        let _ = std::fmt::write(&mut Escaped(self.0), format_args!("{value:?}"));
        self.0.push(b'"');
    }
}

/// Formats straight into the line, escaping as a JSON string's contents.
struct Escaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// RFC 3339 UTC with microseconds. The date and time up to the second are formatted once per
/// second and thread; only the fraction is written for each line.
fn push_timestamp(out: &mut Vec<u8>) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    CLOCK.with(|clock| {
        let mut clock = clock.borrow_mut();
        if clock.0 != secs || clock.1.is_empty() {
            let text = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .to_string();
            clock.0 = secs;
            clock.1 = text.trim_end_matches('Z').as_bytes().to_vec();
        }
        out.extend_from_slice(&clock.1);
    });
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut n = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.push(b'.');
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

thread_local! {
    static CLOCK: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Fields(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        BUFFER.with(|buffer| {
            let Ok(mut buf) = buffer.try_borrow_mut() else { return };
            buf.clear();
            let meta = event.metadata();
            line_start(&mut buf, meta.level(), meta.target(), &self.statics);
            event.record(&mut Fields(&mut buf));
            super::context::with_current(|request| {
                push_key(&mut buf, "request_id");
                push_str(&mut buf, &request.request_id);
                push_key(&mut buf, "method");
                push_str(&mut buf, request.method.as_str());
                push_key(&mut buf, "route");
                push_str(&mut buf, &request.route);
                if let Some(trace) = &request.trace {
                    push_key(&mut buf, "trace_id");
                    push_str(&mut buf, &trace.trace_id);
                    push_key(&mut buf, "span_id");
                    push_str(&mut buf, &trace.span_id);
                }
            });
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope.from_root() {
                    if let Some(fields) = span.extensions().get::<SpanFields>() {
                        buf.extend_from_slice(&fields.0);
                    }
                }
            }
            buf.extend_from_slice(b"}\n");
            let _ = self.make_writer.make_writer_for(meta).write_all(&buf);
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer that keeps what is written, for tests to read.
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Capture(pub(in crate::telemetry) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[test]
    fn milliseconds_are_written_as_serde_json_writes_them() {
        let samples = (0..3000u64).chain([9_999, 10_000, 61_000, 1_234_500, 86_400_000_000, u64::from(u32::MAX)]);
        for micros in samples {
            let mut ours = Vec::new();
            push_millis(&mut ours, micros);
            #[allow(clippy::cast_precision_loss)]
            let theirs = serde_json::to_string(&(micros as f64 / 1000.0)).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{micros} µs");
        }
    }

    #[test]
    fn lines_are_json_with_event_static_and_span_fields() {
        let capture = Capture::default();
        let layer = JsonLayer::new(capture.clone(), &[("service", "billing-api"), ("version", "1.2.3")]);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1", route = tracing::field::Empty);
            let _enter = span.enter();
            span.record("route", "/v1/things/{id}");
            let inner = tracing::info_span!("db", statement = "SELECT \"x\"\n");
            let _inner = inner.enter();
            tracing::info!(status = 200u16, latency_ms = 1.5, ok = true, detail = ?vec![1, 2], odd = ?"q\"\\\n\u{1}é", "request \"done\"");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "billing-api");
        assert_eq!(line["version"], "1.2.3");
        assert_eq!(line["message"], "request \"done\"");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["detail"], "[1, 2]");
        assert_eq!(line["odd"], "\"q\\\"\\\\\\n\\u{1}é\"", "Debug output, escaped as JSON");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["route"], "/v1/things/{id}");
        assert_eq!(line["statement"], "SELECT \"x\"\n");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(line["target"].as_str().unwrap().contains("telemetry"));
    }
}

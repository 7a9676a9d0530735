//! OpenTelemetry traces over OTLP/HTTP, configured by the standard `OTEL_*` variables and off
//! unless an endpoint is set. Export runs on the batch processor's own thread, so a slow or dead
//! collector costs the service nothing but the spans it has to drop, and those are counted.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};

use super::metrics;
use crate::build_info;

const DEFAULT_QUEUE: usize = 2048;

/// Traces are on when an OTLP endpoint is configured and the SDK is not disabled.
pub fn requested(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Builds the provider and the tracer the `tracing` layer feeds. Sampling follows
/// `OTEL_TRACES_SAMPLER`/`_ARG` (the SDK reads them); the resource follows `OTEL_SERVICE_NAME`
/// and `OTEL_RESOURCE_ATTRIBUTES` over our defaults.
pub fn build() -> Result<(SdkTracerProvider, SdkTracer), String> {
    crate::outbound::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_QUEUE);
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counting {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(capacity).build())
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Admission {
            inner: batch,
            pending,
            capacity,
        })
        .with_resource(resource())
        .build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let tracer = provider.tracer(build_info::SERVICE_NAME);
    Ok((provider, tracer))
}

fn resource() -> Resource {
    let instance = uuid::Uuid::now_v7().to_string();
    let mut builder = Resource::builder_empty()
        .with_service_name(build_info::SERVICE_NAME)
        .with_attributes([
            KeyValue::new("service.version", build_info::VERSION),
            KeyValue::new("service.instance.id", instance),
            KeyValue::new("vcs.ref.head.revision", build_info::GIT_COMMIT),
        ])
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.is_empty()) {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// The W3C trace context of incoming headers (`traceparent`, `tracestate`).
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&opentelemetry_http::HeaderExtractor(headers)))
}

/// The `traceparent` of the current span, for outbound requests (none when traces are off).
pub fn current_traceparent() -> Option<String> {
    if !super::traces_enabled() {
        return None;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

/// Admits a finished span only while the export queue has room, so that a stalled collector
/// makes spans drop here, where they are counted (the batch processor's own count is private).
#[derive(Debug)]
struct Admission {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
    capacity: usize,
}

impl SpanProcessor for Admission {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            metrics::count(metrics::TRACE_SPANS_DROPPED);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what the exporter sent and what it failed to send, and frees queue room.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        match &result {
            Ok(()) => metrics::add(metrics::TRACE_SPANS_EXPORTED, n as u64),
            Err(_) => metrics::add(metrics::TRACE_EXPORT_FAILURES, n as u64),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::requested;

    #[test]
    fn traces_need_an_endpoint_and_respect_sdk_disabled() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert!(!requested(env(&[])));
        assert!(!requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(requested(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c/v1/traces"
        )])));
        assert!(!requested(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
    }
}

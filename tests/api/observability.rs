//! Metrics on the admin listener, and traces exported over OTLP to a real receiver.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billing_api::store::Backend;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::helpers::process::{Server, json_lines, refs, run};
use crate::helpers::{TestApp, spawn_app};

async fn scrape(app: &TestApp) -> (String, String) {
    let response = app
        .client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, response.text().await.unwrap())
}

/// The value of the first sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}

/// On PostgreSQL, batches of meter events are written through a second pool: its occupancy is
/// scraped beside the main pool's, and the folder's work shows in its counters.
#[tokio::test]
async fn the_copy_pool_and_the_rollup_folder_are_measured() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    api.post("/v1/meters", json!({"event_name": "call", "aggregation": "count"}))
        .await
        .expect(201);
    let (_, before) = scrape(&app).await;
    let folded = "billing_meter_rollup_deltas_folded_total";
    let events: Vec<_> = (0..3)
        .map(|i| json!({"identifier": format!("obs-{i}"), "event_name": "call", "customer": customer}))
        .collect();
    let batch = api
        .post("/v1/meter_events", json!({"events": events}))
        .await
        .expect(200);
    assert_eq!(batch["accepted"], 3);
    // The folder runs every second: this app's deltas are folded within a few, and counted.
    let waiting = async || -> (i64, i64) {
        let mut conn = app.store.acquire().await.unwrap();
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM meter_rollup_deltas), (SELECT COUNT(*) FROM meter_rollups)")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    let mut left = waiting().await;
    for _ in 0..100 {
        if left.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = waiting().await;
    }
    assert_eq!(left, (0, 1), "(deltas, rollups) after the folder's runs");
    let text = scrape(&app).await.1;
    assert!(
        sample(&text, folded).unwrap_or(0.0) > sample(&before, folded).unwrap_or(0.0),
        "no rollup delta counted as folded:\n{text}"
    );
    assert!(sample(&text, "billing_meter_rollup_lag_seconds").is_some());
    assert!(sample(&text, "billing_meter_rollup_fold_failures_total").is_some());
    // The copy pool opened a connection for the batch (lazily) and keeps it until idle.
    let copy = |state: &str| {
        sample(
            &text,
            &format!(r#"billing_db_pool_connections{{pool="copy",state="{state}"}}"#),
        )
    };
    assert!(
        copy("idle").unwrap_or(0.0) + copy("in_use").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"billing_db_pool_max_connections{pool="copy"}"#),
        Some(2.0)
    );
    assert!(sample(&text, r#"billing_db_pool_max_connections{pool="main"}"#).unwrap_or(0.0) >= 1.0);
    // The batch's transaction was counted (other tests of this process share the counter, so
    // this shows only that some transaction was: it fails when none ever is).
    assert!(
        sample(&text, "billing_meter_event_transactions_total").unwrap_or(0.0)
            > sample(&before, "billing_meter_event_transactions_total").unwrap_or(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_with_bounded_labels() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let (_, before) = scrape(&app).await;
    let customer = api.customer("EUR").await;
    api.get(&format!("/v1/customers/{customer}")).await.expect(200);
    let invoice = api.open_invoice(&customer, 1000).await;
    api.pay(&invoice, 400, "EUR").await.expect(201);
    let keyed = api
        .client
        .post(app.url("/v1/customers"))
        .bearer_auth(&api.key)
        .header("Idempotency-Key", "obs-1")
        .json(&json!({"name": "Twice", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    let replayed = api
        .client
        .post(app.url("/v1/customers"))
        .bearer_auth(&api.key)
        .header("Idempotency-Key", "obs-1")
        .json(&json!({"name": "Twice", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let refused = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(format!("bsk_{}_{}", "0".repeat(16), "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (content_type, text) = scrape(&app).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let delta = |series: &str| sample(&text, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0);

    // Route templates, never raw paths or ids.
    let retrieve =
        r#"billing_http_request_duration_seconds_count{method="GET",route="/v1/customers/{id}",status_class="2xx"}"#;
    assert!(
        sample(&text, retrieve).unwrap_or(0.0) >= 1.0,
        "{retrieve} missing:\n{text}"
    );
    assert!(
        !text.contains(&customer) && !text.contains("cus_") && !text.contains("acme"),
        "an id or tenant leaked into a label"
    );
    assert!(text.contains(r#"route="/v1/invoices/{id}/finalize""#));
    assert!(text.contains(r#"billing_http_request_duration_seconds_bucket{method="POST",route="/v1/payments",status_class="2xx",le="0.005"}"#));
    assert!(delta(r#"billing_auth_failures_total{reason="unknown_key"}"#) >= 1.0);
    assert!(delta("billing_invoices_finalized_total") >= 1.0);
    assert!(delta("billing_payments_recorded_total") >= 1.0);
    assert!(delta("billing_idempotent_replays_total") >= 1.0);
    assert!(sample(&text, "billing_db_pool_acquire_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, "billing_http_requests_in_flight").is_some());
    assert!(sample(&text, r#"billing_db_pool_connections{pool="main",state="idle"}"#).is_some());
    assert!(sample(&text, r#"billing_db_pool_connections{pool="main",state="in_use"}"#).is_some());
    assert!(sample(&text, r#"billing_db_pool_max_connections{pool="main"}"#).unwrap_or(0.0) >= 1.0);
    assert!(text.contains(&format!(
        r#"billing_build_info{{version="{}""#,
        env!("CARGO_PKG_VERSION")
    )));
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(sample(&text, name).is_some(), "{name} missing");
    }
    for unit in [
        "# TYPE billing_http_request_duration_seconds histogram",
        "# HELP billing_payments_recorded_total",
    ] {
        assert!(text.contains(unit), "{unit} missing");
    }

    // Never on the public port.
    assert_eq!(app.get("/metrics").await.status(), 404);
}

/// A process of its own: the recorder is process-wide, and other in-process apps would set the
/// same gauge.
#[test]
fn readiness_gauge_follows_shutdown_and_the_admin_listener_outlives_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.push(("BILLING_SHUTDOWN__GRACE_PERIOD".into(), "3s".into()));
    let mut server = Server::start(&refs(&env));
    server.wait_for_address();
    let metrics = format!("http://{}/metrics", server.admin_address());
    let client = crate::helpers::blocking_client();
    let text = client.get(&metrics).send().unwrap().text().unwrap();
    assert_eq!(sample(&text, "billing_ready"), Some(1.0), "{text}");
    server.signal("TERM");
    server
        .wait_for_line("shutdown started", Duration::from_secs(5))
        .expect("shutdown starts");
    let text = client.get(&metrics).send().unwrap().text().unwrap();
    assert_eq!(sample(&text, "billing_ready"), Some(0.0), "{text}");
    assert!(server.wait(Duration::from_secs(20)).is_some_and(|s| s.success()));
}

/// A received span with the resource attributes of its batch.
type Received = (Span, BTreeMap<String, String>);

/// A minimal OTLP/HTTP collector: decodes each protobuf export and keeps its spans, with the
/// resource attributes of their batch.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    delay: Duration,
}

impl Collector {
    fn start(delay: Duration) -> (Collector, String, tokio::runtime::Runtime) {
        let collector = Collector {
            delay,
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    tokio::time::sleep(state.delay).await;
                    let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf export");
                    for resource_spans in request.resource_spans {
                        let resource = attributes(&resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
                        for scope in resource_spans.scope_spans {
                            for span in scope.spans {
                                state.spans.lock().unwrap().push((span, resource.clone()));
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        (collector, format!("http://{addr}"), runtime)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => s,
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn sqlite_env(dir: &tempfile::TempDir) -> Vec<(String, String)> {
    vec![
        (
            "BILLING_DATABASE__URL".into(),
            format!("sqlite://{}/billing.db", dir.path().display()),
        ),
        ("BILLING_SERVER__PORT".into(), "0".into()),
    ]
}

#[test]
fn a_request_with_traceparent_is_exported_to_the_collector_and_joined_to_its_log_line() {
    let (collector, endpoint, _rt) = Collector::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    let (status, key, stderr) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&env));
    assert!(status.success(), "{stderr}");
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
        (
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment.name=test".into(),
        ),
        // Nothing is sent on a timer before shutdown: the spans arrive only if SIGTERM flushes them.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()),
    ]);
    let mut server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let response = crate::helpers::blocking_client()
        .post(format!("http://{addr}/v1/customers"))
        .bearer_auth(key.trim())
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .json(&json!({"name": "Traced", "currency": "EUR"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        collector.spans().is_empty(),
        "spans were sent before shutdown; the flush test proves nothing"
    );

    server.signal("TERM");
    assert!(
        server.wait(Duration::from_secs(20)).is_some_and(|s| s.success()),
        "{}",
        server.text()
    );
    let spans = collector.spans();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (server_span, resource) = spans
        .iter()
        .find(|(s, _)| attributes(&s.attributes).get("http.route").map(String::as_str) == Some("/v1/customers"))
        .unwrap_or_else(|| {
            panic!(
                "no server span for the request among {} spans\n{}",
                spans.len(),
                server.text()
            )
        });
    assert_eq!(hex(&server_span.trace_id), trace_id, "the incoming trace is continued");
    assert_eq!(
        hex(&server_span.parent_span_id),
        parent_id,
        "the caller's span is the parent"
    );
    assert_eq!(server_span.name, "POST /v1/customers");
    assert_eq!(server_span.kind, 2, "SPAN_KIND_SERVER");
    let attrs = attributes(&server_span.attributes);
    assert_eq!(attrs["http.request.method"], "POST");
    assert_eq!(attrs["http.response.status_code"], "201");
    assert_eq!(resource["service.name"], "billing-api");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(resource.get("service.instance.id").is_some_and(|v| !v.is_empty()));
    assert_eq!(resource["deployment.environment.name"], "test");

    let db_spans: Vec<_> = spans
        .iter()
        .filter(|(s, _)| s.name.starts_with("db ") && hex(&s.trace_id) == trace_id)
        .collect();
    assert!(
        db_spans.iter().any(|(s, _)| s.name == "db customers.insert"),
        "database operations are spans of the trace: {:?}",
        spans.iter().map(|(s, _)| &s.name).collect::<Vec<_>>()
    );

    let lines = json_lines(&server.text());
    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == request_id.as_str())
        .expect("access log line");
    assert_eq!(access["trace_id"], trace_id);
    assert_eq!(access["span_id"], hex(&server_span.span_id));
}

#[test]
fn a_slow_collector_costs_spans_not_requests_and_drops_are_counted() {
    let (_collector, endpoint, _rt) = Collector::start(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "500".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "50".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE".into(), "4".into()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE".into(), "2".into()),
    ]);
    let mut server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let admin = server.admin_address();
    let client = crate::helpers::blocking_client();
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let response = client.get(format!("http://{addr}/openapi.json")).send().unwrap();
        assert_eq!(response.status(), 200);
    }
    // Generous: 50 local requests take milliseconds; a request that waited for the collector
    // would take the export timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "requests waited for the collector"
    );
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let dropped = sample(&text, "billing_trace_spans_dropped_total").unwrap_or(0.0);
    assert!(dropped >= 20.0, "dropped spans are counted: {dropped}\n{text}");

    server.signal("TERM");
    let status = server.wait(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "shutdown is bounded by the export timeout:\n{}",
        server.text()
    );
}

/// A webhook attempt is a client span, and its request carries that span's `traceparent`.
#[test]
fn webhook_attempts_are_traced_and_carry_traceparent() {
    let (collector, endpoint, _rt) = Collector::start(Duration::ZERO);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(crate::helpers::receiver::Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.extend([
        (
            "BILLING_WEBHOOKS__ENCRYPTION_KEY".into(),
            crate::helpers::TEST_ENCRYPTION_KEY.into(),
        ),
        ("BILLING_WEBHOOKS__ALLOW_HTTP".into(), "true".into()),
        ("BILLING_WEBHOOKS__ALLOWED_NETWORKS".into(), "127.0.0.0/8".into()),
    ]);
    let (status, key, stderr) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&env));
    assert!(status.success(), "{stderr}");
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]);
    let server = Server::start(&refs(&env));
    let base = format!("http://{}", server.wait_for_address());
    let client = crate::helpers::blocking_client();
    let post = |path: &str, body: serde_json::Value| {
        let response = client
            .post(format!("{base}{path}"))
            .bearer_auth(key.trim())
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 201, "{path}");
    };
    post(
        "/v1/webhook_endpoints",
        json!({"url": receiver.url, "enabled_events": ["customer.created"]}),
    );
    post("/v1/customers", json!({"name": "Traced", "currency": "eur"}));
    let got = rt.block_on(receiver.wait_for(Duration::from_secs(10), "the delivery", |d| !d.is_empty()));
    let traceparent = got[0].headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut found = None;
    for _ in 0..100 {
        found = collector
            .spans()
            .into_iter()
            .find(|(s, _)| s.name == "POST webhook" && hex(&s.trace_id) == parts[1]);
        if found.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (span, _) = found.unwrap_or_else(|| {
        let seen: Vec<(String, String, String)> = collector
            .spans()
            .iter()
            .map(|(s, _)| (s.name.clone(), hex(&s.trace_id), hex(&s.span_id)))
            .collect();
        panic!("no exported span for the attempt in the trace {traceparent}; spans: {seen:?}")
    });
    assert_eq!(hex(&span.span_id), parts[2], "the request's parent is the attempt span");
    assert_eq!(span.kind, 3, "SPAN_KIND_CLIENT");
    let attrs = attributes(&span.attributes);
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["webhook.event_type"], "customer.created");
}

//! Prometheus metrics, through the `metrics` facade and its Prometheus exporter; exposed on the
//! admin listener (`GET /metrics`), never on the API port. Names follow Prometheus conventions
//! (`_seconds`, `_bytes`, `_total`); labels are bounded: route templates, methods, status classes,
//! reasons and outcomes, never ids, tenants or raw paths.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::build_info;

pub const HTTP_REQUEST_DURATION: &str = "billing_http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "billing_http_requests_in_flight";
pub const HTTP_REQUESTS_SHED: &str = "billing_http_requests_shed_total";
pub const DB_POOL_CONNECTIONS: &str = "billing_db_pool_connections";
pub const DB_POOL_MAX_CONNECTIONS: &str = "billing_db_pool_max_connections";
pub const DB_POOL_ACQUIRE_DURATION: &str = "billing_db_pool_acquire_duration_seconds";
pub const DB_POOL_ACQUIRE_TIMEOUTS: &str = "billing_db_pool_acquire_timeouts_total";
pub const BUILD_INFO: &str = "billing_build_info";
pub const READY: &str = "billing_ready";
pub const INVOICES_FINALIZED: &str = "billing_invoices_finalized_total";
pub const PAYMENTS_RECORDED: &str = "billing_payments_recorded_total";
pub const REFUNDS_RECORDED: &str = "billing_refunds_recorded_total";
pub const IDEMPOTENT_REPLAYS: &str = "billing_idempotent_replays_total";
pub const AUTH_FAILURES: &str = "billing_auth_failures_total";
pub const WEBHOOK_QUEUE_DEPTH: &str = "billing_webhook_queue_depth";
pub const WEBHOOK_ATTEMPTS: &str = "billing_webhook_delivery_attempts_total";
/// The `outcome` label values of webhook attempts (a closed set).
pub const WEBHOOK_OUTCOMES: &[&str] = &["success", "http_error", "timeout", "refused", "error"];
pub const WEBHOOK_RETRIES: &str = "billing_webhook_retries_total";
pub const WEBHOOK_BREAKER_TRANSITIONS: &str = "billing_webhook_breaker_transitions_total";
pub const WEBHOOK_BREAKERS_OPEN: &str = "billing_webhook_breakers_open";
pub const TRACE_SPANS_DROPPED: &str = "billing_trace_spans_dropped_total";
pub const TRACE_SPANS_EXPORTED: &str = "billing_trace_spans_exported_total";
pub const TRACE_EXPORT_FAILURES: &str = "billing_trace_export_failures_total";
pub const RATE_LIMITED: &str = "billing_rate_limited_total";
/// The `class` label values of rate-limited requests (a closed set).
pub const RATE_LIMIT_CLASSES: &[&str] = &["read", "write", "unauthenticated"];
pub const RATE_LIMIT_STORE_ERRORS: &str = "billing_rate_limit_store_errors_total";
pub const RATE_LIMIT_SHARED: &str = "billing_rate_limit_shared";
pub const CYCLE_PERIODS: &str = "billing_cycle_periods_billed_total";
pub const CYCLE_FAILURES: &str = "billing_cycle_failures_total";
pub const METER_EVENTS_ACCEPTED: &str = "billing_meter_events_accepted_total";
pub const METER_EVENTS_DUPLICATE: &str = "billing_meter_events_duplicate_total";
pub const METER_EVENT_TRANSACTIONS: &str = "billing_meter_event_transactions_total";
pub const METER_EVENT_BATCHES_WAITING: &str = "billing_meter_event_batches_waiting";
pub const METER_ROLLUP_LAG: &str = "billing_meter_rollup_lag_seconds";
pub const METER_ROLLUP_DELTAS_FOLDED: &str = "billing_meter_rollup_deltas_folded_total";
pub const METER_ROLLUP_FOLD_FAILURES: &str = "billing_meter_rollup_fold_failures_total";

/// Request latency buckets, in seconds: fine below 100 ms, where the SLO lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Installs the process-wide recorder (once) and describes every metric.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration by method, route template and status class"
    );
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being served");
    describe_counter!(
        HTTP_REQUESTS_SHED,
        "Requests refused with 503 because server.concurrency_limit was reached"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Open database connections by pool (main, copy) and state (idle, in_use)"
    );
    describe_gauge!(
        DB_POOL_MAX_CONNECTIONS,
        "A pool's maximum: database.max_connections (main), database.copy_connections (copy)"
    );
    describe_histogram!(
        DB_POOL_ACQUIRE_DURATION,
        metrics::Unit::Seconds,
        "Time waited for a pooled database connection"
    );
    describe_counter!(
        DB_POOL_ACQUIRE_TIMEOUTS,
        "Requests that got no database connection within database.acquire_timeout"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels say which build runs");
    describe_gauge!(READY, "1 when /health/ready passes, 0 when it fails");
    describe_counter!(INVOICES_FINALIZED, "Invoices finalized");
    describe_counter!(PAYMENTS_RECORDED, "Payments recorded");
    describe_counter!(REFUNDS_RECORDED, "Refunds recorded");
    describe_counter!(
        IDEMPOTENT_REPLAYS,
        "Requests answered from a stored Idempotency-Key result"
    );
    describe_counter!(AUTH_FAILURES, "Refused credentials by reason");
    describe_counter!(
        CYCLE_PERIODS,
        "Subscription periods billed by the billing cycle (one invoice each)"
    );
    describe_counter!(
        CYCLE_FAILURES,
        "Subscriptions the billing cycle failed to advance (left due, retried by the next run)"
    );
    describe_gauge!(WEBHOOK_QUEUE_DEPTH, "Webhook deliveries due now and not yet delivered");
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts by outcome (success, http_error, timeout, refused, error)"
    );
    describe_counter!(WEBHOOK_RETRIES, "Webhook delivery attempts after the first");
    describe_counter!(
        WEBHOOK_BREAKER_TRANSITIONS,
        "Endpoint circuit breakers opening and closing"
    );
    describe_gauge!(
        WEBHOOK_BREAKERS_OPEN,
        "Webhook endpoints whose circuit breaker is open now"
    );
    describe_counter!(
        TRACE_SPANS_DROPPED,
        "Trace spans dropped because the export queue was full"
    );
    describe_counter!(TRACE_SPANS_EXPORTED, "Trace spans sent to the OTLP collector");
    describe_counter!(TRACE_EXPORT_FAILURES, "Trace spans whose export failed");
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 by class (read, write, unauthenticated)"
    );
    describe_counter!(
        RATE_LIMIT_STORE_ERRORS,
        "Redis calls of the shared rate limiter that failed or timed out (the instance's own budget was used)"
    );
    describe_gauge!(
        RATE_LIMIT_SHARED,
        "1 while budgets are shared through Redis, 0 while this instance uses its own (or none is configured)"
    );
    describe_counter!(METER_EVENTS_ACCEPTED, "Meter events accepted (counted in the rollups)");
    describe_counter!(
        METER_EVENTS_DUPLICATE,
        "Meter events answered `duplicate`: their identifier was accepted before (client retries)"
    );
    describe_counter!(
        METER_EVENT_TRANSACTIONS,
        "PostgreSQL: transactions that wrote batches of meter events (the batches that waited for a writer go in one); accepted events over this are events per transaction"
    );
    describe_gauge!(
        METER_EVENT_BATCHES_WAITING,
        "PostgreSQL: batches of meter events waiting for a writer (database.copy_connections of them)"
    );
    describe_gauge!(
        METER_ROLLUP_LAG,
        metrics::Unit::Seconds,
        "Age of the oldest rollup delta when this instance last folded them into the rollups (0: none waiting); usage reads are exact whatever it is"
    );
    describe_counter!(
        METER_ROLLUP_DELTAS_FOLDED,
        "Rollup deltas (one per batch, meter, customer, minute and group) folded into the rollups by this instance"
    );
    describe_counter!(
        METER_ROLLUP_FOLD_FAILURES,
        "Folds of rollup deltas that failed on this instance (retried a second later)"
    );
    gauge!(BUILD_INFO, "version" => build_info::VERSION, "commit" => build_info::GIT_COMMIT, "rustc" => build_info::RUSTC_VERSION).set(1.0);
    // Counters exist from the start at 0, so `rate()` and `increase()` see their first events
    // and dashboards show 0 rather than "no data".
    for name in [
        HTTP_REQUESTS_SHED,
        DB_POOL_ACQUIRE_TIMEOUTS,
        INVOICES_FINALIZED,
        PAYMENTS_RECORDED,
        REFUNDS_RECORDED,
        IDEMPOTENT_REPLAYS,
        WEBHOOK_RETRIES,
        TRACE_SPANS_DROPPED,
        TRACE_SPANS_EXPORTED,
        TRACE_EXPORT_FAILURES,
        RATE_LIMIT_STORE_ERRORS,
        CYCLE_PERIODS,
        CYCLE_FAILURES,
        METER_EVENTS_ACCEPTED,
        METER_EVENTS_DUPLICATE,
        METER_EVENT_TRANSACTIONS,
        METER_ROLLUP_DELTAS_FOLDED,
        METER_ROLLUP_FOLD_FAILURES,
    ] {
        counter!(name).increment(0);
    }
    for class in RATE_LIMIT_CLASSES {
        counter!(RATE_LIMITED, "class" => *class).increment(0);
    }
    gauge!(RATE_LIMIT_SHARED).set(0.0);
    gauge!(METER_ROLLUP_LAG).set(0.0);
    gauge!(METER_EVENT_BATCHES_WAITING).set(0.0);
    for outcome in WEBHOOK_OUTCOMES {
        counter!(WEBHOOK_ATTEMPTS, "outcome" => *outcome).increment(0);
    }
    for to in ["open", "closed"] {
        counter!(WEBHOOK_BREAKER_TRANSITIONS, "to" => to).increment(0);
    }
    gauge!(HTTP_REQUESTS_IN_FLIGHT).set(0.0);
    process().describe();
}

fn process() -> &'static metrics_process::Collector {
    PROCESS.get_or_init(metrics_process::Collector::default)
}

/// The exposition text, with process figures read now.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            process().collect();
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The request metrics of one route template: its interned name and its latency histograms, one
/// per (method, status class), registered on first use. Building a metrics key with its labels
/// and finding it in the registry cost more than the rest of a small request's bookkeeping; a
/// route's handles are looked up once per request by the template alone.
pub struct RouteMetrics {
    pub name: Arc<str>,
    histograms: [[OnceLock<Histogram>; STATUS_CLASSES]; METHODS],
}

const METHODS: usize = 8;
const STATUS_CLASSES: usize = 5;

static ROUTES: OnceLock<RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>> = OnceLock::new();

/// The metrics of `template` (route templates are few: the map stays small).
pub fn route(template: &str) -> Arc<RouteMetrics> {
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(found) = routes.read().ok().and_then(|map| map.get(template).cloned()) {
        return found;
    }
    let mut map = match routes.write() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(Box::from(template))
        .or_insert_with(|| {
            Arc::new(RouteMetrics {
                name: Arc::from(template),
                histograms: Default::default(),
            })
        })
        .clone()
}

impl RouteMetrics {
    pub fn record(&self, method: &http::Method, status: u16, seconds: f64) {
        let (m, method) = method_index(method);
        let (c, class) = class_index(status);
        self.histograms[m][c]
            .get_or_init(|| {
                histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => self.name.clone(), "status_class" => class)
            })
            .record(seconds);
    }
}

fn method_index(method: &http::Method) -> (usize, &'static str) {
    let index = match *method {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::PATCH => 3,
        http::Method::DELETE => 4,
        http::Method::HEAD => 5,
        http::Method::OPTIONS => 6,
        _ => METHODS - 1,
    };
    (index, method_label(method))
}

fn class_index(status: u16) -> (usize, &'static str) {
    let class = status_class(status);
    (usize::from(class.as_bytes()[0] - b'1').min(STATUS_CLASSES - 1), class)
}

pub fn shed() {
    counter!(HTTP_REQUESTS_SHED).increment(1);
}

/// A pool's occupancy, labelled `pool` (`main`, or `copy`: the small pool that writes batches of
/// meter events on PostgreSQL).
pub fn pool(pool: &'static str, size: u32, idle: usize, max: u32) {
    let idle = idle as f64;
    gauge!(DB_POOL_CONNECTIONS, "pool" => pool, "state" => "idle").set(idle);
    gauge!(DB_POOL_CONNECTIONS, "pool" => pool, "state" => "in_use").set((f64::from(size) - idle).max(0.0));
    gauge!(DB_POOL_MAX_CONNECTIONS, "pool" => pool).set(f64::from(max));
}

pub fn acquired(seconds: f64) {
    histogram!(DB_POOL_ACQUIRE_DURATION).record(seconds);
}

pub fn acquire_timed_out() {
    counter!(DB_POOL_ACQUIRE_TIMEOUTS).increment(1);
}

pub fn ready(ok: bool) {
    gauge!(READY).set(if ok { 1.0 } else { 0.0 });
}

pub fn count(name: &'static str) {
    counter!(name).increment(1);
}

pub fn add(name: &'static str, n: u64) {
    counter!(name).increment(n);
}

/// Counts a request in flight until dropped, including when the client goes away mid-request.
pub struct InFlight(&'static Gauge);

static IN_FLIGHT: OnceLock<Gauge> = OnceLock::new();

impl InFlight {
    pub fn start() -> Self {
        let gauge = IN_FLIGHT.get_or_init(|| gauge!(HTTP_REQUESTS_IN_FLIGHT));
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

pub fn cycle_periods(n: usize) {
    counter!(CYCLE_PERIODS).increment(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Batches of meter events queued for a writer (`n` > 0) or taken by one (`n` < 0).
pub fn meter_batches_waiting(n: f64) {
    gauge!(METER_EVENT_BATCHES_WAITING).increment(n);
}

/// A transaction of meter event batches committed.
pub fn meter_transaction() {
    counter!(METER_EVENT_TRANSACTIONS).increment(1);
}

/// A fold of rollup deltas: how many, and how long the oldest had waited.
pub fn rollups_folded(deltas: i64, lag_seconds: i64) {
    counter!(METER_ROLLUP_DELTAS_FOLDED).increment(u64::try_from(deltas).unwrap_or(0));
    gauge!(METER_ROLLUP_LAG).set(lag_seconds.max(0) as f64);
}

pub fn rollup_fold_failure() {
    counter!(METER_ROLLUP_FOLD_FAILURES).increment(1);
}

pub fn cycle_failure() {
    counter!(CYCLE_FAILURES).increment(1);
}

pub fn webhook_attempt(outcome: &'static str) {
    counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

pub fn breaker_transition(to: &'static str) {
    counter!(WEBHOOK_BREAKER_TRANSITIONS, "to" => to).increment(1);
}

pub fn webhook_queue(due: i64, breakers_open: i64) {
    gauge!(WEBHOOK_QUEUE_DEPTH).set(due as f64);
    gauge!(WEBHOOK_BREAKERS_OPEN).set(breakers_open as f64);
}

pub fn auth_failure(reason: &'static str) {
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

pub fn rate_limited(class: &'static str) {
    counter!(RATE_LIMITED, "class" => class).increment(1);
}

pub fn rate_limit_store(ok: bool) {
    if !ok {
        counter!(RATE_LIMIT_STORE_ERRORS).increment(1);
    }
    gauge!(RATE_LIMIT_SHARED).set(if ok { 1.0 } else { 0.0 });
}

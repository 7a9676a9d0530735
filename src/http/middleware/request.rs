//! The request layer: everything every request needs that is ours to decide, in one service so a
//! request pays for one layer instead of six. In order:
//!
//! 1. marks sensitive headers when debug logging would print them (their values are logged as
//!    `Sensitive`);
//! 2. gives the request an id (a sane incoming `X-Request-Id` is kept), its route template (from
//!    the route table, see `http::routes`) and a span;
//! 3. answers 431 `request_header_fields_too_large` to a head over `server.header_limit`, and
//!    413 `payload_too_large` to a body declared over `server.body_limit` (a body is read through
//!    a limit; handlers answer 413 when it is exceeded);
//! 4. sheds load beyond `server.concurrency_limit` with 503 `overloaded` at once (probes exempt:
//!    an overloaded instance is still alive, and restarting it would make things worse);
//! 5. bounds the request by `server.request_timeout` (408 `request_timeout`);
//! 6. turns a handler panic into 500 `internal_error` and keeps serving;
//! 7. renders every error response as problem+json carrying the request id;
//! 8. writes the access log line (probes at debug level) and records the request metrics;
//! 9. when traces are on, runs the request in a server span that continues an incoming W3C
//!    `traceparent`, and puts its `trace_id`/`span_id` on the request's log lines;
//! 10. once shutdown has begun, answers `Connection: close`, so that a proxy's kept-alive
//!     connections are gone before the listener closes (a request sent on a connection the server
//!     is closing could not safely be retried elsewhere).
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use tokio::sync::Semaphore;
use tower::{Layer, Service};
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::api::problem::{self, Problem};
use crate::config::ServerConfig;
use crate::http::client_ip::TrustedProxies;
use crate::shutdown::Shutdown;
use crate::telemetry::access::{self, Access};
use crate::telemetry::context::{self, RequestFields, TraceIds};
use crate::telemetry::{OTEL_TARGET, metrics};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

use crate::http::routes::RouteTable;
pub use crate::http::routes::UNMATCHED;

/// An incoming id is kept when it is short and plain (so it is safe to log and echo); otherwise
/// the request gets a fresh one.
fn accept_request_id(headers: &HeaderMap) -> Option<Arc<str>> {
    let value = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let sane = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+=/@".contains(&b));
    sane.then(|| Arc::from(value))
}

#[derive(Debug)]
struct Settings {
    sensitive_headers: Vec<HeaderName>,
    proxies: TrustedProxies,
    permits: Arc<Semaphore>,
    timeout: Duration,
    traces: bool,
    shutdown: Shutdown,
    header_limit: usize,
    body_limit: usize,
    routes: RouteTable,
}

#[derive(Debug, Clone)]
pub struct RequestLayer {
    settings: Arc<Settings>,
}

impl RequestLayer {
    /// The layer for `server`'s settings, with the proxies it trusts, the process's shutdown
    /// and the table of the router's route templates.
    pub fn new(server: &ServerConfig, proxies: TrustedProxies, shutdown: Shutdown, routes: RouteTable) -> Self {
        let settings = Settings {
            sensitive_headers: server
                .sensitive_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            proxies,
            permits: Arc::new(Semaphore::new(server.concurrency_limit)),
            timeout: server.request_timeout,
            traces: crate::telemetry::traces_enabled(),
            shutdown,
            header_limit: server.header_limit,
            body_limit: server.body_limit,
            routes,
        };
        RequestLayer {
            settings: Arc::new(settings),
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            settings: self.settings.clone(),
            peer: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestService<S> {
    inner: S,
    settings: Arc<Settings>,
    /// The address of the connection this copy serves (see `for_peer`).
    peer: Option<std::net::SocketAddr>,
}

/// The copy that serves one connection: its requests come from `peer`. (Told once per
/// connection, rather than as an extension every request would allocate.)
impl<S: Clone> crate::http::serve::ForPeer for RequestService<S> {
    fn for_peer(&self, peer: std::net::SocketAddr) -> Self {
        RequestService {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
            peer: Some(peer),
        }
    }
}

impl<S, B> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = http::Response<B>, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        // Headers are logged only at debug level ("request received" below): marked then only.
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        if debug {
            for name in &self.settings.sensitive_headers {
                if let Some(value) = req.headers_mut().get_mut(name) {
                    value.set_sensitive(true);
                }
            }
        }
        let request_id = accept_request_id(req.headers()).unwrap_or_else(|| {
            Arc::from(
                uuid::Uuid::new_v4()
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
        });
        let route = self.settings.routes.find(req.uri().path());
        let probe = crate::http::is_probe_path(req.uri().path());
        let client = self
            .peer
            .map(|peer| self.settings.proxies.client(peer.ip(), req.headers()));
        let span = if self.settings.traces {
            server_span(&req, &route.name)
        } else {
            tracing::Span::none()
        };
        let trace = span_ids(&span);
        // The request's id, route and client travel in the task-local context (see
        // `telemetry::context`), where the log lines and the extractors read them.
        let fields = Arc::new(RequestFields {
            request_id,
            method: req.method().clone(),
            route: route.name.clone(),
            peer: self.peer,
            client,
            trace,
        });
        if debug {
            tracing::debug!(
                request_id = &*fields.request_id,
                method = fields.method.as_str(),
                route = &*fields.route,
                path = req.uri().path(),
                headers = ?req.headers(),
                "request received"
            );
        }

        let too_large = if head_too_large(&req, self.settings.header_limit) {
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        } else {
            limit_body(&mut req, self.settings.body_limit).err()
        };
        if let Some(status) = too_large {
            let mut response = Problem::from_status(status).into_response();
            finish(&mut response, &fields, &route, probe, started, &span);
            return Box::pin(async move { Ok(response) });
        }
        let permit = if probe {
            None
        } else {
            match self.settings.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics::shed();
                    let mut response = Problem::overloaded().into_response();
                    finish(&mut response, &fields, &route, probe, started, &span);
                    close_when_stopping(&mut response, &self.settings.shutdown);
                    return Box::pin(async move { Ok(response) });
                }
            }
        };
        // A panic while building the future is caught like one while running it. Boxed at once:
        // the wrappers below and the future of this layer then move a pointer, not the whole
        // (large) future of the stack below, which they would copy each time.
        let inner = std::panic::catch_unwind(AssertUnwindSafe(|| Box::pin(self.inner.call(req))));
        let timeout = self.settings.timeout;
        let shutdown = self.settings.shutdown.clone();
        let in_flight = metrics::InFlight::start();
        Box::pin(async move {
            let outcome = match inner {
                Ok(future) => {
                    let future = context::scope(fields.clone(), AssertUnwindSafe(future).catch_unwind());
                    let bounded = tokio::time::timeout(timeout, future);
                    if span.is_none() {
                        bounded.await
                    } else {
                        bounded.instrument(span.clone()).await
                    }
                }
                Err(_) => Ok(Err(Box::new(()) as Box<dyn std::any::Any + Send>)),
            };
            drop((permit, in_flight));
            let mut response = match outcome {
                Ok(Ok(Ok(response))) => response.map(Body::new),
                Ok(Err(_panic)) => Problem::internal().into_response(),
                Err(_elapsed) => Problem::from_status(StatusCode::REQUEST_TIMEOUT).into_response(),
            };
            finish(&mut response, &fields, &route, probe, started, &span);
            close_when_stopping(&mut response, &shutdown);
            Ok(response)
        })
    }
}

/// The server span of a traced request: OpenTelemetry's HTTP semantic conventions, named by
/// the route template, child of the caller's span when a `traceparent` came in.
fn server_span(req: &Request, route: &str) -> tracing::Span {
    let span = tracing::debug_span!(
        target: OTEL_TARGET,
        "HTTP request",
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.request.method = req.method().as_str(),
        http.route = route,
        url.path = req.uri().path(),
        url.scheme = "http",
        http.response.status_code = field::Empty,
    );
    let parent = crate::telemetry::otel::extract(req.headers());
    let _ = span.set_parent(parent);
    span
}

fn span_ids(span: &tracing::Span) -> Option<TraceIds> {
    if span.is_none() {
        return None;
    }
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    let ids = cx.span().span_context().clone();
    ids.is_valid().then(|| TraceIds {
        trace_id: ids.trace_id().to_string(),
        span_id: ids.span_id().to_string(),
    })
}

/// Renders problems, echoes the request id, records the metrics and writes the access line.
fn finish(
    response: &mut Response,
    request: &RequestFields,
    route: &metrics::RouteMetrics,
    probe: bool,
    started: Instant,
    span: &tracing::Span,
) {
    render_problem(response, &request.request_id);
    if let Ok(value) = HeaderValue::from_str(&request.request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    route.record(&request.method, status, elapsed.as_secs_f64());
    if !span.is_none() {
        span.record("http.response.status_code", status);
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let mut client_text = IpText::default();
    let client = request.client.map(|ip| client_text.format(ip));
    let (trace_id, span_id) = match &request.trace {
        Some(ids) => (Some(ids.trace_id.as_str()), Some(ids.span_id.as_str())),
        None => (None, None),
    };
    let level = if probe {
        tracing::Level::DEBUG
    } else if response.status().is_server_error() {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    access::log(
        level,
        &Access {
            request_id: &request.request_id,
            method: request.method.as_str(),
            route: &request.route,
            status,
            latency_us,
            client,
            trace_id,
            span_id,
        },
    );
}

/// An IP address as text, written without the formatting machinery (a `Display` of an address
/// costs more than the rest of the access line).
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText { buf: [0; 45], len: 0 }
    }
}

impl IpText {
    fn format(&mut self, ip: std::net::IpAddr) -> &str {
        self.len = 0;
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
                let _ = write!(cursor, "{v6}");
                self.len = usize::try_from(cursor.position()).unwrap_or(0);
            }
        }
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }
}

/// Bounds the body by `limit`: a declared length over it is refused at once (413); otherwise the
/// body is read through `http_body_util::Limited` (whose error handlers answer 413). A request
/// without a body, most of them, is left as it is.
fn limit_body(req: &mut Request, limit: usize) -> Result<(), StatusCode> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    if !http_body::Body::is_end_stream(req.body()) {
        let limit = declared.map_or(limit, |len| len.min(limit));
        let body = std::mem::take(req.body_mut());
        *req.body_mut() = Body::new(http_body_util::Limited::new(body, limit));
    }
    Ok(())
}

/// The request line and headers over `limit` bytes, or over `MAX_HEADERS` headers.
fn head_too_large(req: &Request, limit: usize) -> bool {
    let headers = req.headers();
    if headers.len() > crate::http::serve::MAX_HEADERS {
        return true;
    }
    let line = req.method().as_str().len() + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    let mut size = line;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
        if size > limit {
            return true;
        }
    }
    false
}

fn close_when_stopping(response: &mut Response, shutdown: &Shutdown) {
    if shutdown.is_requested() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Errors become problem+json. A response that already carries a JSON body (such as a failing
/// readiness report, or a problem rendered by its handler) is left as it is.
fn render_problem(response: &mut Response, request_id: &str) {
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if response.status().as_u16() >= 400 && !has_json_body(response.headers()) => {
            Problem::from_status(response.status())
        }
        None => return,
    };
    let body = problem.to_json(request_id);
    let headers = response.headers_mut();
    // An inner layer may have prepared a compressed or sized body; this one replaces it.
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(problem::CONTENT_TYPE));
    *response.status_mut() = problem.status;
    *response.body_mut() = Body::from(body);
}

fn has_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_str(id).unwrap());
        h
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::default().format(ip), ip.to_string());
        }
    }

    #[test]
    fn plain_request_ids_are_kept_and_others_replaced() {
        assert_eq!(
            accept_request_id(&headers_with("abc-123_x.y")).as_deref(),
            Some("abc-123_x.y")
        );
        assert_eq!(accept_request_id(&headers_with("has space")), None);
        assert_eq!(accept_request_id(&headers_with("<script>")), None);
        assert_eq!(accept_request_id(&headers_with(&"a".repeat(129))), None);
        assert_eq!(accept_request_id(&HeaderMap::new()), None);
    }
}

//! The request a log line belongs to. Every event emitted while a request is served carries its
//! `request_id`, `method` and `route`: the request layer runs the request inside this task-local,
//! and the JSON layer reads it. (A tracing span per request would do the same at several times the
//! cost; spans are kept for tracing proper.)
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static REQUEST: Arc<RequestFields>;
}

#[derive(Debug)]
pub struct RequestFields {
    pub request_id: Arc<str>,
    pub method: http::Method,
    /// The route template, or `unmatched`.
    pub route: Arc<str>,
    /// The address the connection comes from.
    pub peer: Option<std::net::SocketAddr>,
    /// The client's address (behind a trusted proxy, the one it reports).
    pub client: Option<std::net::IpAddr>,
    /// The request's trace and server span, when traces are exported.
    pub trace: Option<TraceIds>,
}

#[derive(Debug)]
pub struct TraceIds {
    /// 32 lowercase hex digits, as in `traceparent`.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
}

/// Runs `future` as the serving of `fields`' request.
pub fn scope<F: Future>(fields: Arc<RequestFields>, future: F) -> impl Future<Output = F::Output> {
    REQUEST.scope(fields, future)
}

/// The address the connection of the request being served comes from.
pub fn peer() -> Option<std::net::SocketAddr> {
    with_current(|fields| fields.peer).flatten()
}

/// The request being served by this task, if any.
pub fn with_current<R>(f: impl FnOnce(&RequestFields) -> R) -> Option<R> {
    REQUEST.try_with(|fields| f(fields)).ok()
}

//! The layers every request passes through. Axum applies `Router::layer` layers per route, after
//! routing, so the request layer sees the matched route template. Outermost first:
//! [`request::RequestLayer`] (header redaction, request id, span, load shedding, timeout, panic
//! catching, problem rendering, access log) → CORS (when configured) → compression and body limit
//! → handler.
pub mod request;

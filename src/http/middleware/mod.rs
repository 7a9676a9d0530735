//! The layers every request passes through, wrapped once around the router (the request layer
//! finds the route template itself, see `http::routes`). Outermost first:
//! [`request::RequestLayer`] (request id, span, load shedding, timeout, panic catching, problem
//! rendering, access log, metrics) → compression → body limit → CORS (when configured) → the
//! router → (on `/v1` routes) the rate limit → handler.
pub mod request;

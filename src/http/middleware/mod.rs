//! The layers every request passes through, outermost first:
//! sensitive-header marking → [`request::RequestLayer`] (request id, span, access log, problem
//! rendering) → panic catching → CORS → compression → timeout → [`limit::ConcurrencyLimitLayer`]
//! → body limit → router → [`route::RecordRouteLayer`] (per route).
pub mod limit;
pub mod request;
pub mod route;

//! The HTTP surface: router, middleware stack, errors and extractors.
pub mod health;
pub mod middleware;
pub mod problem;
#[cfg(debug_assertions)]
mod test_routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderName, Method, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::shutdown::Shutdown;
use crate::store::Store;
use middleware::limit::ConcurrencyLimitLayer;
use middleware::request::{RequestLayer, X_REQUEST_ID};
use middleware::route::RecordRouteLayer;
use problem::Problem;

/// Debug builds serve `/__test/*` routes (slow, panic, echo, db) when this variable is `1`, so
/// process-level tests can exercise timeouts, panics and draining. Release builds have none.
pub const TEST_ROUTES_ENV: &str = "BILLING_TEST_ROUTES";

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub shutdown: Shutdown,
    pub health_timeout: Duration,
    pub auth: Arc<Authenticator>,
    pub idempotency: Arc<crate::api::write::Registry>,
}

/// Probes are exempt from load shedding and logged at debug level.
pub fn is_probe_path(path: &str) -> bool {
    path.starts_with("/health/")
}

pub fn router(state: AppState, server: &ServerConfig, test_routes: bool) -> Router {
    let (api, openapi) = crate::api::routes();
    // Rendered once: the document does not change while the process runs.
    let openapi = bytes::Bytes::from(openapi.to_pretty_json().unwrap_or_default());
    let mut routes = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi.clone()) }),
        )
        .merge(api);
    #[cfg(debug_assertions)]
    if test_routes {
        routes = routes.merge(test_routes::routes());
    }
    #[cfg(not(debug_assertions))]
    let _ = test_routes;

    let routes = routes
        .route_layer(RecordRouteLayer)
        .fallback(|| async { Problem::from_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED.into_response() })
        .with_state(state);

    // Each `layer` call wraps the ones before it: the last one added is the outermost.
    let mut app = routes
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(server.body_limit))
        .layer(ConcurrencyLimitLayer::new(server.concurrency_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            server.request_timeout,
        ));
    if server.compression {
        app = app.layer(CompressionLayer::new());
    }
    if let Some(cors) = cors(&server.cors_allowed_origins) {
        app = app.layer(cors);
    }
    let sensitive: Vec<HeaderName> = server
        .sensitive_headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    app.layer(CatchPanicLayer::custom(|_| Problem::internal().into_response()))
        .layer(RequestLayer)
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([X_REQUEST_ID.clone(), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

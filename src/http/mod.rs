//! The HTTP surface: the router (the API's routes, probes, the OpenAPI document), the middleware
//! stack every request passes through, and the admin listener.
pub mod admin;
pub mod client_ip;
pub mod health;
pub mod listener;
pub mod middleware;
pub mod serve;
#[cfg(debug_assertions)]
mod test_routes;

use std::time::Duration;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderMap, HeaderName, Method, StatusCode, header};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::api::AppState;
use crate::api::idempotency::IDEMPOTENCY_KEY;
use crate::api::problem::Problem;
use crate::config::ServerConfig;
use middleware::request::{RequestLayer, X_REQUEST_ID};

/// Probes are exempt from load shedding and logged at debug level.
pub fn is_probe_path(path: &str) -> bool {
    path.starts_with("/health/")
}

pub fn router(state: AppState, server: &ServerConfig, test_routes: bool) -> Router {
    let shutdown = state.shutdown.clone();
    let proxies = client_ip::TrustedProxies::new(&server.trusted_proxies);
    let seen_by = proxies.clone();
    let (api, openapi) = crate::api::routes();
    // Budgets apply to the API's matched routes only: probes, `/` and the document are free.
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::api::rate_limit::enforce,
    ));
    // Rendered once: the document does not change while the process runs.
    let openapi = bytes::Bytes::from(openapi.to_pretty_json().unwrap_or_default());
    let root = bytes::Bytes::from(root_document());
    let routes = Router::new()
        .route(
            "/",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], root.clone()) }),
        )
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route(
            "/health/connection",
            get(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| {
                let answer = health::connection(&seen_by, peer, &headers);
                async move { answer }
            }),
        )
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi.clone()) }),
        )
        .merge(api);
    #[cfg(debug_assertions)]
    let routes = if test_routes {
        routes.merge(test_routes::routes())
    } else {
        routes
    };
    #[cfg(not(debug_assertions))]
    let _ = test_routes;

    let routes = routes
        .fallback(|| async { Problem::from_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED.into_response() })
        .with_state(state);

    // Each `layer` call wraps the ones before it: the last one added is the outermost.
    // One layer for both (each `Router::layer` adds a boxed service per request).
    let body = tower::ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(CompressWhen(server.compression, DefaultPredicate::new())))
        .layer(RequestBodyLimitLayer::new(server.body_limit));
    let mut app = routes.layer(DefaultBodyLimit::disable()).layer(body);
    if let Some(cors) = cors(&server.cors_allowed_origins) {
        app = app.layer(cors);
    }
    let sensitive: Vec<HeaderName> = server
        .sensitive_headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    app.layer(RequestLayer::new(
        sensitive,
        server.concurrency_limit,
        server.request_timeout,
        proxies,
        shutdown,
        server.header_limit,
    ))
}

/// tower-http's default compression rules, or never when `server.compression` is off.
#[derive(Clone)]
struct CompressWhen(bool, DefaultPredicate);

impl Predicate for CompressWhen {
    fn should_compress<B: http_body::Body>(&self, response: &http::Response<B>) -> bool {
        self.0 && self.1.should_compress(response)
    }
}

/// `GET /`: what this service is and where its API description lives.
pub fn root_document() -> String {
    serde_json::json!({
        "object": "service",
        "name": crate::build_info::SERVICE_NAME,
        "version": crate::build_info::VERSION,
        "openapi": "/openapi.json",
    })
    .to_string()
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
                IDEMPOTENCY_KEY.clone(),
                X_REQUEST_ID.clone(),
            ])
            .expose_headers([X_REQUEST_ID.clone(), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

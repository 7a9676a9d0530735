//! The HTTP surface: the router (the API's routes, probes, the OpenAPI document), the middleware
//! stack every request passes through, and the admin listener.
pub mod admin;
pub mod client_ip;
pub mod health;
pub mod listener;
pub mod middleware;
pub mod routes;
pub mod serve;
#[cfg(debug_assertions)]
mod test_routes;

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderMap, Method, StatusCode, header};
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{Compression, CompressionLayer};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use crate::api::AppState;
use crate::api::idempotency::IDEMPOTENCY_KEY;
use crate::api::problem::Problem;
use crate::config::ServerConfig;
use middleware::request::{RequestLayer, RequestService, X_REQUEST_ID};
use routes::RouteTable;

/// The whole HTTP service: the middleware stack (see [`middleware`]) wrapped once around the
/// router.
pub type Service = RequestService<Compression<tower::util::Either<Cors<Router>, Router>, CompressWhen>>;

/// The routes outside `/v1` (the API's come from its OpenAPI document).
const SERVICE_ROUTES: &[&str] = &[
    "/",
    "/health/live",
    "/health/ready",
    "/health/connection",
    "/openapi.json",
];

/// Probes are exempt from load shedding and logged at debug level.
pub fn is_probe_path(path: &str) -> bool {
    path.starts_with("/health/")
}

pub fn router(state: AppState, server: &ServerConfig, test_routes: bool) -> Service {
    let shutdown = state.shutdown.clone();
    let proxies = client_ip::TrustedProxies::new(&server.trusted_proxies);
    let seen_by = proxies.clone();
    let (api, openapi) = crate::api::routes();
    // Budgets apply to the API's matched routes only: probes, `/` and the document are free.
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::api::rate_limit::enforce,
    ));
    let mut templates: Vec<String> = SERVICE_ROUTES.iter().map(|s| (*s).to_owned()).collect();
    templates.extend(openapi.paths.paths.keys().cloned());
    #[cfg(debug_assertions)]
    if test_routes {
        templates.extend(test_routes::PATHS.iter().map(|s| (*s).to_owned()));
    }
    let table = RouteTable::new(templates.iter().map(String::as_str));
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
            get(move |headers: HeaderMap| {
                // The request layer knows the connection's address (see `RequestService::for_peer`).
                let answer = match crate::telemetry::context::peer() {
                    Some(peer) => health::connection(&seen_by, peer, &headers),
                    None => Problem::internal().into_response(),
                };
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

    // The stack wraps the router once, outermost first. (As `Router::layer` it would wrap every
    // route, at the price of a boxed service and future per request and layer.) The body limit
    // is the request layer's alone: handlers read bodies through `JsonBody`, which obeys it.
    tower::ServiceBuilder::new()
        .layer(RequestLayer::new(server, proxies, shutdown, table))
        .layer(CompressionLayer::new().compress_when(CompressWhen(server.compression)))
        .option_layer(cors(&server.cors_allowed_origins))
        .service(routes)
}

/// What is compressed (for clients that accept it): JSON of 1 KiB or more, when
/// `server.compression` is on. Everything this service answers is JSON, so the general rules of
/// tower-http's default predicate (content types to leave alone, parsed on every response) are
/// not needed; small answers are not worth the CPU or the extra header.
#[derive(Clone, Copy)]
pub struct CompressWhen(bool);

const COMPRESS_FROM_BYTES: u64 = 1024;

impl Predicate for CompressWhen {
    fn should_compress<B: http_body::Body>(&self, response: &http::Response<B>) -> bool {
        self.0
            && response
                .body()
                .size_hint()
                .exact()
                .is_none_or(|n| n >= COMPRESS_FROM_BYTES)
            && response.headers().get(header::CONTENT_TYPE).is_some_and(|ct| {
                ct.as_bytes().starts_with(b"application/") && ct.as_bytes().windows(4).any(|w| w == b"json")
            })
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

//! The admin listener: `GET /metrics` for Prometheus. It is a separate socket (`admin.host`,
//! `admin.port`) so metrics are never reachable through the public API port or its proxy.
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::header;

use super::health;
use crate::api::AppState;
use crate::telemetry::metrics;

/// Prometheus' text exposition format, version 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health/live", get(health::live))
        .with_state(state)
}

/// Gauges that describe "now" (pool occupancy, readiness) are read at scrape time rather than
/// kept up to date on every request.
async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    for occupancy in state.store.pool_occupancy() {
        metrics::pool(occupancy.pool, occupancy.size, occupancy.idle, occupancy.max);
    }
    let (ready, _) = health::evaluate(&state).await;
    metrics::ready(ready);
    if let Ok(mut conn) = state.store.acquire().await {
        let now = crate::clock::now();
        let due = crate::store::webhooks::due_count(&mut conn, now).await;
        let open = crate::store::webhooks::open_breakers(&mut conn, now).await;
        if let (Ok(due), Ok(open)) = (due, open) {
            metrics::webhook_queue(due, open);
        }
    }
    ([(header::CONTENT_TYPE, EXPOSITION)], metrics::render())
}

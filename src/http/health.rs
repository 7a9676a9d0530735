//! Kubernetes-style probes. Liveness says the process can serve; readiness says it should get
//! traffic: the database answers, the schema is current, and no shutdown is under way.
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::api::AppState;
use crate::build_info;
use crate::http::client_ip::TrustedProxies;

pub async fn live() -> Response {
    Json(json!({ "status": "pass", "version": build_info::VERSION, "commit": build_info::GIT_COMMIT })).into_response()
}

/// `GET /health/connection`: what the service makes of this request's connection, so an operator
/// (and `billing-api doctor`) can see that the proxy in front is believed: the client's address,
/// the scheme it used, and whether the peer is a trusted proxy.
pub fn connection(proxies: &TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> Response {
    Json(json!({
        "client": proxies.client(peer.ip(), headers).to_string(),
        "scheme": proxies.scheme(peer.ip(), headers),
        "via_trusted_proxy": proxies.is_trusted(peer.ip()),
    }))
    .into_response()
}

#[derive(Debug, Serialize)]
struct Check {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Check {
    fn pass() -> Self {
        Check {
            status: "pass",
            latency_ms: None,
            pending: None,
            error: None,
        }
    }
    fn fail(error: impl Into<String>) -> Self {
        Check {
            status: "fail",
            latency_ms: None,
            pending: None,
            error: Some(error.into()),
        }
    }
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (ok, body) = evaluate(&state).await;
    crate::telemetry::metrics::ready(ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Whether the instance should get traffic, and the report that says why.
pub async fn evaluate(state: &AppState) -> (bool, serde_json::Value) {
    let timeout = state.health_timeout;
    let database = match state.store.ping(timeout).await {
        Ok(latency) => Check {
            latency_ms: Some(ms(latency)),
            ..Check::pass()
        },
        Err(error) => Check::fail(error),
    };
    let migrations = if database.status == "pass" {
        match tokio::time::timeout(timeout, state.store.pending_migrations()).await {
            Ok(Ok(0)) => Check {
                pending: Some(0),
                ..Check::pass()
            },
            Ok(Ok(n)) => Check {
                pending: Some(n),
                ..Check::fail(format!("{n} migration(s) pending: run `billing-api migrate run`"))
            },
            Ok(Err(e)) => Check::fail(e.to_string()),
            Err(_) => Check::fail("migration status not read in time"),
        }
    } else {
        Check::fail("database unavailable")
    };
    let shutdown = if state.shutdown.is_requested() {
        Check::fail("shutting down")
    } else {
        Check::pass()
    };

    let ok = [&database, &migrations, &shutdown].iter().all(|c| c.status == "pass");
    let body = json!({
        "status": if ok { "pass" } else { "fail" },
        "version": build_info::VERSION,
        "checks": { "database": database, "migrations": migrations, "shutdown": shutdown },
    });
    (ok, body)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

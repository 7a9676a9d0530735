use billing_api::store::Backend;
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{TestDb, spawn_app, spawn_app_with, spawn_on};

backend_tests!(
    liveness_reports_version,
    ready_when_database_answers_and_schema_is_current,
    not_ready_while_migrations_are_pending,
    not_ready_once_shutdown_is_requested
);

async fn liveness_reports_version(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let response = app.get("/health/live").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

async fn ready_when_database_answers_and_schema_is_current(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pass", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "pass");
    assert!(body["checks"]["database"]["latency_ms"].as_f64().is_some(), "{body}");
    assert_eq!(body["checks"]["migrations"]["pending"], 0);
    assert_eq!(body["checks"]["shutdown"]["status"], "pass");
}

async fn not_ready_while_migrations_are_pending(backend: Backend) {
    let Some(db) = TestDb::empty(backend).await else {
        return;
    };
    let app = spawn_on(db, &[("BILLING_DATABASE__MIGRATE_ON_START", "false")]).await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    assert_eq!(
        body["checks"]["database"]["status"], "pass",
        "the database itself is fine: {body}"
    );
    assert_eq!(body["checks"]["migrations"]["status"], "fail");
    let pending = body["checks"]["migrations"]["pending"].as_u64().unwrap();
    assert_eq!(pending as usize, billing_api::store::migrate::embedded(backend).len());

    // Liveness does not depend on the database schema.
    assert_eq!(app.get("/health/live").await.status(), 200);

    app.store.migrate_run().await.unwrap();
    assert_eq!(app.get("/health/ready").await.status(), 200);
}

async fn not_ready_once_shutdown_is_requested(backend: Backend) {
    let Some(app) = spawn_app_with_grace(backend).await else {
        return;
    };
    assert_eq!(app.get("/health/ready").await.status(), 200);
    app.shutdown.request();
    let response = app.get("/health/ready").await;
    assert_eq!(
        response.status(),
        503,
        "readiness fails at once, while the server still serves"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["shutdown"]["status"], "fail");
    assert_eq!(body["checks"]["database"]["status"], "pass");
    // Other routes are still served during the grace period.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

async fn spawn_app_with_grace(backend: Backend) -> Option<crate::helpers::TestApp> {
    crate::helpers::spawn_app_with(backend, &[("BILLING_SHUTDOWN__GRACE_PERIOD", "30s")]).await
}

/// What the service makes of a request's connection, for operators and `billing-api doctor`:
/// forwarding headers count only from a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_probe_shows_what_the_proxy_headers_are_believed_to_say() {
    let forwarded = |app: &crate::helpers::TestApp| {
        app.client
            .get(app.url("/health/connection"))
            .header("x-forwarded-for", "203.0.113.5")
            .header("x-forwarded-proto", "https")
            .send()
    };
    let trusting = spawn_app_with(Backend::Sqlite, &[("BILLING_SERVER__TRUSTED_PROXIES", "127.0.0.1")])
        .await
        .unwrap();
    let seen: Value = forwarded(&trusting).await.unwrap().json().await.unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"client": "203.0.113.5", "scheme": "https", "via_trusted_proxy": true})
    );
    let direct = spawn_app(Backend::Sqlite).await.unwrap();
    let seen: Value = forwarded(&direct).await.unwrap().json().await.unwrap();
    assert_eq!(
        seen,
        serde_json::json!({"client": "127.0.0.1", "scheme": "http", "via_trusted_proxy": false})
    );
}

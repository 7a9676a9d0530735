//! Request ids, compression and CORS.
use billing_api::store::Backend;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc.123");

    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "abc-1")
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 404, "not_found").await;
    assert_eq!(body["request_id"], "abc-1", "error bodies carry the request id");

    let evil = "x".repeat(300);
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", &evil)
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, evil);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a fresh id is generated: {id}");

    let response = app.get("/health/live").await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let gzip = |path: &'static str| app.client.get(app.url(path)).header("accept-encoding", "gzip").send();
    // JSON of 1 KiB or more (the OpenAPI document) is compressed for a client that accepts it.
    let response = gzip("/openapi.json").await.unwrap();
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = response.bytes().await.unwrap();
    assert_eq!(&compressed[..2], &[0x1f, 0x8b], "a gzip stream");
    let response = app.get("/openapi.json").await;
    assert!(response.headers().get("content-encoding").is_none());
    let plain = response.bytes().await.unwrap();
    assert!(
        compressed.len() * 4 < plain.len(),
        "{} of {} bytes",
        compressed.len(),
        plain.len()
    );
    // A small answer is not worth it.
    let response = gzip("/health/ready").await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());

    let Some(app) = spawn_app_with(Backend::Sqlite, &[("BILLING_SERVER__COMPRESSION", "false")]).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("content-encoding").is_none(),
        "compression can be turned off"
    );
}

#[tokio::test]
async fn cors_is_off_by_default_and_follows_the_configured_origins() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());

    let env = [("BILLING_SERVER__CORS_ALLOWED_ORIGINS", "https://app.example.com")];
    let Some(app) = spawn_app_with(Backend::Sqlite, &env).await else {
        return;
    };
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/health/live"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = app
        .client
        .get(app.url("/health/live"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

//! Every error, the framework's own rejections included, is problem+json with a stable code.
use billing_api::store::Backend;

use crate::backend_tests;
use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

backend_tests!(
    framework_rejections_are_problems,
    timeouts_and_overload_are_problems,
    pool_exhaustion_is_a_fast_503
);

async fn framework_rejections_are_problems(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[("BILLING_SERVER__BODY_LIMIT", "64")]).await else {
        return;
    };

    assert_problem(app.get("/no/such/route").await, 404, "not_found").await;

    let response = app.client.delete(app.url("/health/live")).send().await.unwrap();
    assert!(
        response.headers().get("allow").is_some(),
        "405 names the allowed methods"
    );
    assert_problem(response, 405, "method_not_allowed").await;

    let echo = app.url("/__test/echo");
    let response = app
        .client
        .post(&echo)
        .body(r#"{"name":"a","amount":1}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;

    let json = |body: &'static str| {
        app.client
            .post(&echo)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_problem(json(r#"{"name": "#).send().await.unwrap(), 400, "malformed_json").await;

    let body = assert_problem(
        json(r#"{"name":"a","amount":"ten"}"#).send().await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "amount", "{body}");

    let body = assert_problem(
        json(r#"{"name":"a","amount":1,"typo":1}"#).send().await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "typo", "{body}");
    assert_eq!(body["errors"][0]["code"], "unknown_field", "{body}");

    let big = format!(r#"{{"name":"{}","amount":1}}"#, "x".repeat(100));
    let response = app
        .client
        .post(&echo)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "payload_too_large").await;

    // The same body without a declared length (chunked) is cut off while it is read.
    let (status, body) = chunked_post(app.addr, "/__test/echo", big.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"payload_too_large\""), "{body}");
    // Under the limit, chunked is read whole.
    let (status, body) = chunked_post(app.addr, "/__test/echo", br#"{"name":"a","amount":1}"#).await;
    assert_eq!(status, 200, "{body}");

    // And a valid request still works.
    let response = json(r#"{"name":"a","amount":1}"#).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

async fn timeouts_and_overload_are_problems(backend: Backend) {
    let env = [
        ("BILLING_SERVER__REQUEST_TIMEOUT", "300ms"),
        ("BILLING_SERVER__CONCURRENCY_LIMIT", "1"),
    ];
    let Some(app) = spawn_app_with(backend, &env).await else {
        return;
    };

    assert_problem(app.get("/__test/slow?ms=2000").await, 408, "request_timeout").await;

    // One slow request takes the only slot; the next is shed at once with Retry-After.
    let slow = tokio::spawn(app.client.get(app.url("/__test/slow?ms=250")).send());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let response = app.get("/__test/slow?ms=0").await;
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    assert_problem(response, 503, "overloaded").await;
    // Probes are never shed.
    assert_eq!(app.get("/health/live").await.status(), 200);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

async fn pool_exhaustion_is_a_fast_503(backend: Backend) {
    let env = [
        ("BILLING_DATABASE__MAX_CONNECTIONS", "1"),
        ("BILLING_DATABASE__ACQUIRE_TIMEOUT", "200ms"),
    ];
    let Some(app) = spawn_app_with(backend, &env).await else {
        return;
    };
    let holder = tokio::spawn(app.client.get(app.url("/__test/db?ms=3000")).send());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The client's own timeout is only a bound on "does not hang"; the pool answers long before.
    let response = app
        .client
        .get(app.url("/__test/db"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    assert_problem(response, 503, "database_unavailable").await;
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    assert_eq!(app.get("/__test/db").await.status(), 200, "the pool recovers");
}

#[tokio::test]
async fn a_handler_panic_is_a_500_and_the_next_request_is_served() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    assert_problem(app.get("/__test/panic").await, 500, "internal_error").await;
    assert_eq!(app.get("/health/live").await.status(), 200);
}

/// A JSON POST whose body is sent chunked (no Content-Length), over a raw connection; returns the
/// status and the body of the answer.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

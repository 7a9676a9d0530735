//! Idempotency-Key: replay, mismatch, in-flight conflict, expiry, tenant scope.
use std::time::Duration;

use billing_api::store::Backend;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::{TestDb, spawn_app, spawn_app_with, spawn_on};

backend_tests!(
    a_retry_replays_the_first_result,
    a_reused_key_with_another_request_is_refused,
    a_key_in_flight_is_a_conflict,
    keys_expire_and_are_purged,
    a_scheduled_purge_deletes_expired_keys
);

async fn raw(api: &Api, path: &str, body: &str, key: &str) -> (u16, String, Option<String>) {
    let url = format!("{}{path}", api.app_url);
    let response = api
        .client
        .post(url)
        .bearer_auth(&api.key)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), response.text().await.unwrap(), replayed)
}

async fn a_retry_replays_the_first_result(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let (status, first, replayed) = raw(&api, "/v1/customers", r#"{"name": "Ada", "currency": "usd"}"#, "key-1").await;
    assert_eq!((status, replayed), (201, None));
    // The same request, serialized differently, is the same request.
    let (status, again, replayed) = raw(&api, "/v1/customers", r#"{"currency":"usd","name":"Ada"}"#, "key-1").await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(again, first, "the stored body, byte for byte");
    assert_eq!(
        api.get("/v1/customers").await.body["data"].as_array().unwrap().len(),
        1,
        "one effect"
    );

    // A refusal is a result too, and is replayed.
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 100).await;
    let body = json!({"invoice": invoice, "amount": 500, "currency": "usd"}).to_string();
    let (status, refusal, _) = raw(&api, "/v1/payments", &body, "pay-1").await;
    assert_eq!(status, 422, "{refusal}");
    let (status, again, replayed) = raw(&api, "/v1/payments", &body, "pay-1").await;
    assert_eq!((status, replayed.as_deref(), again), (422, Some("true"), refusal));

    // Keys belong to a tenant: another tenant's identical key is its own.
    let other = app.tenant("globex").await;
    let (status, _, replayed) = raw(
        &other,
        "/v1/customers",
        r#"{"name": "Ada", "currency": "usd"}"#,
        "key-1",
    )
    .await;
    assert_eq!((status, replayed), (201, None));
    // Validation failures are not stored: fixing the request under the same key works.
    let (status, _, _) = raw(&api, "/v1/customers", r#"{"email": "bad"}"#, "key-2").await;
    assert_eq!(status, 422);
    let (status, _, replayed) = raw(&api, "/v1/customers", r#"{"email": "good@example.com"}"#, "key-2").await;
    assert_eq!((status, replayed), (201, None));
}

async fn a_reused_key_with_another_request_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    raw(&api, "/v1/customers", r#"{"name": "Ada"}"#, "k").await;
    let (status, body, _) = raw(&api, "/v1/customers", r#"{"name": "Grace"}"#, "k").await;
    assert_eq!(status, 422);
    assert!(body.contains("idempotency_key_reused"), "{body}");
    let customer = api.customer("usd").await;
    let (status, body, _) = raw(&api, &format!("/v1/customers/{customer}"), r#"{"name": "Ada"}"#, "k").await;
    assert_eq!(status, 422, "same key on another route: {body}");
    assert_eq!(api.get("/v1/customers").await.body["data"].as_array().unwrap().len(), 2);
    let (status, _, _) = raw(&api, "/v1/customers", "{}", &"x".repeat(300)).await;
    assert_eq!(status, 400, "an overlong key");
}

/// While a request holds its key, a retry gets 409 at once; afterwards it gets the replay.
async fn a_key_in_flight_is_a_conflict(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 1000).await;

    // Hold the invoice (PostgreSQL) or the whole database (SQLite) so the first request waits.
    let mut blocker = app.store.pool().begin_with(backend_lock(backend)).await.unwrap();
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM invoices WHERE id = $1 FOR UPDATE")
            .bind(&invoice)
            .fetch_one(&mut *blocker)
            .await
            .unwrap();
    }
    let body = json!({"invoice": invoice, "amount": 100, "currency": "usd"}).to_string();
    let first = {
        let (api, body) = (api.clone(), body.clone());
        tokio::spawn(async move { raw(&api, "/v1/payments", &body, "slow").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, conflict, _) = raw(&api, "/v1/payments", &body, "slow").await;
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict.contains("idempotency_key_in_use"));

    if backend == Backend::Postgres {
        // Another replica (its own process state) sees the key held through the database.
        let replica = spawn_on(TestDb::shared(&app), &[]).await;
        let (status, body2, _) = raw(&replica.api_with_key(&api.key), "/v1/payments", &body, "slow").await;
        assert_eq!(status, 409, "{body2}");
    }
    blocker.commit().await.unwrap();
    let (status, created, replayed) = first.await.unwrap();
    assert_eq!((status, replayed), (201, None), "{created}");
    let (status, again, replayed) = raw(&api, "/v1/payments", &body, "slow").await;
    assert_eq!((status, replayed.as_deref(), again), (201, Some("true"), created));
    assert_eq!(
        api.get(&format!("/v1/payments?invoice={invoice}")).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn backend_lock(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    }
}

async fn keys_expire_and_are_purged(backend: Backend) {
    let env = [
        ("BILLING_IDEMPOTENCY__RETENTION", "1s"),
        ("BILLING_IDEMPOTENCY__PURGE_INTERVAL", "1s"),
    ];
    let Some(app) = spawn_app_with(backend, &env).await else {
        return;
    };
    let api = app.tenant("acme").await;
    raw(&api, "/v1/customers", r#"{"name": "Ada"}"#, "old").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, _, replayed) = raw(&api, "/v1/customers", r#"{"name": "Ada"}"#, "old").await;
    assert_eq!((status, replayed), (201, None), "an expired key is a new request");
    assert_eq!(api.get("/v1/customers").await.body["data"].as_array().unwrap().len(), 2);

    // The purge removes expired keys.
    let mut remaining = i64::MAX;
    for _ in 0..40 {
        let mut conn = app.store.pool().acquire().await.unwrap();
        remaining = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE created < $1")
            .bind(billing_api::clock::now() - 1)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0);
}

/// Where no process purges (idempotency.purger off, serverless), `billing-api idempotency purge`
/// does it once.
async fn a_scheduled_purge_deletes_expired_keys(backend: Backend) {
    let env = [
        ("BILLING_IDEMPOTENCY__RETENTION", "1s"),
        ("BILLING_IDEMPOTENCY__PURGER", "false"),
    ];
    let Some(app) = spawn_app_with(backend, &env).await else {
        return;
    };
    let api = app.tenant("acme").await;
    raw(&api, "/v1/customers", r#"{"name": "Ada"}"#, "scheduled").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let count = async || -> i64 {
        let mut conn = app.store.pool().acquire().await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1, "no purge ran in the process");
    let url = app._db.url.clone();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        crate::helpers::process::run(
            &["idempotency", "purge"],
            &[
                ("BILLING_DATABASE__URL", &url),
                ("BILLING_IDEMPOTENCY__RETENTION", "1s"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("1 expired idempotency key(s) deleted"), "{stdout}");
    assert_eq!(count().await, 0);
}

//! Events and webhooks: the outbox, Standard Webhooks signatures verified by an independent
//! library, secret rotation, retries and the circuit breaker, slow receivers, the SSRF policy,
//! a SIGKILL in the middle of deliveries, and three replicas on one PostgreSQL.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use billing_api::store::Backend;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::process::{Server, refs, run};
use crate::helpers::receiver::{DOWN, Receiver, SLOW, UP};
use crate::helpers::{TEST_ENCRYPTION_KEY, TestDb, spawn_app_with};

/// Fast retries and a quick breaker, so that outages play out in seconds.
const FAST: &[(&str, &str)] = &[
    ("BILLING_WEBHOOKS__POLL_INTERVAL", "100ms"),
    (
        "BILLING_WEBHOOKS__RETRY_SCHEDULE",
        "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
    ),
    ("BILLING_WEBHOOKS__BREAKER_THRESHOLD", "3"),
    ("BILLING_WEBHOOKS__BREAKER_COOLDOWN", "2s"),
    ("BILLING_WEBHOOKS__TIMEOUT", "1s"),
    ("BILLING_WEBHOOKS__LEASE", "3s"),
];

async fn endpoint(api: &Api, url: &str, events: &[&str]) -> (String, String) {
    let created = api
        .post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": events}))
        .await
        .expect(201);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (created["id"].as_str().unwrap().to_owned(), secret)
}

backend_tests!(
    a_dispatch_job_delivers_what_is_due_and_exits,
    events_are_recorded_with_their_change_and_listed,
    deliveries_are_signed_per_standard_webhooks_across_a_secret_rotation,
    an_outage_opens_the_breaker_and_everything_arrives_once_the_receiver_is_back,
    retries_and_resends_on_demand,
);

async fn events_are_recorded_with_their_change_and_listed(backend: Backend) {
    let Some(app) = spawn_app_with(backend, FAST).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("eur").await;
    let invoice = api.open_invoice(&customer, 1000).await;
    api.pay(&invoice, 1000, "eur").await.expect(201);
    // A refused operation records nothing.
    api.pay(&invoice, 1, "eur").await;

    let all = api.get("/v1/events?limit=100").await.expect(200);
    let types: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "invoice.paid",
            "payment.created",
            "invoice.finalized",
            "invoice.created",
            "customer.created"
        ],
        "newest first, one per change"
    );
    let paid = api.get("/v1/events?type=invoice.paid").await.expect(200);
    assert_eq!(paid["data"].as_array().unwrap().len(), 1);
    let event = &paid["data"][0];
    assert_eq!(event["object"], "event");
    assert_eq!(event["data"]["id"], invoice.as_str());
    assert_eq!(event["data"]["status"], "paid");
    assert_eq!(event["data"]["amount_remaining"], 0);
    let id = event["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/events/{id}")).await.expect(200)["type"],
        "invoice.paid"
    );
    let bad = api.get("/v1/events?type=invoice.exploded").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["errors"][0]["code"], "unknown_event_type");
    // Other tenants see none of it.
    let other = app.tenant("other").await;
    assert!(
        other.get("/v1/events").await.expect(200)["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn deliveries_are_signed_per_standard_webhooks_across_a_secret_rotation(backend: Backend) {
    let Some(app) = spawn_app_with(backend, FAST).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = app.tenant("acme").await;
    let (endpoint_id, secret) = endpoint(&api, &receiver.url, &["customer.created"]).await;

    let customer = api.customer("eur").await;
    api.open_invoice(&customer, 500).await; // not subscribed: not delivered
    let got = receiver
        .wait_for(Duration::from_secs(10), "the first delivery", |d| !d.is_empty())
        .await;
    let first = &got[0];
    assert!(
        first.verifies_with(&secret),
        "an independent Standard Webhooks verifier accepts it"
    );
    assert!(
        !first.verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "and a wrong secret does not"
    );
    let event = api.get("/v1/events?type=customer.created").await.expect(200)["data"][0].clone();
    assert_eq!(first.id(), event["id"].as_str().unwrap(), "webhook-id is the event id");
    let body = first.json();
    assert_eq!(body["type"], "customer.created");
    assert_eq!(body["data"]["id"], customer.as_str());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        first.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("billing-api-webhooks/")
    );

    let rotated = api
        .post(&format!("/v1/webhook_endpoints/{endpoint_id}/rotate_secret"), json!({}))
        .await
        .expect(200);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(
        api.get(&format!("/v1/webhook_endpoints/{endpoint_id}"))
            .await
            .expect(200)
            .get("secret")
            .is_none()
    );
    api.customer("eur").await;
    let got = receiver
        .wait_for(Duration::from_secs(10), "the second delivery", |d| d.len() >= 2)
        .await;
    let second = &got[1];
    assert!(second.verifies_with(&new_secret), "signed with the new secret");
    assert!(
        second.verifies_with(&secret),
        "and, during the overlap, with the old one"
    );
    assert_eq!(
        second.headers["webhook-signature"].to_str().unwrap().split(' ').count(),
        2
    );
    assert_eq!(got.len(), 2, "the invoice events were not subscribed");

    let log = api
        .get(&format!("/v1/webhook_endpoints/{endpoint_id}/deliveries"))
        .await
        .expect(200);
    assert_eq!(log["data"].as_array().unwrap().len(), 2);
    assert_eq!(log["data"][0]["status_code"], 200);
    let deliveries = api
        .get(&format!("/v1/webhook_deliveries?endpoint={endpoint_id}"))
        .await
        .expect(200);
    assert!(
        deliveries["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "succeeded")
    );
}

async fn an_outage_opens_the_breaker_and_everything_arrives_once_the_receiver_is_back(backend: Backend) {
    let Some(app) = spawn_app_with(backend, FAST).await else {
        return;
    };
    let (down, slow, healthy) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    down.set(DOWN);
    slow.set(SLOW);
    let api = app.tenant("acme").await;
    let (down_id, _) = endpoint(&api, &down.url, &["*"]).await;
    let (slow_id, _) = endpoint(&api, &slow.url, &["*"]).await;
    endpoint(&api, &healthy.url, &["*"]).await;

    for _ in 0..5 {
        api.customer("eur").await;
    }
    // The healthy endpoint is not held up by the failing ones.
    healthy
        .wait_for(Duration::from_secs(5), "the healthy endpoint's 5 events", |d| {
            d.len() >= 5
        })
        .await;

    // The dead endpoint: a few failures, then the breaker defers it without calls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_when_open = down.all().len();
    assert!(calls_when_open >= 3, "failed attempts were made: {calls_when_open}");
    assert!(
        calls_when_open <= 8,
        "with the breaker open, 5 deliveries do not each hammer the endpoint: {calls_when_open} calls"
    );
    let log = api
        .get(&format!("/v1/webhook_endpoints/{down_id}/deliveries?limit=100"))
        .await
        .expect(200);
    assert!(log["data"].as_array().unwrap().iter().all(|a| a["status_code"] == 503));

    // The slow endpoint: attempts time out and are logged as failures.
    let log = api
        .get(&format!("/v1/webhook_endpoints/{slow_id}/deliveries"))
        .await
        .expect(200);
    let first = &log["data"].as_array().unwrap().last().expect("an attempt")["error"];
    assert_eq!(first, "timed out", "{log}");

    // Back up: after the cool-down a probe succeeds, the breaker closes, everything arrives.
    down.set(UP);
    let delivered = down
        .wait_for(Duration::from_secs(20), "the 5 events after recovery", |d| {
            d.iter().map(|r| r.id()).collect::<BTreeSet<_>>().len() >= 5
        })
        .await;
    assert_eq!(delivered.iter().map(|r| r.id()).collect::<BTreeSet<_>>().len(), 5);
    let endpoint = api.get(&format!("/v1/webhook_endpoints/{down_id}")).await.expect(200);
    assert_eq!(endpoint["status"], "enabled");
    assert_eq!(endpoint["failing_since"], serde_json::Value::Null, "healthy again");

    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is process-wide (other tests add to it too): these must have moved.
    for series in [
        r#"billing_webhook_delivery_attempts_total{outcome="http_error"}"#,
        r#"billing_webhook_delivery_attempts_total{outcome="timeout"}"#,
        r#"billing_webhook_delivery_attempts_total{outcome="success"}"#,
        r#"billing_webhook_breaker_transitions_total{to="open"}"#,
        r#"billing_webhook_breaker_transitions_total{to="closed"}"#,
        "billing_webhook_retries_total",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()));
        assert!(value.is_some_and(|v| v > 0.0), "{series} is {value:?}");
    }
    for gauge in ["billing_webhook_queue_depth ", "billing_webhook_breakers_open "] {
        assert!(metrics.contains(gauge), "{gauge} missing");
    }
}

async fn retries_and_resends_on_demand(backend: Backend) {
    let Some(app) = spawn_app_with(backend, FAST).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = app.tenant("acme").await;
    let (endpoint_id, _) = endpoint(&api, &receiver.url, &["customer.created"]).await;
    api.customer("eur").await;
    receiver
        .wait_for(Duration::from_secs(10), "the delivery", |d| d.len() == 1)
        .await;
    let deliveries = api
        .get(&format!("/v1/webhook_deliveries?endpoint={endpoint_id}"))
        .await
        .expect(200);
    let delivery = deliveries["data"][0]["id"].as_str().unwrap().to_owned();
    let event = deliveries["data"][0]["event"].as_str().unwrap().to_owned();

    // Retry after success: sent again, same webhook-id.
    let retried = api
        .post(&format!("/v1/webhook_deliveries/{delivery}/retry"), json!({}))
        .await
        .expect(200);
    assert_eq!(retried["status"], "pending");
    let got = receiver
        .wait_for(Duration::from_secs(10), "the retried delivery", |d| d.len() == 2)
        .await;
    assert_eq!(got[0].id(), got[1].id());

    // Resend an event to an endpoint: a new delivery.
    let resent = api
        .post(&format!("/v1/events/{event}/resend"), json!({"endpoint": endpoint_id}))
        .await
        .expect(201);
    assert_ne!(resent["id"], delivery.as_str());
    receiver
        .wait_for(Duration::from_secs(10), "the resent event", |d| d.len() == 3)
        .await;

    // A disabled endpoint is not sent the events of its disabled time; enabling resumes.
    api.post(
        &format!("/v1/webhook_endpoints/{endpoint_id}"),
        json!({"disabled": true}),
    )
    .await
    .expect(200);
    api.customer("eur").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.all().len(), 3, "nothing goes to a disabled endpoint");
    let enabled = api
        .post(
            &format!("/v1/webhook_endpoints/{endpoint_id}"),
            json!({"disabled": false}),
        )
        .await
        .expect(200);
    assert_eq!(enabled["status"], "enabled");
    api.customer("eur").await;
    receiver
        .wait_for(Duration::from_secs(10), "a delivery after enabling", |d| d.len() == 4)
        .await;

    let deleted = api
        .delete(&format!("/v1/webhook_endpoints/{endpoint_id}"))
        .await
        .expect(200);
    assert_eq!(deleted["deleted"], true);
    assert_eq!(
        api.get(&format!("/v1/webhook_endpoints/{endpoint_id}")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_unless_allowed() {
    // No allowlist: loopback is off limits, whether named by address or by a name.
    let env = [("BILLING_WEBHOOKS__ALLOWED_NETWORKS", ""), FAST[0], FAST[1]];
    let Some(app) = spawn_app_with(Backend::Sqlite, &env).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = app.tenant("acme").await;
    for url in [
        receiver.url.clone(),
        "http://169.254.169.254/latest".into(),
        "http://[::1]/x".into(),
    ] {
        let refused = api
            .post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": ["*"]}))
            .await;
        assert_eq!(refused.status, 422, "{url}");
        assert_eq!(refused.body["errors"][0]["code"], "invalid_url");
    }
    // A name is checked where it resolves, at send time (DNS rebinding cannot slip through).
    let named = receiver.url.replace("127.0.0.1", "localhost");
    let (endpoint_id, _) = endpoint(&api, &named, &["*"]).await;
    api.customer("eur").await;
    let mut error = serde_json::Value::Null;
    for _ in 0..100 {
        let log = api
            .get(&format!("/v1/webhook_endpoints/{endpoint_id}/deliveries"))
            .await
            .expect(200);
        if let Some(attempt) = log["data"].as_array().unwrap().first() {
            error = attempt["error"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        error.as_str().is_some_and(|e| e.contains("destination not allowed")),
        "refused at send time: {error}"
    );
    assert!(receiver.all().is_empty(), "nothing reached the loopback receiver");
}

/// The signing secret is never stored in clear, not even as a stored response for replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_creation_does_not_reveal_the_secret_again() {
    let Some(app) = spawn_app_with(Backend::Sqlite, FAST).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let body = json!({"url": "https://hooks.example.com/x", "enabled_events": ["*"]});
    let send = || {
        api.client
            .post(app.url("/v1/webhook_endpoints"))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", "create-endpoint-1")
            .json(&body)
            .send()
    };
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let secret = first["secret"].as_str().unwrap().to_owned();
    let replay = send().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert!(replay.get("secret").is_none(), "{replay}");
    let mut conn = app.store.acquire().await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT response_body FROM idempotency_keys")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let secrets: Vec<String> = sqlx::query_scalar("SELECT secret FROM webhook_endpoints")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let secret_b64 = secret.trim_start_matches("whsec_");
    assert!(
        stored.iter().chain(&secrets).all(|s| !s.contains(secret_b64)),
        "the secret is at rest in clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_need_the_encryption_key() {
    let env = [("BILLING_WEBHOOKS__ENCRYPTION_KEY", "")];
    let Some(app) = spawn_app_with(Backend::Sqlite, &env).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let reply = api
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "https://example.com/h", "enabled_events": ["*"]}),
        )
        .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["code"], "webhooks_not_configured");
    // A missing endpoint is missing whether or not webhooks are configured (it answered 503).
    let missing = "/v1/webhook_endpoints/we_0192f0c3a1b07d3e9c4f5a6b7c8d9e0f/rotate_secret";
    let reply = api.post(missing, json!({})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.body["code"], "not_found");
}

fn process_env(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("BILLING_DATABASE__URL".into(), url.into()),
        ("BILLING_DATABASE__MIGRATE_ON_START".into(), "true".into()),
        ("BILLING_SERVER__PORT".into(), "0".into()),
        ("BILLING_WEBHOOKS__ENCRYPTION_KEY".into(), TEST_ENCRYPTION_KEY.into()),
        ("BILLING_WEBHOOKS__ALLOW_HTTP".into(), "true".into()),
        ("BILLING_WEBHOOKS__ALLOWED_NETWORKS".into(), "127.0.0.0/8".into()),
        ("BILLING_SHUTDOWN__GRACE_PERIOD".into(), "0s".into()),
    ];
    env.extend(
        FAST.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn api_for(addr: &str, key: &str) -> Api {
    Api {
        app_url: format!("http://{addr}"),
        client: crate::helpers::client(),
        key: key.to_owned(),
    }
}

backend_tests!(a_killed_process_delivers_everything_after_restart);

/// SIGKILL while deliveries are in flight; after a restart every event still arrives.
async fn a_killed_process_delivers_everything_after_restart(backend: Backend) {
    let Some(db) = TestDb::empty(backend).await else {
        return;
    };
    let env = process_env(&db.url, &[]);
    let (status, key, err) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&env));
    assert!(status.success(), "{err}");
    let receiver = Receiver::start().await;
    receiver.set(SLOW); // attempts are in flight when the process dies
    let server = Server::start(&refs(&env));
    let api = api_for(&server.wait_for_address(), key.trim());
    endpoint(&api, &receiver.url, &["customer.created"]).await;
    let mut customers = BTreeSet::new();
    for _ in 0..10 {
        customers.insert(api.customer("eur").await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("KILL");
    drop(server);

    receiver.set(UP);
    let server = Server::start(&refs(&env));
    server.wait_for_address();
    let delivered = receiver
        .wait_for(Duration::from_secs(30), "all 10 events after the restart", |d| {
            d.iter()
                .map(|r| r.json()["data"]["id"].as_str().unwrap_or("").to_owned())
                .collect::<BTreeSet<_>>()
                .len()
                >= 10
        })
        .await;
    let ids: BTreeSet<String> = delivered
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, customers, "every acknowledged write's event arrived at least once");
}

/// Three replicas on one PostgreSQL, one healthy receiver: everything delivered, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_deliver_everything_once() {
    let Some(db) = TestDb::migrated(Backend::Postgres).await else {
        return;
    };
    let env = process_env(&db.url, &[("BILLING_WEBHOOKS__BATCH_SIZE", "4")]);
    let (status, key, err) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&env));
    assert!(status.success(), "{err}");
    let receiver = Receiver::start().await;
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&refs(&env))).collect();
    let apis: Vec<Api> = servers
        .iter()
        .map(|s| api_for(&s.wait_for_address(), key.trim()))
        .collect();
    endpoint(&apis[0], &receiver.url, &["customer.created"]).await;
    let mut handles = Vec::new();
    for api in apis.iter().cycle().take(30) {
        let api = api.clone();
        handles.push(tokio::spawn(async move { api.customer("eur").await }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let delivered = receiver
        .wait_for(Duration::from_secs(30), "30 events", |d| d.len() >= 30)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = receiver.all();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &all {
        *counts.entry(r.id()).or_default() += 1;
    }
    assert_eq!(counts.len(), 30, "every event delivered ({} requests)", delivered.len());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "no delivery was sent twice: {twice:?}");
    drop(servers);
}

/// An endpoint that keeps failing past `webhooks.disable_after` is disabled, and says so with a
/// `webhook_endpoint.disabled` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let mut env = FAST.to_vec();
    env.push(("BILLING_WEBHOOKS__DISABLE_AFTER", "2s"));
    env.push(("BILLING_WEBHOOKS__BREAKER_COOLDOWN", "1s"));
    let Some(app) = spawn_app_with(Backend::Sqlite, &env).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.set(DOWN);
    let api = app.tenant("acme").await;
    let (endpoint_id, _) = endpoint(&api, &receiver.url, &["customer.created"]).await;
    api.customer("eur").await;
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = api
            .get(&format!("/v1/webhook_endpoints/{endpoint_id}"))
            .await
            .expect(200);
        if state["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state["status"], "disabled", "{state}");
    assert_eq!(state["disabled_reason"], "failing");
    let events = api.get("/v1/events?type=webhook_endpoint.disabled").await.expect(200);
    assert_eq!(events["data"][0]["data"]["id"], endpoint_id.as_str());
}

/// SIGTERM with an attempt in flight: the dispatcher stops claiming and, when the drain timeout
/// ends before the attempt does, gives the delivery back, so the next start sends it at once
/// (rather than after its lease of a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_deliveries_it_cannot_finish() {
    let Some(db) = TestDb::empty(Backend::Sqlite).await else {
        return;
    };
    let env = process_env(
        &db.url,
        &[
            ("BILLING_WEBHOOKS__TIMEOUT", "30s"),
            ("BILLING_WEBHOOKS__LEASE", "60s"),
            ("BILLING_SHUTDOWN__DRAIN_TIMEOUT", "1s"),
        ],
    );
    let (status, key, err) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&env));
    assert!(status.success(), "{err}");
    let receiver = Receiver::start().await;
    receiver.set(SLOW);
    let mut server = Server::start(&refs(&env));
    let api = api_for(&server.wait_for_address(), key.trim());
    endpoint(&api, &receiver.url, &["customer.created"]).await;
    let customer = api.customer("eur").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("TERM");
    let exited = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(10));
        (status, server.text())
    })
    .await
    .unwrap();
    assert!(
        exited.0.is_some_and(|s| s.success()),
        "exits 0 within the drain timeout:\n{}",
        exited.1
    );
    assert!(exited.1.contains("their deliveries were released"), "{}", exited.1);

    receiver.set(UP);
    let server = Server::start(&refs(&env));
    server.wait_for_address();
    let got = receiver
        .wait_for(
            Duration::from_secs(10),
            "the released delivery, well before its lease ends",
            |d| !d.is_empty(),
        )
        .await;
    assert_eq!(got[0].json()["data"]["id"], customer.as_str());
}

/// Rotating `webhooks.encryption_key`: with the old key as the previous one, `webhooks
/// reencrypt` moves every secret under the new key, after which the old key can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_key_can_be_rotated() {
    const NEW_KEY: &str = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let Some(db) = TestDb::empty(Backend::Sqlite).await else {
        return;
    };
    let old = process_env(&db.url, &[]);
    let (status, key, err) = run(&["apikey", "create", "--tenant", "acme", "--scope", "*"], &refs(&old));
    assert!(status.success(), "{err}");
    let receiver = Receiver::start().await;
    let server = Server::start(&refs(&old));
    let api = api_for(&server.wait_for_address(), key.trim());
    let (_, secret) = endpoint(&api, &receiver.url, &["customer.created"]).await;
    drop(server);

    let mut rotating = process_env(
        &db.url,
        &[("BILLING_WEBHOOKS__PREVIOUS_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)],
    );
    rotating.retain(|(k, _)| k != "BILLING_WEBHOOKS__ENCRYPTION_KEY");
    rotating.push(("BILLING_WEBHOOKS__ENCRYPTION_KEY".into(), NEW_KEY.into()));
    let (status, out, err) = run(&["webhooks", "reencrypt"], &refs(&rotating));
    assert!(status.success(), "{err}");
    assert!(out.starts_with("1 of 1 webhook endpoints re-encrypted"), "{out}");
    let (_, out, _) = run(&["webhooks", "reencrypt"], &refs(&rotating));
    assert!(out.starts_with("0 of 1"), "a second run has nothing to do: {out}");

    // The new key alone now reads the secret: deliveries still verify with the endpoint's secret.
    rotating.retain(|(k, _)| k != "BILLING_WEBHOOKS__PREVIOUS_ENCRYPTION_KEY");
    let server = Server::start(&refs(&rotating));
    let api = api_for(&server.wait_for_address(), key.trim());
    api.customer("eur").await;
    let got = receiver
        .wait_for(Duration::from_secs(10), "a delivery under the new key", |d| {
            !d.is_empty()
        })
        .await;
    assert!(got[0].verifies_with(&secret));
}

/// Where no process runs the dispatcher (webhooks.dispatcher off: serverless, cron), a
/// `billing-api webhooks dispatch --until-idle` run delivers what is due, signed, and exits.
async fn a_dispatch_job_delivers_what_is_due_and_exits(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[("BILLING_WEBHOOKS__DISPATCHER", "false")]).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = app.tenant("acme").await;
    let (_, secret) = endpoint(&api, &receiver.url, &["customer.created"]).await;
    api.post("/v1/customers", json!({"name": "Ada"})).await.expect(201);
    api.post("/v1/customers", json!({"name": "Grace"})).await.expect(201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.all().is_empty(), "no dispatcher runs in the API process");

    let url = app._db.url.clone();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(
            &["webhooks", "dispatch", "--until-idle"],
            &[
                ("BILLING_DATABASE__URL", &url),
                ("BILLING_WEBHOOKS__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY),
                ("BILLING_WEBHOOKS__ALLOW_HTTP", "true"),
                ("BILLING_WEBHOOKS__ALLOWED_NETWORKS", "127.0.0.0/8"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("2 webhook delivery attempt(s) made"), "{stdout}");
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|d| d.verifies_with(&secret)));
    let deliveries = api.get("/v1/webhook_deliveries?status=succeeded").await.expect(200);
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 2);
}

//! Rate limits as API clients meet them: a budget per tenant for reads and one for writes, one
//! per client address for refused credentials, the IETF `RateLimit-Policy`/`RateLimit` fields
//! on every answer, 429 problems with `Retry-After` that change nothing; budgets shared by two
//! instances through a real Redis, and each instance's own budgets while Redis is down.
use std::time::Duration;

use billing_api::store::Backend;
use serde_json::json;

use crate::helpers::api::{Api, Reply};
use crate::helpers::redis::Redis;
use crate::helpers::{TestApp, TestDb, assert_problem, spawn_app_with, spawn_on};

fn header(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header ({})", reply.status))
        .to_owned()
}

/// `r` of the `RateLimit` field.
fn remaining(reply: &Reply) -> u32 {
    let field = header(reply, "ratelimit");
    field
        .split(';')
        .find_map(|p| p.strip_prefix("r="))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no r= in {field}"))
}

async fn scrape(app: &TestApp) -> String {
    app.client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Small budgets: 3 reads, 2 writes, 2 refused credentials at once, one a second after that.
const SMALL: &[(&str, &str)] = &[
    ("BILLING_RATE_LIMIT__READ_PER_SECOND", "1"),
    ("BILLING_RATE_LIMIT__READ_BURST", "3"),
    ("BILLING_RATE_LIMIT__WRITE_PER_SECOND", "1"),
    ("BILLING_RATE_LIMIT__WRITE_BURST", "2"),
    ("BILLING_RATE_LIMIT__UNAUTHENTICATED_PER_SECOND", "1"),
    ("BILLING_RATE_LIMIT__UNAUTHENTICATED_BURST", "2"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_read_and_write_budgets_told_in_every_answer() {
    let Some(app) = spawn_app_with(Backend::Sqlite, SMALL).await else {
        return;
    };
    let acme = app.tenant("acme").await;

    // Reads: the policy and what is left, on every answer, down to 0; then 429.
    for left in [2, 1, 0] {
        let reply = acme.get("/v1/customers").await;
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "ratelimit-policy"), "\"read\";q=3;w=3");
        assert_eq!(remaining(&reply), left);
    }
    let refused = acme.get("/v1/customers").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["code"], "rate_limited");
    let retry: u64 = header(&refused, "retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=1).contains(&retry), "one more read in at most 1 s: {retry}");
    assert_eq!(remaining(&refused), 0);
    assert_eq!(header(&refused, "content-type"), "application/problem+json");

    // Writes have a budget of their own; a refused write changes nothing.
    for left in [1, 0] {
        let reply = acme.post("/v1/customers", json!({"name": "Ada"})).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(header(&reply, "ratelimit-policy"), "\"write\";q=2;w=2");
        assert_eq!(remaining(&reply), left);
    }
    let refused = acme.post("/v1/customers", json!({"name": "Too many"})).await;
    assert_eq!(refused.status, 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let list = acme.get("/v1/customers").await.expect(200);
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(2),
        "the refused write was not applied"
    );

    // Another tenant is not affected.
    let globex = app.tenant("globex").await;
    assert_eq!(remaining(&globex.get("/v1/customers").await), 2);

    // Refused credentials draw on the client address's budget; probes and the document on none.
    let stranger = app.api_with_key("bsk_not_a_key");
    for _ in 0..2 {
        let reply = stranger.get("/v1/customers").await;
        assert_eq!(reply.status, 401);
        assert_eq!(header(&reply, "ratelimit-policy"), "\"unauthenticated\";q=2;w=2");
    }
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth("bsk_not_a_key")
        .send()
        .await
        .unwrap();
    assert_problem(response, 429, "rate_limited").await;
    for path in ["/health/live", "/openapi.json", "/"] {
        for _ in 0..5 {
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(response.headers().get("ratelimit").is_none(), "{path} is not limited");
        }
    }

    let metrics = scrape(&app).await;
    for class in ["read", "write", "unauthenticated"] {
        assert!(
            sample(&metrics, &format!("billing_rate_limited_total{{class=\"{class}\"}}")) >= 1.0,
            "{class} refusals counted"
        );
    }
}

/// Two instances sharing budgets through Redis (READ_BURST 4).
async fn pair(redis: &Redis) -> (TestApp, TestApp, Api, Api) {
    let env = [
        ("BILLING_RATE_LIMIT__READ_PER_SECOND", "1"),
        ("BILLING_RATE_LIMIT__READ_BURST", "4"),
        ("BILLING_RATE_LIMIT__REDIS_URL", redis.url().leak() as &str),
        // Generous: a loaded CI machine must not turn a slow answer into a fallback.
        ("BILLING_RATE_LIMIT__REDIS_TIMEOUT", "500ms"),
    ];
    let a = spawn_app_with(Backend::Sqlite, &env).await.expect("app");
    let b = spawn_on(TestDb::shared(&a), &env).await;
    let on_a = a.tenant("acme").await;
    let on_b = b.api_with_key(&on_a.key);
    (a, b, on_a, on_b)
}

/// The first request of an instance connects to Redis in the background and is answered from
/// the local budget; wait until the shared one answers (a budget of another tenant is used).
async fn until_shared(app: &TestApp) {
    let warm = app.tenant(&format!("warm-{}", app.addr.port())).await;
    for _ in 0..100 {
        let _ = warm.get("/v1/customers").await;
        if sample(&scrape(app).await, "billing_rate_limit_shared") == 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the shared budgets never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_shared_through_redis_and_local_while_it_is_down() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b, on_a, on_b) = pair(&redis).await;
    until_shared(&a).await;
    until_shared(&b).await;

    // One budget of 4 for both instances: 2 + 2, then both refuse.
    let mut left = Vec::new();
    for api in [&on_a, &on_a, &on_b, &on_b] {
        let reply = api.get("/v1/customers").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        left.push(remaining(&reply));
    }
    assert_eq!(left, [3, 2, 1, 0], "one budget, drawn on by both instances");
    assert_eq!(on_a.get("/v1/customers").await.status, 429);
    assert_eq!(on_b.get("/v1/customers").await.status, 429);

    // Redis dies: no request fails or waits for it; each instance enforces its own budget of 4.
    redis.kill();
    let errors_before = sample(&scrape(&a).await, "billing_rate_limit_store_errors_total");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(on_a.get("/v1/customers").await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429],
        "a's own budget, whole and then spent"
    );
    let metrics = scrape(&a).await;
    assert!(sample(&metrics, "billing_rate_limit_store_errors_total") > errors_before);
    assert_eq!(sample(&metrics, "billing_rate_limit_shared"), 0.0);
    assert_eq!(
        on_b.get("/v1/customers").await.status,
        200,
        "b has a budget of its own now"
    );

    // Redis is back (empty): the instances share again once they have reconnected.
    redis.spawn().expect("restart redis");
    until_shared(&a).await;
    let reply = on_a.get("/v1/customers").await;
    assert_eq!(reply.status, 200);
    assert_eq!(remaining(&reply), 3, "a fresh shared budget");
}

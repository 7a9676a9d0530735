//! Test clocks on both backends: a customer on a clock lives in its time; the billing cycle
//! leaves their subscriptions alone; advancing the clock bills each period that fell due, once.
use billing_api::billing::cycles;
use billing_api::store::Backend;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::changes::price;
use crate::helpers::spawn_app;
use crate::properties::check;

backend_tests!(
    a_clock_bills_its_customers_when_it_moves_and_only_then,
    a_paused_subscription_bills_nothing_and_resumes_with_a_new_period,
    a_clock_ahead_of_real_time_does_not_delay_webhooks,
    an_invoice_left_unpaid_makes_the_subscription_past_due_until_it_is_paid,
);

/// 2025-01-31T00:00:00Z and the first instants of the months after it.
const JAN_31: i64 = 1_738_281_600;
const MAR_1: i64 = 1_740_787_200;
const MAY_1: i64 = 1_746_057_600;

async fn a_clock_bills_its_customers_when_it_moves_and_only_then(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let clock = api
        .post("/v1/test_clocks", json!({"frozen_time": JAN_31, "name": "renewals"}))
        .await
        .expect(201);
    let clock_id = clock["id"].as_str().unwrap();
    assert_eq!(clock["object"], "test_clock");
    let customer = api
        .post("/v1/customers", json!({"currency": "usd", "test_clock": clock_id}))
        .await
        .expect(201);
    assert_eq!(
        (&customer["test_clock"], &customer["created"]),
        (&json!(clock_id), &json!(JAN_31))
    );
    let price = price(&api, 3_000).await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer["id"], "items": [{"price": price}]}),
        )
        .await
        .expect(201);
    let sub_id = sub["id"].as_str().unwrap();
    assert_eq!(sub["current_period_start"], JAN_31, "it starts at the clock's time");
    let periods = async || -> Vec<i64> {
        let page = api
            .get(&format!("/v1/invoices?subscription={sub_id}&limit=100"))
            .await
            .expect(200);
        let mut starts: Vec<i64> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["period_start"].as_i64().unwrap())
            .collect();
        starts.sort_unstable();
        starts
    };

    // The billing cycle runs in real time (years after the clock's), and leaves it alone.
    cycles::run_until(&app.store, billing_api::clock::now(), &CancellationToken::new()).await;
    assert_eq!(periods().await, [JAN_31]);

    // A change takes the clock's time as now: it lies in the current period.
    let seats = json!({"items": [{"id": sub["items"]["data"][0]["id"], "quantity": 2}]});
    let preview = api
        .post(&format!("/v1/subscriptions/{sub_id}/preview"), seats.clone())
        .await
        .expect(200);
    assert_eq!(preview["proration_date"], JAN_31, "{preview}");

    // Advancing bills each period that fell due, once: Feb 28 (the month end kept), then Mar 31.
    let moved = api
        .post(
            &format!("/v1/test_clocks/{clock_id}/advance"),
            json!({"frozen_time": MAR_1}),
        )
        .await
        .expect(200);
    assert_eq!(moved["frozen_time"], MAR_1);
    let feb_28 = MAR_1 - 86_400;
    assert_eq!(periods().await, [JAN_31, feb_28]);
    api.post(
        &format!("/v1/test_clocks/{clock_id}/advance"),
        json!({"frozen_time": MAY_1}),
    )
    .await
    .expect(200);
    let mar_31 = 1_743_379_200;
    let apr_30 = MAY_1 - 86_400;
    assert_eq!(periods().await, [JAN_31, feb_28, mar_31, apr_30]);
    let invoices = api
        .get(&format!("/v1/invoices?subscription={sub_id}&limit=1"))
        .await
        .expect(200);
    assert_eq!(invoices["data"][0]["created"], MAY_1, "issued at the clock's time");

    // A clock only moves forward, and by at most two years at a time; a refusal moves nothing.
    for to in [MAY_1, MAY_1 - 1, MAY_1 + 2 * 366 * 86_400 + 1] {
        let refused = api
            .post(
                &format!("/v1/test_clocks/{clock_id}/advance"),
                json!({"frozen_time": to}),
            )
            .await
            .expect(422);
        assert_eq!(refused["errors"][0]["code"], "invalid_advance", "{to}: {refused}");
    }
    assert_eq!(
        api.get(&format!("/v1/test_clocks/{clock_id}")).await.expect(200)["frozen_time"],
        MAY_1
    );
    let listed = api.get("/v1/test_clocks").await.expect(200);
    assert_eq!(listed["data"][0]["id"], clock_id);
    let events = api.get("/v1/events?type=test_clock.advanced").await.expect(200);
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
    let missing = api
        .post(
            "/v1/customers",
            json!({"test_clock": "clock_0192f0c3a1b07d3e9c4f5a6b7c8d9e0f"}),
        )
        .await
        .expect(404);
    assert_eq!(missing["code"], "not_found");
    check(&app.store, "acme").await.unwrap();
}

async fn a_paused_subscription_bills_nothing_and_resumes_with_a_new_period(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let clock = api.post("/v1/test_clocks", json!({"frozen_time": JAN_31})).await.id();
    let customer = api
        .post("/v1/customers", json!({"currency": "usd", "test_clock": clock}))
        .await
        .id();
    let price = price(&api, 2_800).await;
    let trial = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}], "trial_period_days": 7}),
        )
        .await
        .id();
    let refused = api
        .post(&format!("/v1/subscriptions/{trial}/pause"), json!({}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invalid_state_transition", "a trial is not paused");
    api.post(&format!("/v1/subscriptions/{trial}/cancel"), json!({}))
        .await
        .expect(200);
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}]}),
        )
        .await;
    let sub = sub.expect(201);
    let id = sub["id"].as_str().unwrap();
    let advance = async |to: i64| {
        api.post(&format!("/v1/test_clocks/{clock}/advance"), json!({"frozen_time": to}))
            .await
            .expect(200);
    };
    let invoices = async || -> Vec<serde_json::Value> {
        let page = api
            .get(&format!("/v1/invoices?subscription={id}&limit=100"))
            .await
            .expect(200);
        page["data"].as_array().unwrap().iter().rev().cloned().collect()
    };

    // Paused 10 days into a 28-day period (Jan 31 - Feb 28): the 18 days left are credited.
    let feb_10 = JAN_31 + 10 * 86_400;
    advance(feb_10).await;
    let refused = api
        .post(&format!("/v1/subscriptions/{id}/resume"), json!({}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invalid_state_transition", "only a paused one resumes");
    let paused = api
        .post(&format!("/v1/subscriptions/{id}/pause"), json!({}))
        .await
        .expect(200);
    assert_eq!(paused["status"], "paused");
    let balance = api
        .get(&format!("/v1/customers/{customer}/credit_balance"))
        .await
        .expect(200);
    assert_eq!(balance["balances"][0]["amount"], 1_800, "2800 × 18/28");
    let change = json!({"items": [{"id": sub["items"]["data"][0]["id"], "quantity": 2}]});
    let refused = api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(409);
    assert_eq!(
        refused["code"], "invalid_state_transition",
        "a paused one does not change"
    );

    // Two months pass: nothing is billed.
    advance(MAY_1).await;
    assert_eq!(invoices().await.len(), 1);
    assert_eq!(
        api.get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
            .await
            .expect(409)["code"],
        "no_upcoming_invoice"
    );

    // Resumed on May 1: a month from now is invoiced at once, less the credit.
    let resumed = api
        .post(&format!("/v1/subscriptions/{id}/resume"), json!({}))
        .await
        .expect(200);
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["current_period_start"], MAY_1);
    let all = invoices().await;
    let last = all.last().unwrap();
    assert_eq!(
        (
            &last["billing_reason"],
            &last["period_start"],
            &last["total"],
            &last["applied_balance"]
        ),
        (
            &json!("subscription_resume"),
            &json!(MAY_1),
            &json!(2_800),
            &json!(1_800)
        )
    );
    // And it renews from there.
    let jun_1 = MAY_1 + 31 * 86_400;
    advance(jun_1).await;
    let all = invoices().await;
    assert_eq!((all.len(), &all[2]["period_start"]), (3, &json!(jun_1)));
    let events = api.get("/v1/events?limit=100").await.expect(200);
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"subscription.paused") && types.contains(&"subscription.resumed"),
        "{types:?}"
    );

    // One set to end at its period's end is not paused (it would never get there)...
    api.post(
        &format!("/v1/subscriptions/{id}/cancel"),
        json!({"at_period_end": true}),
    )
    .await
    .expect(200);
    let refused = api
        .post(&format!("/v1/subscriptions/{id}/pause"), json!({}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invalid_state_transition", "{refused}");
    // ...and a paused one canceled at its period's end ends now: it has no period running.
    let other = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}]}),
        )
        .await
        .expect(201);
    let other_id = other["id"].as_str().unwrap();
    api.post(&format!("/v1/subscriptions/{other_id}/pause"), json!({}))
        .await
        .expect(200);
    let ended = api
        .post(
            &format!("/v1/subscriptions/{other_id}/cancel"),
            json!({"at_period_end": true}),
        )
        .await
        .expect(200);
    assert_eq!(
        (&ended["status"], &ended["ended_at"]),
        (&json!("canceled"), &json!(jun_1))
    );
    check(&app.store, "acme").await.unwrap();
}

async fn a_clock_ahead_of_real_time_does_not_delay_webhooks(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    // Nothing listens there: the deliveries stay queued, and when they are due shows.
    api.post(
        "/v1/webhook_endpoints",
        json!({"url": "https://hooks.example.com/x", "enabled_events": ["*"]}),
    )
    .await
    .expect(201);
    let before = billing_api::clock::now();
    let ahead = before + 400 * 86_400;
    let clock = api
        .post("/v1/test_clocks", json!({"frozen_time": ahead}))
        .await
        .expect(201);
    let clock_id = clock["id"].as_str().unwrap();
    let customer = api
        .post("/v1/customers", json!({"currency": "usd", "test_clock": clock_id}))
        .await
        .expect(201);
    let price = price(&api, 3_000).await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer["id"], "items": [{"price": price}]}),
        )
        .await
        .expect(201);
    api.post(
        &format!("/v1/test_clocks/{clock_id}/advance"),
        json!({"frozen_time": ahead + 40 * 86_400}),
    )
    .await
    .expect(200);
    let after = billing_api::clock::now();

    // The objects live in the clock's time...
    let invoices = api
        .get(&format!("/v1/invoices?subscription={}", sub["id"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(invoices["data"].as_array().unwrap().len(), 2);
    assert!(invoices["data"][0]["created"].as_i64().unwrap() >= ahead);
    // ...their events happened now, and their webhooks are due now, not in 400 days.
    let events = api.get("/v1/events?limit=100").await.expect(200);
    let created: Vec<i64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .collect();
    assert!(created.len() >= 6, "{events}");
    assert!(
        created.iter().all(|t| (before..=after).contains(t)),
        "events at real time {before}..={after}: {created:?}"
    );
    let mut conn = app.store.pool().acquire().await.unwrap();
    let (queued, latest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MAX(next_attempt_at) FROM webhook_deliveries WHERE tenant_id = $1")
            .bind("acme")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(queued, created.len() as i64, "one delivery per event");
    let latest = latest.unwrap();
    assert!(
        latest < before + 86_400,
        "a delivery is due at {latest}, the clock's time"
    );
    check(&app.store, "acme").await.unwrap();
}

async fn an_invoice_left_unpaid_makes_the_subscription_past_due_until_it_is_paid(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let clock = api.post("/v1/test_clocks", json!({"frozen_time": JAN_31})).await.id();
    let customer = api
        .post("/v1/customers", json!({"currency": "usd", "test_clock": clock}))
        .await
        .id();
    let price = price(&api, 3_000).await;
    // Sent invoices, due 10 days after they are issued.
    let id = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}],
                   "collection_method": "send_invoice", "days_until_due": 10}),
        )
        .await
        .id();
    let advance = async |to: i64| {
        api.post(&format!("/v1/test_clocks/{clock}/advance"), json!({"frozen_time": to}))
            .await
            .expect(200);
        api.get(&format!("/v1/subscriptions/{id}")).await.expect(200)["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    const DAY: i64 = 86_400;
    // Due on Feb 10; past due 3 days later (`billing.past_due_after`), not before.
    assert_eq!(advance(JAN_31 + 13 * DAY - 1).await, "active");
    assert_eq!(advance(JAN_31 + 13 * DAY).await, "past_due");
    // A past-due subscription still renews: Feb 28's invoice is issued.
    assert_eq!(advance(MAR_1).await, "past_due");
    let open = api
        .get(&format!("/v1/invoices?subscription={id}&status=open"))
        .await
        .expect(200);
    let mut open: Vec<(i64, String, i64)> = open["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["period_start"].as_i64().unwrap(),
                i["id"].as_str().unwrap().to_owned(),
                i["amount_remaining"].as_i64().unwrap(),
            )
        })
        .collect();
    open.sort();
    assert_eq!(open.len(), 2, "{open:?}");
    // Paying the overdue one settles it, though the newer one is still open (not overdue).
    api.pay(&open[0].1, open[0].2, "usd").await.expect(201);
    assert_eq!(advance(MAR_1 + 1).await, "active");
    // The newer one, left unpaid, makes it past due again after its own due date.
    assert_eq!(advance(MAR_1 + 13 * DAY).await, "past_due");
    let events = api
        .get("/v1/events?type=subscription.updated&limit=100")
        .await
        .expect(200);
    let statuses: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["past_due", "active", "past_due"], "{events}");
    check(&app.store, "acme").await.unwrap();
}

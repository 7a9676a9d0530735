//! Metered prices on both backends: usage billed in arrears on each period's invoice (per unit,
//! packages, tiers), the upcoming invoice equal to the invoice then made, late events as
//! adjustment lines on the next invoice, usage to the instant of a cancellation, trials and
//! removed items (billed from the rollups alone: raw events are deleted before each bill); and a
//! property: every window's billed amount equals its price applied to an aggregate computed
//! independently from the accepted events (`METERED_CASES` per backend).
use std::collections::{BTreeMap, HashMap, HashSet};

use billing_api::billing::catalog::{self, NewPrice, NewProduct, Pricing};
use billing_api::billing::customers::{self, NewCustomer};
use billing_api::billing::metering::{self, NewEvent, NewMeter};
use billing_api::billing::subscriptions::{self, NewItem, NewSubscription};
use billing_api::billing::test_clocks;
use billing_api::domain::metadata::Metadata;
use billing_api::domain::metering::{Aggregation, PropertyPath, minute_of, window_minutes};
use billing_api::domain::money::Currency;
use billing_api::domain::pricing::{Model as DomainModel, usage_amount};
use billing_api::objects::{
    CollectionMethod, Interval, PriceRecurring, PriceTier, Round, TiersMode, TransformQuantity, UsageType,
};
use billing_api::operation::Ctx;
use billing_api::store::{Backend, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::{TestDb, config_for, spawn_app};
use crate::metering::{Ev, expected};

backend_tests!(
    metered_items_are_billed_in_arrears_with_late_usage_adjusted,
    metered_prices_and_items_are_checked,
    trials_and_removed_items_bill_usage_where_it_happened,
    invoices_bill_the_usage_of_the_accepted_events,
    a_window_priced_lower_later_credits_the_difference,
);

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// A test clock five days back, on a minute's first second: events it bills are within the
/// grace period of real time.
fn five_days_ago() -> i64 {
    minute_of(billing_api::clock::now()) - 5 * DAY
}

pub(crate) async fn daily_price(api: &Api, body: Value) -> String {
    let product = api.post("/v1/products", json!({"name": "LLM"})).await.expect(201);
    let mut body = body;
    body["product"] = product["id"].clone();
    body["currency"] = json!("usd");
    if body.get("recurring").is_none() {
        body["recurring"] = json!({"interval": "day"});
    }
    api.post("/v1/prices", body).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn metered(meter: &str) -> Value {
    json!({"interval": "day", "usage_type": "metered", "meter": meter})
}

async fn send(api: &Api, customer: &str, events: &[(&str, i64, i64)]) {
    let events: Vec<Value> = events
        .iter()
        .map(|(id, at, tokens)| {
            json!({"identifier": id, "event_name": "llm", "customer": customer, "timestamp": at,
            "properties": {"tokens": tokens}})
        })
        .collect();
    let reply = api
        .post("/v1/meter_events", json!({"events": events}))
        .await
        .expect(200);
    assert!(
        reply["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "accepted"),
        "{reply}"
    );
}

/// The subscription's invoices, oldest first.
async fn invoices(api: &Api, sub: &str) -> Vec<Value> {
    let page = api
        .get(&format!("/v1/invoices?subscription={sub}&limit=100"))
        .await
        .expect(200);
    let mut all = page["data"].as_array().unwrap().clone();
    all.reverse();
    all
}

/// (description, quantity, unit_amount, period start, period end) of each line.
fn lines(lines: &Value) -> Vec<(String, i64, i64, i64, i64)> {
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
                l["unit_amount"].as_i64().unwrap(),
                l["period"]["start"].as_i64().unwrap_or(0),
                l["period"]["end"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

async fn advance(api: &Api, clock: &str, to: i64) {
    api.post(&format!("/v1/test_clocks/{clock}/advance"), json!({"frozen_time": to}))
        .await
        .expect(200);
}

struct Setup {
    clock: String,
    customer: String,
    tokens: String,
    calls: String,
    t0: i64,
}

async fn setup(api: &Api) -> Setup {
    let t0 = five_days_ago();
    let clock = api
        .post("/v1/test_clocks", json!({"frozen_time": t0}))
        .await
        .expect(201);
    let clock = clock["id"].as_str().unwrap().to_owned();
    let customer = api
        .post("/v1/customers", json!({"currency": "usd", "test_clock": clock}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let meter = async |body: Value| {
        api.post("/v1/meters", body).await.expect(201)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let tokens = meter(json!({"event_name": "llm", "aggregation": "sum", "value_property": "$.tokens"})).await;
    let calls = meter(json!({"event_name": "llm", "aggregation": "count"})).await;
    Setup {
        clock,
        customer,
        tokens,
        calls,
        t0,
    }
}

/// Deletes the stored events (their identifiers stay claimed). What is billed after it is read
/// from the rollups alone: invoices, their preview, late adjustments and the usage endpoint never
/// scan raw events, which is what keeps them fast over 100M events.
async fn forget_raw_events(store: &Store) {
    let deleted = sqlx::query("DELETE FROM meter_events")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(deleted.rows_affected() > 0, "events were stored");
}

async fn metered_items_are_billed_in_arrears_with_late_usage_adjusted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let s = setup(&api).await;
    let t0 = s.t0;
    let base = daily_price(&api, json!({"unit_amount": 1_000, "nickname": "Base"})).await;
    // Tokens in packages of 1,000, each started package 1.50; calls: 2 free, then 0.25 each.
    let tokens = daily_price(
        &api,
        json!({"recurring": metered(&s.tokens), "unit_amount": 150, "nickname": "Tokens",
            "transform_quantity": {"divide_by": 1_000, "round": "up"}}),
    )
    .await;
    let calls = daily_price(
        &api,
        json!({"recurring": metered(&s.calls), "nickname": "Calls", "tiers_mode": "graduated",
            "tiers": [{"up_to": 2, "unit_amount": 0}, {"up_to": null, "unit_amount": 25}]}),
    )
    .await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": s.customer, "items": [{"price": base}, {"price": tokens}, {"price": calls}]}),
        )
        .await
        .expect(201);
    let sub = sub["id"].as_str().unwrap().to_owned();
    let first = invoices(&api, &sub).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0]["total"], 1_000,
        "usage is billed in arrears: none at the start"
    );

    // Day 0: five calls, 2,200 tokens: 3 packages (4.50) and 3 paid calls (0.75).
    send(
        &api,
        &s.customer,
        &[
            ("e1", t0 + HOUR, 1_500),
            ("e2", t0 + 2 * HOUR, 700),
            ("e3", t0 + 3 * HOUR, 0),
            ("e4", t0 + 4 * HOUR, 0),
            ("e5", t0 + 5 * HOUR, 0),
        ],
    )
    .await;
    forget_raw_events(&app.store).await;
    advance(&api, &s.clock, t0 + 20 * HOUR).await;
    let upcoming = api
        .get(&format!("/v1/subscriptions/{sub}/upcoming_invoice"))
        .await
        .expect(200);
    assert_eq!(upcoming["total"], 1_000 + 450 + 75, "{upcoming}");
    advance(&api, &s.clock, t0 + DAY).await;
    let all = invoices(&api, &sub).await;
    assert_eq!(all.len(), 2);
    let second = &all[1];
    assert_eq!(second["total"], 1_525, "{second}");
    assert_eq!(
        lines(&second["lines"]["data"]),
        lines(&upcoming["lines"]),
        "the upcoming invoice is the invoice made"
    );
    let day0 = (t0, t0 + DAY);
    assert_eq!(
        lines(&second["lines"]["data"])[1..],
        [
            (
                "Tokens (packages of 1000): 2200 used".to_owned(),
                3,
                150,
                day0.0,
                day0.1
            ),
            ("Calls (tier 2): 5 used".to_owned(), 3, 25, day0.0, day0.1),
        ]
    );

    // A late event for day 0, after its invoice: 3,100 tokens (4 packages) and 6 calls now.
    // Day 1: one call of 10 tokens (a package; the call is free).
    send(
        &api,
        &s.customer,
        &[("e6", t0 + 6 * HOUR, 900), ("e7", t0 + DAY + HOUR, 10)],
    )
    .await;
    forget_raw_events(&app.store).await;
    advance(&api, &s.clock, t0 + 2 * DAY).await;
    let all = invoices(&api, &sub).await;
    let third = &all[2];
    let day1 = (t0 + DAY, t0 + 2 * DAY);
    assert_eq!(
        lines(&third["lines"]["data"])[1..],
        [
            ("Tokens (packages of 1000): 10 used".to_owned(), 1, 150, day1.0, day1.1),
            ("Calls: 1 used".to_owned(), 1, 0, day1.0, day1.1),
            ("Tokens: 3100 used (late usage)".to_owned(), 1, 150, day0.0, day0.1),
            ("Calls: 6 used (late usage)".to_owned(), 1, 25, day0.0, day0.1),
        ],
        "{third}"
    );
    assert_eq!(third["total"], 1_000 + 150 + 150 + 25);
    // Billed again, nothing changes: no second adjustment.
    advance(&api, &s.clock, t0 + 3 * DAY).await;
    let fourth = &invoices(&api, &sub).await[3];
    assert_eq!(fourth["total"], 1_000, "{fourth}");

    // Cancelled now, usage up to the instant is on the last invoice.
    advance(&api, &s.clock, t0 + 3 * DAY + 6 * HOUR).await;
    send(&api, &s.customer, &[("e8", t0 + 3 * DAY + HOUR, 5_000)]).await;
    forget_raw_events(&app.store).await;
    api.post(&format!("/v1/subscriptions/{sub}/cancel"), json!({}))
        .await
        .expect(200);
    let all = invoices(&api, &sub).await;
    assert_eq!(all.len(), 5);
    let cut = (t0 + 3 * DAY, t0 + 3 * DAY + 6 * HOUR);
    assert_eq!(
        lines(&all[4]["lines"]["data"]),
        [
            ("Tokens (packages of 1000): 5000 used".to_owned(), 5, 150, cut.0, cut.1),
            ("Calls: 1 used".to_owned(), 1, 0, cut.0, cut.1),
        ]
    );
    assert_eq!(all[4]["billing_reason"], "subscription_cancel");

    // The usage endpoint counts what the invoices billed.
    let usage = api
        .get(&format!(
            "/v1/customers/{}/usage?start={}&end={}&meter={}",
            s.customer, day0.0, day0.1, s.tokens
        ))
        .await
        .expect(200);
    assert_eq!(usage["meters"][0]["value"], 3_100);
}

async fn metered_prices_and_items_are_checked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let s = setup(&api).await;
    let product = api.post("/v1/products", json!({"name": "LLM"})).await.expect(201);
    let refused = async |body: Value, status: u16| -> (String, String) {
        let mut body = body;
        body["product"] = product["id"].clone();
        body["currency"] = json!("usd");
        let problem = api.post("/v1/prices", body).await.expect(status);
        if status == 404 {
            return (String::new(), problem["code"].as_str().unwrap().to_owned());
        }
        let error = &problem["errors"][0];
        (
            error["field"].as_str().unwrap().to_owned(),
            error["code"].as_str().unwrap().to_owned(),
        )
    };
    let pair = |f: &str, c: &str| (f.to_owned(), c.to_owned());
    assert_eq!(
        refused(
            json!({"recurring": {"interval": "day", "usage_type": "metered"}, "unit_amount": 1}),
            422
        )
        .await,
        pair("recurring.meter", "meter_required")
    );
    assert_eq!(
        refused(
            json!({"recurring": {"interval": "day", "meter": s.tokens}, "unit_amount": 1}),
            422
        )
        .await,
        pair("recurring.meter", "meter_not_allowed")
    );
    assert_eq!(
        refused(
            json!({"recurring": {"interval": "day"}, "unit_amount": 1,
                "transform_quantity": {"divide_by": 10, "round": "up"}}),
            422
        )
        .await,
        pair("transform_quantity", "package_not_allowed")
    );
    assert_eq!(
        refused(
            json!({"recurring": {"interval": "day"}, "tiers_mode": "volume",
                "tiers": [{"up_to": 5_000_000, "unit_amount": 1}, {"unit_amount": 1}]}),
            422
        )
        .await,
        pair("tiers[0].up_to", "invalid_tiers")
    );
    let missing = format!("mtr_{}", "0".repeat(32));
    assert_eq!(
        refused(json!({"recurring": metered(&missing), "unit_amount": 1}), 404)
            .await
            .1,
        "not_found"
    );
    // A metered price's tiers may reach past an item's largest quantity.
    let big = daily_price(
        &api,
        json!({"recurring": metered(&s.tokens), "tiers_mode": "volume",
            "tiers": [{"up_to": 5_000_000, "unit_amount": 1}, {"unit_amount": 0}]}),
    )
    .await;
    let shown = api.get(&format!("/v1/prices/{big}")).await.expect(200);
    assert_eq!(shown["recurring"]["usage_type"], "metered");
    assert_eq!(shown["recurring"]["meter"], json!(s.tokens));
    // What a price bills never changes.
    let fixed = api
        .post(
            &format!("/v1/prices/{big}"),
            json!({"transform_quantity": {"divide_by": 2, "round": "up"}}),
        )
        .await
        .expect(422);
    assert_eq!(fixed["errors"][0]["code"], "unknown_field");

    // Items: a metered item has no quantity; one meter is billed by one item.
    let other = daily_price(&api, json!({"recurring": metered(&s.tokens), "unit_amount": 2})).await;
    let create = async |items: Value| {
        api.post("/v1/subscriptions", json!({"customer": s.customer, "items": items}))
            .await
            .expect(422)["errors"][0]
            .clone()
    };
    let e = create(json!([{"price": big, "quantity": 3}])).await;
    assert_eq!(
        (&e["field"], &e["code"]),
        (&json!("items[0].quantity"), &json!("quantity_not_allowed"))
    );
    let e = create(json!([{"price": big}, {"price": other}])).await;
    assert_eq!(
        (&e["field"], &e["code"]),
        (&json!("items[1].price"), &json!("duplicate_meter"))
    );
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": s.customer, "items": [{"price": big}]}),
        )
        .await
        .expect(201);
    let e = api
        .post(
            &format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
            json!({"items": [{"price": other}]}),
        )
        .await
        .expect(422);
    assert_eq!(e["errors"][0]["code"], "duplicate_meter", "{e}");
    // Nor by another subscription of the customer's, while it runs.
    let e = create(json!([{"price": other}])).await;
    assert_eq!(
        (&e["field"], &e["code"]),
        (&json!("items[0].price"), &json!("duplicate_meter"))
    );
    api.post(
        &format!("/v1/subscriptions/{}/cancel", sub["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .expect(200);
    api.post(
        "/v1/subscriptions",
        json!({"customer": s.customer, "items": [{"price": other}]}),
    )
    .await
    .expect(201);
}

async fn trials_and_removed_items_bill_usage_where_it_happened(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let s = setup(&api).await;
    let t0 = s.t0;
    let per_token = daily_price(
        &api,
        json!({"recurring": metered(&s.tokens), "unit_amount": 2, "nickname": "Tokens"}),
    )
    .await;
    let per_call = daily_price(
        &api,
        json!({"recurring": metered(&s.calls), "unit_amount": 10, "nickname": "Calls"}),
    )
    .await;
    // A one-day trial: its usage is free.
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": s.customer, "trial_period_days": 1,
                "items": [{"price": per_token}, {"price": per_call}]}),
        )
        .await
        .expect(201);
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let calls_item = sub["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["price"] == json!(per_call))
        .unwrap()["id"]
        .clone();
    send(
        &api,
        &s.customer,
        &[
            ("t1", t0 + HOUR, 100),
            ("t2", t0 + DAY + HOUR, 7),
            ("t3", t0 + DAY + 3 * HOUR, 5),
        ],
    )
    .await;
    advance(&api, &s.clock, t0 + DAY).await;
    let after_trial = invoices(&api, &sub_id).await;
    let trial_end = after_trial.last().unwrap();
    assert_eq!(trial_end["total"], 0, "the trial's usage is not billed: {trial_end}");

    // Half a day in, the calls item is removed: its calls so far wait for the next invoice.
    advance(&api, &s.clock, t0 + DAY + 12 * HOUR).await;
    let removal = json!({"items": [{"id": calls_item, "deleted": true}]});
    let preview = api
        .post(&format!("/v1/subscriptions/{sub_id}/preview"), removal.clone())
        .await
        .expect(200);
    api.post(&format!("/v1/subscriptions/{sub_id}"), removal)
        .await
        .expect(200);
    // A call after the removal is not billed.
    send(&api, &s.customer, &[("t4", t0 + DAY + 13 * HOUR, 1)]).await;
    advance(&api, &s.clock, t0 + 2 * DAY).await;
    let all = invoices(&api, &sub_id).await;
    let next = all.last().unwrap();
    let half = (t0 + DAY, t0 + DAY + 12 * HOUR);
    let day1 = (t0 + DAY, t0 + 2 * DAY);
    assert_eq!(
        lines(&next["lines"]["data"]),
        [
            ("Calls: 2 used".to_owned(), 2, 10, half.0, half.1),
            ("Tokens: 13 used".to_owned(), 13, 2, day1.0, day1.1),
        ],
        "{next}"
    );
    assert_eq!(
        lines(&preview["charges"]),
        [("Calls: 2 used".to_owned(), 2, 10, half.0, half.1)],
        "the preview shows the usage the removal bills"
    );
}

async fn a_window_priced_lower_later_credits_the_difference(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let s = setup(&api).await;
    let t0 = s.t0;
    // Seats in use, as the latest reading says; 0.10 a seat.
    let gauge = api
        .post(
            "/v1/meters",
            json!({"event_name": "llm", "aggregation": "latest", "value_property": "$.tokens"}),
        )
        .await
        .expect(201);
    let seats = daily_price(
        &api,
        json!({"recurring": metered(gauge["id"].as_str().unwrap()), "unit_amount": 10, "nickname": "Seats"}),
    )
    .await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": s.customer, "items": [{"price": seats}]}),
        )
        .await
        .expect(201);
    let sub = sub["id"].as_str().unwrap().to_owned();
    send(&api, &s.customer, &[("g1", t0 + 2 * HOUR, 5)]).await;
    advance(&api, &s.clock, t0 + DAY).await;
    assert_eq!(invoices(&api, &sub).await[1]["total"], 50);
    // A later reading of day 0, sent late: 2 seats. 0.30 goes back to the customer's balance
    // (an invoice line is never negative); day 1 had no reading (a `latest` meter reads each
    // window on its own).
    send(&api, &s.customer, &[("g2", t0 + 3 * HOUR, 2)]).await;
    advance(&api, &s.clock, t0 + 2 * DAY).await;
    let third = &invoices(&api, &sub).await[2];
    assert_eq!(
        lines(&third["lines"]["data"]),
        [("Seats: 0 used".to_owned(), 1, 0, t0 + DAY, t0 + 2 * DAY)],
        "{third}"
    );
    let balance = api
        .get(&format!("/v1/customers/{}/credit_balance", s.customer))
        .await
        .expect(200);
    assert_eq!(balance["balances"][0]["amount"], 30, "{balance}");
    // The next reading is billed, and the balance pays for it.
    send(&api, &s.customer, &[("g3", t0 + 2 * DAY + HOUR, 4)]).await;
    advance(&api, &s.clock, t0 + 3 * DAY).await;
    let fourth = &invoices(&api, &sub).await[3];
    assert_eq!(
        (&fourth["total"], &fourth["applied_balance"], &fourth["amount_due"]),
        (&json!(40), &json!(30), &json!(10)),
        "{fourth}"
    );
    let history = api
        .get(&format!("/v1/customers/{}/credit_transactions", s.customer))
        .await
        .expect(200);
    let described: Vec<(&str, i64)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["description"].as_str().unwrap(), t["amount"].as_i64().unwrap()))
        .collect();
    assert!(
        described.contains(&("Seats: 2 used (usage corrected)", 30)),
        "{history}"
    );
}

// ---- The property: what invoices bill for each window is its price applied to the window's
// ---- usage, computed independently from the accepted events ----

#[derive(Debug, Clone)]
enum Model {
    PerUnit(i64),
    Package { unit: i64, divide_by: i64, up: bool },
    Tiered { volume: bool, tiers: Vec<(i64, i64, i64)> },
}

#[derive(Debug, Clone)]
enum Op {
    /// Events as (identifier, customer, seconds after the start, tokens, user).
    Send(Vec<(u8, usize, i64, i64, u8)>),
    /// Moves the clock on by this many minutes (bills what fell due).
    Advance(i64),
}

#[derive(Debug, Clone)]
struct BillCase {
    /// Seconds before "four days ago" the subscription starts (not on a minute).
    offset: i64,
    models: Vec<Model>,
    ops: Vec<Op>,
}

fn model() -> impl Strategy<Value = Model> {
    prop_oneof![
        (0i64..50).prop_map(Model::PerUnit),
        (0i64..500, 1i64..2_000, any::<bool>()).prop_map(|(unit, divide_by, up)| Model::Package {
            unit,
            divide_by,
            up
        }),
        (
            any::<bool>(),
            prop::collection::vec((1i64..3_000, 0i64..20, 0i64..100), 1..4)
        )
            .prop_map(|(volume, tiers)| Model::Tiered { volume, tiers }),
    ]
}

fn bill_case() -> impl Strategy<Value = BillCase> {
    let event = (0u8..30, 0usize..2, 0i64..3 * DAY, 0i64..1_000, 0u8..6);
    let op = prop_oneof![
        2 => prop::collection::vec(event, 1..20).prop_map(Op::Send),
        1 => (1i64..1_800).prop_map(Op::Advance),
    ];
    (
        0i64..3_600,
        prop::collection::vec(model(), METERED.len()),
        prop::collection::vec(op, 1..10),
    )
        .prop_map(|(offset, models, ops)| BillCase { offset, models, ops })
}

/// The meters every case bills, one item each.
const METERED: &[(Aggregation, Option<&str>)] = &[
    (Aggregation::Count, None),
    (Aggregation::Sum, Some("$.tokens")),
    (Aggregation::Max, Some("$.tokens")),
    (Aggregation::UniqueCount, Some("$.user")),
    (Aggregation::Latest, Some("$.tokens")),
];

fn pricing_of(model: &Model) -> (Pricing, DomainModel) {
    match model {
        Model::PerUnit(unit) => (
            Pricing::PerUnit {
                unit_amount: *unit,
                transform: None,
            },
            DomainModel::PerUnit { unit_amount: *unit },
        ),
        Model::Package { unit, divide_by, up } => (
            Pricing::PerUnit {
                unit_amount: *unit,
                transform: Some(TransformQuantity {
                    divide_by: *divide_by,
                    round: if *up { Round::Up } else { Round::Down },
                }),
            },
            DomainModel::Package {
                unit_amount: *unit,
                divide_by: *divide_by,
                round_up: *up,
            },
        ),
        Model::Tiered { volume, tiers } => {
            let mut up_to = 0;
            let last = tiers.len() - 1;
            let tiers: Vec<PriceTier> = tiers
                .iter()
                .enumerate()
                .map(|(i, &(step, unit_amount, flat_amount))| {
                    up_to += step;
                    PriceTier {
                        up_to: (i < last).then_some(up_to),
                        unit_amount,
                        flat_amount,
                    }
                })
                .collect();
            let domain: Vec<_> = tiers.iter().map(PriceTier::tier).collect();
            let (mode, model) = if *volume {
                (TiersMode::Volume, DomainModel::Volume(domain))
            } else {
                (TiersMode::Graduated, DomainModel::Graduated(domain))
            };
            (Pricing::Tiered { mode, tiers }, model)
        }
    }
}

#[derive(Default)]
struct Seen {
    windows: usize,
    adjustments: usize,
    credits: usize,
    events: usize,
}

async fn run_bill_case(
    store: &Store,
    backend: Backend,
    n: usize,
    case: &BillCase,
    seen: &mut Seen,
) -> Result<(), String> {
    let now = billing_api::clock::now();
    let tenant = format!("metered-{n}");
    let ctx = Ctx::new(backend, tenant.clone(), "test".into(), "test".into(), now);
    let fail = |e: &dyn std::fmt::Debug| format!("{e:?}");
    let t0 = now - 4 * DAY - case.offset;
    let mut tx = store.begin_write().await.map_err(|e| fail(&e))?;
    let clock = test_clocks::create(&mut tx, &ctx, t0, None)
        .await
        .map_err(|e| fail(&e))?;
    let mut customers_ = Vec::new();
    for c in 0..2 {
        let input = NewCustomer {
            name: None,
            email: None,
            currency: Currency::parse("usd"),
            metadata: Metadata::new(),
            // The second customer's events must never reach the first's invoices.
            test_clock: (c == 0).then(|| clock.id.clone()),
        };
        customers_.push(customers::create(&mut tx, &ctx, input).await.map_err(|e| fail(&e))?.id);
    }
    let product = catalog::create_product(
        &mut tx,
        &ctx,
        NewProduct {
            name: "LLM".into(),
            description: None,
            active: true,
            metadata: Metadata::new(),
        },
    )
    .await
    .map_err(|e| fail(&e))?;
    let mut items = Vec::new();
    let mut priced = HashMap::new();
    for ((aggregation, value), model) in METERED.iter().zip(&case.models) {
        let meter = metering::create_meter(
            &mut tx,
            &ctx,
            NewMeter {
                event_name: "llm".into(),
                display_name: None,
                aggregation: *aggregation,
                value_property: value.and_then(PropertyPath::parse),
                group_by: Vec::new(),
            },
        )
        .await
        .map_err(|e| fail(&e))?;
        let (pricing, domain) = pricing_of(model);
        let price = catalog::create_price(
            &mut tx,
            &ctx,
            NewPrice {
                product_id: product.id.clone(),
                currency: Currency::parse("usd").ok_or("usd")?,
                recurring: PriceRecurring {
                    interval: Interval::Day,
                    interval_count: 1,
                    usage_type: UsageType::Metered,
                    meter: Some(meter.id.clone()),
                },
                pricing,
                nickname: None,
                active: true,
                metadata: Metadata::new(),
            },
        )
        .await
        .map_err(|e| fail(&e))?;
        priced.insert(price.id.clone(), (*aggregation, domain));
        items.push(NewItem {
            price_id: price.id,
            quantity: 1,
        });
    }
    let sub = subscriptions::create(
        &mut tx,
        &ctx,
        NewSubscription {
            customer_id: customers_[0].clone(),
            items,
            time_zone: None,
            billing_cycle_day: None,
            trial_period_days: None,
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            metadata: Metadata::new(),
        },
    )
    .await
    .map_err(|e| fail(&e))?
    .id;
    tx.commit().await.map_err(|e| fail(&e))?;

    // Events (duplicates in and across batches, any order, late), and the clock moving on.
    let mut clock_at = t0;
    let last = t0 + 3 * DAY + HOUR;
    let mut first_of: HashSet<u8> = HashSet::new();
    let mut accepted: Vec<(String, i64, Ev)> = Vec::new();
    let advance = async |to: i64| -> Result<(), String> {
        let mut tx = store.begin_write().await.map_err(|e| fail(&e))?;
        test_clocks::advance_clock(&mut tx, &ctx, &clock.id, to, 3 * DAY)
            .await
            .map_err(|e| fail(&e))?;
        tx.commit().await.map_err(|e| fail(&e))
    };
    let mut sent = 0;
    for op in &case.ops {
        match op {
            Op::Send(batch) => {
                let events = batch
                    .iter()
                    .map(|&(id, customer, at, tokens, user)| NewEvent {
                        identifier: format!("ev-{id}"),
                        event_name: "llm".into(),
                        customer: customers_[customer].clone(),
                        timestamp: t0 + at,
                        properties: json!({"tokens": tokens, "user": format!("u{user}")}),
                    })
                    .collect();
                crate::helpers::ingest(store, &ctx, events)
                    .await
                    .map_err(|e| fail(&e))?;
                // After every second batch, some deltas (at most 7) are folded into the
                // rollups: invoices are made from rollups, deltas, or both.
                sent += 1;
                if sent % 2 == 0 {
                    billing_api::billing::rollups::fold_once(store, 7)
                        .await
                        .map_err(|e| fail(&e))?;
                }
                for &(id, customer, at, tokens, user) in batch {
                    if first_of.insert(id) && customer == 0 {
                        let ev = Ev {
                            id,
                            customer,
                            age: now - (t0 + at),
                            tokens,
                            region: None,
                            user,
                            other_name: false,
                        };
                        accepted.push((format!("ev-{id}"), t0 + at, ev));
                    }
                }
                seen.events += batch.len();
            }
            Op::Advance(minutes) => {
                let to = (clock_at + minutes * 60).min(last);
                if to > clock_at {
                    advance(to).await?;
                    clock_at = to;
                }
            }
        }
    }
    // Every period to its end, then canceled: every window is on an invoice.
    if clock_at < last {
        advance(last).await?;
    }
    let mut tx = store.begin_write().await.map_err(|e| fail(&e))?;
    subscriptions::cancel(&mut tx, &ctx, &sub, false, false)
        .await
        .map_err(|e| fail(&e))?;
    tx.commit().await.map_err(|e| fail(&e))?;

    // What invoices billed per price and window, less what late corrections credited.
    let mut conn = store.acquire().await.map_err(|e| fail(&e))?;
    let billed: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT l.price_id, l.period_start, l.period_end, l.amount, l.description FROM invoice_lines l \
         JOIN invoices i ON i.tenant_id = l.tenant_id AND i.id = l.invoice_id \
         WHERE i.tenant_id = $1 AND i.subscription_id = $2",
    )
    .bind(&tenant)
    .bind(&sub)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| fail(&e))?;
    let credited: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT price_id, period_start, period_end, unit_amount FROM usage_charges WHERE tenant_id = $1 AND kind = 'credit'",
    )
    .bind(&tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| fail(&e))?;
    let mut windows: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
    for (price, start, end, amount, description) in &billed {
        *windows.entry((price.clone(), *start, *end)).or_default() += amount;
        seen.adjustments += usize::from(description.ends_with("(late usage)"));
    }
    for (price, start, end, amount) in &credited {
        *windows.entry((price.clone(), *start, *end)).or_default() += amount;
        seen.credits += 1;
    }
    for (price, (aggregation, model)) in &priced {
        let mine: Vec<(&(String, i64, i64), &i64)> = windows.iter().filter(|(k, _)| &k.0 == price).collect();
        // The windows tile the subscription's life: from its start to its cancellation.
        let bounds: Vec<(i64, i64)> = mine.iter().map(|(k, _)| (k.1, k.2)).collect();
        if bounds.first().map(|b| b.0) != Some(t0) || bounds.last().map(|b| b.1) != Some(last) {
            return Err(format!(
                "{aggregation:?}: windows {bounds:?} do not run from {t0} to {last}"
            ));
        }
        if bounds.windows(2).any(|w| w[0].1 != w[1].0) {
            return Err(format!("{aggregation:?}: windows {bounds:?} leave a gap or overlap"));
        }
        for ((_, start, end), amount) in mine {
            let (first, last_minute) = window_minutes(*start, *end);
            let inside: Vec<&(String, i64, Ev)> = accepted
                .iter()
                .filter(|e| (first..last_minute).contains(&minute_of(e.1)))
                .collect();
            let usage = expected(*aggregation, &inside);
            let want = usage_amount(model, usage).ok_or("amount too large")?;
            if *amount != want {
                return Err(format!(
                    "{aggregation:?} over [{start}, {end}): usage {usage} should bill {want}, invoices billed {amount}"
                ));
            }
            seen.windows += 1;
        }
    }
    Ok(())
}

async fn invoices_bill_the_usage_of_the_accepted_events(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let asked: Option<u32> = std::env::var("METERED_CASES").ok().and_then(|c| c.parse().ok());
    let config = Config {
        cases: asked.unwrap_or(24),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = match asked {
        Some(_) => TestRunner::new(config),
        None => TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32])),
    };
    let runtime = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::sync::Mutex::new(Seen::default());
    let result = tokio::task::block_in_place(|| {
        runner.run(&bill_case(), |case| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut local = Seen::default();
            let outcome = runtime.block_on(run_bill_case(&store, backend, n, &case, &mut local));
            if let Ok(mut all) = seen.lock() {
                all.windows += local.windows;
                all.adjustments += local.adjustments;
                all.credits += local.credits;
                all.events += local.events;
            }
            outcome.map_err(TestCaseError::fail)
        })
    });
    let seen = seen.into_inner().unwrap_or_default();
    eprintln!(
        "metered invoices on {}: {} generated cases, {} events sent, {} windows compared, {} late-usage lines, {} credits",
        backend.name(),
        counter.into_inner(),
        seen.events,
        seen.windows,
        seen.adjustments,
        seen.credits
    );
    store.close().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(seen.windows > 0, "nothing was compared");
}

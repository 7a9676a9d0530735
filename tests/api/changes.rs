//! Subscription changes in the middle of a period: credits from what was charged, charges for the
//! rest of the period, `proration_behavior`, the change preview and the upcoming invoice, through
//! the API on both backends. Time is moved by running the cycle up to a later instant; a change
//! is placed in the period with `proration_date`.
use billing_api::billing::cycles;
use billing_api::store::Backend;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::{TestApp, spawn_app};

backend_tests!(
    an_upgrade_credits_what_was_charged_and_the_next_invoice_shows_it,
    always_invoice_bills_at_once_and_credit_pays_what_it_can,
    none_changes_the_price_from_the_next_period,
    items_are_added_and_removed_with_their_share_of_the_period,
    bad_changes_are_refused_and_change_nothing,
    a_cancellation_with_prorate_credits_the_unused_time,
    changes_are_prorated_in_order_and_keep_within_an_invoice,
    a_voided_charge_credits_nothing_and_a_credited_one_is_not_voided,
    subscriptions_billed_before_the_charges_were_kept_are_credited,
);

/// `a × n / d` rounded half away from zero, for `a, n ≥ 0, d > 0` (written apart from the
/// service's `domain::ratio`, on purpose).
fn share(a: i64, n: i64, d: i64) -> i64 {
    let (a, n, d) = (i128::from(a), i128::from(n), i128::from(d));
    i64::try_from((2 * a * n + d) / (2 * d)).unwrap()
}

/// A monthly price in USD of `unit_amount` per unit, of a new product.
pub(crate) async fn price(api: &Api, unit_amount: i64) -> String {
    let product = api.post("/v1/products", json!({"name": "Team plan"})).await.expect(201);
    api.post(
        "/v1/prices",
        json!({"product": product["id"], "currency": "usd", "recurring": {"interval": "month"}, "unit_amount": unit_amount}),
    )
    .await
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn subscribe(api: &Api, customer: &str, items: Value) -> Value {
    api.post("/v1/subscriptions", json!({"customer": customer, "items": items}))
        .await
        .expect(201)
}

async fn run_until(app: &TestApp, until: i64) {
    cycles::run_until(&app.store, until, &CancellationToken::new()).await;
}

async fn invoices_of(api: &Api, subscription: &str) -> Vec<Value> {
    let page = api
        .get(&format!("/v1/invoices?subscription={subscription}&limit=100"))
        .await
        .expect(200);
    let mut data = page["data"].as_array().unwrap().clone();
    data.sort_by_key(|i| i["id"].as_str().unwrap().to_owned());
    data
}

/// An invoice's lines as a preview shows them (no ids).
fn planned(lines: &Value) -> Vec<Value> {
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            json!({"description": l["description"], "quantity": l["quantity"], "unit_amount": l["unit_amount"],
                   "amount": l["amount"], "price": l["price"], "period": l["period"]})
        })
        .collect()
}

fn item_id(sub: &Value, n: usize) -> String {
    sub["items"]["data"][n]["id"].as_str().unwrap().to_owned()
}

async fn an_upgrade_credits_what_was_charged_and_the_next_invoice_shows_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let (basic, pro) = (price(&api, 3_000).await, price(&api, 7_000).await);
    let sub = subscribe(&api, &customer, json!([{"price": basic, "quantity": 2}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let at = start + (end - start) / 3;
    let change = json!({"items": [{"id": item_id(&sub, 0), "price": pro}], "proration_date": at});

    let preview = api
        .post(&format!("/v1/subscriptions/{id}/preview"), change.clone())
        .await
        .expect(200);
    let credit = share(6_000, end - at, end - start);
    let charge = share(14_000, end - at, end - start);
    assert_eq!(preview["proration_date"], at);
    assert_eq!(preview["credits"][0]["amount"], credit, "{preview}");
    assert_eq!(preview["credits"][0]["period"], json!({"start": at, "end": end}));
    assert_eq!(preview["charges"][0]["amount"], charge);
    assert_eq!(preview["charges"][0]["price"], json!(pro));
    assert_eq!(
        preview["invoice"],
        Value::Null,
        "create_prorations invoices nothing now"
    );
    assert_eq!(preview["subscription"]["items"]["data"][0]["price"], json!(pro));
    // The preview changed nothing.
    let unchanged = api.get(&format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(unchanged["items"], sub["items"]);
    let before = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(200);
    assert_eq!(before["total"], 6_000);

    let updated = api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(200);
    assert_eq!(updated["items"]["data"][0]["price"], json!(pro));
    assert_eq!(
        updated["items"]["data"][0]["id"], sub["items"]["data"][0]["id"],
        "the item keeps its id"
    );
    assert_eq!(
        invoices_of(&api, id).await.len(),
        1,
        "nothing invoiced before the period ends"
    );

    let upcoming = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(200);
    let lines = upcoming["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{upcoming}");
    assert_eq!(lines[0]["amount"], 14_000, "the next period at the new price");
    assert_eq!(lines[1], preview["charges"][0], "then the charge the preview showed");
    assert_eq!(upcoming["subtotal"], 14_000 + charge);
    assert_eq!(upcoming["applied_balance"], credit, "the credit pays part of it");
    assert_eq!(upcoming["amount_due"], 14_000 + charge - credit);
    assert_eq!(upcoming["issued_at"], end);

    run_until(&app, end).await;
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices.len(), 2);
    let next = &invoices[1];
    assert_eq!(
        planned(&next["lines"]["data"]),
        planned(&upcoming["lines"]),
        "the upcoming invoice was exact"
    );
    assert_eq!(next["applied_balance"], credit);
    assert_eq!(next["amount_due"], upcoming["amount_due"]);
    assert_eq!(next["amount_remaining"], upcoming["amount_due"]);
    // What the customer owes is exactly the two invoices less the credit.
    let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(
        balance["balances"][0]["amount"],
        6_000 + 14_000 + charge - credit,
        "{balance}"
    );
}

async fn always_invoice_bills_at_once_and_credit_pays_what_it_can(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = price(&api, 1_000).await;
    let sub = subscribe(&api, &customer, json!([{"price": seats, "quantity": 10}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let at = start + (end - start) / 2;
    // Down from 10 seats to 4 half-way: credit for 10, charge for 4.
    let change = json!({"items": [{"id": item_id(&sub, 0), "quantity": 4}], "proration_date": at,
                        "proration_behavior": "always_invoice"});
    let preview = api
        .post(&format!("/v1/subscriptions/{id}/preview"), change.clone())
        .await
        .expect(200);
    let credit = share(10_000, end - at, end - start);
    let charge = share(4_000, end - at, end - start);
    assert_eq!(preview["credits"][0]["amount"], credit);
    let invoice = &preview["invoice"];
    assert_eq!(invoice["total"], charge, "{preview}");
    assert_eq!(invoice["applied_balance"], charge, "the credit pays all of it");
    assert_eq!(invoice["amount_due"], 0);
    assert_eq!(invoice["billing_reason"], "subscription_update");

    api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(200);
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices.len(), 2);
    let now = &invoices[1];
    assert_eq!(planned(&now["lines"]["data"]), planned(&invoice["lines"]));
    assert_eq!(now["status"], "paid", "paid by the credit");
    assert_eq!(now["applied_balance"], charge);
    assert_eq!(now["billing_reason"], "subscription_update");
    assert_eq!(now["period_start"], Value::Null);

    // What is left of the credit goes to the next period's invoice.
    let upcoming = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(200);
    assert_eq!(upcoming["total"], 4_000);
    assert_eq!(upcoming["applied_balance"], credit - charge);
    run_until(&app, end).await;
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices[2]["applied_balance"], credit - charge);
    assert_eq!(invoices[2]["amount_remaining"], 4_000 - (credit - charge));
    // The ledger agrees: what the customer owes is what is left to pay.
    let owed: i64 = invoices.iter().map(|i| i["amount_remaining"].as_i64().unwrap()).sum();
    let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(balance["balances"][0]["amount"], owed);
}

async fn none_changes_the_price_from_the_next_period(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let (basic, pro) = (price(&api, 3_000).await, price(&api, 7_000).await);
    let sub = subscribe(&api, &customer, json!([{"price": basic}])).await;
    let id = sub["id"].as_str().unwrap();
    let end = sub["current_period_end"].as_i64().unwrap();
    let change = json!({"items": [{"id": item_id(&sub, 0), "price": pro}], "proration_behavior": "none"});
    let preview = api
        .post(&format!("/v1/subscriptions/{id}/preview"), change.clone())
        .await
        .expect(200);
    assert_eq!(preview["credits"], json!([]));
    assert_eq!(preview["charges"], json!([]));
    api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(200);
    let upcoming = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(200);
    assert_eq!(upcoming["total"], 7_000);
    assert_eq!(upcoming["applied_balance"], 0);
    run_until(&app, end).await;
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[1]["total"], 7_000);
}

async fn items_are_added_and_removed_with_their_share_of_the_period(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let (seats, support) = (price(&api, 2_000).await, price(&api, 5_000).await);
    let sub = subscribe(&api, &customer, json!([{"price": seats}, {"price": support}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let first = start + (end - start) / 4;
    let extra = price(&api, 1_200).await;
    // Remove support, add an extra item.
    let change = json!({"items": [{"id": item_id(&sub, 1), "deleted": true}, {"price": extra, "quantity": 3}],
                        "proration_date": first});
    let preview = api
        .post(&format!("/v1/subscriptions/{id}/preview"), change.clone())
        .await
        .expect(200);
    let updated = api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(200);
    assert_eq!(updated["items"]["data"].as_array().unwrap().len(), 2);
    assert_eq!(updated["items"]["data"][1]["price"], json!(extra));
    let support_credit = share(5_000, end - first, end - start);
    let extra_charge = share(3_600, end - first, end - start);
    assert_eq!(preview["credits"][0]["amount"], support_credit);
    assert_eq!(preview["charges"][0]["amount"], extra_charge);

    // A second change in the same period credits the extra item from what its charge was, not
    // from its list price (and the removed item's charge, already credited, gives nothing more).
    let second = start + (end - start) / 2;
    let change = json!({"items": [{"id": item_id(&updated, 1), "quantity": 1}], "proration_date": second});
    let preview = api
        .post(&format!("/v1/subscriptions/{id}/preview"), change.clone())
        .await
        .expect(200);
    let credited = share(extra_charge, end - second, end - first);
    assert_eq!(preview["credits"].as_array().unwrap().len(), 1, "{preview}");
    assert_eq!(preview["credits"][0]["amount"], credited);
    assert_eq!(preview["charges"][0]["amount"], share(1_200, end - second, end - start));
    api.post(&format!("/v1/subscriptions/{id}"), change).await.expect(200);
    let upcoming = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(200);
    run_until(&app, end).await;
    let invoices = invoices_of(&api, id).await;
    assert_eq!(planned(&invoices[1]["lines"]["data"]), planned(&upcoming["lines"]));
    assert_eq!(invoices[1]["applied_balance"], upcoming["applied_balance"]);
    assert_eq!(invoices[1]["applied_balance"], support_credit + credited);
}

async fn bad_changes_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = price(&api, 2_000).await;
    let sub = subscribe(&api, &customer, json!([{"price": seats}])).await;
    let id = sub["id"].as_str().unwrap();
    let item = item_id(&sub, 0);
    let euro = {
        let product = api.post("/v1/products", json!({"name": "Euro"})).await.expect(201);
        api.post(
            "/v1/prices",
            json!({"product": product["id"], "currency": "eur", "recurring": {"interval": "month"}, "unit_amount": 100}),
        )
        .await
        .expect(201)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let yearly = {
        let product = api.post("/v1/products", json!({"name": "Yearly"})).await.expect(201);
        api.post(
            "/v1/prices",
            json!({"product": product["id"], "currency": "usd", "recurring": {"interval": "year"}, "unit_amount": 100}),
        )
        .await
        .expect(201)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let other = subscribe(&api, &customer, json!([{"price": seats}])).await;
    let cases = [
        (
            json!({"items": [{"id": item_id(&other, 0), "quantity": 2}]}),
            "items[0].id",
            "unknown_item",
        ),
        (
            json!({"items": [{"id": item, "quantity": 2}, {"id": item, "quantity": 3}]}),
            "items[1].id",
            "duplicate_item",
        ),
        (json!({"items": [{"id": item, "deleted": true}]}), "items", "no_items"),
        (
            json!({"items": [{"price": euro}]}),
            "items[0].price",
            "currency_mismatch",
        ),
        (
            json!({"items": [{"id": item, "price": yearly}]}),
            "items[0].price",
            "interval_mismatch",
        ),
        (json!({"proration_date": 1}), "proration_date", "outside_current_period"),
        (
            json!({"items": [{"id": item, "deleted": true, "quantity": 2}]}),
            "items[0].deleted",
            "invalid",
        ),
        (json!({"items": [{"quantity": 2}]}), "items[0].price", "required"),
        (
            json!({"proration_behavior": "sometimes"}),
            "proration_behavior",
            "invalid",
        ),
    ];
    for (body, field, code) in cases {
        for path in [
            format!("/v1/subscriptions/{id}"),
            format!("/v1/subscriptions/{id}/preview"),
        ] {
            let problem = api.post(&path, body.clone()).await.expect(422);
            assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
            assert_eq!(problem["errors"][0]["code"], code, "{body}: {problem}");
        }
    }
    let after = api.get(&format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(after, sub, "nothing changed");
    assert_eq!(invoices_of(&api, id).await.len(), 1);

    api.post(&format!("/v1/subscriptions/{id}/cancel"), json!({}))
        .await
        .expect(200);
    let refused = api
        .post(
            &format!("/v1/subscriptions/{id}"),
            json!({"items": [{"id": item, "quantity": 2}]}),
        )
        .await
        .expect(409);
    assert_eq!(refused["code"], "invalid_state_transition");
    let none = api
        .get(&format!("/v1/subscriptions/{id}/upcoming_invoice"))
        .await
        .expect(409);
    assert_eq!(none["code"], "no_upcoming_invoice");
}

async fn a_cancellation_with_prorate_credits_the_unused_time(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = price(&api, 3_000).await;
    let sub = subscribe(&api, &customer, json!([{"price": seats}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    // A second seat from a third of the period on, waiting for the next invoice.
    let at = start + (end - start) / 3;
    api.post(
        &format!("/v1/subscriptions/{id}"),
        json!({"items": [{"id": item_id(&sub, 0), "quantity": 2}], "proration_date": at}),
    )
    .await
    .expect(200);
    let first_credit = share(3_000, end - at, end - start);
    let debit = share(6_000, end - at, end - start);

    let canceled = api
        .post(&format!("/v1/subscriptions/{id}/cancel"), json!({"prorate": true}))
        .await
        .expect(200);
    assert_eq!(canceled["status"], "canceled");
    let ended = canceled["ended_at"].as_i64().unwrap();
    // What is left of the first charge from the cancellation on (its tail after `at` was
    // credited already), and all of the second seat's charge, which had not started.
    let credit = share(3_000 - first_credit, at - ended, at - start) + debit;
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices.len(), 2, "the charge that was waiting is invoiced at the end");
    let last = &invoices[1];
    assert_eq!(last["billing_reason"], "subscription_cancel");
    assert_eq!(last["total"], debit);
    assert_eq!(last["applied_balance"], debit, "paid by the credit");
    assert_eq!(last["status"], "paid");
    let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(
        balance["balances"][0]["amount"],
        3_000 + debit - first_credit - credit,
        "the customer owes the first invoice less every credit: {balance}"
    );
}

async fn changes_are_prorated_in_order_and_keep_within_an_invoice(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    // Eight graduated tiers with flat fees: 16 lines per item at 100 units.
    let product = api.post("/v1/products", json!({"name": "Storage"})).await.expect(201);
    let tiers: Vec<Value> = (1..=8)
        .map(|n| {
            if n == 8 {
                json!({"unit_amount": 1, "flat_amount": 10})
            } else {
                json!({"up_to": n * 10, "unit_amount": 1, "flat_amount": 10})
            }
        })
        .collect();
    let tiered = api
        .post(
            "/v1/prices",
            json!({"product": product["id"], "currency": "usd", "recurring": {"interval": "month"},
                   "tiers_mode": "graduated", "tiers": tiers}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let items: Vec<Value> = (0..6).map(|_| json!({"price": tiered, "quantity": 100})).collect();
    let sub = subscribe(&api, &customer, json!(items)).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    // 96 lines a period; five more charges waiting would make the next invoice 101 lines.
    let five: Vec<Value> = (0..5)
        .map(|n| json!({"id": item_id(&sub, n), "quantity": 90}))
        .collect();
    let at = start + (end - start) / 2;
    let refused = api
        .post(
            &format!("/v1/subscriptions/{id}"),
            json!({"items": five, "proration_date": at}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "too_many_invoice_lines", "{refused}");
    // Invoiced at once, they fit.
    api.post(
        &format!("/v1/subscriptions/{id}"),
        json!({"items": five, "proration_date": at, "proration_behavior": "always_invoice"}),
    )
    .await
    .expect(200);
    assert_eq!(invoices_of(&api, id).await.len(), 2);

    // A change dated before the last one is refused: time would be billed twice.
    let earlier = start + (end - start) / 3;
    let refused = api
        .post(
            &format!("/v1/subscriptions/{id}"),
            json!({"items": [{"id": item_id(&sub, 5), "quantity": 50}], "proration_date": earlier}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["field"], "proration_date");
    assert_eq!(refused["errors"][0]["code"], "before_last_change");

    // An item keeps its price once the price has a new version, and its quantity can change.
    api.post(&format!("/v1/prices/{tiered}/versions"), json!({"unit_amount": 5}))
        .await
        .expect(201);
    api.post(
        &format!("/v1/subscriptions/{id}"),
        json!({"items": [{"id": item_id(&sub, 5), "quantity": 95}], "proration_date": at, "proration_behavior": "always_invoice"}),
    )
    .await
    .expect(200);
}

async fn a_voided_charge_credits_nothing_and_a_credited_one_is_not_voided(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = price(&api, 3_000).await;
    let sub = subscribe(&api, &customer, json!([{"price": seats}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let first = invoices_of(&api, id).await[0]["id"].as_str().unwrap().to_owned();
    api.post(&format!("/v1/invoices/{first}/void"), json!({}))
        .await
        .expect(200);
    // The period's charge was voided: a change credits nothing for it.
    let at = start + (end - start) / 2;
    let preview = api
        .post(
            &format!("/v1/subscriptions/{id}/preview"),
            json!({"items": [{"id": item_id(&sub, 0), "quantity": 2}], "proration_date": at, "proration_behavior": "always_invoice"}),
        )
        .await
        .expect(200);
    assert_eq!(preview["credits"], json!([]), "{preview}");

    // Another subscription: credited in part, its invoice can no longer be voided.
    let other = subscribe(&api, &customer, json!([{"price": seats}])).await;
    let other_id = other["id"].as_str().unwrap();
    api.post(
        &format!("/v1/subscriptions/{other_id}"),
        json!({"items": [{"id": item_id(&other, 0), "quantity": 2}], "proration_date": at}),
    )
    .await
    .expect(200);
    let invoice = invoices_of(&api, other_id).await[0]["id"].as_str().unwrap().to_owned();
    let refused = api
        .post(&format!("/v1/invoices/{invoice}/void"), json!({}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invoice_has_credits");
    assert_eq!(
        api.get(&format!("/v1/invoices/{invoice}")).await.expect(200)["status"],
        "open",
        "nothing changed"
    );
}

async fn subscriptions_billed_before_the_charges_were_kept_are_credited(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = price(&api, 3_000).await;
    let sub = subscribe(&api, &customer, json!([{"price": seats, "quantity": 2}])).await;
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    // Back to the schema before charges were kept (migration 0009), then forward again: the
    // migration reads the current period's charge from its invoice.
    while app
        .store
        .migration_status()
        .await
        .unwrap()
        .iter()
        .any(|m| m.version >= 9 && m.state == billing_api::store::migrate::State::Applied)
    {
        app.store.migrate_revert().await.unwrap();
    }
    app.store.migrate_run().await.unwrap();
    let at = start + (end - start) / 2;
    let preview = api
        .post(
            &format!("/v1/subscriptions/{id}/preview"),
            json!({"items": [{"id": item_id(&sub, 0), "quantity": 1}], "proration_date": at}),
        )
        .await
        .expect(200);
    assert_eq!(
        preview["credits"][0]["amount"],
        share(6_000, end - at, end - start),
        "{preview}"
    );
    assert_eq!(preview["credits"][0]["description"], "Unused time on Team plan × 2");
}

//! Credit notes through the API on both backends: what is left to pay is credited first, then
//! refunds and credit to the customer's balance as asked; numbers without gaps; the ledger and
//! the books hold together; a subscription's charge is never given back twice.
use billing_api::store::Backend;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::changes::price;
use crate::helpers::api::Api;
use crate::helpers::spawn_app;
use crate::properties::check;

backend_tests!(
    a_credit_note_takes_off_what_is_left_to_pay_with_its_tax,
    after_payment_it_refunds_and_credits_the_balance_as_asked,
    bad_credit_notes_are_refused_and_change_nothing,
    a_subscription_charge_is_never_given_back_twice,
    a_refund_and_a_credit_note_never_give_back_the_same_money,
    a_charge_billed_on_several_lines_is_given_back_once,
);

async fn finalized(api: &Api, customer: &str, lines: &[(i64, i64, Option<i64>)]) -> Value {
    let draft = api.draft(customer, lines).await;
    let id = draft["id"].as_str().unwrap();
    api.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await
        .expect(200)
}

fn line_id(invoice: &Value, i: usize) -> String {
    invoice["lines"]["data"][i]["id"].as_str().unwrap().to_owned()
}

async fn a_credit_note_takes_off_what_is_left_to_pay_with_its_tax(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    // 3 × 10.00 at 8.25 % (tax 2.48) and 5.00 untaxed: 37.48 in all.
    let invoice = finalized(&api, &customer, &[(3, 1_000, Some(825)), (1, 500, None)]).await;
    let id = invoice["id"].as_str().unwrap();
    assert_eq!(invoice["total"], 3_748);

    // 10.00 of the taxed line: its tax is 8.25 % of it (0.83), all before payment.
    let first = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "lines": [{"invoice_line": line_id(&invoice, 0), "amount": 1_000}], "reason": "order_change"}),
        )
        .await
        .expect(201);
    assert_eq!(first["object"], "credit_note");
    let prefix = invoice["number"].as_str().unwrap().trim_end_matches(char::is_numeric);
    assert_eq!(first["number"], format!("{prefix}CN-000001"));
    assert_eq!(
        (&first["subtotal"], &first["tax"], &first["total"]),
        (&json!(1_000), &json!(83), &json!(1_083))
    );
    assert_eq!(
        (
            &first["pre_payment_amount"],
            &first["refund_amount"],
            &first["credit_amount"]
        ),
        (&json!(1_083), &json!(0), &json!(0))
    );
    let after = api.get(&format!("/v1/invoices/{id}")).await.expect(200);
    assert_eq!(after["amount_remaining"], 3_748 - 1_083);
    assert_eq!(after["pre_payment_credit_notes_amount"], 1_083);
    assert_eq!(after["status"], "open");

    // The rest of the taxed line: its tax is what is left of the line's, 2.48 − 0.83 exactly.
    let second = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "lines": [{"invoice_line": line_id(&invoice, 0)}]}),
        )
        .await
        .expect(201);
    assert_eq!(second["number"], format!("{prefix}CN-000002"));
    assert_eq!((&second["subtotal"], &second["tax"]), (&json!(2_000), &json!(248 - 83)));

    // Paying the rest settles it; then the untaxed line credited goes to the credit balance.
    api.pay(id, 500, "usd").await.expect(201);
    assert_eq!(
        api.get(&format!("/v1/invoices/{id}")).await.expect(200)["status"],
        "paid"
    );
    let third = api.post("/v1/credit_notes", json!({"invoice": id})).await.expect(201);
    assert_eq!((&third["total"], &third["credit_amount"]), (&json!(500), &json!(500)));
    let balance = api
        .get(&format!("/v1/customers/{customer}/credit_balance"))
        .await
        .expect(200);
    assert_eq!(balance["object"], "customer_credit_balance");
    assert_eq!(
        balance["balances"],
        json!([{"currency": "usd", "amount": 500, "formatted": "5.00"}])
    );
    // Everything is credited now: nothing more can be.
    let refused = api.post("/v1/credit_notes", json!({"invoice": id})).await.expect(422);
    assert_eq!(refused["errors"][0]["code"], "exceeds_creditable", "{refused}");

    // A second invoice credited whole before payment is settled by it, and says so.
    let other = finalized(&api, &customer, &[(1, 2_000, None)]).await;
    let other_id = other["id"].as_str().unwrap();
    assert_eq!(other["applied_balance"], 500, "the credit balance paid part of it");
    let whole = api
        .post("/v1/credit_notes", json!({"invoice": other_id}))
        .await
        .expect(201);
    assert_eq!(whole["pre_payment_amount"], 1_500);
    assert_eq!(whole["credit_amount"], 500, "what the balance paid goes back to it");
    let settled = api.get(&format!("/v1/invoices/{other_id}")).await.expect(200);
    assert_eq!(
        (&settled["status"], &settled["amount_remaining"]),
        (&json!("paid"), &json!(0))
    );
    let events = api.get("/v1/events?limit=100").await.expect(200);
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "credit_note.created").count(), 4);
    assert_eq!(types.iter().filter(|t| **t == "invoice.paid").count(), 2);
    let listed = api
        .get(&format!("/v1/credit_notes?customer={customer}"))
        .await
        .expect(200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        listed["data"][0],
        api.get(&format!("/v1/credit_notes/{}", whole["id"].as_str().unwrap()))
            .await
            .expect(200)
    );
    check(&app.store, "acme").await.unwrap();
}

async fn after_payment_it_refunds_and_credits_the_balance_as_asked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = finalized(&api, &customer, &[(1, 10_000, None)]).await;
    let id = invoice["id"].as_str().unwrap();
    let first = api.pay(id, 4_000, "usd").await.expect(201);
    let second = api.pay(id, 6_000, "usd").await.expect(201);

    // 70.00 back: 65.00 refunded (the newest payment first), the rest to the credit balance.
    let note = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "amount": 7_000, "refund_amount": 6_500, "memo": "Service outage"}),
        )
        .await
        .expect(201);
    assert_eq!(
        (
            &note["refund_amount"],
            &note["credit_amount"],
            &note["pre_payment_amount"]
        ),
        (&json!(6_500), &json!(500), &json!(0))
    );
    assert_eq!(note["lines"][0]["description"], "Service outage");
    let refunded = |p: &Value| {
        let id = p["id"].as_str().unwrap().to_owned();
        let api = &api;
        async move { api.get(&format!("/v1/payments/{id}")).await.expect(200)["amount_refunded"].clone() }
    };
    assert_eq!(refunded(&second).await, 6_000);
    assert_eq!(refunded(&first).await, 500);
    let refunds = api
        .get(&format!("/v1/refunds?payment={}", first["id"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(
        refunds["data"][0]["reason"],
        format!("credit note {}", note["number"].as_str().unwrap())
    );
    let after = api.get(&format!("/v1/invoices/{id}")).await.expect(200);
    assert_eq!(
        (&after["amount_refunded"], &after["post_payment_credit_notes_amount"]),
        (&json!(6_500), &json!(7_000))
    );

    // The credit goes to the next invoice; the history shows both movements.
    let next = finalized(&api, &customer, &[(1, 2_000, None)]).await;
    assert_eq!(
        (&next["applied_balance"], &next["amount_remaining"]),
        (&json!(500), &json!(1_500))
    );
    let history = api
        .get(&format!("/v1/customers/{customer}/credit_transactions"))
        .await
        .expect(200);
    let moves: Vec<(i64, i64)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["amount"].as_i64().unwrap(), t["balance_after"].as_i64().unwrap()))
        .collect();
    assert_eq!(moves, [(-500, 0), (500, 500)], "newest first");
    assert_eq!(history["data"][1]["invoice"], id);

    // A refund made apart gives back 10.00 more: 20.00 is left to credit.
    api.post("/v1/refunds", json!({"payment": first["id"], "amount": 1_000}))
        .await
        .expect(201);
    let refused = api
        .post("/v1/credit_notes", json!({"invoice": id, "amount": 2_001}))
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "exceeds_creditable", "{refused}");
    let refused = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "amount": 2_000, "refund_amount": 2_600, "credit_amount": 0}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["field"], "refund_amount");
    assert_eq!(refused["errors"][0]["code"], "amounts_do_not_add_up");
    // Neither lines nor an amount: all that is left of the invoice (after a credit note of an
    // amount, as an amount); what is not refunded goes to the credit balance.
    let last = api
        .post("/v1/credit_notes", json!({"invoice": id, "refund_amount": 1_500}))
        .await
        .expect(201);
    assert_eq!(
        (&last["total"], &last["refund_amount"], &last["credit_amount"]),
        (&json!(2_000), &json!(1_500), &json!(500))
    );
    check(&app.store, "acme").await.unwrap();
}

async fn bad_credit_notes_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let draft = api.draft(&customer, &[(1, 1_000, None)]).await;
    let draft_id = draft["id"].as_str().unwrap();
    let refused = api
        .post("/v1/credit_notes", json!({"invoice": draft_id}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invoice_not_creditable");

    let invoice = finalized(&api, &customer, &[(2, 1_000, None)]).await;
    let id = invoice["id"].as_str().unwrap();
    let before = (
        api.get(&format!("/v1/invoices/{id}")).await.expect(200),
        api.get("/v1/ledger_entries?limit=100").await.expect(200),
    );
    for (body, field, code) in [
        (
            json!({"invoice": id, "lines": [{"invoice_line": line_id(&invoice, 0), "amount": 2_001}]}),
            "lines[0].amount",
            "exceeds_creditable",
        ),
        (
            json!({"invoice": id, "lines": [{"invoice_line": line_id(&draft, 0)}]}),
            "lines[0].invoice_line",
            "unknown_invoice_line",
        ),
        (
            json!({"invoice": id, "lines": [{"invoice_line": line_id(&invoice, 0), "amount": 1_500}, {"invoice_line": line_id(&invoice, 0), "amount": 501}]}),
            "lines[1].amount",
            "exceeds_creditable",
        ),
        (json!({"invoice": id, "amount": 2_001}), "amount", "exceeds_creditable"),
        (
            json!({"invoice": id, "amount": 100, "refund_amount": 1}),
            "refund_amount",
            "amounts_do_not_add_up",
        ),
        (json!({"invoice": id, "reason": "because"}), "reason", "invalid"),
        (json!({"invoice": id, "amount": 0}), "amount", "out_of_range"),
    ] {
        let reply = api.post("/v1/credit_notes", body.clone()).await.expect(422);
        assert_eq!(
            (&reply["errors"][0]["field"], &reply["errors"][0]["code"]),
            (&json!(field), &json!(code)),
            "{body}: {reply}"
        );
    }
    assert_eq!(
        before,
        (
            api.get(&format!("/v1/invoices/{id}")).await.expect(200),
            api.get("/v1/ledger_entries?limit=100").await.expect(200),
        ),
        "nothing changed"
    );
    // A refusal takes no number: the first credit note issued is number 1.
    let note = api
        .post("/v1/credit_notes", json!({"invoice": id, "amount": 100}))
        .await
        .expect(201);
    assert!(note["number"].as_str().unwrap().ends_with("CN-000001"));
    // A credited invoice is not voided: the credit note stands.
    let refused = api
        .post(&format!("/v1/invoices/{id}/void"), json!({}))
        .await
        .expect(409);
    assert_eq!(refused["code"], "invoice_has_credits");
    check(&app.store, "acme").await.unwrap();
}

async fn a_subscription_charge_is_never_given_back_twice(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let price = price(&api, 3_000).await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}]}),
        )
        .await
        .expect(201);
    let sub_id = sub["id"].as_str().unwrap();
    let invoices = api
        .get(&format!("/v1/invoices?subscription={sub_id}"))
        .await
        .expect(200);
    let invoice = &invoices["data"][0];
    let id = invoice["id"].as_str().unwrap();

    // Not by an amount: proration must know which charge was given back.
    let refused = api
        .post("/v1/credit_notes", json!({"invoice": id, "amount": 100}))
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "lines_required");
    // Two thirds of the period's charge credited by a credit note...
    api.post(
        "/v1/credit_notes",
        json!({"invoice": id, "lines": [{"invoice_line": line_id(invoice, 0), "amount": 2_000}]}),
    )
    .await
    .expect(201);
    // ...so cancelling with proration credits at most the third that is left, not half of 30.00.
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let preview = api
        .post(
            &format!("/v1/subscriptions/{sub_id}/preview"),
            json!({"items": [{"id": sub["items"]["data"][0]["id"], "quantity": 2}], "proration_date": start + (end - start) / 2}),
        )
        .await
        .expect(200);
    let credited: i64 = preview["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(credited, 500, "half of the 10.00 left of the charge: {preview}");
    // And the line itself has only 10.00 left to credit.
    let refused = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "lines": [{"invoice_line": line_id(invoice, 0), "amount": 1_001}]}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "exceeds_creditable");
    check(&app.store, "acme").await.unwrap();
}

/// The error code of a refused reply, for messages that show the reply.
fn code(reply: &Value) -> &Value {
    if reply["errors"].is_array() {
        &reply["errors"][0]["code"]
    } else {
        &reply["code"]
    }
}

async fn a_refund_and_a_credit_note_never_give_back_the_same_money(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;

    // A refund first: a whole credit note then gives back only what the refund did not.
    let invoice = finalized(&api, &customer, &[(1, 10_000, None)]).await;
    let id = invoice["id"].as_str().unwrap();
    let payment = api.pay(id, 10_000, "usd").await.expect(201);
    api.post("/v1/refunds", json!({"payment": payment["id"], "amount": 4_000}))
        .await
        .expect(201);
    let note = api.post("/v1/credit_notes", json!({"invoice": id})).await.expect(201);
    assert_eq!(
        (&note["total"], &note["credit_amount"], &note["refund_amount"]),
        (&json!(6_000), &json!(6_000), &json!(0)),
        "{note}"
    );
    // Everything is given back now: the payment's other 60.00 is not refunded as well.
    let refused = api
        .post("/v1/refunds", json!({"payment": payment["id"]}))
        .await
        .expect(422);
    assert_eq!(code(&refused), "exceeds_refundable", "{refused}");
    assert_eq!(refused["errors"][0]["field"], "amount");

    // A credit note first: a refund then gives back only what the note did not.
    let invoice = finalized(&api, &customer, &[(1, 5_000, None)]).await;
    let id = invoice["id"].as_str().unwrap();
    assert_eq!(invoice["applied_balance"], 5_000, "the balance paid it");
    let invoice = finalized(&api, &customer, &[(1, 8_000, None)]).await;
    let id2 = invoice["id"].as_str().unwrap();
    assert_eq!(invoice["applied_balance"], 1_000);
    let payment = api.pay(id2, 7_000, "usd").await.expect(201);
    api.post(
        "/v1/credit_notes",
        json!({"invoice": id2, "amount": 5_000, "refund_amount": 2_000}),
    )
    .await
    .expect(201);
    // 30.00 is left to give back of the 80.00 and 50.00 of the payment: a refund of 30.01 is
    // refused, one of 30.00 is made, then nothing more.
    let refused = api
        .post("/v1/refunds", json!({"payment": payment["id"], "amount": 3_001}))
        .await
        .expect(422);
    assert_eq!(code(&refused), "exceeds_refundable", "{refused}");
    api.post("/v1/refunds", json!({"payment": payment["id"], "amount": 3_000}))
        .await
        .expect(201);
    let refused = api.post("/v1/credit_notes", json!({"invoice": id2})).await.expect(422);
    assert_eq!(code(&refused), "exceeds_creditable", "{refused}");

    // What the credit balance paid can be credited back, but not refunded: nothing was paid.
    let refused = api
        .post("/v1/credit_notes", json!({"invoice": id, "refund_amount": 100}))
        .await
        .expect(422);
    assert_eq!(code(&refused), "exceeds_refundable", "{refused}");
    let back = api.post("/v1/credit_notes", json!({"invoice": id})).await.expect(201);
    assert_eq!(back["credit_amount"], 5_000);
    check(&app.store, "acme").await.unwrap();
}

async fn a_charge_billed_on_several_lines_is_given_back_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    // A volume price with a flat fee: 10 units bill 10.00 and a 5.00 flat fee, on two lines
    // of one charge.
    let product = api.post("/v1/products", json!({"name": "Storage"})).await.expect(201);
    let volume = api
        .post(
            "/v1/prices",
            json!({"product": product["id"], "currency": "usd", "recurring": {"interval": "month"},
                   "tiers_mode": "volume", "tiers": [{"unit_amount": 100, "flat_amount": 500}]}),
        )
        .await
        .expect(201);
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": volume["id"], "quantity": 10}]}),
        )
        .await
        .expect(201);
    let sub_id = sub["id"].as_str().unwrap();
    let invoices = api
        .get(&format!("/v1/invoices?subscription={sub_id}"))
        .await
        .expect(200);
    let invoice = &invoices["data"][0];
    let id = invoice["id"].as_str().unwrap();
    let lines = invoice["lines"]["data"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{invoice}");
    let fee = lines
        .iter()
        .position(|l| l["description"].as_str().unwrap().contains("flat fee"))
        .unwrap();
    let units = 1 - fee;
    assert_eq!(
        (&lines[units]["amount"], &lines[fee]["amount"]),
        (&json!(1_000), &json!(500))
    );
    api.pay(id, 1_500, "usd").await.expect(201);

    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let item = sub["items"]["data"][0]["id"].clone();
    let preview_credit = || {
        let api = &api;
        let item = item.clone();
        async move {
            let preview = api
                .post(
                    &format!("/v1/subscriptions/{sub_id}/preview"),
                    json!({"items": [{"id": item, "quantity": 20}], "proration_date": start + (end - start) / 2}),
                )
                .await
                .expect(200);
            preview["credits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["amount"].as_i64().unwrap())
                .sum::<i64>()
        }
    };
    assert_eq!(preview_credit().await, 750, "half of the 15.00 charge");
    // The flat fee refunded: a change at mid-period credits half of the 10.00 left.
    api.post(
        "/v1/credit_notes",
        json!({"invoice": id, "lines": [{"invoice_line": line_id(invoice, fee)}], "refund_amount": 500}),
    )
    .await
    .expect(201);
    assert_eq!(preview_credit().await, 500);
    // The units refunded too: nothing is left of the charge to credit, by a change or a note.
    let note = api
        .post("/v1/credit_notes", json!({"invoice": id, "refund_amount": 1_000}))
        .await
        .expect(201);
    assert_eq!(note["total"], 1_000, "{note}");
    assert_eq!(preview_credit().await, 0);
    let refused = api
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "lines": [{"invoice_line": line_id(invoice, units), "amount": 1}]}),
        )
        .await
        .expect(422);
    assert_eq!(code(&refused), "exceeds_creditable", "{refused}");
    // A cancellation with proration gives nothing more back.
    api.post(&format!("/v1/subscriptions/{sub_id}/cancel"), json!({"prorate": true}))
        .await
        .expect(200);
    let balance = api
        .get(&format!("/v1/customers/{customer}/credit_balance"))
        .await
        .expect(200);
    assert_eq!(balance["balances"], json!([]), "{balance}");
    check(&app.store, "acme").await.unwrap();
}

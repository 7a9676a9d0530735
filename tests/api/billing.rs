//! The billing API end to end, on both backends.
use billing_api::store::Backend;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::spawn_app;

backend_tests!(
    customers_are_created_updated_and_listed,
    invoice_drafts_compute_totals_and_freeze_at_finalization,
    the_invoice_state_machine_refuses_what_it_does_not_allow,
    payments_settle_invoices_and_never_overpay,
    refunds_never_exceed_their_payment,
    the_ledger_balances_and_tracks_what_customers_owe,
    invoice_numbers_use_the_tenant_prefix_and_skip_nothing,
    currencies_use_their_real_minor_unit,
);

async fn customers_are_created_updated_and_listed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let created = api
        .post("/v1/customers", json!({"name": " Ada ", "email": "ada@example.com", "currency": "USD", "metadata": {"plan": "pro", "seats": "3"}}))
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"));
    assert_eq!(created["object"], "customer");
    assert_eq!(created["name"], "Ada", "trimmed");
    assert_eq!(created["currency"], "usd", "codes are lower case");
    assert!(created["created"].as_i64().unwrap() > 1_700_000_000);

    let updated = api
        .post(
            &format!("/v1/customers/{id}"),
            json!({"name": "Ada L.", "metadata": {"seats": "", "region": "eu"}}),
        )
        .await
        .expect(200);
    assert_eq!(updated["name"], "Ada L.");
    assert_eq!(updated["email"], "ada@example.com", "unchanged fields stay");
    assert_eq!(
        updated["metadata"],
        json!({"plan": "pro", "region": "eu"}),
        "metadata merges; an empty value removes a key"
    );
    assert_eq!(api.get(&format!("/v1/customers/{id}")).await.expect(200), updated);

    let bad = api
        .post(
            "/v1/customers",
            json!({"email": "nope", "currency": "xyz", "name": "", "metadata": {"k": "v".repeat(501)}, "extra": true}),
        )
        .await;
    let body = bad.expect(422);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["extra", "name", "email", "currency", "metadata.k"],
        "every problem at once: {body}"
    );

    // Pagination: newest first, keyset cursors both ways.
    let b = api.customer("usd").await;
    let c = api.customer("usd").await;
    let page = api.get("/v1/customers?limit=2").await.expect(200);
    assert_eq!(page["object"], "list");
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c.as_str(), b.as_str()]);
    assert_eq!(page["has_more"], true);
    let next = api
        .get(&format!("/v1/customers?limit=2&starting_after={b}"))
        .await
        .expect(200);
    assert_eq!(next["data"][0]["id"], id);
    assert_eq!(next["has_more"], false);
    let prev = api
        .get(&format!("/v1/customers?limit=1&ending_before={id}"))
        .await
        .expect(200);
    assert_eq!(prev["data"][0]["id"], b.as_str());
    assert_eq!(prev["has_more"], true);
    // Both cursors: the objects between the two, newest first (here only `b`).
    let between = api
        .get(&format!("/v1/customers?starting_after={c}&ending_before={id}"))
        .await
        .expect(200);
    let ids: Vec<&str> = between["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.as_str()], "{between}");
    assert_eq!(between["has_more"], false);
    api.get(&format!(
        "/v1/customers?starting_after={c}&ending_before=cus_00000000000000000000000000000000"
    ))
    .await
    .expect(404);
    let bad = api.get("/v1/customers?limit=0&colour=red").await.expect(422);
    assert_eq!(bad["errors"].as_array().unwrap().len(), 2, "{bad}");
    api.get("/v1/customers?starting_after=cus_00000000000000000000000000000000")
        .await
        .expect(404);
}

async fn invoice_drafts_compute_totals_and_freeze_at_finalization(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    // 3 × 333 = 999 at 8.25% → 82.4175 → 82; 1 × 1001 at 5% → 50.05 → 50.
    let draft = api.draft(&customer, &[(3, 333, Some(825)), (1, 1001, Some(500))]).await;
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["currency"], "usd", "the customer's currency");
    assert_eq!(
        (
            draft["subtotal"].as_i64(),
            draft["tax"].as_i64(),
            draft["total"].as_i64()
        ),
        (Some(2000), Some(132), Some(2132))
    );
    assert_eq!(draft["number"], json!(null));
    let id = draft["id"].as_str().unwrap();

    let with_line = api
        .post(
            &format!("/v1/invoices/{id}/lines"),
            json!({"description": "setup", "unit_amount": 500}),
        )
        .await
        .expect(200);
    assert_eq!(with_line["lines"]["data"].as_array().unwrap().len(), 3);
    assert_eq!(with_line["lines"]["data"][2]["quantity"], 1, "quantity defaults to 1");
    assert_eq!(with_line["total"], 2632);
    let line = with_line["lines"]["data"][0]["id"].as_str().unwrap().to_owned();
    let changed = api
        .post(&format!("/v1/invoices/{id}/lines/{line}"), json!({"quantity": 1}))
        .await
        .expect(200);
    assert_eq!(changed["lines"]["data"][0]["amount"], 333);
    assert_eq!(changed["subtotal"], 1834);
    assert_eq!(changed["tax"], 27 + 50);
    let removed = api.delete(&format!("/v1/invoices/{id}/lines/{line}")).await.expect(200);
    assert_eq!(removed["total"], 1001 + 50 + 500);

    let open = api
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await
        .expect(200);
    assert_eq!(open["status"], "open");
    assert_eq!(open["number"], "INV-000001");
    assert_eq!(open["amount_remaining"], 1551);
    assert!(open["finalized_at"].as_i64().is_some());

    // Frozen: no more line changes, no second finalization, no deletion.
    let refused = api
        .post(
            &format!("/v1/invoices/{id}/lines"),
            json!({"description": "late", "unit_amount": 1}),
        )
        .await
        .expect(409);
    assert_eq!(refused["code"], "invoice_not_draft");
    assert_eq!(
        api.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
            .await
            .expect(409)["code"],
        "invoice_not_draft"
    );
    assert_eq!(
        api.delete(&format!("/v1/invoices/{id}")).await.expect(409)["code"],
        "invoice_not_draft"
    );
    assert_eq!(
        api.get(&format!("/v1/invoices/{id}")).await.expect(200),
        open,
        "nothing changed"
    );

    // A draft can be deleted; then it is gone.
    let other = api.draft(&customer, &[(1, 100, None)]).await;
    let other = other["id"].as_str().unwrap();
    assert_eq!(
        api.delete(&format!("/v1/invoices/{other}")).await.expect(200),
        json!({"id": other, "object": "invoice", "deleted": true})
    );
    api.get(&format!("/v1/invoices/{other}")).await.expect(404);

    // Listing with filters.
    let drafts = api
        .get(&format!("/v1/invoices?customer={customer}&status=draft"))
        .await
        .expect(200);
    assert_eq!(drafts["data"].as_array().unwrap().len(), 0);
    let open_list = api.get("/v1/invoices?status=open").await.expect(200);
    assert_eq!(open_list["data"][0]["id"], id);
    assert_eq!(
        open_list["data"][0]["lines"]["data"].as_array().unwrap().len(),
        2,
        "lines come with listed invoices"
    );
    api.get("/v1/invoices?status=sent").await.expect(422);
}

async fn the_invoice_state_machine_refuses_what_it_does_not_allow(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;

    let draft = api.draft(&customer, &[(1, 100, None)]).await;
    let draft = draft["id"].as_str().unwrap();
    assert_eq!(
        api.post(&format!("/v1/invoices/{draft}/void"), json!({}))
            .await
            .expect(409)["code"],
        "invalid_state_transition"
    );
    assert_eq!(
        api.post(&format!("/v1/invoices/{draft}/mark_uncollectible"), json!({}))
            .await
            .expect(409)["code"],
        "invalid_state_transition"
    );
    assert_eq!(
        api.pay(draft, 100, "usd").await.expect(409)["code"],
        "invoice_not_payable"
    );

    let open = api.open_invoice(&customer, 1000).await;
    let void = api
        .post(&format!("/v1/invoices/{open}/void"), json!({}))
        .await
        .expect(200);
    assert_eq!(
        (void["status"].as_str(), void["amount_remaining"].as_i64()),
        (Some("void"), Some(0))
    );
    for action in ["void", "finalize", "mark_uncollectible"] {
        api.post(&format!("/v1/invoices/{open}/{action}"), json!({}))
            .await
            .expect(409);
    }
    assert_eq!(
        api.pay(&open, 1, "usd").await.expect(409)["code"],
        "invoice_not_payable"
    );

    let paid_in_part = api.open_invoice(&customer, 1000).await;
    api.pay(&paid_in_part, 400, "usd").await.expect(201);
    assert_eq!(
        api.post(&format!("/v1/invoices/{paid_in_part}/void"), json!({}))
            .await
            .expect(409)["code"],
        "invoice_has_payments"
    );

    // open → uncollectible → paid
    let doubtful = api.open_invoice(&customer, 500).await;
    let marked = api
        .post(&format!("/v1/invoices/{doubtful}/mark_uncollectible"), json!({}))
        .await
        .expect(200);
    assert_eq!(marked["status"], "uncollectible");
    assert_eq!(marked["amount_remaining"], 500);
    api.pay(&doubtful, 500, "usd").await.expect(201);
    assert_eq!(
        api.get(&format!("/v1/invoices/{doubtful}")).await.expect(200)["status"],
        "paid"
    );

    // uncollectible → void
    let written_off = api.open_invoice(&customer, 700).await;
    api.post(&format!("/v1/invoices/{written_off}/mark_uncollectible"), json!({}))
        .await
        .expect(200);
    api.post(&format!("/v1/invoices/{written_off}/void"), json!({}))
        .await
        .expect(200);

    // A zero total is paid as soon as it is finalized.
    let free = api.draft(&customer, &[(1, 0, None)]).await;
    let free = free["id"].as_str().unwrap();
    let done = api
        .post(&format!("/v1/invoices/{free}/finalize"), json!({}))
        .await
        .expect(200);
    assert_eq!(done["status"], "paid");
    assert!(done["paid_at"].as_i64().is_some());

    // Actions take no parameters.
    let extra = api.draft(&customer, &[(1, 1, None)]).await;
    let extra = extra["id"].as_str().unwrap();
    api.post(&format!("/v1/invoices/{extra}/finalize"), json!({"force": true}))
        .await
        .expect(422);
}

async fn payments_settle_invoices_and_never_overpay(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 1000).await;

    let first = api
        .post(
            "/v1/payments",
            json!({"invoice": invoice, "amount": 600, "currency": "usd", "reference": "wire-1"}),
        )
        .await
        .expect(201);
    assert!(first["id"].as_str().unwrap().starts_with("pay_"));
    assert_eq!(first["customer"], customer.as_str());
    let after = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    assert_eq!(
        (
            after["status"].as_str(),
            after["amount_paid"].as_i64(),
            after["amount_remaining"].as_i64()
        ),
        (Some("open"), Some(600), Some(400))
    );

    let over = api.pay(&invoice, 401, "usd").await.expect(422);
    assert_eq!(over["errors"][0]["code"], "exceeds_amount_remaining");
    assert_eq!(
        api.pay(&invoice, 400, "eur").await.expect(422)["errors"][0]["code"],
        "currency_mismatch"
    );
    let dup = api
        .post(
            "/v1/payments",
            json!({"invoice": invoice, "amount": 1, "currency": "usd", "reference": "wire-1"}),
        )
        .await
        .expect(409);
    assert_eq!(dup["code"], "duplicate_reference");
    let missing = api.post("/v1/payments", json!({"amount": 0})).await.expect(422);
    assert_eq!(
        missing["errors"].as_array().unwrap().len(),
        3,
        "invoice, amount, currency: {missing}"
    );

    api.pay(&invoice, 400, "usd").await.expect(201);
    let paid = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    assert_eq!(
        (paid["status"].as_str(), paid["amount_remaining"].as_i64()),
        (Some("paid"), Some(0))
    );
    assert_eq!(
        api.pay(&invoice, 1, "usd").await.expect(409)["code"],
        "invoice_not_payable"
    );

    let listed = api.get(&format!("/v1/payments?invoice={invoice}")).await.expect(200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    api.get(&format!("/v1/payments/{}", first["id"].as_str().unwrap()))
        .await
        .expect(200);
}

async fn refunds_never_exceed_their_payment(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 1000).await;
    let payment = api.pay(&invoice, 1000, "usd").await.id();

    let refund = api
        .post(
            "/v1/refunds",
            json!({"payment": payment, "amount": 300, "reason": "goodwill"}),
        )
        .await
        .expect(201);
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund["invoice"], invoice.as_str());
    assert_eq!(
        api.post("/v1/refunds", json!({"payment": payment, "amount": 701}))
            .await
            .expect(422)["errors"][0]["code"],
        "exceeds_refundable"
    );
    let rest = api.post("/v1/refunds", json!({"payment": payment})).await.expect(201);
    assert_eq!(rest["amount"], 700, "the rest of the payment by default");
    assert_eq!(
        api.post("/v1/refunds", json!({"payment": payment})).await.expect(409)["code"],
        "payment_fully_refunded"
    );

    let p = api.get(&format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(p["amount_refunded"], 1000);
    let inv = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    assert_eq!(
        (inv["status"].as_str(), inv["amount_refunded"].as_i64()),
        (Some("paid"), Some(1000)),
        "a refund does not reopen the invoice"
    );
    assert_eq!(
        api.get(&format!("/v1/refunds?payment={payment}")).await.expect(200)["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn the_ledger_balances_and_tracks_what_customers_owe(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let draft = api.draft(&customer, &[(1, 1000, Some(1000))]).await;
    let invoice = draft["id"].as_str().unwrap();
    api.post(&format!("/v1/invoices/{invoice}/finalize"), json!({}))
        .await
        .expect(200);
    let payment = api.pay(invoice, 600, "usd").await.id();
    api.post("/v1/refunds", json!({"payment": payment, "amount": 100}))
        .await
        .expect(201);
    let voided = api.open_invoice(&customer, 50).await;
    api.post(&format!("/v1/invoices/{voided}/void"), json!({}))
        .await
        .expect(200);

    let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(
        balance["balances"],
        json!([{"currency": "usd", "amount": 500, "formatted": "5.00"}]),
        "1100 billed, 600 paid; the voided 50 is reversed"
    );

    let entries = api.get("/v1/ledger_entries?limit=100").await.expect(200);
    let entries = entries["data"].as_array().unwrap();
    let mut by_tx: std::collections::BTreeMap<&str, i64> = Default::default();
    for e in entries {
        *by_tx.entry(e["transaction"].as_str().unwrap()).or_default() += e["amount"].as_i64().unwrap();
    }
    assert_eq!(by_tx.len(), 5, "finalize, payment, refund, finalize, void");
    assert!(
        by_tx.values().all(|sum| *sum == 0),
        "every transaction balances: {by_tx:?}"
    );
    let receivable: i64 = entries
        .iter()
        .filter(|e| e["account"] == "accounts_receivable")
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(receivable, 500);
    let cash = api.get("/v1/ledger_entries?account=cash").await.expect(200);
    let cash: i64 = cash["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(cash, 500, "600 in, 100 out");
    let mine = api
        .get(&format!("/v1/ledger_entries?customer={customer}"))
        .await
        .expect(200);
    assert!(
        mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["account"] == "accounts_receivable")
    );
}

async fn invoice_numbers_use_the_tenant_prefix_and_skip_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    {
        let mut conn = app.store.pool().acquire().await.unwrap();
        billing_api::store::tenants::set_invoice_prefix(&mut conn, "acme", "ACME-", 0)
            .await
            .unwrap();
    }
    let customer = api.customer("usd").await;
    let first = api.open_invoice(&customer, 10).await;
    let deleted = api.draft(&customer, &[(1, 1, None)]).await;
    api.delete(&format!("/v1/invoices/{}", deleted["id"].as_str().unwrap()))
        .await
        .expect(200);
    let second = api.open_invoice(&customer, 10).await;
    assert_eq!(
        api.get(&format!("/v1/invoices/{first}")).await.body["number"],
        "ACME-000001"
    );
    assert_eq!(
        api.get(&format!("/v1/invoices/{second}")).await.body["number"],
        "ACME-000002",
        "a deleted draft takes no number"
    );
    // Another tenant counts on its own.
    let other = app.tenant("globex").await;
    let theirs = other.customer("usd").await;
    let theirs = other.open_invoice(&theirs, 10).await;
    assert_eq!(
        other.get(&format!("/v1/invoices/{theirs}")).await.body["number"],
        "INV-000001"
    );
}

async fn currencies_use_their_real_minor_unit(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    for (currency, amount, formatted) in [("jpy", 1234, "1234"), ("kwd", 1234, "1.234"), ("usd", 1234, "12.34")] {
        let customer = api.customer(currency).await;
        api.open_invoice(&customer, amount).await;
        let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
        assert_eq!(balance["balances"][0]["formatted"], formatted, "{currency}");
    }
    let nocurrency = api.post("/v1/customers", json!({"name": "x"})).await.id();
    let refused = api
        .post("/v1/invoices", json!({"customer": nocurrency}))
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["field"], "currency");
    let usd = api.customer("usd").await;
    assert_eq!(
        api.post("/v1/invoices", json!({"customer": usd, "currency": "eur"}))
            .await
            .expect(422)["errors"][0]["code"],
        "currency_mismatch"
    );
    api.post("/v1/customers", json!({"currency": "xau"})).await.expect(422);
}

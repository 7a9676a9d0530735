//! Tenant isolation, route by route: every operation the OpenAPI document lists is called by
//! another tenant with the first tenant's ids, and must answer as if they did not exist.
use std::collections::BTreeMap;

use billing_api::store::Backend;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::spawn_app;

backend_tests!(another_tenants_ids_are_indistinguishable_from_missing_ones);

/// A listing path, the kind of id its cursors take, and its filters as (parameter, kind).
type Listing = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

async fn another_tenants_ids_are_indistinguishable_from_missing_ones(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let a = app.tenant("tenant-a").await;
    let b = app.tenant("tenant-b").await;

    // Tenant A's objects: a customer, a draft with a line, a paid invoice with a payment and a refund.
    let customer = a.customer("usd").await;
    let draft = a.draft(&customer, &[(1, 100, None)]).await;
    let draft_id = draft["id"].as_str().unwrap().to_owned();
    let line = draft["lines"]["data"][0]["id"].as_str().unwrap().to_owned();
    let invoice = a.open_invoice(&customer, 500).await;
    let payment = a.pay(&invoice, 500, "usd").await.id();
    let refund = a
        .post("/v1/refunds", json!({"payment": payment, "amount": 10}))
        .await
        .id();
    let credit_note = a
        .post("/v1/credit_notes", json!({"invoice": invoice, "amount": 5}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let clock = a
        .post("/v1/test_clocks", json!({"frozen_time": 1_738_281_600}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A's webhook endpoint (to a port nobody listens on), with a delivery of a later event.
    let endpoint = a
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}),
        )
        .await
        .id();
    a.customer("usd").await;
    let deliveries = a
        .get(&format!("/v1/webhook_deliveries?endpoint={endpoint}"))
        .await
        .expect(200);
    let delivery = deliveries["data"][0]["id"].as_str().unwrap().to_owned();
    // A's catalogue: a product and a price.
    let product = a.post("/v1/products", json!({"name": "Plan"})).await.id();
    let price = a
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "usd", "recurring": {"interval": "month"}, "unit_amount": 900}),
        )
        .await
        .id();
    let subscription = a
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}], "trial_period_days": 30}),
        )
        .await
        .id();
    // A's meter, and an event counted by it.
    let meter = a
        .post("/v1/meters", json!({"event_name": "call", "aggregation": "count"}))
        .await
        .id();
    a.post(
        "/v1/meter_events",
        json!({"identifier": "shared-1", "event_name": "call", "customer": customer}),
    )
    .await
    .expect(200);
    let catalogue_before = (
        a.get(&format!("/v1/products/{product}")).await.expect(200),
        a.get(&format!("/v1/prices/{price}")).await.expect(200),
        a.get(&format!("/v1/subscriptions/{subscription}")).await.expect(200),
    );
    let event = deliveries["data"][0]["event"].as_str().unwrap().to_owned();
    let ids: BTreeMap<&str, &str> = [
        ("customer", customer.as_str()),
        ("invoice", draft_id.as_str()),
        ("line", line.as_str()),
        ("payment", payment.as_str()),
        ("refund", refund.as_str()),
        ("credit_note", credit_note.as_str()),
        ("test_clock", clock.as_str()),
        ("endpoint", endpoint.as_str()),
        ("delivery", delivery.as_str()),
        ("event", event.as_str()),
        ("product", product.as_str()),
        ("price", price.as_str()),
        ("subscription", subscription.as_str()),
        ("meter", meter.as_str()),
    ]
    .into();
    let before = snapshot(&a, &customer, &draft_id, &invoice, &payment).await;

    // What tenant B sends to each route: the path with A's ids, and a body that would be valid.
    let mut cases: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("get", "/v1/customers/{id}", format!("/v1/customers/{customer}"), None),
        (
            "post",
            "/v1/customers/{id}",
            format!("/v1/customers/{customer}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            "get",
            "/v1/customers/{id}/balance",
            format!("/v1/customers/{customer}/balance"),
            None,
        ),
        ("get", "/v1/invoices/{id}", format!("/v1/invoices/{invoice}"), None),
        ("delete", "/v1/invoices/{id}", format!("/v1/invoices/{draft_id}"), None),
        (
            "post",
            "/v1/invoices",
            "/v1/invoices".into(),
            Some(json!({"customer": customer})),
        ),
        (
            "post",
            "/v1/invoices/{id}/lines",
            format!("/v1/invoices/{draft_id}/lines"),
            Some(json!({"description": "x", "unit_amount": 1})),
        ),
        (
            "post",
            "/v1/invoices/{id}/lines/{line_id}",
            format!("/v1/invoices/{draft_id}/lines/{line}"),
            Some(json!({"quantity": 2})),
        ),
        (
            "delete",
            "/v1/invoices/{id}/lines/{line_id}",
            format!("/v1/invoices/{draft_id}/lines/{line}"),
            None,
        ),
        (
            "post",
            "/v1/invoices/{id}/finalize",
            format!("/v1/invoices/{draft_id}/finalize"),
            Some(json!({})),
        ),
        (
            "post",
            "/v1/invoices/{id}/void",
            format!("/v1/invoices/{invoice}/void"),
            Some(json!({})),
        ),
        (
            "post",
            "/v1/invoices/{id}/mark_uncollectible",
            format!("/v1/invoices/{invoice}/mark_uncollectible"),
            Some(json!({})),
        ),
        (
            "post",
            "/v1/payments",
            "/v1/payments".into(),
            Some(json!({"invoice": invoice, "amount": 1, "currency": "usd"})),
        ),
        ("get", "/v1/payments/{id}", format!("/v1/payments/{payment}"), None),
        (
            "post",
            "/v1/refunds",
            "/v1/refunds".into(),
            Some(json!({"payment": payment, "amount": 1})),
        ),
        ("get", "/v1/refunds/{id}", format!("/v1/refunds/{refund}"), None),
        (
            "post",
            "/v1/credit_notes",
            "/v1/credit_notes".into(),
            Some(json!({"invoice": invoice, "amount": 1})),
        ),
        ("get", "/v1/test_clocks/{id}", format!("/v1/test_clocks/{clock}"), None),
        (
            "post",
            "/v1/test_clocks/{id}/advance",
            format!("/v1/test_clocks/{clock}/advance"),
            Some(json!({"frozen_time": 1_740_787_200})),
        ),
        (
            "get",
            "/v1/credit_notes/{id}",
            format!("/v1/credit_notes/{credit_note}"),
            None,
        ),
        (
            "get",
            "/v1/customers/{id}/credit_balance",
            format!("/v1/customers/{customer}/credit_balance"),
            None,
        ),
        (
            "get",
            "/v1/customers/{id}/credit_transactions",
            format!("/v1/customers/{customer}/credit_transactions"),
            None,
        ),
        ("get", "/v1/events/{id}", format!("/v1/events/{event}"), None),
        (
            "post",
            "/v1/events/{id}/resend",
            format!("/v1/events/{event}/resend"),
            Some(json!({"endpoint": endpoint})),
        ),
        (
            "get",
            "/v1/webhook_endpoints/{id}",
            format!("/v1/webhook_endpoints/{endpoint}"),
            None,
        ),
        (
            "post",
            "/v1/webhook_endpoints/{id}",
            format!("/v1/webhook_endpoints/{endpoint}"),
            Some(json!({"url": "http://127.0.0.1:9/stolen"})),
        ),
        (
            "delete",
            "/v1/webhook_endpoints/{id}",
            format!("/v1/webhook_endpoints/{endpoint}"),
            None,
        ),
        (
            "post",
            "/v1/webhook_endpoints/{id}/rotate_secret",
            format!("/v1/webhook_endpoints/{endpoint}/rotate_secret"),
            Some(json!({})),
        ),
        (
            "get",
            "/v1/webhook_endpoints/{id}/deliveries",
            format!("/v1/webhook_endpoints/{endpoint}/deliveries"),
            None,
        ),
        (
            "get",
            "/v1/webhook_deliveries/{id}",
            format!("/v1/webhook_deliveries/{delivery}"),
            None,
        ),
        (
            "post",
            "/v1/webhook_deliveries/{id}/retry",
            format!("/v1/webhook_deliveries/{delivery}/retry"),
            Some(json!({})),
        ),
    ];
    cases.extend([
        ("get", "/v1/products/{id}", format!("/v1/products/{product}"), None),
        (
            "post",
            "/v1/products/{id}",
            format!("/v1/products/{product}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            "post",
            "/v1/prices",
            "/v1/prices".into(),
            Some(json!({"product": product, "currency": "usd", "recurring": {"interval": "month"}, "unit_amount": 1})),
        ),
        ("get", "/v1/prices/{id}", format!("/v1/prices/{price}"), None),
        (
            "post",
            "/v1/prices/{id}",
            format!("/v1/prices/{price}"),
            Some(json!({"active": false})),
        ),
        (
            "post",
            "/v1/prices/{id}/versions",
            format!("/v1/prices/{price}/versions"),
            Some(json!({"unit_amount": 1})),
        ),
        (
            "post",
            "/v1/subscriptions",
            "/v1/subscriptions".into(),
            Some(json!({"customer": customer, "items": [{"price": price}]})),
        ),
        (
            "get",
            "/v1/subscriptions/{id}",
            format!("/v1/subscriptions/{subscription}"),
            None,
        ),
        (
            "post",
            "/v1/subscriptions/{id}/cancel",
            format!("/v1/subscriptions/{subscription}/cancel"),
            Some(json!({})),
        ),
        (
            "post",
            "/v1/subscriptions/{id}",
            format!("/v1/subscriptions/{subscription}"),
            Some(json!({"metadata": {"stolen": "yes"}})),
        ),
        (
            "post",
            "/v1/subscriptions/{id}/preview",
            format!("/v1/subscriptions/{subscription}/preview"),
            Some(json!({"items": [{"price": price}]})),
        ),
        (
            "post",
            "/v1/subscriptions/{id}/pause",
            format!("/v1/subscriptions/{subscription}/pause"),
            Some(json!({})),
        ),
        (
            "post",
            "/v1/subscriptions/{id}/resume",
            format!("/v1/subscriptions/{subscription}/resume"),
            Some(json!({})),
        ),
        (
            "get",
            "/v1/subscriptions/{id}/upcoming_invoice",
            format!("/v1/subscriptions/{subscription}/upcoming_invoice"),
            None,
        ),
        ("get", "/v1/meters/{id}", format!("/v1/meters/{meter}"), None),
        (
            "get",
            "/v1/customers/{id}/usage",
            format!("/v1/customers/{customer}/usage"),
            None,
        ),
    ]);
    // Listings: A's ids as cursors are 404; as filters they match nothing.
    let lists: Vec<Listing> = vec![
        ("/v1/customers", "customer", &[]),
        (
            "/v1/invoices",
            "invoice",
            &[("customer", "customer"), ("subscription", "subscription")],
        ),
        ("/v1/payments", "payment", &[("invoice", "invoice")]),
        ("/v1/refunds", "refund", &[("payment", "payment")]),
        (
            "/v1/credit_notes",
            "credit_note",
            &[("invoice", "invoice"), ("customer", "customer")],
        ),
        ("/v1/ledger_entries", "", &[("customer", "customer")]),
        ("/v1/events", "event", &[]),
        ("/v1/products", "product", &[]),
        ("/v1/prices", "price", &[("product", "product")]),
        ("/v1/subscriptions", "subscription", &[("customer", "customer")]),
        ("/v1/webhook_endpoints", "endpoint", &[]),
        ("/v1/test_clocks", "test_clock", &[]),
        ("/v1/meters", "meter", &[]),
        (
            "/v1/webhook_deliveries",
            "delivery",
            &[("endpoint", "endpoint"), ("event", "event")],
        ),
    ];

    let doc = app.get("/openapi.json").await.json::<Value>().await.unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| ["get", "post", "delete", "patch", "put"].contains(&m.as_str()))
        {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut covered: Vec<(String, String)> = cases
        .iter()
        .map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    covered.extend(lists.iter().map(|(p, _, _)| ("get".to_owned(), (*p).to_owned())));
    covered.push(("post".into(), "/v1/customers".into())); // creates in B's own tenant
    covered.push(("post".into(), "/v1/webhook_endpoints".into())); // likewise
    covered.push(("post".into(), "/v1/products".into())); // likewise
    covered.push(("post".into(), "/v1/test_clocks".into())); // likewise
    covered.push(("post".into(), "/v1/meters".into())); // likewise
    covered.push(("post".into(), "/v1/meter_events".into())); // below
    documented.sort();
    covered.sort();
    assert_eq!(documented, covered, "every documented route is checked for isolation");

    for (method, template, path, body) in &cases {
        let reply = b
            .send(method.to_uppercase().parse().unwrap(), path, body.clone(), None)
            .await;
        assert_eq!(
            reply.status, 404,
            "{method} {template} as another tenant: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "not_found");
    }
    for (path, cursor_kind, filters) in &lists {
        let page = b.get(path).await.expect(200);
        assert!(
            page["data"].as_array().unwrap().is_empty(),
            "{path} lists nothing of tenant A"
        );
        if let Some(id) = ids.get(cursor_kind) {
            assert_eq!(
                b.get(&format!("{path}?starting_after={id}")).await.status,
                404,
                "{path} cursor"
            );
            assert_eq!(
                b.get(&format!("{path}?ending_before={id}")).await.status,
                404,
                "{path} cursor"
            );
        }
        for (param, kind) in filters.iter() {
            let page = b.get(&format!("{path}?{param}={}", ids[kind])).await.expect(200);
            assert!(page["data"].as_array().unwrap().is_empty(), "{path}?{param}");
        }
    }
    // Events name customers in the body: A's is no customer of B's (422, nothing counted), and
    // B's own events may reuse A's identifiers (the identifiers are each tenant's own).
    let refused = b
        .post(
            "/v1/meter_events",
            json!({"identifier": "shared-2", "event_name": "call", "customer": customer}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "unknown_customer");
    let own = b.customer("usd").await;
    let reused = b
        .post(
            "/v1/meter_events",
            json!({"identifier": "shared-1", "event_name": "call", "customer": own}),
        )
        .await
        .expect(200);
    assert_eq!(reused["events"][0]["status"], "accepted");
    assert_eq!(
        b.get(&format!("/v1/customers/{own}/usage?meter={meter}")).await.status,
        404,
        "A's meter is no meter of B's"
    );
    let usage = a.get(&format!("/v1/customers/{customer}/usage")).await.expect(200);
    assert_eq!(usage["meters"][0]["value"], 1, "B's events count nothing of A's");
    assert_eq!(
        snapshot(&a, &customer, &draft_id, &invoice, &payment).await,
        before,
        "tenant A's objects did not change"
    );
    assert_eq!(
        (
            a.get(&format!("/v1/products/{product}")).await.expect(200),
            a.get(&format!("/v1/prices/{price}")).await.expect(200),
            a.get(&format!("/v1/subscriptions/{subscription}")).await.expect(200),
        ),
        catalogue_before,
        "nor did its catalogue and subscriptions"
    );
}

async fn snapshot(
    api: &crate::helpers::api::Api,
    customer: &str,
    draft: &str,
    invoice: &str,
    payment: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        format!("/v1/customers/{customer}"),
        format!("/v1/invoices/{draft}"),
        format!("/v1/invoices/{invoice}"),
        format!("/v1/payments/{payment}"),
        format!("/v1/customers/{customer}/balance"),
        format!("/v1/customers/{customer}/credit_balance"),
        format!("/v1/customers/{customer}/credit_transactions"),
        "/v1/credit_notes".to_owned(),
        "/v1/test_clocks".to_owned(),
        "/v1/ledger_entries?limit=100".to_owned(),
    ] {
        out.push(api.get(&path).await.expect(200));
    }
    out
}

//! Races: simultaneous payments, finalizations and retries.
use std::collections::BTreeSet;

use billing_api::store::Backend;
use futures_util::future::join_all;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::spawn_app;

backend_tests!(
    simultaneous_payments_never_overpay,
    simultaneous_finalizations_get_consecutive_numbers,
    simultaneous_retries_have_one_effect,
    simultaneous_refunds_and_credit_notes_never_give_back_more_than_paid,
);

async fn simultaneous_payments_never_overpay(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 500).await;
    let replies = join_all((0..12).map(|_| {
        let api = api.clone();
        let invoice = invoice.clone();
        tokio::spawn(async move { api.pay(&invoice, 100, "usd").await.status })
    }))
    .await;
    let statuses: Vec<u16> = replies.into_iter().map(Result::unwrap).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [201, 409, 422].contains(s)),
        "refused, not failed: {statuses:?}"
    );
    let inv = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    assert_eq!(
        (inv["amount_paid"].as_i64(), inv["status"].as_str()),
        (Some(500), Some("paid"))
    );
    let balance = api.get(&format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(balance["balances"][0]["amount"], 0);
}

async fn simultaneous_finalizations_get_consecutive_numbers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let mut drafts = Vec::new();
    for _ in 0..10 {
        drafts.push(
            api.draft(&customer, &[(1, 100, None)]).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let replies = join_all(drafts.iter().map(|id| {
        let (api, id) = (api.clone(), id.clone());
        tokio::spawn(async move {
            api.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
                .await
                .expect(200)
        })
    }))
    .await;
    let numbers: BTreeSet<String> = replies
        .into_iter()
        .map(|r| r.unwrap()["number"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (1..=10).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, expected, "distinct, consecutive, from 1");
}

async fn simultaneous_retries_have_one_effect(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 1000).await;
    let body = json!({"invoice": invoice, "amount": 100, "currency": "usd"});
    let replies = join_all((0..10).map(|_| {
        let (api, body) = (api.clone(), body.clone());
        tokio::spawn(async move {
            let reply = api
                .send(reqwest::Method::POST, "/v1/payments", Some(body), Some("same-key"))
                .await;
            (reply.status, reply.headers.contains_key("idempotent-replayed"))
        })
    }))
    .await;
    let replies: Vec<(u16, bool)> = replies.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        replies.iter().filter(|(s, replayed)| *s == 201 && !replayed).count(),
        1,
        "one original: {replies:?}"
    );
    assert!(
        replies.iter().all(|(s, _)| *s == 201 || *s == 409),
        "others replay or are told to retry: {replies:?}"
    );
    let payments = api.get(&format!("/v1/payments?invoice={invoice}")).await.expect(200);
    assert_eq!(payments["data"].as_array().unwrap().len(), 1, "exactly one effect");
    assert_eq!(
        api.get(&format!("/v1/invoices/{invoice}")).await.body["amount_paid"],
        100
    );
}

async fn simultaneous_refunds_and_credit_notes_never_give_back_more_than_paid(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let invoice = api.open_invoice(&customer, 1_000).await;
    let first = api.pay(&invoice, 500, "usd").await.id();
    api.pay(&invoice, 500, "usd").await.expect(201);
    // Refunds of the first payment and credit notes refunding the newest one, at once: they take
    // the invoice and the payments in the same order, so none waits on the other for ever.
    let replies = join_all((0..16).map(|i| {
        let (api, invoice, first) = (api.clone(), invoice.clone(), first.clone());
        tokio::spawn(async move {
            if i % 2 == 0 {
                api.post("/v1/refunds", json!({"payment": first, "amount": 150}))
                    .await
                    .status
            } else {
                api.post(
                    "/v1/credit_notes",
                    json!({"invoice": invoice, "amount": 150, "refund_amount": 150}),
                )
                .await
                .status
            }
        })
    }))
    .await;
    let statuses: Vec<u16> = replies.into_iter().map(Result::unwrap).collect();
    assert!(
        statuses.iter().all(|s| [201, 409, 422].contains(s)),
        "refused, not failed: {statuses:?}"
    );
    let inv = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    let refunded = inv["amount_refunded"].as_i64().unwrap();
    assert!((600..=1_000).contains(&refunded), "{inv}");
    crate::properties::check(&app.store, "acme").await.unwrap();
}

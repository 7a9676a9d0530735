//! The catalogue: products and prices, on both backends.
use billing_api::store::Backend;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::spawn_app;

backend_tests!(
    products_and_prices_are_created_read_and_listed,
    a_price_never_changes_what_it_charges,
    versions_replace_a_price_in_one_line,
    bad_prices_are_refused_with_the_field_and_change_nothing,
);

async fn new_product(api: &Api, name: &str) -> String {
    api.post("/v1/products", json!({ "name": name })).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn codes(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn products_and_prices_are_created_read_and_listed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let created = api
        .post(
            "/v1/products",
            json!({"name": " Team plan ", "description": "Seats", "metadata": {"tier": "team"}}),
        )
        .await
        .expect(201);
    let product = created["id"].as_str().unwrap().to_owned();
    assert!(product.starts_with("prod_"));
    assert_eq!(created["object"], "product");
    assert_eq!(created["name"], "Team plan");
    assert_eq!(created["active"], true);
    let archived = api
        .post(
            &format!("/v1/products/{product}"),
            json!({"active": false, "metadata": {"tier": ""}}),
        )
        .await
        .expect(200);
    assert_eq!(archived["active"], false);
    assert_eq!(archived["metadata"], json!({}));
    assert_eq!(archived["name"], "Team plan", "unchanged fields stay");
    assert_eq!(api.get(&format!("/v1/products/{product}")).await.expect(200), archived);

    let seats = api
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "EUR", "recurring": {"interval": "month"},
                   "unit_amount": 1200, "nickname": "Seat, monthly"}),
        )
        .await
        .expect(201);
    assert!(seats["id"].as_str().unwrap().starts_with("price_"));
    assert_eq!(seats["currency"], "eur");
    assert_eq!(
        seats["recurring"],
        json!({"interval": "month", "interval_count": 1, "usage_type": "licensed", "meter": null})
    );
    assert_eq!(seats["transform_quantity"], Value::Null);
    assert_eq!(seats["billing_scheme"], "per_unit");
    assert_eq!(seats["unit_amount"], 1200);
    assert_eq!(seats["tiers"], Value::Null);
    assert_eq!(seats["version"], 1);
    assert_eq!(seats["active"], true);

    let tiered = api
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "eur", "recurring": {"interval": "year", "interval_count": 1},
                   "tiers_mode": "graduated",
                   "tiers": [{"up_to": 10, "unit_amount": 1000}, {"up_to": 50, "unit_amount": 800, "flat_amount": 500},
                             {"unit_amount": 600}]}),
        )
        .await
        .expect(201);
    assert_eq!(tiered["billing_scheme"], "tiered");
    assert_eq!(tiered["unit_amount"], Value::Null);
    assert_eq!(
        tiered["tiers"],
        json!([{"up_to": 10, "unit_amount": 1000, "flat_amount": 0},
               {"up_to": 50, "unit_amount": 800, "flat_amount": 500},
               {"up_to": null, "unit_amount": 600, "flat_amount": 0}])
    );

    let other = new_product(&api, "Other").await;
    let listed = api.get(&format!("/v1/prices?product={product}")).await.expect(200);
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [tiered["id"].as_str().unwrap(), seats["id"].as_str().unwrap()],
        "newest first"
    );
    assert_eq!(
        api.get(&format!("/v1/prices?product={other}")).await.expect(200)["data"],
        json!([])
    );
    assert_eq!(
        api.get(&format!("/v1/prices/{}", seats["id"].as_str().unwrap()))
            .await
            .expect(200),
        seats
    );
    let events = api.get("/v1/events?type=price.created").await.expect(200);
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
    assert_eq!(events["data"][1]["data"], seats, "the event carries the object");

    // Another tenant sees none of it.
    let stranger = app.tenant("globex").await;
    stranger.get(&format!("/v1/products/{product}")).await.expect(404);
    stranger
        .get(&format!("/v1/prices/{}", seats["id"].as_str().unwrap()))
        .await
        .expect(404);
    let body = stranger
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "eur", "recurring": {"interval": "month"}, "unit_amount": 1}),
        )
        .await
        .expect(404);
    assert_eq!(body["code"], "not_found");
}

async fn a_price_never_changes_what_it_charges(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let product = new_product(&api, "Plan").await;
    let price = api
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "usd", "recurring": {"interval": "month"}, "unit_amount": 2900}),
        )
        .await
        .expect(201);
    let id = price["id"].as_str().unwrap();
    let refused = api
        .post(
            &format!("/v1/prices/{id}"),
            json!({"unit_amount": 1, "nickname": "Cheap"}),
        )
        .await
        .expect(422);
    assert_eq!(
        codes(&refused),
        [("unit_amount".to_owned(), "unknown_field".to_owned())]
    );
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("/versions"));
    assert_eq!(
        api.get(&format!("/v1/prices/{id}")).await.expect(200),
        price,
        "nothing changed"
    );
    let renamed = api
        .post(&format!("/v1/prices/{id}"), json!({"nickname": "Pro", "active": false}))
        .await
        .expect(200);
    assert_eq!(renamed["nickname"], "Pro");
    assert_eq!(renamed["active"], false);
    assert_eq!(renamed["unit_amount"], 2900);

    // Below the API, the database refuses it too, on both backends.
    let mut conn = app.store.pool().acquire().await.unwrap();
    for column in ["unit_amount = 1", "currency = 'eur'", "interval_count = 2"] {
        let sql = format!("UPDATE prices SET {column} WHERE id = '{id}'");
        let error = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("never change"), "{column}: {error}");
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE prices SET nickname = 'ok' WHERE id = '{id}'"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
}

async fn versions_replace_a_price_in_one_line(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let product = new_product(&api, "Plan").await;
    let v1 = api
        .post(
            "/v1/prices",
            json!({"product": product, "currency": "usd", "recurring": {"interval": "week", "interval_count": 2},
                   "unit_amount": 1000, "nickname": "Biweekly", "metadata": {"a": "1"}}),
        )
        .await
        .expect(201);
    let v1_id = v1["id"].as_str().unwrap();
    let v2 = api
        .post(
            &format!("/v1/prices/{v1_id}/versions"),
            json!({"tiers_mode": "volume", "tiers": [{"up_to": 5, "unit_amount": 900}, {"unit_amount": 700}],
                   "metadata": {"b": "2"}}),
        )
        .await
        .expect(201);
    let v2_id = v2["id"].as_str().unwrap();
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["previous_version"], v1_id);
    assert_eq!(v2["product"], product.as_str());
    assert_eq!(v2["currency"], "usd");
    assert_eq!(
        v2["recurring"],
        json!({"interval": "week", "interval_count": 2, "usage_type": "licensed", "meter": null})
    );
    assert_eq!(v2["billing_scheme"], "tiered");
    assert_eq!(v2["nickname"], "Biweekly", "kept when not given");
    assert_eq!(v2["metadata"], json!({"a": "1", "b": "2"}), "merged");
    assert_eq!(v2["active"], true);
    let old = api.get(&format!("/v1/prices/{v1_id}")).await.expect(200);
    assert_eq!(old["active"], false);
    assert_eq!(old["superseded_by"], v2_id);
    assert_eq!(old["unit_amount"], 1000, "the old version still charges what it did");

    // Only the latest version can be versioned, or reactivated: versions form one line.
    let forked = api
        .post(&format!("/v1/prices/{v1_id}/versions"), json!({"unit_amount": 1}))
        .await
        .expect(409);
    assert_eq!(forked["code"], "price_superseded");
    assert!(forked["detail"].as_str().unwrap().contains(v2_id));
    let revived = api
        .post(&format!("/v1/prices/{v1_id}"), json!({"active": true}))
        .await
        .expect(409);
    assert_eq!(revived["code"], "price_superseded");
    let v3 = api
        .post(
            &format!("/v1/prices/{v2_id}/versions"),
            json!({"unit_amount": 1100, "nickname": "Biweekly v3"}),
        )
        .await
        .expect(201);
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["billing_scheme"], "per_unit");
    assert_eq!(v3["tiers"], Value::Null);
    let updated = api.get("/v1/events?type=price.updated").await.expect(200);
    assert_eq!(updated["data"].as_array().unwrap().len(), 2, "each replaced version");

    // Ten versions of one price at once: each one replaces the one before, or is refused.
    let latest = v3["id"].as_str().unwrap().to_owned();
    let attempts = (0..10).map(|i| {
        let api = api.clone();
        let latest = latest.clone();
        tokio::spawn(async move {
            api.post(
                &format!("/v1/prices/{latest}/versions"),
                json!({"unit_amount": 2000 + i}),
            )
            .await
            .status
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses[0], 201);
    assert!(statuses[1..].iter().all(|s| *s == 409), "{statuses:?}");
}

async fn bad_prices_are_refused_with_the_field_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let product = new_product(&api, "Plan").await;
    let base = json!({"product": product, "currency": "usd", "recurring": {"interval": "month"}});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (with(json!({})), ("unit_amount", "invalid_pricing")),
        (
            with(json!({"unit_amount": 5, "tiers_mode": "volume", "tiers": [{"unit_amount": 1}]})),
            ("unit_amount", "invalid_pricing"),
        ),
        (
            with(json!({"tiers_mode": "volume"})),
            ("unit_amount", "invalid_pricing"),
        ),
        (
            with(
                json!({"tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 1}, {"up_to": 10, "unit_amount": 1}, {"unit_amount": 1}]}),
            ),
            ("tiers[1].up_to", "invalid_tiers"),
        ),
        (
            with(json!({"tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 1}]})),
            ("tiers[0].up_to", "invalid_tiers"),
        ),
        (
            with(json!({"unit_amount": 5, "recurring": {"interval": "month", "interval_count": 37}})),
            ("recurring.interval_count", "interval_too_long"),
        ),
        (
            with(json!({"unit_amount": 5, "recurring": {"interval": "fortnight"}})),
            ("recurring.interval", "invalid"),
        ),
        (with(json!({"unit_amount": -1})), ("unit_amount", "out_of_range")),
        (
            with(json!({"unit_amount": 5, "currency": "xau"})),
            ("currency", "invalid_currency"),
        ),
        (
            with(json!({"unit_amount": 5, "product": "prod_x"})),
            ("product", "invalid_id"),
        ),
    ];
    for (body, (field, code)) in cases {
        let refused = api.post("/v1/prices", body.clone()).await.expect(422);
        assert!(
            codes(&refused).contains(&(field.to_owned(), code.to_owned())),
            "{body}: {refused}"
        );
    }
    let missing = format!("prod_{}", "0".repeat(32));
    api.post("/v1/prices", with(json!({"unit_amount": 5, "product": missing})))
        .await
        .expect(404);
    assert_eq!(
        api.get("/v1/prices").await.expect(200)["data"],
        json!([]),
        "nothing written"
    );
    assert_eq!(
        api.get("/v1/events?type=price.created").await.expect(200)["data"],
        json!([])
    );
}

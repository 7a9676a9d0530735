//! Input the API refuses, the same way on both backends, with a 4xx problem and nothing written:
//! control characters in text, duplicate JSON keys, repeated query parameters, oversized
//! credentials and heads.
use billing_api::store::Backend;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::{TestApp, assert_problem, spawn_app};

backend_tests!(
    control_characters_in_text_are_refused_alike,
    duplicate_keys_and_repeated_parameters_are_refused
);

/// The field errors of a 422, as `(field, code)`.
fn field_errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["code"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn count(api: &Api, path: &str) -> usize {
    api.get(path).await.expect(200)["data"].as_array().map_or(0, Vec::len)
}

async fn control_characters_in_text_are_refused_alike(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let draft = api.draft(&customer, &[(1, 100, None)]).await;
    let invoice = draft["id"].as_str().unwrap().to_owned();
    let line = draft["lines"]["data"][0]["id"].as_str().unwrap().to_owned();

    // PostgreSQL cannot store NUL (it answered 500); SQLite stored it. Both refuse it now, and
    // the other C0 controls and DEL with it.
    let cases = [
        (
            "/v1/customers",
            json!({"name": "Ada\u{0}Lovelace"}),
            "name",
            "invalid_characters",
        ),
        (
            "/v1/customers",
            json!({"name": "Ada\u{1b}[31m"}),
            "name",
            "invalid_characters",
        ),
        (
            "/v1/customers",
            json!({"name": "Ada", "email": "ada\u{0}@example.com"}),
            "email",
            "invalid_email",
        ),
        (
            "/v1/customers",
            json!({"name": "Ada", "metadata": {"k": "v\u{0}"}}),
            "metadata.k",
            "invalid_metadata",
        ),
        (
            &format!("/v1/customers/{customer}"),
            json!({"name": "A\u{0}"}),
            "name",
            "invalid_characters",
        ),
        (
            "/v1/invoices",
            json!({"customer": customer, "lines": [{"description": "x\u{7f}", "quantity": 1, "unit_amount": 1}]}),
            "lines[0].description",
            "invalid_characters",
        ),
        (
            &format!("/v1/invoices/{invoice}/lines"),
            json!({"description": "\u{0}", "quantity": 1, "unit_amount": 1}),
            "description",
            "invalid_characters",
        ),
        (
            &format!("/v1/invoices/{invoice}/lines/{line}"),
            json!({"description": "a\u{0}b"}),
            "description",
            "invalid_characters",
        ),
    ];
    for (path, body, field, code) in &cases {
        let reply = api.post(path, body.clone()).await;
        assert_eq!(reply.status, 422, "{path} {body}: {}", reply.body);
        assert_eq!(reply.body["code"], "validation_failed");
        assert!(
            field_errors(&reply.body).contains(&((*field).to_owned(), (*code).to_owned())),
            "{path} {body}: {}",
            reply.body
        );
    }
    // Nothing was written: one customer, one invoice with its one line, still named as created.
    assert_eq!(count(&api, "/v1/customers").await, 1);
    assert_eq!(count(&api, "/v1/invoices").await, 1);
    let now = api.get(&format!("/v1/invoices/{invoice}")).await.expect(200);
    assert_eq!(now["lines"]["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(now["lines"]["data"][0]["description"], "item");
    assert_eq!(
        api.get(&format!("/v1/customers/{customer}")).await.expect(200)["name"],
        "Ada"
    );

    // Tabs and line ends are text, and other scripts are too.
    let reply = api
        .post("/v1/customers", json!({"name": "Ada\tLovelace\nÉcole 学校"}))
        .await;
    assert_eq!(reply.expect(201)["name"], "Ada\tLovelace\nÉcole 学校");
}

async fn send_raw(
    app: &TestApp,
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: &'static str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(&api.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn duplicate_keys_and_repeated_parameters_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let api = app.tenant("acme").await;

    // Last-wins would let a proxy or a log see one amount and the server another.
    let response = send_raw(
        &app,
        &api,
        reqwest::Method::POST,
        "/v1/customers",
        r#"{"name":"a","name":"b"}"#,
    )
    .await;
    let body = assert_problem(response, 400, "malformed_json").await;
    assert!(body["detail"].as_str().unwrap_or("").contains("name"), "{body}");
    let response = send_raw(
        &app,
        &api,
        reqwest::Method::POST,
        "/v1/customers",
        r#"{"name":"a","metadata":{"k":"1","k":"2"}}"#,
    )
    .await;
    assert_problem(response, 400, "malformed_json").await;
    assert_eq!(count(&api, "/v1/customers").await, 0, "nothing was created");

    // A JSON `null` body is no parameters, as the document allows for actions.
    let customer = api.customer("usd").await;
    let draft = api.draft(&customer, &[(1, 100, None)]).await;
    let invoice = draft["id"].as_str().unwrap();
    let response = send_raw(
        &app,
        &api,
        reqwest::Method::POST,
        &format!("/v1/invoices/{invoice}/finalize"),
        "null",
    )
    .await;
    assert_eq!(response.status(), 200);
    // Where the document wants an object, `null` is refused like any other non-object.
    let response = send_raw(&app, &api, reqwest::Method::POST, "/v1/customers", "null").await;
    assert_problem(response, 422, "validation_failed").await;

    // Repeated query parameters: first-wins would let two layers read different values.
    for query in [
        "limit=1&limit=2",
        "customer=a&customer=b",
        "limit=1&starting_after=x&starting_after=y",
    ] {
        let reply = api.get(&format!("/v1/invoices?{query}")).await;
        assert_eq!(reply.status, 422, "{query}: {}", reply.body);
        let repeated: Vec<String> = field_errors(&reply.body)
            .into_iter()
            .filter(|(_, code)| code == "repeated_parameter")
            .map(|(field, _)| field)
            .collect();
        assert_eq!(repeated.len(), 1, "{query}: {}", reply.body);
        assert!(
            query.matches(&format!("{}=", repeated[0])).count() == 2,
            "{query}: {repeated:?}"
        );
    }
    assert_eq!(api.get("/v1/invoices?limit=1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_431_problems() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let api = app.tenant("acme").await;
    // 667 KB of header: hyper alone answered a bare 431; the request layer answers it as a problem.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(&api.key)
        .header("x-padding", "a".repeat(667 * 1024))
        .send()
        .await
        .unwrap();
    assert_problem(response, 431, "request_header_fields_too_large").await;

    // Just under the 16 KiB default is served.
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(&api.key)
        .header("x-padding", "a".repeat(14 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Too many headers, each small.
    let mut request = app.client.get(app.url("/v1/customers")).bearer_auth(&api.key);
    for i in 0..150 {
        request = request.header(format!("x-h{i}"), "1");
    }
    assert_problem(request.send().await.unwrap(), 431, "request_header_fields_too_large").await;
}

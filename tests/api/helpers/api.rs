//! Calling the billing API as a tenant.
use serde_json::{Value, json};

use super::TestApp;
use billing_api::auth::api_key;
use billing_api::store::tenants;

impl TestApp {
    /// A new API key for `tenant` with `scopes`.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let generated = api_key::generate(tenant, &scopes, None, billing_api::clock::now()).unwrap();
        let mut conn = self.store.pool().acquire().await.unwrap();
        tenants::insert_key(&mut conn, &generated.row).await.unwrap();
        generated.key
    }

    /// A client acting for a new tenant with every scope.
    pub async fn tenant(&self, tenant: &str) -> Api {
        Api {
            app_url: self.url(""),
            client: self.client.clone(),
            key: self.key(tenant, &["*"]).await,
        }
    }

    pub fn api_with_key(&self, key: &str) -> Api {
        Api {
            app_url: self.url(""),
            client: self.client.clone(),
            key: key.to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct Api {
    pub app_url: String,
    pub client: reqwest::Client,
    pub key: String,
}

/// A response's status, body and headers.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_owned()
    }

    /// Asserts the status and returns the body.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }
}

impl Api {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.app_url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, body, headers }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body), None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    pub async fn customer(&self, currency: &str) -> String {
        self.post(
            "/v1/customers",
            json!({ "name": "Ada", "email": "ada@example.com", "currency": currency }),
        )
        .await
        .id()
    }

    /// A draft invoice with one line per `(quantity, unit_amount, tax_rate_bps)`.
    pub async fn draft(&self, customer: &str, lines: &[(i64, i64, Option<i64>)]) -> Value {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(q, u, t)| json!({ "description": "item", "quantity": q, "unit_amount": u, "tax_rate_bps": t }))
            .collect();
        self.post("/v1/invoices", json!({ "customer": customer, "lines": lines }))
            .await
            .expect(201)
    }

    /// A finalized (open) invoice of `total` with no tax.
    pub async fn open_invoice(&self, customer: &str, total: i64) -> String {
        let draft = self.draft(customer, &[(1, total, None)]).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        self.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
            .await
            .expect(200);
        id
    }

    pub async fn pay(&self, invoice: &str, amount: i64, currency: &str) -> Reply {
        self.post(
            "/v1/payments",
            json!({ "invoice": invoice, "amount": amount, "currency": currency }),
        )
        .await
    }
}

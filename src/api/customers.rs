use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{CurrencyCode, EmailAddress, MetadataParam, TestClockId, Text256};
use super::write::{Done, Write};
use crate::billing::customers::{self as ops, CustomerUpdate, NewCustomer};
use crate::billing::ledger;
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::objects::{Customer, CustomerBalance};

/// Creating a customer: what an update takes, and the test clock they live on.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCustomerParams {
    #[serde(default)]
    #[schema(value_type = Option<Text256>)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<EmailAddress>)]
    pub email: Field<String>,
    /// ISO 4217 code (`usd`, `JPY`); amounts use its minor unit.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    /// A test clock (`clock_…`): the customer lives in its time, and their subscriptions are
    /// billed when it is advanced. Set at creation only.
    #[serde(default)]
    #[schema(value_type = Option<TestClockId>)]
    pub test_clock: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Updating a customer.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CustomerParams {
    #[serde(default)]
    #[schema(value_type = Option<Text256>)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<EmailAddress>)]
    pub email: Field<String>,
    /// ISO 4217 code (`usd`, `JPY`); amounts use its minor unit.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Field<String>,
    /// On update, keys are merged and an empty value removes a key.
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check(
    params: CustomerParams,
) -> (
    Check,
    Option<String>,
    Option<String>,
    Option<Currency>,
    Option<Metadata>,
) {
    let mut c = Check::new();
    c.unknown("", &params.unknown);
    let name = c.optional("name", params.name);
    let name = c.text("name", name, 256);
    let email = c.optional("email", params.email);
    let email = c.email("email", email);
    let currency = c.optional("currency", params.currency);
    let currency = c.currency("currency", currency);
    let metadata = c.optional("metadata", params.metadata);
    let metadata = c.metadata("metadata", metadata);
    (c, name, email, currency, metadata)
}

#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = NewCustomerParams,
    responses((status = 201, description = "Created", body = Customer)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("customers:write")?;
    let p: NewCustomerParams = w.body.read()?;
    let (mut c, name, email, currency, metadata) = check(CustomerParams {
        name: p.name,
        email: p.email,
        currency: p.currency,
        metadata: p.metadata,
        unknown: p.unknown,
    });
    let test_clock = c.optional("test_clock", p.test_clock);
    let test_clock = c.id("test_clock", test_clock, Kind::TestClock);
    let input = c.finish(|| {
        Some(NewCustomer {
            name,
            email,
            currency,
            metadata: metadata.unwrap_or_default(),
            test_clock,
        })
    })?;
    w.run(async |conn, ctx| ops::create(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(post, path = "/v1/customers/{id}", tag = "customers", request_body = CustomerParams,
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "Updated", body = Customer)))]
pub async fn update(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("customers:write")?;
    let id = path_id(Kind::Customer, id)?;
    let (c, name, email, currency, metadata) = check(w.body.read()?);
    let input = c.finish(|| {
        Some(CustomerUpdate {
            name,
            email,
            currency,
            metadata,
        })
    })?;
    w.run(async |conn, ctx| ops::update(conn, ctx, &id, input).await.map(Done::ok))
        .await
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = Customer)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Customer>, Problem> {
    r.require("customers:read")?;
    let id = path_id(Kind::Customer, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(list::PageParams),
    responses((status = 200, description = "Customers, newest first", body = List<Customer>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Customer>>, Problem> {
    r.require("customers:read")?;
    let page = list::Query::new(params, &[]).page(Kind::Customer)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page).await).await
}

#[utoipa::path(get, path = "/v1/customers/{id}/balance", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "What the customer owes, per currency", body = CustomerBalance)))]
pub async fn balance(r: Read, Path(id): Path<String>) -> Result<Json<CustomerBalance>, Problem> {
    r.require("customers:read")?;
    let id = path_id(Kind::Customer, id)?;
    r.answer(async |conn, tenant| ledger::balance(conn, tenant, &id).await)
        .await
}

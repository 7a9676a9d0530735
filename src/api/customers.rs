use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::input::{Check, Field, JsonBody, Unknown};
use super::list::{self, List};
use super::objects::{Customer, CustomerBalance};
use super::{ReqId, conn, path_id};
use crate::auth::Principal;
use crate::billing::customers::{self as ops, CustomerUpdate, NewCustomer};
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::{customers, ledger};

/// Creating or updating a customer.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CustomerParams {
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = "email")]
    pub email: Field<String>,
    /// ISO 4217 code (`usd`, `JPY`); amounts use its minor unit.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "usd")]
    pub currency: Field<String>,
    /// Up to 50 keys of at most 40 characters, values of at most 500. On update, keys are merged
    /// and an empty value removes a key.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, String>>)]
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
    Option<crate::domain::money::Currency>,
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

#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = CustomerParams,
    responses((status = 201, description = "Created", body = Customer)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("customers:write")?;
    let (c, name, email, currency, metadata) = check(body.read()?);
    let input = c.finish(|| {
        Some(NewCustomer {
            name,
            email,
            currency,
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        "/v1/customers".into(),
        body,
        StatusCode::CREATED,
        |conn, ctx| async { ops::create(conn, ctx, input).await.map(Customer::from) }
    )
}

#[utoipa::path(post, path = "/v1/customers/{id}", tag = "customers", request_body = CustomerParams,
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "Updated", body = Customer)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("customers:write")?;
    let id = path_id(Kind::Customer, id, "customer")?;
    let (c, name, email, currency, metadata) = check(body.read()?);
    let input = c.finish(|| {
        Some(CustomerUpdate {
            name,
            email,
            currency,
            metadata,
        })
    })?;
    let path = format!("/v1/customers/{id}");
    write_op!(
        state,
        principal,
        request_id,
        headers,
        path,
        body,
        StatusCode::OK,
        |conn, ctx| async { ops::update(conn, ctx, &id, input).await.map(Customer::from) }
    )
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = Customer)))]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Customer>, Problem> {
    principal.require("customers:read")?;
    let id = path_id(Kind::Customer, id, "customer")?;
    let mut conn = conn(&state).await?;
    Ok(Json(ops::get(&mut conn, &principal.tenant, &id).await?.into()))
}

#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(list::PageParams),
    responses((status = 200, description = "Customers, newest first", body = List<Customer>)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<Customer>>, Problem> {
    principal.require("customers:read")?;
    let query = list::Query::new(params, &[]);
    let mut conn = conn(&state).await?;
    let page = query
        .page(&mut conn, "customers", Kind::Customer, &principal.tenant)
        .await?;
    let rows = customers::list(&mut conn, &principal.tenant, &page).await?;
    Ok(Json(List::from_page(rows, Customer::from)))
}

#[utoipa::path(get, path = "/v1/customers/{id}/balance", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "What the customer owes, per currency", body = CustomerBalance)))]
pub async fn balance(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CustomerBalance>, Problem> {
    principal.require("customers:read")?;
    let id = path_id(Kind::Customer, id, "customer")?;
    let mut conn = conn(&state).await?;
    let customer = ops::get(&mut conn, &principal.tenant, &id).await?;
    let balances = ledger::balances(&mut conn, &principal.tenant, &customer.id).await?;
    Ok(Json(CustomerBalance::new(customer.id, balances)))
}

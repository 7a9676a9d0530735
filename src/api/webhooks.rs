use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::input::{Check, Field, JsonBody, Unknown};
use super::list::{self, List};
use super::objects::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use super::{ReqId, conn, path_id};
use crate::auth::Principal;
use crate::billing::{BillingError, events as types};
use crate::domain::ids::Kind;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::webhooks as store;
use crate::webhooks::endpoints::{self as ops, EndpointUpdate, NewEndpoint};
use crate::webhooks::secrets::Cipher;

/// Creating or updating a webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EndpointParams {
    /// Where events are POSTed: https (http only if the operator allows it), and not a private,
    /// loopback or link-local address.
    #[serde(default)]
    #[schema(value_type = String, example = "https://erp.example.com/billing-events")]
    pub url: Field<String>,
    /// Event types to send, or `["*"]` for all.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["invoice.paid", "payment.created"]))]
    pub enabled_events: Field<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Field<String>,
    /// Update only: `true` stops deliveries, `false` resumes them (and resets the breaker).
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub disabled: Field<bool>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

struct Checked {
    check: Check,
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    disabled: Option<bool>,
}

fn check(state: &AppState, p: EndpointParams, creating: bool) -> Checked {
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let url = if creating {
        c.required("url", p.url)
    } else {
        c.optional("url", p.url)
    };
    let url = c.text("url", url, 2048);
    let url = url.and_then(|u| match state.webhooks.policy.check_url(&u) {
        Ok(_) => Some(u),
        Err(why) => {
            c.error("url", "invalid_url", format!("the URL {why}"));
            None
        }
    });
    let events = if creating {
        c.required("enabled_events", p.enabled_events)
    } else {
        c.optional("enabled_events", p.enabled_events)
    };
    let events = events.and_then(|events| {
        let unknown: Vec<&String> = events
            .iter()
            .filter(|e| *e != "*" && !types::TYPES.contains(&e.as_str()))
            .collect();
        if events.is_empty() {
            c.error("enabled_events", "required", "name at least one event type, or \"*\"");
            None
        } else if !unknown.is_empty() {
            c.error(
                "enabled_events",
                "unknown_event_type",
                format!("unknown: {unknown:?}; known: * {}", types::TYPES.join(" ")),
            );
            None
        } else {
            let mut events = events;
            events.sort();
            events.dedup();
            Some(events)
        }
    });
    let description = c.optional("description", p.description);
    let description = c.text("description", description, 500);
    let disabled = c.optional("disabled", p.disabled);
    if creating && disabled.is_some() {
        c.error("disabled", "unknown_field", "endpoints are created enabled");
    }
    Checked {
        check: c,
        url,
        events,
        description,
        disabled,
    }
}

/// Endpoints cannot be created without a key to encrypt their secrets at rest.
fn cipher(state: &AppState) -> Result<&Cipher, Problem> {
    state.webhooks.cipher.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks_not_configured",
            "Webhooks Not Configured",
            "the operator has not set webhooks.encryption_key",
        )
    })
}

#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", request_body = EndpointParams,
    responses((status = 201, description = "The endpoint, with its signing secret (shown only now)", body = WebhookEndpoint)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let cipher = cipher(&state)?;
    let Checked {
        check,
        url,
        events,
        description,
        ..
    } = check(&state, body.read()?, true);
    let input = check.finish(|| {
        Some(NewEndpoint {
            url: url?,
            enabled_events: events?,
            description,
        })
    })?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        "/v1/webhook_endpoints".into(),
        body,
        StatusCode::CREATED,
        |conn, ctx| async { ops::create(conn, ctx, cipher, input).await }
    )
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", request_body = EndpointParams,
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "Updated", body = WebhookEndpoint)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookEndpoint, id, "webhook endpoint")?;
    let Checked {
        check,
        url,
        events,
        description,
        disabled,
    } = check(&state, body.read()?, false);
    let input = check.finish(|| {
        Some(EndpointUpdate {
            url,
            enabled_events: events,
            description,
            disabled,
        })
    })?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        format!("/v1/webhook_endpoints/{id}"),
        body,
        StatusCode::OK,
        |conn, ctx| async { ops::update(conn, ctx, &id, input).await }
    )
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/rotate_secret", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "The endpoint with its new secret; the previous one signs too until webhooks.secret_overlap ends", body = WebhookEndpoint)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let cipher = cipher(&state)?;
    let id = path_id(Kind::WebhookEndpoint, id, "webhook endpoint")?;
    let overlap = state.webhooks.config.secret_overlap;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        format!("/v1/webhook_endpoints/{id}/rotate_secret"),
        body,
        StatusCode::OK,
        |conn, ctx| async { ops::rotate_secret(conn, ctx, cipher, &id, overlap).await }
    )
}

#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "Deleted, with its pending deliveries")))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookEndpoint, id, "webhook endpoint")?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        format!("/v1/webhook_endpoints/{id}"),
        body,
        StatusCode::OK,
        |conn, ctx| async { ops::delete(conn, ctx, &id).await }
    )
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint)))]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<WebhookEndpoint>, Problem> {
    principal.require("webhooks:read")?;
    let id = path_id(Kind::WebhookEndpoint, id, "webhook endpoint")?;
    let mut conn = conn(&state).await?;
    let row = store::find_endpoint(&mut conn, &principal.tenant, &id)
        .await?
        .ok_or(BillingError::NotFound("webhook endpoint"))?;
    Ok(Json(row.into()))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks", params(list::PageParams),
    responses((status = 200, description = "Webhook endpoints, newest first", body = List<WebhookEndpoint>)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<WebhookEndpoint>>, Problem> {
    principal.require("webhooks:read")?;
    let query = list::Query::new(params, &[]);
    let mut conn = conn(&state).await?;
    let page = query
        .page(&mut conn, "webhook_endpoints", Kind::WebhookEndpoint, &principal.tenant)
        .await?;
    let rows = store::list_endpoints(&mut conn, &principal.tenant, &page).await?;
    Ok(Json(List::from_page(rows, WebhookEndpoint::from)))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "Webhook endpoint id"), list::PageParams),
    responses((status = 200, description = "The endpoint's attempt log, newest first", body = List<WebhookAttempt>)))]
pub async fn attempts(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<WebhookAttempt>>, Problem> {
    principal.require("webhooks:read")?;
    let id = path_id(Kind::WebhookEndpoint, id, "webhook endpoint")?;
    let query = list::Query::new(params, &[]);
    let mut conn = conn(&state).await?;
    store::find_endpoint(&mut conn, &principal.tenant, &id)
        .await?
        .ok_or(BillingError::NotFound("webhook endpoint"))?;
    let page = query
        .page(&mut conn, "webhook_attempts", Kind::WebhookAttempt, &principal.tenant)
        .await?;
    let rows = store::list_attempts(&mut conn, &principal.tenant, &page, &[("endpoint_id", id.as_str())]).await?;
    Ok(Json(List::from_page(rows, WebhookAttempt::from)))
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilters {
    /// Only deliveries to this endpoint.
    endpoint: Option<String>,
    /// Only deliveries of this event.
    event: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    status: Option<String>,
}

#[utoipa::path(get, path = "/v1/webhook_deliveries", tag = "webhooks", params(list::PageParams, DeliveryFilters),
    responses((status = 200, description = "Deliveries, newest first", body = List<WebhookDelivery>)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<WebhookDelivery>>, Problem> {
    principal.require("webhooks:read")?;
    let mut query = list::Query::new(params, &["endpoint", "event", "status"]);
    let endpoint = query.filter("endpoint", Some(Kind::WebhookEndpoint));
    let event = query.filter("event", Some(Kind::Event));
    let status = query.filter("status", None);
    if let Some(s) = &status
        && !["pending", "succeeded", "failed"].contains(&s.as_str())
    {
        query
            .check()
            .error("status", "invalid", "one of pending, succeeded, failed");
    }
    let mut conn = conn(&state).await?;
    let page = query
        .page(
            &mut conn,
            "webhook_deliveries",
            Kind::WebhookDelivery,
            &principal.tenant,
        )
        .await?;
    let mut filters = Vec::new();
    for (column, value) in [("endpoint_id", &endpoint), ("event_id", &event), ("status", &status)] {
        if let Some(v) = value {
            filters.push((column, v.as_str()));
        }
    }
    let rows = store::list_deliveries(&mut conn, &principal.tenant, &page, &filters).await?;
    Ok(Json(List::from_page(rows, WebhookDelivery::from)))
}

#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, description = "The delivery", body = WebhookDelivery)))]
pub async fn retrieve_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<WebhookDelivery>, Problem> {
    principal.require("webhooks:read")?;
    let id = path_id(Kind::WebhookDelivery, id, "webhook delivery")?;
    let mut conn = conn(&state).await?;
    let row = store::find_delivery(&mut conn, &principal.tenant, &id)
        .await?
        .ok_or(BillingError::NotFound("webhook delivery"))?;
    Ok(Json(row.into()))
}

#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, description = "The delivery, due now (even if it had succeeded)", body = WebhookDelivery)))]
pub async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookDelivery, id, "webhook delivery")?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        format!("/v1/webhook_deliveries/{id}/retry"),
        body,
        StatusCode::OK,
        |conn, ctx| async { ops::retry(conn, ctx, &id).await }
    )
}

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, NoParams, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{EventTypeOrAll, Text500, WebhookUrl};
use super::state::AppState;
use super::write::{Done, Write};
use crate::domain::ids::Kind;
use crate::objects::{EVENT_TYPES, WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use crate::store::webhooks::DeliveryFilter;
use crate::webhooks::endpoints::{self as ops, EndpointUpdate, NewEndpoint};
use crate::webhooks::secrets::Cipher;

/// Creating or updating a webhook endpoint, as read (the two are described apart below).
#[derive(Debug, Deserialize)]
pub struct EndpointParams {
    #[serde(default)]
    pub url: Field<String>,
    #[serde(default)]
    pub enabled_events: Field<Vec<String>>,
    #[serde(default)]
    pub description: Field<String>,
    #[serde(default)]
    pub disabled: Field<bool>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A new webhook endpoint.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct EndpointCreateParams {
    /// Where events are POSTed: https (http only if the operator allows it), and not a private,
    /// loopback or link-local address.
    url: WebhookUrl,
    /// Event types to send, or `["*"]` for all.
    #[schema(min_items = 1, example = json!(["invoice.paid", "payment.created"]))]
    enabled_events: Vec<EventTypeOrAll>,
    description: Option<Text500>,
}

/// Changes to a webhook endpoint: every field is optional.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct EndpointUpdateParams {
    url: Option<WebhookUrl>,
    #[schema(min_items = 1)]
    enabled_events: Option<Vec<EventTypeOrAll>>,
    description: Option<Text500>,
    /// `true` stops deliveries, `false` resumes them (and resets the breaker).
    disabled: Option<bool>,
}

/// The longest endpoint URL accepted ([`WebhookUrl`] states it).
pub const MAX_URL_CHARS: usize = 2048;

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
    // Checked as sent, not trimmed: the stored URL is the one the shape check saw.
    let url = url.and_then(|u| {
        if u.chars().count() > MAX_URL_CHARS {
            c.error(
                "url",
                "invalid_length",
                format!("must be at most {MAX_URL_CHARS} characters"),
            );
            return None;
        }
        match state.webhooks.policy.check_url(&u) {
            Ok(_) => Some(u),
            Err(why) => {
                c.error("url", "invalid_url", format!("the URL {why}"));
                None
            }
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
            .filter(|e| *e != "*" && !EVENT_TYPES.contains(&e.as_str()))
            .collect();
        if events.is_empty() {
            c.error("enabled_events", "required", "name at least one event type, or \"*\"");
            None
        } else if !unknown.is_empty() {
            c.error(
                "enabled_events",
                "unknown_event_type",
                format!("unknown: {unknown:?}; known: * {}", EVENT_TYPES.join(" ")),
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
    state
        .webhooks
        .cipher
        .as_ref()
        .ok_or_else(Problem::webhooks_not_configured)
}

#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", request_body = EndpointCreateParams,
    responses((status = 201, description = "The endpoint, with its signing secret (shown only now)", body = WebhookEndpoint)))]
pub async fn create(State(state): State<AppState>, w: Write) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let cipher = cipher(&state)?;
    let Checked {
        check,
        url,
        events,
        description,
        ..
    } = check(&state, w.body.read()?, true);
    let input = check.finish(|| {
        Some(NewEndpoint {
            url: url?,
            enabled_events: events?,
            description,
        })
    })?;
    w.run(async |conn, ctx| {
        let endpoint = ops::create(conn, ctx, cipher, input).await?;
        Ok(Done::created(endpoint).replayed_as(WebhookEndpoint::without_secret))
    })
    .await
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", request_body = EndpointUpdateParams,
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "Updated", body = WebhookEndpoint)))]
pub async fn update(State(state): State<AppState>, Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookEndpoint, id)?;
    let Checked {
        check,
        url,
        events,
        description,
        disabled,
    } = check(&state, w.body.read()?, false);
    let input = check.finish(|| {
        Some(EndpointUpdate {
            url,
            enabled_events: events,
            description,
            disabled,
        })
    })?;
    w.run(async |conn, ctx| ops::update(conn, ctx, &id, input).await.map(Done::ok))
        .await
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/rotate_secret", tag = "webhooks", request_body(content = Option<NoParams>),
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "The endpoint with its new secret; the previous one signs too until webhooks.secret_overlap ends", body = WebhookEndpoint)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    w: Write,
) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookEndpoint, id)?;
    NoParams::check(&w.body)?;
    // A missing endpoint is 404 whether or not webhooks are configured: the operation checks.
    let cipher = state.webhooks.cipher.as_ref();
    let overlap = state.webhooks.config.secret_overlap;
    w.run(async |conn, ctx| {
        let endpoint = ops::rotate_secret(conn, ctx, cipher, &id, overlap).await?;
        Ok(Done::ok(endpoint).replayed_as(WebhookEndpoint::without_secret))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "Deleted, with its pending deliveries")))]
pub async fn delete(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookEndpoint, id)?;
    w.run(async |conn, ctx| ops::delete(conn, ctx, &id).await.map(Done::ok))
        .await
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<WebhookEndpoint>, Problem> {
    r.require("webhooks:read")?;
    let id = path_id(Kind::WebhookEndpoint, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks", params(list::PageParams),
    responses((status = 200, description = "Webhook endpoints, newest first", body = List<WebhookEndpoint>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<WebhookEndpoint>>, Problem> {
    r.require("webhooks:read")?;
    let page = list::Query::new(params, &[]).page(Kind::WebhookEndpoint)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page).await).await
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "Webhook endpoint id"), list::PageParams),
    responses((status = 200, description = "The endpoint's attempt log, newest first", body = List<WebhookAttempt>)))]
pub async fn attempts(
    r: Read,
    Path(id): Path<String>,
    RawQuery(params): RawQuery,
) -> Result<Json<List<WebhookAttempt>>, Problem> {
    r.require("webhooks:read")?;
    let id = path_id(Kind::WebhookEndpoint, id)?;
    let page = list::Query::new(params, &[]).page(Kind::WebhookAttempt)?;
    r.list(async |conn, tenant| ops::attempts(conn, tenant, &id, &page).await)
        .await
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
pub async fn list_deliveries(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<WebhookDelivery>>, Problem> {
    r.require("webhooks:read")?;
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
    let page = query.page(Kind::WebhookDelivery)?;
    let filter = DeliveryFilter {
        endpoint,
        event,
        status,
    };
    r.list(async |conn, tenant| ops::list_deliveries(conn, tenant, &page, &filter).await)
        .await
}

#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, description = "The delivery", body = WebhookDelivery)))]
pub async fn retrieve_delivery(r: Read, Path(id): Path<String>) -> Result<Json<WebhookDelivery>, Problem> {
    r.require("webhooks:read")?;
    let id = path_id(Kind::WebhookDelivery, id)?;
    r.answer(async |conn, tenant| ops::get_delivery(conn, tenant, &id).await)
        .await
}

#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/retry", tag = "webhooks", request_body(content = Option<NoParams>),
    params(("id" = String, Path, description = "Webhook delivery id")),
    responses((status = 200, description = "The delivery, due now (even if it had succeeded)", body = WebhookDelivery)))]
pub async fn retry(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let id = path_id(Kind::WebhookDelivery, id)?;
    NoParams::check(&w.body)?;
    w.run(async |conn, ctx| ops::retry(conn, ctx, &id).await.map(Done::ok))
        .await
}

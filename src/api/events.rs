use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::input::{Check, Field, JsonBody, Unknown};
use super::list::{self, List};
use super::objects::{Event, WebhookDelivery};
use super::{ReqId, conn, path_id};
use crate::auth::Principal;
use crate::billing::{BillingError, events as types};
use crate::domain::ids::Kind;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::events;
use crate::webhooks::endpoints as ops;

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilters {
    /// Only events of this type, e.g. `invoice.paid`.
    #[param(rename = "type")]
    kind: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(list::PageParams, EventFilters),
    responses((status = 200, description = "Events, newest first", body = List<Event>)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<Event>>, Problem> {
    principal.require("events:read")?;
    let mut query = list::Query::new(params, &["type"]);
    let kind = query.filter("type", None);
    if let Some(k) = &kind
        && !types::TYPES.contains(&k.as_str())
    {
        query.check().error("type", "unknown_event_type", "not an event type");
    }
    let mut conn = conn(&state).await?;
    let page = query.page(&mut conn, "events", Kind::Event, &principal.tenant).await?;
    let filters: Vec<_> = kind.as_deref().map(|k| ("type", k)).into_iter().collect();
    let rows = events::list(&mut conn, &principal.tenant, &page, &filters).await?;
    Ok(Json(List::from_page(rows, Event::from)))
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path, description = "Event id")),
    responses((status = 200, description = "The event", body = Event)))]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Event>, Problem> {
    principal.require("events:read")?;
    let id = path_id(Kind::Event, id, "event")?;
    let mut conn = conn(&state).await?;
    let event = events::find(&mut conn, &principal.tenant, &id)
        .await?
        .ok_or(BillingError::NotFound("event"))?;
    Ok(Json(event.into()))
}

/// Resending an event.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendParams {
    /// The webhook endpoint (`we_…`) to send it to.
    #[serde(default)]
    #[schema(value_type = String)]
    pub endpoint: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "events", request_body = ResendParams,
    params(("id" = String, Path, description = "Event id")),
    responses((status = 201, description = "A new delivery of the event, due now", body = WebhookDelivery)))]
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, Problem> {
    principal.require("webhooks:write")?;
    let id = path_id(Kind::Event, id, "event")?;
    let p: ResendParams = body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let endpoint = c.required("endpoint", p.endpoint);
    let endpoint = c.id("endpoint", endpoint, Kind::WebhookEndpoint);
    let endpoint = c.finish(|| endpoint)?;
    write_op!(
        state,
        principal,
        request_id,
        headers,
        format!("/v1/events/{id}/resend"),
        body,
        StatusCode::CREATED,
        |conn, ctx| async { ops::resend(conn, ctx, &id, &endpoint).await }
    )
}

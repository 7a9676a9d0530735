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
use super::schema::WebhookEndpointId;
use super::write::{Done, Write};
use crate::billing::events as ops;
use crate::domain::ids::Kind;
use crate::objects::{EVENT_TYPES, Event, WebhookDelivery};
use crate::store::events::Filter;
use crate::webhooks::endpoints;

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
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Event>>, Problem> {
    r.require("events:read")?;
    let mut query = list::Query::new(params, &["type"]);
    let kind = query.filter("type", None);
    if let Some(k) = &kind
        && !EVENT_TYPES.contains(&k.as_str())
    {
        query.check().error("type", "unknown_event_type", "not an event type");
    }
    let page = query.page(Kind::Event)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &Filter { kind }).await)
        .await
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path, description = "Event id")),
    responses((status = 200, description = "The event", body = Event)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Event>, Problem> {
    r.require("events:read")?;
    let id = path_id(Kind::Event, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

/// Resending an event.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendParams {
    /// The webhook endpoint (`we_…`) to send it to.
    #[serde(default)]
    #[schema(value_type = WebhookEndpointId, required = true)]
    pub endpoint: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "events", request_body = ResendParams,
    params(("id" = String, Path, description = "Event id")),
    responses((status = 201, description = "A new delivery of the event, due now", body = WebhookDelivery)))]
pub async fn resend(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("webhooks:write")?;
    let id = path_id(Kind::Event, id)?;
    let p: ResendParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let endpoint = c.required("endpoint", p.endpoint);
    let endpoint = c.id("endpoint", endpoint, Kind::WebhookEndpoint);
    let endpoint = c.finish(|| endpoint)?;
    w.run(async |conn, ctx| endpoints::resend(conn, ctx, &id, &endpoint).await.map(Done::created))
        .await
}

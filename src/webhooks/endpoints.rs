//! Operations on webhook endpoints, deliveries and events that run in the caller's write
//! transaction (like the billing operations: refuse before the first write, or succeed), and the
//! reads beside them.
use sqlx::AnyConnection;

use super::secrets::{self, Cipher};
use crate::domain::ids::{Kind, new_id};
use crate::objects::{Deleted, WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use crate::operation::{Ctx, Error, Result};
use crate::store::page::{Page, PageQuery};
use crate::store::webhooks::{self as store, DeliveryFilter, EndpointRow};
use crate::store::{events, tenants};

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub description: Option<String>,
    pub disabled: Option<bool>,
}

async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<EndpointRow> {
    store::find_endpoint(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("webhook endpoint"))
}

/// A new signing secret, and the form it is stored in.
fn new_secret(cipher: &Cipher) -> Result<(String, String)> {
    let secret = secrets::generate().map_err(Error::NoRandomness)?;
    let sealed = cipher.encrypt(&secret).map_err(Error::NoRandomness)?;
    Ok((secret, sealed))
}

/// Creates an endpoint; its signing secret is in the answer, and only there.
pub async fn create(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    cipher: &Cipher,
    input: NewEndpoint,
) -> Result<WebhookEndpoint> {
    let (secret, sealed) = new_secret(cipher)?;
    let row = EndpointRow {
        id: new_id(Kind::WebhookEndpoint),
        url: input.url,
        description: input.description,
        enabled_events: input.enabled_events,
        status: "enabled".into(),
        disabled_reason: None,
        secret: sealed,
        previous_secret: None,
        previous_secret_expires: None,
        consecutive_failures: 0,
        breaker_open_until: None,
        failing_since: None,
        created: ctx.now,
    };
    tenants::ensure(conn, &ctx.tenant, ctx.now).await?;
    store::insert_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.created", &row.id).await?;
    Ok(WebhookEndpoint {
        secret: Some(secret),
        ..row.into()
    })
}

pub async fn update(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: EndpointUpdate) -> Result<WebhookEndpoint> {
    let mut row = find(conn, &ctx.tenant, id).await?;
    if let Some(url) = input.url {
        row.url = url;
    }
    if let Some(events) = input.enabled_events {
        row.enabled_events = events;
    }
    if let Some(description) = input.description {
        row.description = Some(description);
    }
    match input.disabled {
        Some(true) => {
            row.status = "disabled".into();
            row.disabled_reason = Some("manual".into());
        }
        Some(false) => {
            // A fresh start: the breaker closes and the failure clock resets.
            row.status = "enabled".into();
            row.disabled_reason = None;
            row.consecutive_failures = 0;
            row.breaker_open_until = None;
            row.failing_since = None;
        }
        None => {}
    }
    store::update_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.updated", id).await?;
    Ok(row.into())
}

/// A new secret signs from now on; the previous one keeps signing too until `overlap` ends, so
/// receivers can switch without losing a delivery.
pub async fn rotate_secret(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    cipher: Option<&Cipher>,
    id: &str,
    overlap: std::time::Duration,
) -> Result<WebhookEndpoint> {
    let mut row = find(conn, &ctx.tenant, id).await?;
    let cipher = cipher.ok_or(Error::WebhooksNotConfigured)?;
    let (secret, sealed) = new_secret(cipher)?;
    row.previous_secret = Some(std::mem::replace(&mut row.secret, sealed));
    row.previous_secret_expires = Some(ctx.now + overlap.as_secs() as i64);
    store::update_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.secret_rotated", id).await?;
    Ok(WebhookEndpoint {
        secret: Some(secret),
        ..row.into()
    })
}

pub async fn delete(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Deleted> {
    find(conn, &ctx.tenant, id).await?;
    store::delete_endpoint(conn, &ctx.tenant, id).await?;
    ctx.audit(conn, "webhook_endpoint.deleted", id).await?;
    Ok(Deleted::new("webhook_endpoint", id))
}

/// Sends a delivery again now, whatever became of it.
pub async fn retry(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<WebhookDelivery> {
    get_delivery(conn, &ctx.tenant, id).await?;
    store::retry_delivery(conn, &ctx.tenant, id, ctx.now).await?;
    ctx.audit(conn, "webhook_delivery.retried", id).await?;
    ctx.queued_deliveries();
    get_delivery(conn, &ctx.tenant, id).await
}

/// Queues an event once more for one endpoint (a new delivery, same `webhook-id`).
pub async fn resend(conn: &mut AnyConnection, ctx: &Ctx, event_id: &str, endpoint_id: &str) -> Result<WebhookDelivery> {
    events::find(conn, &ctx.tenant, event_id)
        .await?
        .ok_or(Error::NotFound("event"))?;
    if store::find_endpoint(conn, &ctx.tenant, endpoint_id).await?.is_none() {
        return Err(Error::NotFound("webhook endpoint"));
    }
    let id = new_id(Kind::WebhookDelivery);
    let delivery = [(id.clone(), endpoint_id.to_owned())];
    store::insert_deliveries(conn, &ctx.tenant, event_id, &delivery, ctx.now).await?;
    ctx.audit(conn, "event.resent", event_id).await?;
    ctx.queued_deliveries();
    get_delivery(conn, &ctx.tenant, &id).await
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<WebhookEndpoint> {
    Ok(find(conn, tenant, id).await?.into())
}

pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<WebhookEndpoint>> {
    Ok(store::list_endpoints(conn, tenant, page)
        .await?
        .map(WebhookEndpoint::from))
}

/// An endpoint's attempt log (404 for an endpoint of another tenant).
pub async fn attempts(
    conn: &mut AnyConnection,
    tenant: &str,
    endpoint_id: &str,
    page: &PageQuery,
) -> Result<Page<WebhookAttempt>> {
    find(conn, tenant, endpoint_id).await?;
    Ok(store::list_attempts(conn, tenant, page, endpoint_id).await?)
}

pub async fn get_delivery(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<WebhookDelivery> {
    let row = store::find_delivery(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("webhook delivery"))?;
    Ok(row.into())
}

pub async fn list_deliveries(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &DeliveryFilter,
) -> Result<Page<WebhookDelivery>> {
    Ok(store::list_deliveries(conn, tenant, page, filter)
        .await?
        .map(WebhookDelivery::from))
}

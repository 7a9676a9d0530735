//! Events, written in the transaction of the change they describe (a transactional outbox): an
//! event exists if and only if its change was committed. Each one fans out, in that same
//! transaction, to one delivery per subscribed webhook endpoint.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::get;
use super::webhooks;
use crate::domain::ids::{Kind, new_id};
use crate::objects::Event;

const COLUMNS: &str = "id, type, data, created";
const LISTING: Listing = Listing {
    table: "events",
    columns: COLUMNS,
};

fn from_row(row: &AnyRow) -> Result<Event, sqlx::Error> {
    let data: String = get(row, "data")?;
    Ok(Event {
        id: get(row, "id")?,
        object: Event::OBJECT,
        kind: get(row, "type")?,
        data: serde_json::from_str(&data).map_err(|e| sqlx::Error::ColumnDecode {
            index: "data".into(),
            source: Box::new(e),
        })?,
        created: get(row, "created")?,
    })
}

/// Records an event of `kind` whose payload is `data` (JSON) and queues one delivery per
/// endpoint of the tenant subscribed to it; returns how many deliveries were queued.
#[tracing::instrument(target = "otel", level = "debug", name = "db events.record", skip_all, fields(otel.kind = "client"))]
pub async fn record(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: &str,
    data: &str,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let id = new_id(Kind::Event);
    sqlx::query("INSERT INTO events (id, tenant_id, type, data, created) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(tenant)
        .bind(kind)
        .bind(data)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let deliveries: Vec<(String, String)> = webhooks::subscribers(conn, tenant, kind)
        .await?
        .into_iter()
        .map(|endpoint| (new_id(Kind::WebhookDelivery), endpoint))
        .collect();
    webhooks::insert_deliveries(conn, tenant, &id, &deliveries, now).await?;
    Ok(deliveries.len())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db events.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Event>, sqlx::Error> {
    let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2"));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Which events a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db events.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<Event>, PageError> {
    let filters = page::set([("type", filter.kind.as_deref())]);
    LISTING.fetch(conn, tenant, page, &filters, from_row).await
}

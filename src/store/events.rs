//! Events: what changed, written in the transaction of the change, with a snapshot of the object.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::page::{Filter, Page, PageQuery};
use super::rows::get;

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    /// The object as the API shows it, as JSON text.
    pub data: String,
    pub created: i64,
}

const COLUMNS: &str = "id, type, data, created";

fn from_row(row: &AnyRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: get(row, "id")?,
        kind: get(row, "type")?,
        data: get(row, "data")?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db events.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, e: &EventRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (id, tenant_id, type, data, created) VALUES ($1, $2, $3, $4, $5)")
        .bind(&e.id)
        .bind(tenant)
        .bind(&e.kind)
        .bind(&e.data)
        .bind(e.created)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db events.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<EventRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2"));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db events.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filters: &[Filter<'_>],
) -> Result<Page<EventRow>, sqlx::Error> {
    page.fetch(conn, "events", COLUMNS, tenant, filters, from_row).await
}

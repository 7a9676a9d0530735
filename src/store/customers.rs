//! Customers: the billed parties of a tenant, read straight into the public object.
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::page::{Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::objects::Customer;

const COLUMNS: &str = "id, name, email, currency, metadata, created, test_clock_id";
const LISTING: Listing = Listing {
    table: "customers",
    columns: COLUMNS,
};

fn from_row(row: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        id: get(row, "id")?,
        object: Customer::OBJECT,
        name: get(row, "name")?,
        email: get(row, "email")?,
        currency: get(row, "currency")?,
        metadata: metadata(row)?,
        test_clock: get(row, "test_clock_id")?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db customers.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, c: &Customer) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (id, tenant_id, name, email, currency, metadata, created, test_clock_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&c.id)
    .bind(tenant)
    .bind(&c.name)
    .bind(&c.email)
    .bind(&c.currency)
    .bind(metadata_text(&c.metadata))
    .bind(c.created)
    .bind(&c.test_clock)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db customers.update", skip_all, fields(otel.kind = "client"))]
pub async fn update(conn: &mut AnyConnection, tenant: &str, c: &Customer) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET name = $1, email = $2, currency = $3, metadata = $4 WHERE tenant_id = $5 AND id = $6",
    )
    .bind(&c.name)
    .bind(&c.email)
    .bind(&c.currency)
    .bind(metadata_text(&c.metadata))
    .bind(tenant)
    .bind(&c.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db customers.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Customer>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customers WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db customers.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<Customer>, PageError> {
    LISTING.fetch(conn, tenant, page, &[], from_row).await
}

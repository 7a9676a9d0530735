//! Payments against invoices, and refunds of payments.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{Filter, Page, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::domain::metadata::Metadata;

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRow {
    pub id: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub amount: i64,
    pub currency: String,
    pub amount_refunded: i64,
    pub reference: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundRow {
    pub id: String,
    pub payment_id: String,
    pub invoice_id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

const PAYMENT_COLUMNS: &str =
    "id, invoice_id, customer_id, amount, currency, amount_refunded, reference, metadata, created";
const REFUND_COLUMNS: &str = "id, payment_id, invoice_id, amount, currency, reason, metadata, created";

fn payment_from_row(row: &AnyRow) -> Result<PaymentRow, sqlx::Error> {
    Ok(PaymentRow {
        id: get(row, "id")?,
        invoice_id: get(row, "invoice_id")?,
        customer_id: get(row, "customer_id")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        amount_refunded: get(row, "amount_refunded")?,
        reference: get(row, "reference")?,
        metadata: metadata(row)?,
        created: get(row, "created")?,
    })
}

fn refund_from_row(row: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    Ok(RefundRow {
        id: get(row, "id")?,
        payment_id: get(row, "payment_id")?,
        invoice_id: get(row, "invoice_id")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        reason: get(row, "reason")?,
        metadata: metadata(row)?,
        created: get(row, "created")?,
    })
}

/// Inserts a payment unless its reference is already used by another payment of the tenant;
/// returns whether it was inserted. A duplicate leaves the transaction usable.
#[tracing::instrument(target = "otel", level = "debug", name = "db payments.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, p: &PaymentRow) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO payments (id, tenant_id, invoice_id, customer_id, amount, currency, reference, metadata, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, reference) DO NOTHING",
    )
    .bind(&p.id)
    .bind(tenant)
    .bind(&p.invoice_id)
    .bind(&p.customer_id)
    .bind(p.amount)
    .bind(&p.currency)
    .bind(&p.reference)
    .bind(metadata_text(&p.metadata))
    .bind(p.created)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(payment_from_row).transpose()
}

/// Reads a payment to refund it, holding its row on PostgreSQL (see `invoices::find_for_update`).
#[tracing::instrument(target = "otel", level = "debug", name = "db payments.find_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn find_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    id: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = match backend {
        Backend::Postgres => {
            format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        }
        Backend::Sqlite => format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2"),
    };
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(payment_from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.add_refunded", skip_all, fields(otel.kind = "client"))]
pub async fn add_refunded(
    conn: &mut AnyConnection,
    tenant: &str,
    payment_id: &str,
    amount: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET amount_refunded = amount_refunded + $1 WHERE tenant_id = $2 AND id = $3")
        .bind(amount)
        .bind(tenant)
        .bind(payment_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filters: &[Filter<'_>],
) -> Result<Page<PaymentRow>, sqlx::Error> {
    page.fetch(conn, "payments", PAYMENT_COLUMNS, tenant, filters, payment_from_row)
        .await
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.insert_refund", skip_all, fields(otel.kind = "client"))]
pub async fn insert_refund(conn: &mut AnyConnection, tenant: &str, r: &RefundRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refunds (id, tenant_id, payment_id, invoice_id, amount, currency, reason, metadata, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&r.id)
    .bind(tenant)
    .bind(&r.payment_id)
    .bind(&r.invoice_id)
    .bind(r.amount)
    .bind(&r.currency)
    .bind(&r.reason)
    .bind(metadata_text(&r.metadata))
    .bind(r.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.find_refund", skip_all, fields(otel.kind = "client"))]
pub async fn find_refund(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<RefundRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(refund_from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.list_refunds", skip_all, fields(otel.kind = "client"))]
pub async fn list_refunds(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filters: &[Filter<'_>],
) -> Result<Page<RefundRow>, sqlx::Error> {
    page.fetch(conn, "refunds", REFUND_COLUMNS, tenant, filters, refund_from_row)
        .await
}

//! Payments against invoices, and refunds of payments, read straight into the public objects.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::objects::{Payment, Refund};

const PAYMENT_COLUMNS: &str =
    "id, invoice_id, customer_id, amount, currency, amount_refunded, reference, metadata, created";
const REFUND_COLUMNS: &str = "id, payment_id, invoice_id, amount, currency, reason, metadata, created";
const PAYMENTS: Listing = Listing {
    table: "payments",
    columns: PAYMENT_COLUMNS,
};
const REFUNDS: Listing = Listing {
    table: "refunds",
    columns: REFUND_COLUMNS,
};

fn payment_from_row(row: &AnyRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id: get(row, "id")?,
        object: Payment::OBJECT,
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

fn refund_from_row(row: &AnyRow) -> Result<Refund, sqlx::Error> {
    Ok(Refund {
        id: get(row, "id")?,
        object: Refund::OBJECT,
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
pub async fn insert(conn: &mut AnyConnection, tenant: &str, p: &Payment) -> Result<bool, sqlx::Error> {
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
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Payment>, sqlx::Error> {
    select(conn, tenant, id, "").await
}

/// Reads a payment to refund it, holding its row until the transaction ends.
#[tracing::instrument(target = "otel", level = "debug", name = "db payments.find_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn find_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    select(conn, tenant, id, backend.for_update()).await
}

/// The payments of an invoice that have something left to refund, newest first, their rows held
/// until the transaction ends (a credit note refunds them).
#[tracing::instrument(target = "otel", level = "debug", name = "db payments.refundable_of_invoice", skip_all, fields(otel.kind = "client"))]
pub async fn refundable_of_invoice(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<Payment>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND invoice_id = $2 AND amount_refunded < amount \
         ORDER BY id DESC{}",
        backend.for_update()
    ));
    let rows = sqlx::query(sql).bind(tenant).bind(invoice_id).fetch_all(conn).await?;
    rows.iter().map(payment_from_row).collect()
}

async fn select(conn: &mut AnyConnection, tenant: &str, id: &str, lock: &str) -> Result<Option<Payment>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2{lock}"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
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

/// Which payments a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub invoice: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<Payment>, PageError> {
    let filters = page::set([("invoice_id", filter.invoice.as_deref())]);
    PAYMENTS.fetch(conn, tenant, page, &filters, payment_from_row).await
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.insert_refund", skip_all, fields(otel.kind = "client"))]
pub async fn insert_refund(conn: &mut AnyConnection, tenant: &str, r: &Refund) -> Result<(), sqlx::Error> {
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
pub async fn find_refund(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Refund>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// Which refunds a listing shows.
#[derive(Debug, Clone, Default)]
pub struct RefundFilter {
    pub payment: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db payments.list_refunds", skip_all, fields(otel.kind = "client"))]
pub async fn list_refunds(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &RefundFilter,
) -> Result<Page<Refund>, PageError> {
    let filters = page::set([("payment_id", filter.payment.as_deref())]);
    REFUNDS.fetch(conn, tenant, page, &filters, refund_from_row).await
}

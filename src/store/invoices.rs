//! Invoices and their lines. An invoice is stored as one row (its number's sequence among the
//! columns) and shown with its lines and what is left to pay; its lines are stored as shown.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::domain::invoice::Status;
use crate::domain::metadata::Metadata;
use crate::objects::{Invoice, LineItem, LineList, Period};

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRow {
    pub id: String,
    pub customer_id: String,
    pub subscription_id: Option<String>,
    pub billing_reason: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub status: Status,
    pub currency: String,
    pub number: Option<String>,
    pub due_date: Option<i64>,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// The customer's credit applied when it was finalized.
    pub applied_balance: i64,
    /// What credit notes took off what was left to pay, and what they gave back after payment.
    pub pre_payment_credit_notes_amount: i64,
    pub post_payment_credit_notes_amount: i64,
    pub metadata: Metadata,
    pub created: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
}

impl InvoiceRow {
    pub fn amount_remaining(&self) -> i64 {
        match self.status {
            Status::Open | Status::Uncollectible => {
                self.total - self.applied_balance - self.amount_paid - self.pre_payment_credit_notes_amount
            }
            Status::Draft | Status::Paid | Status::Void => 0,
        }
    }

    /// The invoice as the API shows it, with its lines.
    pub fn with_lines(self, lines: Vec<LineItem>) -> Invoice {
        let i = self;
        Invoice {
            amount_remaining: i.amount_remaining(),
            id: i.id,
            object: "invoice",
            customer: i.customer_id,
            subscription: i.subscription_id,
            billing_reason: i.billing_reason,
            period_start: i.period_start,
            period_end: i.period_end,
            status: i.status,
            currency: i.currency,
            number: i.number,
            due_date: i.due_date,
            subtotal: i.subtotal,
            tax: i.tax,
            total: i.total,
            amount_paid: i.amount_paid,
            amount_refunded: i.amount_refunded,
            applied_balance: i.applied_balance,
            amount_due: i.total - i.applied_balance,
            pre_payment_credit_notes_amount: i.pre_payment_credit_notes_amount,
            post_payment_credit_notes_amount: i.post_payment_credit_notes_amount,
            lines: LineList {
                object: "list",
                data: lines,
                has_more: false,
            },
            metadata: i.metadata,
            created: i.created,
            finalized_at: i.finalized_at,
            paid_at: i.paid_at,
            voided_at: i.voided_at,
            marked_uncollectible_at: i.marked_uncollectible_at,
        }
    }
}

const COLUMNS: &str = "id, customer_id, status, currency, number, due_date, subtotal, tax, total, amount_paid, \
    amount_refunded, metadata, created, finalized_at, paid_at, voided_at, marked_uncollectible_at, subscription_id, \
    billing_reason, period_start, period_end, applied_balance, pre_payment_credit_notes_amount, \
    post_payment_credit_notes_amount";
const LISTING: Listing = Listing {
    table: "invoices",
    columns: COLUMNS,
};
const LINE_COLUMNS: &str =
    "id, description, quantity, unit_amount, tax_rate_bps, amount, tax, price_id, period_start, period_end, created";

fn from_row(row: &AnyRow) -> Result<InvoiceRow, sqlx::Error> {
    let status: String = get(row, "status")?;
    Ok(InvoiceRow {
        id: get(row, "id")?,
        customer_id: get(row, "customer_id")?,
        subscription_id: get(row, "subscription_id")?,
        billing_reason: get(row, "billing_reason")?,
        period_start: get(row, "period_start")?,
        period_end: get(row, "period_end")?,
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown invoice status {status:?}").into()))?,
        currency: get(row, "currency")?,
        number: get(row, "number")?,
        due_date: get(row, "due_date")?,
        subtotal: get(row, "subtotal")?,
        tax: get(row, "tax")?,
        total: get(row, "total")?,
        amount_paid: get(row, "amount_paid")?,
        amount_refunded: get(row, "amount_refunded")?,
        applied_balance: get(row, "applied_balance")?,
        pre_payment_credit_notes_amount: get(row, "pre_payment_credit_notes_amount")?,
        post_payment_credit_notes_amount: get(row, "post_payment_credit_notes_amount")?,
        metadata: metadata(row)?,
        created: get(row, "created")?,
        finalized_at: get(row, "finalized_at")?,
        paid_at: get(row, "paid_at")?,
        voided_at: get(row, "voided_at")?,
        marked_uncollectible_at: get(row, "marked_uncollectible_at")?,
    })
}

fn line_from_row(row: &AnyRow) -> Result<LineItem, sqlx::Error> {
    let start: Option<i64> = get(row, "period_start")?;
    let end: Option<i64> = get(row, "period_end")?;
    Ok(LineItem {
        id: get(row, "id")?,
        object: LineItem::OBJECT,
        description: get(row, "description")?,
        quantity: get(row, "quantity")?,
        unit_amount: get(row, "unit_amount")?,
        tax_rate_bps: get(row, "tax_rate_bps")?,
        amount: get(row, "amount")?,
        tax: get(row, "tax")?,
        price: get(row, "price_id")?,
        period: start.zip(end).map(|(start, end)| Period { start, end }),
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, i: &InvoiceRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invoices (id, tenant_id, customer_id, status, currency, due_date, subtotal, tax, total, metadata, created, \
         subscription_id, billing_reason, period_start, period_end) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&i.id)
    .bind(tenant)
    .bind(&i.customer_id)
    .bind(i.status.as_str())
    .bind(&i.currency)
    .bind(i.due_date)
    .bind(i.subtotal)
    .bind(i.tax)
    .bind(i.total)
    .bind(metadata_text(&i.metadata))
    .bind(i.created)
    .bind(&i.subscription_id)
    .bind(&i.billing_reason)
    .bind(i.period_start)
    .bind(i.period_end)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<InvoiceRow>, sqlx::Error> {
    select(conn, tenant, id, "").await
}

/// Reads an invoice to change it, holding its row until the transaction ends.
#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.find_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn find_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    id: &str,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    select(conn, tenant, id, backend.for_update()).await
}

async fn select(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    lock: &str,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invoices WHERE tenant_id = $1 AND id = $2{lock}"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Writes the mutable state of an invoice: status, amounts, number, timestamps, metadata.
#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.update", skip_all, fields(otel.kind = "client"))]
pub async fn update(
    conn: &mut AnyConnection,
    tenant: &str,
    i: &InvoiceRow,
    number_seq: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invoices SET status = $1, number = $2, number_seq = COALESCE($3, number_seq), due_date = $4, subtotal = $5, \
         tax = $6, total = $7, amount_paid = $8, amount_refunded = $9, metadata = $10, finalized_at = $11, paid_at = $12, \
         voided_at = $13, marked_uncollectible_at = $14, applied_balance = $15, pre_payment_credit_notes_amount = $16, \
         post_payment_credit_notes_amount = $17 WHERE tenant_id = $18 AND id = $19",
    )
    .bind(i.status.as_str())
    .bind(&i.number)
    .bind(number_seq)
    .bind(i.due_date)
    .bind(i.subtotal)
    .bind(i.tax)
    .bind(i.total)
    .bind(i.amount_paid)
    .bind(i.amount_refunded)
    .bind(metadata_text(&i.metadata))
    .bind(i.finalized_at)
    .bind(i.paid_at)
    .bind(i.voided_at)
    .bind(i.marked_uncollectible_at)
    .bind(i.applied_balance)
    .bind(i.pre_payment_credit_notes_amount)
    .bind(i.post_payment_credit_notes_amount)
    .bind(tenant)
    .bind(&i.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.delete", skip_all, fields(otel.kind = "client"))]
pub async fn delete(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM invoice_lines WHERE tenant_id = $1 AND invoice_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM invoices WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.lines", skip_all, fields(otel.kind = "client"))]
pub async fn lines(conn: &mut AnyConnection, tenant: &str, invoice_id: &str) -> Result<Vec<LineItem>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY id"
    ));
    let rows = sqlx::query(sql).bind(tenant).bind(invoice_id).fetch_all(conn).await?;
    rows.iter().map(line_from_row).collect()
}

/// The lines of several invoices in one query, by invoice.
#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.lines_of", skip_all, fields(otel.kind = "client"))]
pub async fn lines_of(
    conn: &mut AnyConnection,
    tenant: &str,
    invoice_ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<LineItem>>, sqlx::Error> {
    let mut by_invoice: std::collections::HashMap<String, Vec<LineItem>> = std::collections::HashMap::new();
    if invoice_ids.is_empty() {
        return Ok(by_invoice);
    }
    let placeholders: Vec<String> = (0..invoice_ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT invoice_id, {LINE_COLUMNS} FROM invoice_lines WHERE tenant_id = $1 AND invoice_id IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
    for id in invoice_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(conn).await? {
        let invoice_id: String = get(&row, "invoice_id")?;
        by_invoice.entry(invoice_id).or_default().push(line_from_row(&row)?);
    }
    Ok(by_invoice)
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.add_refunded", skip_all, fields(otel.kind = "client"))]
pub async fn add_refunded(conn: &mut AnyConnection, tenant: &str, id: &str, amount: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invoices SET amount_refunded = amount_refunded + $1 WHERE tenant_id = $2 AND id = $3")
        .bind(amount)
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.insert_line", skip_all, fields(otel.kind = "client"))]
pub async fn insert_line(
    conn: &mut AnyConnection,
    tenant: &str,
    invoice_id: &str,
    l: &LineItem,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invoice_lines (id, tenant_id, invoice_id, description, quantity, unit_amount, tax_rate_bps, amount, tax, created, \
         price_id, period_start, period_end) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&l.id)
    .bind(tenant)
    .bind(invoice_id)
    .bind(&l.description)
    .bind(l.quantity)
    .bind(l.unit_amount)
    .bind(l.tax_rate_bps)
    .bind(l.amount)
    .bind(l.tax)
    .bind(l.created)
    .bind(&l.price)
    .bind(l.period.map(|p| p.start))
    .bind(l.period.map(|p| p.end))
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.update_line", skip_all, fields(otel.kind = "client"))]
pub async fn update_line(conn: &mut AnyConnection, tenant: &str, l: &LineItem) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invoice_lines SET description = $1, quantity = $2, unit_amount = $3, tax_rate_bps = $4, amount = $5, tax = $6 \
         WHERE tenant_id = $7 AND id = $8",
    )
    .bind(&l.description)
    .bind(l.quantity)
    .bind(l.unit_amount)
    .bind(l.tax_rate_bps)
    .bind(l.amount)
    .bind(l.tax)
    .bind(tenant)
    .bind(&l.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.delete_line", skip_all, fields(otel.kind = "client"))]
pub async fn delete_line(conn: &mut AnyConnection, tenant: &str, line_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM invoice_lines WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(line_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Which invoices a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer: Option<String>,
    pub status: Option<Status>,
    pub subscription: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<InvoiceRow>, PageError> {
    let filters = page::set([
        ("customer_id", filter.customer.as_deref()),
        ("status", filter.status.map(Status::as_str)),
        ("subscription_id", filter.subscription.as_deref()),
    ]);
    LISTING.fetch(conn, tenant, page, &filters, from_row).await
}

/// Takes the tenant's next invoice number (creating the tenant's counter on first use) and
/// returns it with the tenant's prefix. Called inside the finalizing transaction: the counter row
/// stays locked until it commits, and a rollback gives the number back, so numbers have no gaps.
#[tracing::instrument(target = "otel", level = "debug", name = "db invoices.take_number", skip_all, fields(otel.kind = "client"))]
pub async fn take_number(conn: &mut AnyConnection, tenant: &str, now: i64) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO tenants (id, created, next_invoice_number) VALUES ($1, $2, 2) \
         ON CONFLICT (id) DO UPDATE SET next_invoice_number = tenants.next_invoice_number + 1 \
         RETURNING next_invoice_number - 1 AS number, invoice_prefix",
    )
    .bind(tenant)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok((get(&row, "number")?, get(&row, "invoice_prefix")?))
}

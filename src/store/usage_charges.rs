//! What metered items were billed for which window of usage: one row per invoice line (a tier,
//! a tier's flat fee, an adjustment), or per credit when a window's amount went down. A row not
//! on an invoice yet waits for the subscription's next one (`invoice_id` NULL).
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::rows::get;

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKind {
    /// A window billed.
    Usage,
    /// More of a window billed later (late events).
    Adjustment,
    /// Less of a window (its amount went down): credited to the customer's balance.
    Credit,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Usage => "usage",
            UsageKind::Adjustment => "adjustment",
            UsageKind::Credit => "credit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageChargeRow {
    pub id: String,
    pub subscription_id: String,
    pub item_id: String,
    pub price_id: String,
    pub meter_id: String,
    /// The window of usage, `[period_start, period_end)`.
    pub period_start: i64,
    pub period_end: i64,
    /// The meter's value over the window when the row was made.
    pub usage: i64,
    pub kind: UsageKind,
    pub description: String,
    pub quantity: i64,
    /// Negative for a credit only.
    pub unit_amount: i64,
    pub invoice_id: Option<String>,
    pub created: i64,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db usage_charges.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, c: &UsageChargeRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO usage_charges (id, tenant_id, subscription_id, item_id, price_id, meter_id, period_start, period_end, \
         usage, kind, description, quantity, unit_amount, invoice_id, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&c.id)
    .bind(tenant)
    .bind(&c.subscription_id)
    .bind(&c.item_id)
    .bind(&c.price_id)
    .bind(&c.meter_id)
    .bind(c.period_start)
    .bind(c.period_end)
    .bind(c.usage)
    .bind(c.kind.as_str())
    .bind(&c.description)
    .bind(c.quantity)
    .bind(c.unit_amount)
    .bind(&c.invoice_id)
    .bind(c.created)
    .execute(conn)
    .await?;
    Ok(())
}

/// A window of one item's usage as billed so far, all its rows added up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledWindow {
    pub item_id: String,
    pub price_id: String,
    pub meter_id: String,
    pub period_start: i64,
    pub period_end: i64,
    pub amount: i64,
}

/// The windows of the subscription's usage that end after `since`, with what each was billed.
#[tracing::instrument(target = "otel", level = "debug", name = "db usage_charges.windows", skip_all, fields(otel.kind = "client"))]
pub async fn windows_since(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    since: i64,
) -> Result<Vec<BilledWindow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT item_id, price_id, meter_id, period_start, period_end, CAST(SUM(quantity * unit_amount) AS BIGINT) AS amount \
         FROM usage_charges WHERE tenant_id = $1 AND subscription_id = $2 AND period_end > $3 \
         GROUP BY item_id, price_id, meter_id, period_start, period_end ORDER BY period_start, item_id",
    )
    .bind(tenant)
    .bind(subscription_id)
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.iter().map(window_from_row).collect()
}

fn window_from_row(row: &AnyRow) -> Result<BilledWindow, sqlx::Error> {
    Ok(BilledWindow {
        item_id: get(row, "item_id")?,
        price_id: get(row, "price_id")?,
        meter_id: get(row, "meter_id")?,
        period_start: get(row, "period_start")?,
        period_end: get(row, "period_end")?,
        amount: get(row, "amount")?,
    })
}

/// A row waiting for an invoice, as its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub price_id: String,
    pub period_start: i64,
    pub period_end: i64,
}

/// The rows waiting for the subscription's next invoice, in the order they were made.
#[tracing::instrument(target = "otel", level = "debug", name = "db usage_charges.pending", skip_all, fields(otel.kind = "client"))]
pub async fn pending(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
) -> Result<Vec<PendingLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT description, quantity, unit_amount, price_id, period_start, period_end FROM usage_charges \
         WHERE tenant_id = $1 AND subscription_id = $2 AND invoice_id IS NULL AND kind <> 'credit' \
         ORDER BY id",
    )
    .bind(tenant)
    .bind(subscription_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingLine {
                description: get(row, "description")?,
                quantity: get(row, "quantity")?,
                unit_amount: get(row, "unit_amount")?,
                price_id: get(row, "price_id")?,
                period_start: get(row, "period_start")?,
                period_end: get(row, "period_end")?,
            })
        })
        .collect()
}

/// Puts the rows waiting for an invoice on `invoice_id`.
#[tracing::instrument(target = "otel", level = "debug", name = "db usage_charges.attach_pending", skip_all, fields(otel.kind = "client"))]
pub async fn attach_pending(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    invoice_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE usage_charges SET invoice_id = $1 \
         WHERE tenant_id = $2 AND subscription_id = $3 AND invoice_id IS NULL AND kind <> 'credit'",
    )
    .bind(invoice_id)
    .bind(tenant)
    .bind(subscription_id)
    .execute(conn)
    .await?;
    Ok(())
}

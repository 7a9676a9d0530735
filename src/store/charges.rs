//! What each subscription item was charged for which interval (the input of proration credits),
//! and the proration charges waiting for the next invoice (`invoice_id` NULL).
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::rows::get;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRow {
    pub id: String,
    pub subscription_id: String,
    pub item_id: String,
    pub price_id: String,
    pub quantity: i64,
    pub description: String,
    /// Pre-tax, for `[period_start, period_end)`.
    pub amount: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub credited: i64,
    pub covered_until: i64,
    pub invoice_id: Option<String>,
    pub created: i64,
}

const COLUMNS: &str = "id, subscription_id, item_id, price_id, quantity, description, amount, period_start, period_end, \
    credited, covered_until, invoice_id, created";

fn from_row(row: &AnyRow) -> Result<ChargeRow, sqlx::Error> {
    Ok(ChargeRow {
        id: get(row, "id")?,
        subscription_id: get(row, "subscription_id")?,
        item_id: get(row, "item_id")?,
        price_id: get(row, "price_id")?,
        quantity: get(row, "quantity")?,
        description: get(row, "description")?,
        amount: get(row, "amount")?,
        period_start: get(row, "period_start")?,
        period_end: get(row, "period_end")?,
        credited: get(row, "credited")?,
        covered_until: get(row, "covered_until")?,
        invoice_id: get(row, "invoice_id")?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db charges.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, c: &ChargeRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_charges (id, tenant_id, subscription_id, item_id, price_id, quantity, description, amount, \
         period_start, period_end, credited, covered_until, invoice_id, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&c.id)
    .bind(tenant)
    .bind(&c.subscription_id)
    .bind(&c.item_id)
    .bind(&c.price_id)
    .bind(c.quantity)
    .bind(&c.description)
    .bind(c.amount)
    .bind(c.period_start)
    .bind(c.period_end)
    .bind(c.credited)
    .bind(c.covered_until)
    .bind(&c.invoice_id)
    .bind(c.created)
    .execute(conn)
    .await?;
    Ok(())
}

/// The subscription's charges that meet `condition` (SQL after the subscription's, with `$3`
/// bound to `value` when given), oldest first.
async fn of_subscription(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    condition: &str,
    value: Option<i64>,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscription_charges WHERE tenant_id = $1 AND subscription_id = $2{condition} ORDER BY id"
    ));
    let mut query = sqlx::query(sql).bind(tenant).bind(subscription_id);
    if let Some(value) = value {
        query = query.bind(value);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// The subscription's charges that still pay for some time after `t`: what a change at `t` may
/// credit.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.covering", skip_all, fields(otel.kind = "client"))]
pub async fn covering(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    t: i64,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    of_subscription(
        conn,
        tenant,
        subscription_id,
        " AND period_end > $3 AND covered_until > $3",
        Some(t),
    )
    .await
}

/// The subscription's charges for time ending at `period_end` (the current period's).
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.ending_at", skip_all, fields(otel.kind = "client"))]
pub async fn ending_at(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    period_end: i64,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    of_subscription(conn, tenant, subscription_id, " AND period_end = $3", Some(period_end)).await
}

/// The subscription's proration charges not on an invoice yet.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.pending", skip_all, fields(otel.kind = "client"))]
pub async fn pending(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    of_subscription(conn, tenant, subscription_id, " AND invoice_id IS NULL", None).await
}

/// Every charge of the subscription (for tests and audits).
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.all", skip_all, fields(otel.kind = "client"))]
pub async fn all(conn: &mut AnyConnection, tenant: &str, subscription_id: &str) -> Result<Vec<ChargeRow>, sqlx::Error> {
    of_subscription(conn, tenant, subscription_id, "", None).await
}

/// The charges billed on `invoice_id`.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.on_invoice", skip_all, fields(otel.kind = "client"))]
pub async fn on_invoice(
    conn: &mut AnyConnection,
    tenant: &str,
    invoice_id: &str,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscription_charges WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY id"
    ));
    let rows = sqlx::query(sql).bind(tenant).bind(invoice_id).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// The charges of a voided invoice were never charged: nothing of them is left to credit.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.void_invoice", skip_all, fields(otel.kind = "client"))]
pub async fn void_invoice(conn: &mut AnyConnection, tenant: &str, invoice_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_charges SET credited = amount, covered_until = period_start \
         WHERE tenant_id = $1 AND invoice_id = $2",
    )
    .bind(tenant)
    .bind(invoice_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a credit given from a charge: what it has given back in all, and where its paid time
/// now ends.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.set_credited", skip_all, fields(otel.kind = "client"))]
pub async fn set_credited(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    credited: i64,
    covered_until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscription_charges SET credited = $1, covered_until = $2 WHERE tenant_id = $3 AND id = $4")
        .bind(credited)
        .bind(covered_until)
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records `amount` of a charge given back by a credit note: proration later credits only what
/// is left of it. The time it covers is unchanged.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.add_credited", skip_all, fields(otel.kind = "client"))]
pub async fn add_credited(conn: &mut AnyConnection, tenant: &str, id: &str, amount: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscription_charges SET credited = credited + $1 WHERE tenant_id = $2 AND id = $3")
        .bind(amount)
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts the subscription's pending charges on `invoice_id`.
#[tracing::instrument(target = "otel", level = "debug", name = "db charges.attach_pending", skip_all, fields(otel.kind = "client"))]
pub async fn attach_pending(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    invoice_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscription_charges SET invoice_id = $1 WHERE tenant_id = $2 AND subscription_id = $3 AND invoice_id IS NULL",
    )
    .bind(invoice_id)
    .bind(tenant)
    .bind(subscription_id)
    .execute(conn)
    .await?;
    Ok(())
}

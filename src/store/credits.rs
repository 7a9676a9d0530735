//! Customers' credit balances (per currency) and their history. Credit comes from proration
//! (unused time of a subscription, credit notes) and is applied to the next invoices finalized.
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::Backend;
use super::page::{Listing, Page, PageError, PageQuery};
use super::rows::get;
use crate::domain::ids::{Kind, new_id};
use crate::objects::CreditTransaction;

/// A movement of a customer's credit.
pub struct Movement<'a> {
    pub tenant: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    /// Positive: granted; negative: applied.
    pub amount: i64,
    pub description: &'a str,
    pub subscription_id: Option<&'a str>,
    pub invoice_id: Option<&'a str>,
    pub created: i64,
}

/// The customer's credit in `currency`, its row held until the transaction ends (so that two
/// invoices finalized at once never apply the same credit).
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.balance_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn balance_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    customer_id: &str,
    currency: &str,
) -> Result<i64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT balance FROM customer_credits WHERE tenant_id = $1 AND customer_id = $2 AND currency = $3{}",
        backend.for_update()
    ));
    let row = sqlx::query(sql)
        .bind(tenant)
        .bind(customer_id)
        .bind(currency)
        .fetch_optional(conn)
        .await?;
    row.map_or(Ok(0), |r| get(&r, "balance"))
}

/// The customer's credit in `currency`, as read now.
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.balance", skip_all, fields(otel.kind = "client"))]
pub async fn balance(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
    currency: &str,
) -> Result<i64, sqlx::Error> {
    let balance: Option<i64> = sqlx::query_scalar(
        "SELECT balance FROM customer_credits WHERE tenant_id = $1 AND customer_id = $2 AND currency = $3",
    )
    .bind(tenant)
    .bind(customer_id)
    .bind(currency)
    .fetch_optional(conn)
    .await?;
    Ok(balance.unwrap_or(0))
}

/// Moves the balance by `m.amount` and records the movement; returns the balance after. The
/// balance can never go below zero (a CHECK on both backends).
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.record", skip_all, fields(otel.kind = "client"))]
pub async fn record(conn: &mut AnyConnection, m: &Movement<'_>) -> Result<i64, sqlx::Error> {
    // A row to insert is checked (balance ≥ 0) before its conflict is seen, on both backends:
    // credit applied only ever moves a balance that exists.
    let sql = if m.amount >= 0 {
        "INSERT INTO customer_credits (tenant_id, customer_id, currency, balance) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, customer_id, currency) DO UPDATE SET balance = customer_credits.balance + excluded.balance \
         RETURNING balance"
    } else {
        "UPDATE customer_credits SET balance = balance + $4 WHERE tenant_id = $1 AND customer_id = $2 AND currency = $3 \
         RETURNING balance"
    };
    let after: i64 = sqlx::query_scalar(sql)
        .bind(m.tenant)
        .bind(m.customer_id)
        .bind(m.currency)
        .bind(m.amount)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO credit_transactions (id, tenant_id, customer_id, currency, amount, balance_after, description, \
         subscription_id, invoice_id, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new_id(Kind::CreditTransaction))
    .bind(m.tenant)
    .bind(m.customer_id)
    .bind(m.currency)
    .bind(m.amount)
    .bind(after)
    .bind(m.description)
    .bind(m.subscription_id)
    .bind(m.invoice_id)
    .bind(m.created)
    .execute(conn)
    .await?;
    Ok(after)
}

/// One recorded movement, as tests and the API read them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub amount: i64,
    pub balance_after: i64,
    pub description: String,
    pub subscription_id: Option<String>,
    pub invoice_id: Option<String>,
}

/// The customer's movements in `currency`, oldest first.
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.transactions", skip_all, fields(otel.kind = "client"))]
pub async fn transactions(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<Transaction>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT amount, balance_after, description, subscription_id, invoice_id FROM credit_transactions \
         WHERE tenant_id = $1 AND customer_id = $2 ORDER BY id",
    )
    .bind(tenant)
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Transaction {
                amount: get(r, "amount")?,
                balance_after: get(r, "balance_after")?,
                description: get(r, "description")?,
                subscription_id: get(r, "subscription_id")?,
                invoice_id: get(r, "invoice_id")?,
            })
        })
        .collect()
}

const LISTING: Listing = Listing {
    table: "credit_transactions",
    columns: "id, customer_id, currency, amount, balance_after, description, subscription_id, invoice_id, created",
};

fn from_row(row: &AnyRow) -> Result<CreditTransaction, sqlx::Error> {
    Ok(CreditTransaction {
        id: get(row, "id")?,
        object: CreditTransaction::OBJECT,
        customer: get(row, "customer_id")?,
        currency: get(row, "currency")?,
        amount: get(row, "amount")?,
        balance_after: get(row, "balance_after")?,
        description: get(row, "description")?,
        subscription: get(row, "subscription_id")?,
        invoice: get(row, "invoice_id")?,
        created: get(row, "created")?,
    })
}

/// A page of the customer's credit movements, newest first.
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
    page: &PageQuery,
) -> Result<Page<CreditTransaction>, PageError> {
    LISTING
        .fetch(conn, tenant, page, &[("customer_id", customer_id)], from_row)
        .await
}

/// The customer's credit balance in each currency they have had credit in.
#[tracing::instrument(target = "otel", level = "debug", name = "db credits.balances", skip_all, fields(otel.kind = "client"))]
pub async fn balances(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT currency, balance FROM customer_credits WHERE tenant_id = $1 AND customer_id = $2 ORDER BY currency",
    )
    .bind(tenant)
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((get(r, "currency")?, get(r, "balance")?)))
        .collect()
}

//! The ledger: append-only postings, and the running receivable balance of each customer.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::get;
use crate::domain::ids::{Kind, new_id};
use crate::domain::ledger::{Account, Posting};
use crate::objects::LedgerEntry;

const COLUMNS: &str = "id, transaction_id, account, customer_id, amount, currency, source_id, created";
const LISTING: Listing = Listing {
    table: "ledger_entries",
    columns: COLUMNS,
};

fn from_row(row: &AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        id: get(row, "id")?,
        object: LedgerEntry::OBJECT,
        transaction_id: get(row, "transaction_id")?,
        account: get(row, "account")?,
        customer_id: get(row, "customer_id")?,
        amount: get(row, "amount")?,
        currency: get(row, "currency")?,
        source_id: get(row, "source_id")?,
        created: get(row, "created")?,
    })
}

/// What a money movement writes: one balanced ledger transaction.
pub struct Movement<'a> {
    pub tenant: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    pub source_id: &'a str,
    pub created: i64,
}

/// Writes the postings of one movement (in one statement) and moves the customer's receivable
/// balance by the receivable postings.
#[tracing::instrument(target = "otel", level = "debug", name = "db ledger.post", skip_all, fields(otel.kind = "client"))]
pub async fn post(conn: &mut AnyConnection, m: &Movement<'_>, postings: &[Posting]) -> Result<(), sqlx::Error> {
    if postings.is_empty() {
        return Ok(());
    }
    let transaction_id = new_id(Kind::LedgerTransaction);
    let mut sql = String::from(
        "INSERT INTO ledger_entries (id, tenant_id, transaction_id, account, customer_id, amount, currency, source_id, created) VALUES ",
    );
    for i in 0..postings.len() {
        let b = i * 9;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9
        ));
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for p in postings {
        let customer = (p.account == Account::AccountsReceivable).then_some(m.customer_id);
        query = query
            .bind(new_id(Kind::LedgerEntry))
            .bind(m.tenant)
            .bind(transaction_id.clone())
            .bind(p.account.as_str())
            .bind(customer)
            .bind(p.amount)
            .bind(m.currency)
            .bind(m.source_id)
            .bind(m.created);
    }
    query.execute(&mut *conn).await?;

    let receivable: i64 = postings
        .iter()
        .filter(|p| p.account == Account::AccountsReceivable)
        .map(|p| p.amount)
        .sum();
    if receivable != 0 {
        sqlx::query(
            "INSERT INTO customer_balances (tenant_id, customer_id, currency, balance) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, customer_id, currency) DO UPDATE SET balance = customer_balances.balance + excluded.balance",
        )
        .bind(m.tenant)
        .bind(m.customer_id)
        .bind(m.currency)
        .bind(receivable)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Which entries a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer: Option<String>,
    pub account: Option<Account>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db ledger.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<LedgerEntry>, PageError> {
    let filters = page::set([
        ("customer_id", filter.customer.as_deref()),
        ("account", filter.account.map(Account::as_str)),
    ]);
    LISTING.fetch(conn, tenant, page, &filters, from_row).await
}

/// A customer's balance per currency, as maintained.
#[tracing::instrument(target = "otel", level = "debug", name = "db ledger.balances", skip_all, fields(otel.kind = "client"))]
pub async fn balances(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT currency, balance FROM customer_balances WHERE tenant_id = $1 AND customer_id = $2 ORDER BY currency",
    )
    .bind(tenant)
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((get(r, "currency")?, get(r, "balance")?)))
        .collect()
}

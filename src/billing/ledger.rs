//! Reading the ledger and the balances it maintains.
use sqlx::AnyConnection;

use crate::objects::{CustomerBalance, LedgerEntry};
use crate::operation::Result;
use crate::store::ledger::{self, Filter};
use crate::store::page::{Page, PageQuery};

pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<LedgerEntry>> {
    Ok(ledger::list(conn, tenant, page, filter).await?)
}

/// What a customer owes, per currency.
pub async fn balance(conn: &mut AnyConnection, tenant: &str, customer_id: &str) -> Result<CustomerBalance> {
    let customer = super::customers::get(conn, tenant, customer_id).await?;
    let balances = ledger::balances(conn, tenant, &customer.id).await?;
    Ok(CustomerBalance::new(customer.id, balances))
}

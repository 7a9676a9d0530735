use axum::Json;
use axum::extract::RawQuery;

use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use crate::billing::ledger as ops;
use crate::domain::ids::Kind;
use crate::domain::ledger::Account;
use crate::objects::LedgerEntry;
use crate::store::ledger::Filter;

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntryFilters {
    /// Only this customer's receivable entries.
    customer: Option<String>,
    /// Only entries of this account.
    account: Option<Account>,
}

#[utoipa::path(get, path = "/v1/ledger_entries", tag = "ledger", params(list::PageParams, EntryFilters),
    responses((status = 200, description = "Ledger entries, newest first (append-only)", body = List<LedgerEntry>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<LedgerEntry>>, Problem> {
    r.require("ledger:read")?;
    let mut query = list::Query::new(params, &["customer", "account"]);
    let customer = query.filter("customer", Some(Kind::Customer));
    let account = query.filter("account", None).and_then(|a| {
        let account = Account::parse(&a);
        if account.is_none() {
            query.check().error(
                "account",
                "invalid",
                "one of accounts_receivable, revenue, tax_payable, cash, refunds",
            );
        }
        account
    });
    let page = query.page(Kind::LedgerEntry)?;
    let filter = Filter { customer, account };
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &filter).await)
        .await
}

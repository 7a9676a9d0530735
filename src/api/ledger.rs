use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};

use super::conn;
use super::list::{self, List};
use super::objects::LedgerEntry;
use crate::auth::Principal;
use crate::domain::ids::Kind;
use crate::domain::ledger::Account;
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::store::ledger;

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
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<List<LedgerEntry>>, Problem> {
    principal.require("ledger:read")?;
    let mut query = list::Query::new(params, &["customer", "account"]);
    let customer = query.filter("customer", Some(Kind::Customer));
    let account = query.filter("account", None);
    if let Some(a) = &account
        && Account::parse(a).is_none()
    {
        query.check().error(
            "account",
            "invalid",
            "one of accounts_receivable, revenue, tax_payable, cash, refunds",
        );
    }
    let mut conn = conn(&state).await?;
    let page = query
        .page(&mut conn, "ledger_entries", Kind::LedgerEntry, &principal.tenant)
        .await?;
    let mut filters = Vec::new();
    if let Some(c) = &customer {
        filters.push(("customer_id", c.as_str()));
    }
    if let Some(a) = &account {
        filters.push(("account", a.as_str()));
    }
    let rows = ledger::list(&mut conn, &principal.tenant, &page, &filters).await?;
    Ok(Json(List::from_page(rows, LedgerEntry::from)))
}

use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{InvoiceId, InvoiceLineId, MetadataParam, Text500};
use super::write::{Done, Write};
use crate::billing::credit_notes::{self as ops, NewCreditLine, NewCreditNote};
use crate::domain::credit_note::REASONS;
use crate::domain::ids::Kind;
use crate::domain::invoice::MAX_LINES;
use crate::domain::metadata::Metadata;
use crate::domain::money::MAX_AMOUNT;
use crate::objects::{CreditNote, CreditTransaction, CustomerBalance};
use crate::store::credit_notes::Filter;

/// One line of the invoice to credit.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditLineParams {
    #[serde(default)]
    #[schema(value_type = InvoiceLineId, required = true)]
    pub invoice_line: Field<String>,
    /// Pre-tax, in the minor unit; all that is left to credit of the line when not given. The
    /// tax given back with it is the line's rate of it.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Field<i64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// A credit note. Its total goes first to what is left to pay on the invoice; what exceeds it
/// is refunded (`refund_amount`) or added to the customer's credit balance (`credit_amount`):
/// all of it to the credit balance when neither is given, the rest to the other when one is
/// (422 `amounts_do_not_add_up` when they cannot add up to it).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditNoteParams {
    /// The invoice credited: open, paid or uncollectible.
    #[serde(default)]
    #[schema(value_type = InvoiceId, required = true)]
    pub invoice: Field<String>,
    /// Lines of the invoice to credit. With neither `lines` nor `amount`, all that is left to
    /// credit: every line for what is left of it (after a credit note of an amount, what is left
    /// of the invoice's total, as an amount).
    #[serde(default)]
    #[schema(value_type = Option<Vec<CreditLineParams>>, max_items = 100)]
    pub lines: Field<Vec<CreditLineParams>>,
    /// An amount credited besides the lines, untaxed. Not for a subscription's invoice (422
    /// `lines_required`): proration must know which charge was given back.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(duplicate|fraudulent|order_change|product_unsatisfactory)$")]
    pub reason: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<Text500>)]
    pub memo: Field<String>,
    /// Of what exceeds what is left to pay: the part refunded to the invoice's payments.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub refund_amount: Field<i64>,
    /// Of what exceeds what is left to pay: the part added to the customer's credit balance.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub credit_amount: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_line(c: &mut Check, i: usize, p: CreditLineParams) -> Option<NewCreditLine> {
    let f = |name: &str| format!("lines[{i}].{name}");
    c.unknown(&format!("lines[{i}]."), &p.unknown);
    let line = c.required(&f("invoice_line"), p.invoice_line);
    let line = c.id(&f("invoice_line"), line, Kind::InvoiceLine);
    let amount = c.optional(&f("amount"), p.amount);
    let amount = c.range(&f("amount"), amount, 1..=MAX_AMOUNT);
    Some(NewCreditLine {
        invoice_line_id: line?,
        amount,
    })
}

#[utoipa::path(post, path = "/v1/credit_notes", tag = "credit_notes", request_body = CreditNoteParams,
    responses((status = 201, description = "Issued, numbered and posted to the ledger", body = CreditNote)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("credit_notes:write")?;
    let p: CreditNoteParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let invoice = c.required("invoice", p.invoice);
    let invoice = c.id("invoice", invoice, Kind::Invoice);
    let lines = c.optional("lines", p.lines).unwrap_or_default();
    if lines.len() > MAX_LINES {
        c.error("lines", "invalid_length", format!("at most {MAX_LINES} lines"));
    }
    let lines: Vec<Option<NewCreditLine>> = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| check_line(&mut c, i, line))
        .collect();
    let amount = c.optional("amount", p.amount);
    let amount = c.range("amount", amount, 1..=MAX_AMOUNT);
    let reason = c.optional("reason", p.reason);
    if reason.as_deref().is_some_and(|r| !REASONS.contains(&r)) {
        c.error("reason", "invalid", REASONS.join(", "));
    }
    let memo = c.optional("memo", p.memo);
    let memo = c.text("memo", memo, 500);
    let refund_amount = c.optional("refund_amount", p.refund_amount);
    let refund_amount = c.range("refund_amount", refund_amount, 0..=MAX_AMOUNT);
    let credit_amount = c.optional("credit_amount", p.credit_amount);
    let credit_amount = c.range("credit_amount", credit_amount, 0..=MAX_AMOUNT);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewCreditNote {
            invoice_id: invoice?,
            lines: lines.into_iter().collect::<Option<Vec<_>>>()?,
            amount,
            reason,
            memo,
            refund_amount,
            credit_amount,
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| {
        let note = ops::create(conn, ctx, input).await?;
        Ok(Done::created(note))
    })
    .await
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}", tag = "credit_notes", params(("id" = String, Path, description = "Credit note id")),
    responses((status = 200, description = "The credit note", body = CreditNote)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<CreditNote>, Problem> {
    r.require("credit_notes:read")?;
    let id = path_id(Kind::CreditNote, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreditNoteFilters {
    /// Only credit notes of this invoice.
    invoice: Option<String>,
    /// Only credit notes of this customer.
    customer: Option<String>,
}

#[utoipa::path(get, path = "/v1/credit_notes", tag = "credit_notes", params(list::PageParams, CreditNoteFilters),
    responses((status = 200, description = "Credit notes, newest first", body = List<CreditNote>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<CreditNote>>, Problem> {
    r.require("credit_notes:read")?;
    let mut query = list::Query::new(params, &["invoice", "customer"]);
    let filter = Filter {
        invoice: query.filter("invoice", Some(Kind::Invoice)),
        customer: query.filter("customer", Some(Kind::Customer)),
    };
    let page = query.page(Kind::CreditNote)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &filter).await)
        .await
}

#[utoipa::path(get, path = "/v1/customers/{id}/credit_balance", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, description = "The customer's credit, per currency: applied to their next invoices", body = CustomerBalance)))]
pub async fn credit_balance(r: Read, Path(id): Path<String>) -> Result<Json<CustomerBalance>, Problem> {
    r.require("customers:read")?;
    let id = path_id(Kind::Customer, id)?;
    r.answer(async |conn, tenant| ops::credit_balance(conn, tenant, &id).await)
        .await
}

#[utoipa::path(get, path = "/v1/customers/{id}/credit_transactions", tag = "customers",
    params(("id" = String, Path, description = "Customer id"), list::PageParams),
    responses((status = 200, description = "What moved the customer's credit balance, newest first", body = List<CreditTransaction>)))]
pub async fn credit_transactions(
    r: Read,
    Path(id): Path<String>,
    RawQuery(params): RawQuery,
) -> Result<Json<List<CreditTransaction>>, Problem> {
    r.require("customers:read")?;
    let id = path_id(Kind::Customer, id)?;
    let page = list::Query::new(params, &[]).page(Kind::CreditTransaction)?;
    r.list(async |conn, tenant| ops::credit_transactions(conn, tenant, &id, &page).await)
        .await
}

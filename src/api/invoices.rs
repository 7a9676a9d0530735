use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, NoParams, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{CurrencyCode, CustomerId, MetadataParam, Text500};
use super::write::{Done, Write};
use crate::billing::invoices::{self as ops, LineUpdate, NewInvoice, NewLine};
use crate::domain::ids::Kind;
use crate::domain::invoice::{MAX_LINES, MAX_QUANTITY, MAX_TAX_RATE_BPS, Status};
use crate::domain::metadata::Metadata;
use crate::domain::money::MAX_AMOUNT;
use crate::objects::{Deleted, Invoice};
use crate::store::invoices::Filter;
use crate::telemetry::metrics;

/// The latest due date accepted (the end of year 9999).
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// A new line.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LineParams {
    #[serde(default)]
    #[schema(value_type = Text500, required = true)]
    pub description: Field<String>,
    /// 1 when not given.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub quantity: Field<i64>,
    /// Price of one unit in the currency's minor unit.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64, required = true)]
    pub unit_amount: Field<i64>,
    /// Tax rate in basis points (825 = 8.25%).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 10_000)]
    pub tax_rate_bps: Field<i64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Changes to a line of a draft: every field is optional.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct LineUpdateParams {
    description: Option<Text500>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    unit_amount: Option<i64>,
    #[schema(minimum = 0, maximum = 10_000)]
    tax_rate_bps: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InvoiceParams {
    /// The customer to bill.
    #[serde(default)]
    #[schema(value_type = CustomerId, required = true)]
    pub customer: Field<String>,
    /// Defaults to the customer's currency.
    #[serde(default)]
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Field<String>,
    /// Unix time.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 253_402_300_799_i64)]
    pub due_date: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<LineParams>>, max_items = 100)]
    pub lines: Field<Vec<LineParams>>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Checks a line; with `partial`, every field is optional (an update).
fn check_line(
    c: &mut Check,
    prefix: &str,
    p: LineParams,
    partial: bool,
) -> (Option<String>, Option<i64>, Option<i64>, Option<i64>) {
    let f = |name: &str| format!("{prefix}{name}");
    c.unknown(prefix, &p.unknown);
    let description = if partial {
        c.optional(&f("description"), p.description)
    } else {
        c.required(&f("description"), p.description)
    };
    let description = c.text(&f("description"), description, 500);
    let quantity = c.optional(&f("quantity"), p.quantity);
    let quantity = c.range(&f("quantity"), quantity, 1..=MAX_QUANTITY);
    let unit_amount = if partial {
        c.optional(&f("unit_amount"), p.unit_amount)
    } else {
        c.required(&f("unit_amount"), p.unit_amount)
    };
    let unit_amount = c.range(&f("unit_amount"), unit_amount, 0..=MAX_AMOUNT);
    let tax = c.optional(&f("tax_rate_bps"), p.tax_rate_bps);
    let tax = c.range(&f("tax_rate_bps"), tax, 0..=MAX_TAX_RATE_BPS);
    (description, quantity, unit_amount, tax)
}

fn new_line(parts: (Option<String>, Option<i64>, Option<i64>, Option<i64>)) -> Option<NewLine> {
    let (description, quantity, unit_amount, tax_rate_bps) = parts;
    Some(NewLine {
        description: description?,
        quantity: quantity.unwrap_or(1),
        unit_amount: unit_amount?,
        tax_rate_bps,
        price_id: None,
        period: None,
    })
}

#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", request_body = InvoiceParams,
    responses((status = 201, description = "A draft invoice", body = Invoice)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let p: InvoiceParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let customer = c.required("customer", p.customer);
    let customer = c.id("customer", customer, Kind::Customer);
    let currency = c.optional("currency", p.currency);
    let currency = c.currency("currency", currency);
    let due_date = c.optional("due_date", p.due_date);
    let due_date = c.range("due_date", due_date, 0..=MAX_TIMESTAMP);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let lines = c.optional("lines", p.lines).unwrap_or_default();
    if lines.len() > MAX_LINES {
        c.error("lines", "too_many", format!("at most {MAX_LINES} lines"));
    }
    let lines: Vec<_> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| check_line(&mut c, &format!("lines[{i}]."), l, false))
        .collect();
    let input = c.finish(|| {
        Some(NewInvoice {
            customer_id: customer?,
            currency,
            due_date,
            lines: lines.into_iter().map(new_line).collect::<Option<Vec<_>>>()?,
            metadata: metadata.unwrap_or_default(),
            subscription: None,
        })
    })?;
    w.run(async |conn, ctx| ops::create(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The invoice", body = Invoice)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Invoice>, Problem> {
    r.require("invoices:read")?;
    let id = path_id(Kind::Invoice, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceFilters {
    /// Only this customer's invoices.
    customer: Option<String>,
    /// Only invoices in this status.
    status: Option<Status>,
    /// Only this subscription's invoices.
    subscription: Option<String>,
}

#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", params(list::PageParams, InvoiceFilters),
    responses((status = 200, description = "Invoices, newest first", body = List<Invoice>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Invoice>>, Problem> {
    r.require("invoices:read")?;
    let mut query = list::Query::new(params, &["customer", "status", "subscription"]);
    let customer = query.filter("customer", Some(Kind::Customer));
    let subscription = query.filter("subscription", Some(Kind::Subscription));
    let status = query.filter("status", None).and_then(|s| {
        let status = Status::parse(&s);
        if status.is_none() {
            query
                .check()
                .error("status", "invalid", "one of draft, open, paid, void, uncollectible");
        }
        status
    });
    let page = query.page(Kind::Invoice)?;
    let filter = Filter {
        customer,
        status,
        subscription,
    };
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &filter).await)
        .await
}

#[utoipa::path(delete, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The draft is deleted", body = Deleted)))]
pub async fn delete(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let id = path_id(Kind::Invoice, id)?;
    w.run(async |conn, ctx| {
        ops::delete(conn, ctx, &id).await?;
        Ok(Done::ok(Deleted::new("invoice", id.as_str())))
    })
    .await
}

#[utoipa::path(post, path = "/v1/invoices/{id}/lines", tag = "invoices", request_body = LineParams,
    params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The draft with the new line", body = Invoice)))]
pub async fn add_line(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let id = path_id(Kind::Invoice, id)?;
    let mut c = Check::new();
    let parts = check_line(&mut c, "", w.body.read()?, false);
    let line = c.finish(|| new_line(parts))?;
    w.run(async |conn, ctx| ops::add_line(conn, ctx, &id, line).await.map(Done::ok))
        .await
}

#[utoipa::path(post, path = "/v1/invoices/{id}/lines/{line_id}", tag = "invoices", request_body = LineUpdateParams,
    params(("id" = String, Path, description = "Invoice id"), ("line_id" = String, Path, description = "Line id")),
    responses((status = 200, description = "The draft with the line changed", body = Invoice)))]
pub async fn update_line(Path((id, line_id)): Path<(String, String)>, w: Write) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let id = path_id(Kind::Invoice, id)?;
    let line_id = path_id(Kind::InvoiceLine, line_id)?;
    let mut c = Check::new();
    let (description, quantity, unit_amount, tax) = check_line(&mut c, "", w.body.read()?, true);
    let update = c.finish(|| {
        Some(LineUpdate {
            description,
            quantity,
            unit_amount,
            tax_rate_bps: tax.map(Some),
        })
    })?;
    w.run(async |conn, ctx| ops::update_line(conn, ctx, &id, &line_id, update).await.map(Done::ok))
        .await
}

#[utoipa::path(delete, path = "/v1/invoices/{id}/lines/{line_id}", tag = "invoices",
    params(("id" = String, Path, description = "Invoice id"), ("line_id" = String, Path, description = "Line id")),
    responses((status = 200, description = "The draft without the line", body = Invoice)))]
pub async fn delete_line(Path((id, line_id)): Path<(String, String)>, w: Write) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let id = path_id(Kind::Invoice, id)?;
    let line_id = path_id(Kind::InvoiceLine, line_id)?;
    w.run(async |conn, ctx| ops::delete_line(conn, ctx, &id, &line_id).await.map(Done::ok))
        .await
}

/// Reads an action's body (nothing, or `{}`) and runs `op` on the invoice; `counter` is the
/// business counter it advances.
async fn action(
    id: String,
    w: Write,
    op: impl AsyncFnOnce(&mut sqlx::AnyConnection, &crate::operation::Ctx, &str) -> crate::operation::Result<Invoice>,
    counter: Option<&'static str>,
) -> Result<Response, Problem> {
    w.principal.require("invoices:write")?;
    let id = path_id(Kind::Invoice, id)?;
    NoParams::check(&w.body)?;
    w.run(async |conn, ctx| {
        let done = Done::ok(op(conn, ctx, &id).await?);
        Ok(match counter {
            Some(counter) => done.counting(counter),
            None => done,
        })
    })
    .await
}

#[utoipa::path(post, path = "/v1/invoices/{id}/finalize", tag = "invoices", request_body(content = Option<NoParams>),
    params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The invoice, open (or paid if its total is 0) and numbered", body = Invoice)))]
pub async fn finalize(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    action(id, w, ops::finalize, Some(metrics::INVOICES_FINALIZED)).await
}

#[utoipa::path(post, path = "/v1/invoices/{id}/void", tag = "invoices", request_body(content = Option<NoParams>),
    params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The void invoice", body = Invoice)))]
pub async fn void(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    action(id, w, ops::void, None).await
}

#[utoipa::path(post, path = "/v1/invoices/{id}/mark_uncollectible", tag = "invoices", request_body(content = Option<NoParams>),
    params(("id" = String, Path, description = "Invoice id")),
    responses((status = 200, description = "The uncollectible invoice", body = Invoice)))]
pub async fn mark_uncollectible(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    action(id, w, ops::mark_uncollectible, None).await
}

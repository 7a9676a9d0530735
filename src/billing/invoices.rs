use sqlx::AnyConnection;

use super::{BillingError, Ctx, Result, events};
use crate::api::objects;
use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::{self, Action, LineAmounts, MAX_LINES, Status};
use crate::domain::ledger;
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::store::customers;
use crate::store::invoices::{self, InvoiceRow, LineRow};
use crate::store::ledger::{Movement, post};

#[derive(Debug, Clone)]
pub struct NewLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub tax_rate_bps: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct LineUpdate {
    pub description: Option<String>,
    pub quantity: Option<i64>,
    pub unit_amount: Option<i64>,
    /// `Some(None)` removes the tax rate.
    pub tax_rate_bps: Option<Option<i64>>,
}

#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub customer_id: String,
    pub currency: Option<Currency>,
    pub due_date: Option<i64>,
    pub lines: Vec<NewLine>,
    pub metadata: Metadata,
}

/// An invoice with its lines, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub invoice: InvoiceRow,
    pub lines: Vec<LineRow>,
}

fn amounts(field: &str, quantity: i64, unit_amount: i64, tax_rate_bps: Option<i64>) -> Result<LineAmounts> {
    invoice::line_amounts(quantity, unit_amount, tax_rate_bps).ok_or_else(|| {
        BillingError::invalid(
            field,
            "out_of_range",
            "quantity, unit_amount or tax_rate_bps is out of range",
        )
    })
}

fn line_row(field: &str, line: NewLine, now: i64) -> Result<LineRow> {
    let a = amounts(field, line.quantity, line.unit_amount, line.tax_rate_bps)?;
    Ok(LineRow {
        id: new_id(Kind::InvoiceLine),
        description: line.description,
        quantity: line.quantity,
        unit_amount: line.unit_amount,
        tax_rate_bps: line.tax_rate_bps,
        amount: a.amount,
        tax: a.tax,
        created: now,
    })
}

/// Recomputes an invoice's totals from its lines.
fn apply_totals(invoice: &mut InvoiceRow, lines: &[LineRow]) -> Result<()> {
    let totals = invoice::totals(lines.iter().map(|l| LineAmounts {
        amount: l.amount,
        tax: l.tax,
    }))
    .ok_or_else(|| BillingError::invalid("lines", "amount_too_large", "the invoice total is too large"))?;
    invoice.subtotal = totals.subtotal;
    invoice.tax = totals.tax;
    invoice.total = totals.total;
    Ok(())
}

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewInvoice) -> Result<Invoice> {
    let customer = customers::find(conn, &ctx.tenant, &input.customer_id)
        .await?
        .ok_or(BillingError::NotFound("customer"))?;
    let currency = match (input.currency.map(Currency::code), customer.currency) {
        (Some(given), Some(own)) if given != own => {
            return Err(BillingError::invalid(
                "currency",
                "currency_mismatch",
                format!("the customer is billed in {own}"),
            ));
        }
        (Some(given), _) => given,
        (None, Some(own)) => own,
        (None, None) => {
            return Err(BillingError::invalid(
                "currency",
                "required",
                "the customer has no currency: give one",
            ));
        }
    };
    if input.lines.len() > MAX_LINES {
        return Err(BillingError::invalid(
            "lines",
            "too_many",
            format!("at most {MAX_LINES} lines"),
        ));
    }
    let lines = input
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| line_row(&format!("lines[{i}]"), line, ctx.now))
        .collect::<Result<Vec<_>>>()?;
    let mut invoice = InvoiceRow {
        id: new_id(Kind::Invoice),
        customer_id: customer.id,
        status: Status::Draft,
        currency,
        number: None,
        due_date: input.due_date,
        subtotal: 0,
        tax: 0,
        total: 0,
        amount_paid: 0,
        amount_refunded: 0,
        metadata: input.metadata,
        created: ctx.now,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
        marked_uncollectible_at: None,
    };
    apply_totals(&mut invoice, &lines)?;
    invoices::insert(conn, &ctx.tenant, &invoice).await?;
    for line in &lines {
        invoices::insert_line(conn, &ctx.tenant, &invoice.id, line).await?;
    }
    ctx.audit(conn, "invoice.created", &invoice.id).await?;
    let result = Invoice { invoice, lines };
    events::emit(conn, ctx, "invoice.created", &objects::Invoice::from(result.clone())).await?;
    Ok(result)
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Invoice> {
    let invoice = invoices::find(conn, tenant, id)
        .await?
        .ok_or(BillingError::NotFound("invoice"))?;
    let lines = invoices::lines(conn, tenant, id).await?;
    Ok(Invoice { invoice, lines })
}

/// Reads an invoice for change, holding its row until the transaction ends.
async fn lock(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<InvoiceRow> {
    invoices::find_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(BillingError::NotFound("invoice"))
}

/// Applies a change to the lines of a draft and recomputes its totals.
async fn edit_lines(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    edit: impl FnOnce(&mut Vec<LineRow>) -> Result<Change>,
) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    invoice::transition(invoice.status, Action::EditLines)?;
    let mut lines = invoices::lines(conn, &ctx.tenant, id).await?;
    let change = edit(&mut lines)?;
    apply_totals(&mut invoice, &lines)?;
    match &change {
        Change::Added(line) => invoices::insert_line(conn, &ctx.tenant, id, line).await?,
        Change::Updated(line) => invoices::update_line(conn, &ctx.tenant, line).await?,
        Change::Removed(line_id) => invoices::delete_line(conn, &ctx.tenant, line_id).await?,
    }
    invoices::update(conn, &ctx.tenant, &invoice, None).await?;
    ctx.audit(conn, "invoice.lines_changed", id).await?;
    Ok(Invoice { invoice, lines })
}

enum Change {
    Added(LineRow),
    Updated(LineRow),
    Removed(String),
}

pub async fn add_line(conn: &mut AnyConnection, ctx: &Ctx, id: &str, line: NewLine) -> Result<Invoice> {
    let now = ctx.now;
    edit_lines(conn, ctx, id, |lines| {
        if lines.len() >= MAX_LINES {
            return Err(BillingError::Conflict {
                code: "too_many_lines",
                message: format!("an invoice has at most {MAX_LINES} lines"),
            });
        }
        let row = line_row("", line, now)?;
        lines.push(row.clone());
        Ok(Change::Added(row))
    })
    .await
}

pub async fn update_line(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    line_id: &str,
    update: LineUpdate,
) -> Result<Invoice> {
    edit_lines(conn, ctx, id, |lines| {
        let line = lines
            .iter_mut()
            .find(|l| l.id == line_id)
            .ok_or(BillingError::NotFound("invoice line"))?;
        let description = update.description.unwrap_or_else(|| line.description.clone());
        let quantity = update.quantity.unwrap_or(line.quantity);
        let unit_amount = update.unit_amount.unwrap_or(line.unit_amount);
        let tax_rate_bps = update.tax_rate_bps.unwrap_or(line.tax_rate_bps);
        let a = amounts("", quantity, unit_amount, tax_rate_bps)?;
        *line = LineRow {
            description,
            quantity,
            unit_amount,
            tax_rate_bps,
            amount: a.amount,
            tax: a.tax,
            ..line.clone()
        };
        Ok(Change::Updated(line.clone()))
    })
    .await
}

pub async fn delete_line(conn: &mut AnyConnection, ctx: &Ctx, id: &str, line_id: &str) -> Result<Invoice> {
    edit_lines(conn, ctx, id, |lines| {
        let before = lines.len();
        lines.retain(|l| l.id != line_id);
        if lines.len() == before {
            return Err(BillingError::NotFound("invoice line"));
        }
        Ok(Change::Removed(line_id.to_owned()))
    })
    .await
}

/// Freezes a draft, gives it the tenant's next number and bills the customer.
pub async fn finalize(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    let status = invoice::transition(invoice.status, Action::Finalize { total: invoice.total })?;
    let (seq, prefix) = invoices::take_number(conn, &ctx.tenant, ctx.now).await?;
    invoice.status = status.unwrap_or(Status::Open);
    invoice.number = Some(format!("{prefix}{seq:06}"));
    invoice.finalized_at = Some(ctx.now);
    if invoice.status == Status::Paid {
        invoice.paid_at = Some(ctx.now);
    }
    invoices::update(conn, &ctx.tenant, &invoice, Some(seq)).await?;
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &invoice.customer_id,
        currency: &invoice.currency,
        source_id: &invoice.id,
        created: ctx.now,
    };
    post(
        conn,
        &movement,
        &ledger::finalize(invoice.subtotal, invoice.tax, invoice.total),
    )
    .await?;
    ctx.audit(conn, "invoice.finalized", id).await?;
    let lines = invoices::lines(conn, &ctx.tenant, id).await?;
    let result = Invoice { invoice, lines };
    let snapshot = objects::Invoice::from(result.clone());
    events::emit(conn, ctx, "invoice.finalized", &snapshot).await?;
    if result.invoice.status == Status::Paid {
        events::emit(conn, ctx, "invoice.paid", &snapshot).await?;
    }
    Ok(result)
}

pub async fn void(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    let status = invoice::transition(
        invoice.status,
        Action::Void {
            has_payments: invoice.amount_paid > 0,
        },
    )?;
    invoice.status = status.unwrap_or(Status::Void);
    invoice.voided_at = Some(ctx.now);
    invoices::update(conn, &ctx.tenant, &invoice, None).await?;
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &invoice.customer_id,
        currency: &invoice.currency,
        source_id: &invoice.id,
        created: ctx.now,
    };
    post(
        conn,
        &movement,
        &ledger::void(invoice.subtotal, invoice.tax, invoice.total),
    )
    .await?;
    ctx.audit(conn, "invoice.voided", id).await?;
    let lines = invoices::lines(conn, &ctx.tenant, id).await?;
    let result = Invoice { invoice, lines };
    events::emit(conn, ctx, "invoice.voided", &objects::Invoice::from(result.clone())).await?;
    Ok(result)
}

pub async fn mark_uncollectible(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    let status = invoice::transition(invoice.status, Action::MarkUncollectible)?;
    invoice.status = status.unwrap_or(Status::Uncollectible);
    invoice.marked_uncollectible_at = Some(ctx.now);
    invoices::update(conn, &ctx.tenant, &invoice, None).await?;
    ctx.audit(conn, "invoice.marked_uncollectible", id).await?;
    let lines = invoices::lines(conn, &ctx.tenant, id).await?;
    let result = Invoice { invoice, lines };
    let snapshot = objects::Invoice::from(result.clone());
    events::emit(conn, ctx, "invoice.marked_uncollectible", &snapshot).await?;
    Ok(result)
}

/// Deletes a draft (it never had a number, so none is lost).
pub async fn delete(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<()> {
    let invoice = lock(conn, ctx, id).await?;
    invoice::transition(invoice.status, Action::Delete)?;
    invoices::delete(conn, &ctx.tenant, id).await?;
    ctx.audit(conn, "invoice.deleted", id).await?;
    Ok(())
}

/// Lines of many invoices in one query, for listings.
pub async fn with_lines(conn: &mut AnyConnection, tenant: &str, rows: Vec<InvoiceRow>) -> Result<Vec<Invoice>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut lines = invoices::lines_of(conn, tenant, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|invoice| {
            let own = lines.remove(&invoice.id).unwrap_or_default();
            Invoice { invoice, lines: own }
        })
        .collect())
}

use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::{self, Action, LineAmounts, MAX_LINES, Status};
use crate::domain::ledger::{self, Posting};
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::objects::{Invoice, LineItem, Period};
use crate::operation::{Ctx, Error, Result};
use crate::store::invoices::{self, Filter, InvoiceRow};
use crate::store::ledger::{Movement, post};
use crate::store::page::{Page, PageQuery};
use crate::store::{charges, credits, customers};

#[derive(Debug, Clone)]
pub struct NewLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub tax_rate_bps: Option<i64>,
    /// A subscription's line: the price and the period it bills.
    pub price_id: Option<String>,
    pub period: Option<Period>,
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
    /// Set when a subscription makes the invoice.
    pub subscription: Option<SubscriptionPeriod>,
}

/// The subscription period an invoice bills, and why it was made.
#[derive(Debug, Clone)]
pub struct SubscriptionPeriod {
    pub subscription_id: String,
    /// The period it bills; none for an invoice of proration charges alone (a change invoiced
    /// at once, the last charges of a canceled subscription).
    pub period: Option<Period>,
    /// `subscription_create`, `subscription_cycle`, `subscription_update` or
    /// `subscription_cancel`.
    pub billing_reason: &'static str,
}

fn amounts(field: &str, quantity: i64, unit_amount: i64, tax_rate_bps: Option<i64>) -> Result<LineAmounts> {
    invoice::line_amounts(quantity, unit_amount, tax_rate_bps).ok_or_else(|| {
        Error::invalid(
            field,
            "out_of_range",
            "quantity, unit_amount or tax_rate_bps is out of range",
        )
    })
}

fn line_row(field: &str, line: NewLine, now: i64) -> Result<LineItem> {
    let a = amounts(field, line.quantity, line.unit_amount, line.tax_rate_bps)?;
    Ok(LineItem {
        id: new_id(Kind::InvoiceLine),
        object: LineItem::OBJECT,
        description: line.description,
        quantity: line.quantity,
        unit_amount: line.unit_amount,
        tax_rate_bps: line.tax_rate_bps,
        amount: a.amount,
        tax: a.tax,
        price: line.price_id,
        period: line.period,
        created: now,
    })
}

/// Recomputes an invoice's totals from its lines.
fn apply_totals(invoice: &mut InvoiceRow, lines: &[LineItem]) -> Result<()> {
    let totals = invoice::totals(lines.iter().map(|l| LineAmounts {
        amount: l.amount,
        tax: l.tax,
    }))
    .ok_or_else(|| Error::invalid("lines", "amount_too_large", "the invoice total is too large"))?;
    invoice.subtotal = totals.subtotal;
    invoice.tax = totals.tax;
    invoice.total = totals.total;
    Ok(())
}

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewInvoice) -> Result<Invoice> {
    let draft = create_draft(conn, ctx, input).await?;
    Ok(draft.row.with_lines(draft.lines))
}

/// A draft this transaction has just written, with its lines: [`finalize_draft`] finalizes it
/// without reading back what was written (no one else sees it before the commit).
pub struct Draft {
    row: InvoiceRow,
    lines: Vec<LineItem>,
}

impl Draft {
    pub fn id(&self) -> &str {
        &self.row.id
    }
}

/// [`create`], keeping the draft for [`finalize_draft`].
pub async fn create_draft(conn: &mut AnyConnection, ctx: &Ctx, input: NewInvoice) -> Result<Draft> {
    let customer = customers::find(conn, &ctx.tenant, &input.customer_id)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let currency = match (input.currency.map(Currency::code), customer.currency) {
        (Some(given), Some(own)) if given != own => {
            return Err(Error::invalid(
                "currency",
                "currency_mismatch",
                format!("the customer is billed in {own}"),
            ));
        }
        (Some(given), _) => given,
        (None, Some(own)) => own,
        (None, None) => {
            return Err(Error::invalid(
                "currency",
                "currency_required",
                "the customer has no currency: give one",
            ));
        }
    };
    if input.lines.len() > MAX_LINES {
        return Err(Error::invalid(
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
    let subscription = input.subscription;
    let mut invoice = InvoiceRow {
        id: new_id(Kind::Invoice),
        customer_id: customer.id,
        subscription_id: subscription.as_ref().map(|s| s.subscription_id.clone()),
        billing_reason: subscription.as_ref().map(|s| s.billing_reason.to_owned()),
        period_start: subscription.as_ref().and_then(|s| s.period.map(|p| p.start)),
        period_end: subscription.as_ref().and_then(|s| s.period.map(|p| p.end)),
        status: Status::Draft,
        currency,
        number: None,
        due_date: input.due_date,
        subtotal: 0,
        tax: 0,
        total: 0,
        amount_paid: 0,
        amount_refunded: 0,
        applied_balance: 0,
        pre_payment_credit_notes_amount: 0,
        post_payment_credit_notes_amount: 0,
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
    ctx.emit(conn, "invoice.created", &invoice.clone().with_lines(lines.clone()))
        .await?;
    Ok(Draft { row: invoice, lines })
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Invoice> {
    let invoice = invoices::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("invoice"))?;
    let lines = invoices::lines(conn, tenant, id).await?;
    Ok(invoice.with_lines(lines))
}

/// A page of invoices, each with its lines (read for the whole page in one query).
pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery, filter: &Filter) -> Result<Page<Invoice>> {
    let rows = invoices::list(conn, tenant, page, filter).await?;
    let ids: Vec<&str> = rows.data.iter().map(|r| r.id.as_str()).collect();
    let mut lines = invoices::lines_of(conn, tenant, &ids).await?;
    Ok(rows.map(|invoice| {
        let own = lines.remove(&invoice.id).unwrap_or_default();
        invoice.with_lines(own)
    }))
}

/// Reads an invoice for change, holding its row until the transaction ends.
async fn lock(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<InvoiceRow> {
    invoices::find_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("invoice"))
}

/// Applies a change to the lines of a draft and recomputes its totals.
async fn edit_lines(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    edit: impl FnOnce(&mut Vec<LineItem>) -> Result<Change>,
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
    Ok(invoice.with_lines(lines))
}

enum Change {
    Added(LineItem),
    Updated(LineItem),
    Removed(String),
}

pub async fn add_line(conn: &mut AnyConnection, ctx: &Ctx, id: &str, line: NewLine) -> Result<Invoice> {
    let now = ctx.now;
    edit_lines(conn, ctx, id, |lines| {
        if lines.len() >= MAX_LINES {
            return Err(Error::Conflict {
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
            .ok_or(Error::NotFound("invoice line"))?;
        let description = update.description.unwrap_or_else(|| line.description.clone());
        let quantity = update.quantity.unwrap_or(line.quantity);
        let unit_amount = update.unit_amount.unwrap_or(line.unit_amount);
        let tax_rate_bps = update.tax_rate_bps.unwrap_or(line.tax_rate_bps);
        let a = amounts("", quantity, unit_amount, tax_rate_bps)?;
        *line = LineItem {
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
            return Err(Error::NotFound("invoice line"));
        }
        Ok(Change::Removed(line_id.to_owned()))
    })
    .await
}

/// Freezes a draft, gives it the tenant's next number and bills the customer.
pub async fn finalize(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let invoice = lock(conn, ctx, id).await?;
    finalize_row(conn, ctx, invoice, None).await
}

/// [`finalize`] for a draft the transaction has just created.
pub async fn finalize_draft(conn: &mut AnyConnection, ctx: &Ctx, draft: Draft) -> Result<Invoice> {
    let mut lines = draft.lines;
    // In the order a read gives them.
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    finalize_row(conn, ctx, draft.row, Some(lines)).await
}

/// Finalizes a draft this transaction holds; `lines`: its lines, when the caller has them.
async fn finalize_row(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    mut invoice: InvoiceRow,
    lines: Option<Vec<LineItem>>,
) -> Result<Invoice> {
    invoice::transition(invoice.status, Action::Finalize { total: invoice.total })?;
    // The customer's credit pays what it can (its row is held, so it is applied once).
    let credit = if invoice.total > 0 {
        credits::balance_for_update(conn, ctx.backend, &ctx.tenant, &invoice.customer_id, &invoice.currency).await?
    } else {
        0
    };
    let applied = credit.min(invoice.total);
    let status = invoice::transition(
        invoice.status,
        Action::Finalize {
            total: invoice.total - applied,
        },
    )?;
    if applied > 0 {
        invoice.applied_balance = applied;
        move_credit(conn, ctx, &invoice, -applied, "applied to an invoice").await?;
    }
    invoice.status = status.unwrap_or(Status::Open);
    invoice.finalized_at = Some(ctx.now);
    if invoice.status == Status::Paid {
        invoice.paid_at = Some(ctx.now);
    }
    let postings = ledger::finalize(invoice.subtotal, invoice.tax, invoice.total);
    let event = "invoice.finalized";
    let lines = post_and_audit(conn, ctx, &invoice, lines, &postings, event).await?;
    // The number is taken last: the tenant's counter row stays locked until the transaction
    // ends, and every other finalization of the tenant waits on it meanwhile (the billing cycle
    // runs several at once).
    let (seq, prefix) = invoices::take_number(conn, &ctx.tenant, ctx.now).await?;
    invoice.number = Some(format!("{prefix}{seq:06}"));
    let result = store_and_emit(conn, ctx, invoice, Some(seq), lines, event).await?;
    if result.status == Status::Paid {
        ctx.emit(conn, "invoice.paid", &result).await?;
    }
    Ok(result)
}

/// Moves the customer's credit balance by `amount` for `invoice` (negative: applied to it).
async fn move_credit(conn: &mut AnyConnection, ctx: &Ctx, invoice: &InvoiceRow, amount: i64, why: &str) -> Result<()> {
    let movement = credits::Movement {
        tenant: &ctx.tenant,
        customer_id: &invoice.customer_id,
        currency: &invoice.currency,
        amount,
        description: why,
        subscription_id: invoice.subscription_id.as_deref(),
        invoice_id: Some(&invoice.id),
        created: ctx.now,
    };
    credits::record(conn, &movement).await?;
    Ok(())
}

pub async fn void(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    let has_payments = invoice.amount_paid > 0;
    let status = invoice::transition(invoice.status, Action::Void { has_payments })?;
    // A subscription's charge on it that was already credited in part (a change, a prorated
    // cancellation) cannot be voided whole: the customer would keep the credit too.
    let charged = charges::on_invoice(conn, &ctx.tenant, id).await?;
    let credit_notes = invoice.pre_payment_credit_notes_amount + invoice.post_payment_credit_notes_amount;
    if credit_notes > 0 || charged.iter().any(|c| c.credited > 0) {
        return Err(Error::Conflict {
            code: "invoice_has_credits",
            message: "this invoice was credited in part already (a credit note, or proration of a charge on it); it cannot be voided".into(),
        });
    }
    invoice.status = status.unwrap_or(Status::Void);
    invoice.voided_at = Some(ctx.now);
    if !charged.is_empty() {
        charges::void_invoice(conn, &ctx.tenant, id).await?;
    }
    if invoice.applied_balance > 0 {
        // The credit it took goes back to the customer.
        move_credit(
            conn,
            ctx,
            &invoice,
            invoice.applied_balance,
            "returned from a voided invoice",
        )
        .await?;
    }
    let postings = ledger::void(invoice.subtotal, invoice.tax, invoice.total);
    record_change(conn, ctx, invoice, None, &postings, "invoice.voided").await
}

pub async fn mark_uncollectible(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Invoice> {
    let mut invoice = lock(conn, ctx, id).await?;
    let status = invoice::transition(invoice.status, Action::MarkUncollectible)?;
    invoice.status = status.unwrap_or(Status::Uncollectible);
    invoice.marked_uncollectible_at = Some(ctx.now);
    record_change(conn, ctx, invoice, None, &[], "invoice.marked_uncollectible").await
}

/// Saves an invoice's new state (with its number's sequence, when it got one), posts what the
/// change moves in the ledger, and records it as `event` in the audit trail and the outbox.
async fn record_change(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    invoice: InvoiceRow,
    number_seq: Option<i64>,
    postings: &[Posting],
    event: &str,
) -> Result<Invoice> {
    let lines = post_and_audit(conn, ctx, &invoice, None, postings, event).await?;
    store_and_emit(conn, ctx, invoice, number_seq, lines, event).await
}

/// The first half of [`record_change`]: posts the change to the ledger and audits it; returns
/// the invoice's lines (`lines`, else read).
async fn post_and_audit(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    invoice: &InvoiceRow,
    lines: Option<Vec<LineItem>>,
    postings: &[Posting],
    event: &str,
) -> Result<Vec<LineItem>> {
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &invoice.customer_id,
        currency: &invoice.currency,
        source_id: &invoice.id,
        created: ctx.now,
    };
    post(conn, &movement, postings).await?;
    ctx.audit(conn, event, &invoice.id).await?;
    match lines {
        Some(lines) => Ok(lines),
        None => Ok(invoices::lines(conn, &ctx.tenant, &invoice.id).await?),
    }
}

/// The second half of [`record_change`]: stores the invoice and emits its event.
async fn store_and_emit(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    invoice: InvoiceRow,
    number_seq: Option<i64>,
    lines: Vec<LineItem>,
    event: &str,
) -> Result<Invoice> {
    invoices::update(conn, &ctx.tenant, &invoice, number_seq).await?;
    let result = invoice.with_lines(lines);
    ctx.emit(conn, event, &result).await?;
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

//! Credit notes: the document that reduces a finalized invoice. Its lines credit the invoice's
//! lines (or it credits an amount); its total goes first to what is left to pay on the invoice,
//! then to refunds of the invoice's payments and to the customer's credit balance, as asked
//! (`domain::credit_note`). It is numbered gaplessly per tenant and posted to the ledger.
//!
//! A credit note on a subscription's line also counts as credited on the charge the line bills,
//! so that proration later credits only what is left of it (lago-api #1778: credits larger than
//! the fee); for the same reason a subscription's invoice is credited by its lines, never by an
//! amount alone.
use std::collections::HashMap;

use sqlx::AnyConnection;

use crate::domain::credit_note;
use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::{self, Action, Status};
use crate::domain::ledger;
use crate::domain::metadata::Metadata;
use crate::domain::proration::credit_tax;
use crate::objects::{CreditNote, CreditNoteLine, CreditTransaction, CustomerBalance, LineItem, Refund};
use crate::operation::{Ctx, Error, Result};
use crate::store::charges::{self, ChargeRow};
use crate::store::credit_notes::{self, Filter};
use crate::store::invoices::{self, InvoiceRow};
use crate::store::ledger::{Movement, post};
use crate::store::page::{Page, PageQuery};
use crate::store::{credits, payments, subscriptions};

#[derive(Debug, Clone)]
pub struct NewCreditNote {
    pub invoice_id: String,
    /// Lines of the invoice to credit. With neither lines nor `amount`, all that is left to
    /// credit: every line for what is left of it (after a credit note of an amount, what is left
    /// of the invoice's total, as an amount).
    pub lines: Vec<NewCreditLine>,
    /// An amount credited beside the lines (untaxed; not for a subscription's invoice).
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub memo: Option<String>,
    pub refund_amount: Option<i64>,
    pub credit_amount: Option<i64>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct NewCreditLine {
    pub invoice_line_id: String,
    /// Pre-tax; what is left to credit of the line when not given.
    pub amount: Option<i64>,
}

/// A line credited, and the subscription charge it bills, if any.
struct Credited {
    line: CreditNoteLine,
    charge: Option<(String, i64)>,
}

/// Issues a credit note for a finalized invoice, or says why not before writing anything.
pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewCreditNote) -> Result<CreditNote> {
    let mut inv = lock(conn, ctx, &input.invoice_id).await?;
    invoice::transition(inv.status, Action::Credit { remaining_after: 1 })?;
    let charged = charges::on_invoice(conn, &ctx.tenant, &inv.id).await?;
    // Neither lines nor an amount: everything left to credit on the invoice's lines.
    let whole = input.lines.is_empty() && input.amount.is_none();
    let asked = (!whole).then_some(input.lines.as_slice());
    let mut credited = line_credits(conn, ctx, &inv, asked, &charged).await?;
    if let Some(amount) = input.amount {
        credited.push(amount_line(amount, input.memo.as_deref(), &charged)?);
    }
    let creditable = creditable(conn, &ctx.tenant, &inv).await?;
    let lines_total: i64 = credited.iter().map(|c| c.line.amount + c.line.tax).sum();
    if whole && lines_total > creditable && charged.is_empty() {
        // After a credit note of an amount, what is left of the invoice is no set of lines.
        credited = vec![amount_line(creditable, input.memo.as_deref(), &charged)?];
    }
    let subtotal: i64 = credited.iter().map(|c| c.line.amount).sum();
    let tax: i64 = credited.iter().map(|c| c.line.tax).sum();
    let total = subtotal + tax;
    if total > creditable || total == 0 {
        let field = if input.lines.is_empty() && !whole {
            "amount"
        } else {
            "lines"
        };
        return Err(Error::invalid(
            field,
            "exceeds_creditable",
            format!("at most {creditable} of this invoice is left to credit; this credit note is {total}"),
        ));
    }
    let split = credit_note::split(total, inv.amount_remaining(), input.refund_amount, input.credit_amount).map_err(
        |e| {
            Error::invalid(
                "refund_amount",
                "amounts_do_not_add_up",
                format!(
                    "refund_amount and credit_amount must add up to {}, what the credit note gives back beyond what is left to pay on the invoice",
                    e.post_payment
                ),
            )
        },
    )?;
    let refundable = inv.amount_paid - inv.amount_refunded;
    if split.refund > refundable {
        return Err(Error::invalid(
            "refund_amount",
            "exceeds_refundable",
            format!("at most {refundable} of this invoice's payments can be refunded"),
        ));
    }

    if split.credit > 0 {
        // The credit row before the number counter, the order finalization takes them in: a
        // credit note and an invoice finalized at once never wait on each other.
        credits::balance_for_update(conn, ctx.backend, &ctx.tenant, &inv.customer_id, &inv.currency).await?;
    }
    let (seq, prefix) = credit_notes::take_number(conn, &ctx.tenant, ctx.now).await?;
    let mut charges_credited = Vec::new();
    let note = CreditNote {
        id: new_id(Kind::CreditNote),
        object: CreditNote::OBJECT,
        number: format!("{prefix}CN-{seq:06}"),
        invoice: inv.id.clone(),
        customer: inv.customer_id.clone(),
        currency: inv.currency.clone(),
        reason: input.reason,
        memo: input.memo,
        subtotal,
        tax,
        total,
        pre_payment_amount: split.pre_payment,
        refund_amount: split.refund,
        credit_amount: split.credit,
        lines: credited
            .into_iter()
            .map(|c| {
                charges_credited.extend(c.charge);
                c.line
            })
            .collect(),
        metadata: input.metadata,
        created: ctx.now,
    };
    credit_notes::insert(conn, &ctx.tenant, seq, &note).await?;
    for (charge_id, credited) in charges_credited {
        charges::add_credited(conn, &ctx.tenant, &charge_id, credited).await?;
    }
    if split.refund > 0 {
        refund_payments(conn, ctx, &inv, split.refund, &note.number).await?;
        inv.amount_refunded += split.refund;
    }
    if split.credit > 0 {
        let movement = credits::Movement {
            tenant: &ctx.tenant,
            customer_id: &inv.customer_id,
            currency: &inv.currency,
            amount: split.credit,
            description: "credit note",
            subscription_id: inv.subscription_id.as_deref(),
            invoice_id: Some(&inv.id),
            created: ctx.now,
        };
        credits::record(conn, &movement).await?;
    }
    inv.pre_payment_credit_notes_amount += split.pre_payment;
    inv.post_payment_credit_notes_amount += split.refund + split.credit;
    let was = inv.status;
    if let Some(status) = invoice::transition(
        inv.status,
        Action::Credit {
            remaining_after: inv.amount_remaining(),
        },
    )? {
        inv.status = status;
    }
    let paid_now = was != Status::Paid && inv.status == Status::Paid;
    if paid_now {
        inv.paid_at = Some(ctx.now);
    }
    invoices::update(conn, &ctx.tenant, &inv, None).await?;
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &inv.customer_id,
        currency: &inv.currency,
        source_id: &note.id,
        created: ctx.now,
    };
    post(
        conn,
        &movement,
        &ledger::credit_note(subtotal, tax, total, split.refund),
    )
    .await?;
    ctx.audit(conn, "credit_note.created", &note.id).await?;
    ctx.emit(conn, "credit_note.created", &note).await?;
    if paid_now {
        let lines = invoices::lines(conn, &ctx.tenant, &inv.id).await?;
        ctx.emit(conn, "invoice.paid", &inv.with_lines(lines)).await?;
    }
    Ok(note)
}

/// The invoice to credit, held until the transaction ends. A subscription's invoice is locked
/// after its subscription, the order changes and cycles take them in: a credit note and a
/// proration never update the same charge from a stale read.
async fn lock(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<InvoiceRow> {
    let inv = invoices::find(conn, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("invoice"))?;
    if let Some(subscription) = &inv.subscription_id {
        subscriptions::find_for_update(conn, ctx.backend, &ctx.tenant, subscription).await?;
    }
    invoices::find_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("invoice"))
}

/// What is left to give back of an invoice: its total less what credit notes took off or gave
/// back, and less the refunds made apart from credit notes (a plain refund gives back money that
/// a credit note must not give again). The caller holds the invoice's row.
pub async fn creditable(conn: &mut AnyConnection, tenant: &str, inv: &InvoiceRow) -> Result<i64> {
    let refunded_by_notes = credit_notes::refunded(conn, tenant, &inv.id).await?;
    let refunded_apart = inv.amount_refunded - refunded_by_notes;
    Ok(inv.total - inv.pre_payment_credit_notes_amount - inv.post_payment_credit_notes_amount - refunded_apart)
}

/// An amount credited beside (or instead of) lines: no tax, no line of the invoice.
fn amount_line(amount: i64, memo: Option<&str>, charged: &[ChargeRow]) -> Result<Credited> {
    if !charged.is_empty() {
        return Err(Error::invalid(
            "amount",
            "lines_required",
            "this invoice bills a subscription: credit its lines, so that proration knows what was given back",
        ));
    }
    Ok(Credited {
        line: CreditNoteLine {
            id: new_id(Kind::CreditNoteLine),
            object: CreditNoteLine::OBJECT,
            invoice_line: None,
            description: memo.unwrap_or("Credit").to_owned(),
            amount,
            tax: 0,
        },
        charge: None,
    })
}

/// The lines credited, each at most what is left of its invoice line (what earlier credit notes
/// and, for a subscription's line, proration have not given back), with the tax it carried.
async fn line_credits(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    inv: &InvoiceRow,
    asked: Option<&[NewCreditLine]>,
    charged: &[ChargeRow],
) -> Result<Vec<Credited>> {
    if asked.is_some_and(<[_]>::is_empty) {
        return Ok(Vec::new());
    }
    let lines = invoices::lines(conn, &ctx.tenant, &inv.id).await?;
    // Not asked for lines: every line, for all that is left of it.
    let whole = asked.is_none();
    let every: Vec<NewCreditLine>;
    let asked = match asked {
        Some(asked) => asked,
        None => {
            every = lines
                .iter()
                .map(|l| NewCreditLine {
                    invoice_line_id: l.id.clone(),
                    amount: None,
                })
                .collect();
            &every
        }
    };
    let by_notes = credit_notes::credited_lines(conn, &ctx.tenant, &inv.id).await?;
    let charge_of = charges_by_line(&lines, charged);
    // What is credited of each line and of each charge so far; a line named twice is credited
    // twice, in order, and a charge billed on several lines is given back once across them.
    let mut line_before: HashMap<&str, i64> = HashMap::new();
    let mut charge_before: HashMap<&str, i64> = HashMap::new();
    let mut result = Vec::with_capacity(asked.len());
    for (i, want) in asked.iter().enumerate() {
        let Some(line) = lines.iter().find(|l| l.id == want.invoice_line_id) else {
            return Err(Error::invalid(
                &format!("lines[{i}].invoice_line"),
                "unknown_invoice_line",
                "the invoice has no such line",
            ));
        };
        let line_credited = *line_before
            .entry(line.id.as_str())
            .or_insert_with(|| by_notes.get(&line.id).map_or(0, |(amount, _)| *amount));
        let mut left = line.amount - line_credited;
        let charge = charge_of.get(line.id.as_str()).copied();
        let charge_credited = charge.map(|c| *charge_before.entry(c.id.as_str()).or_insert(c.credited));
        if let (Some(c), Some(credited)) = (charge, charge_credited) {
            // Proration and earlier credit notes gave back this much of the charge.
            left = left.min(c.amount - credited);
        }
        if whole && left <= 0 {
            continue; // the whole invoice: what is credited already is passed over
        }
        let amount = want.amount.unwrap_or(left);
        if amount > left || left <= 0 {
            return Err(Error::invalid(
                &format!("lines[{i}].amount"),
                "exceeds_creditable",
                format!("at most {} of this line is left to credit", left.max(0)),
            ));
        }
        // The tax given back is cumulative on what the line has given back in all.
        let tax = credit_tax(line.tax_rate_bps, line.amount - left, amount)
            .ok_or_else(|| Error::invalid(&format!("lines[{i}].amount"), "amount_too_large", "the tax overflows"))?;
        line_before.insert(line.id.as_str(), line_credited + amount);
        if let (Some(c), Some(credited)) = (charge, charge_credited) {
            charge_before.insert(c.id.as_str(), credited + amount);
        }
        result.push(Credited {
            line: CreditNoteLine {
                id: new_id(Kind::CreditNoteLine),
                object: CreditNoteLine::OBJECT,
                invoice_line: Some(line.id.clone()),
                description: line.description.clone(),
                amount,
                tax,
            },
            charge: charge.map(|c| (c.id.clone(), amount)),
        });
    }
    Ok(result)
}

/// The subscription charge each line of an invoice bills: the charge of the same price and
/// period. A charge of a tiered or volume price, or with a flat fee, is billed on several lines,
/// all of which point to it. When several charges share a price and a period (two changes at
/// one instant), each is one line: they are paired by amount, in order.
fn charges_by_line<'a>(lines: &'a [LineItem], charged: &'a [ChargeRow]) -> HashMap<&'a str, &'a ChargeRow> {
    let mut matched = HashMap::new();
    for line in lines {
        let (Some(price), Some(period)) = (&line.price, &line.period) else {
            continue;
        };
        let same =
            |c: &&ChargeRow| &c.price_id == price && c.period_start == period.start && c.period_end == period.end;
        let candidates: Vec<&ChargeRow> = charged.iter().filter(same).collect();
        let charge = match candidates.as_slice() {
            [only] => Some(*only),
            _ => candidates
                .into_iter()
                .find(|c| c.amount == line.amount && !matched.values().any(|m: &&ChargeRow| m.id == c.id)),
        };
        if let Some(charge) = charge {
            matched.insert(line.id.as_str(), charge);
        }
    }
    matched
}

/// Refunds `amount` of the invoice's payments, newest first (the caller adds it to the invoice's
/// `amount_refunded`). The credit note posts the money movement (receivable and cash); the
/// refunds record which payment gave it back.
async fn refund_payments(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    inv: &InvoiceRow,
    amount: i64,
    number: &str,
) -> Result<()> {
    let mut left = amount;
    for payment in payments::refundable_of_invoice(conn, ctx.backend, &ctx.tenant, &inv.id).await? {
        if left == 0 {
            break;
        }
        let take = left.min(payment.amount - payment.amount_refunded);
        let refund = Refund {
            id: new_id(Kind::Refund),
            object: Refund::OBJECT,
            payment_id: payment.id.clone(),
            invoice_id: inv.id.clone(),
            amount: take,
            currency: payment.currency.clone(),
            reason: Some(format!("credit note {number}")),
            metadata: Metadata::default(),
            created: ctx.now,
        };
        payments::insert_refund(conn, &ctx.tenant, &refund).await?;
        payments::add_refunded(conn, &ctx.tenant, &payment.id, take).await?;
        ctx.audit(conn, "refund.created", &refund.id).await?;
        ctx.emit(conn, "refund.created", &refund).await?;
        left -= take;
    }
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<CreditNote> {
    credit_notes::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("credit note"))
}

pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<CreditNote>> {
    Ok(credit_notes::list(conn, tenant, page, filter).await?)
}

/// The customer's credit balance, per currency.
pub async fn credit_balance(conn: &mut AnyConnection, tenant: &str, customer_id: &str) -> Result<CustomerBalance> {
    let customer = super::customers::get(conn, tenant, customer_id).await?;
    let balances = credits::balances(conn, tenant, &customer.id).await?;
    Ok(CustomerBalance::credit(customer.id, balances))
}

/// The movements of the customer's credit balance, newest first.
pub async fn credit_transactions(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
    page: &PageQuery,
) -> Result<Page<CreditTransaction>> {
    let customer = super::customers::get(conn, tenant, customer_id).await?;
    Ok(credits::list(conn, tenant, &customer.id, page).await?)
}

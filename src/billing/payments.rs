use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::{self, Action, Status};
use crate::domain::ledger;
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::objects::{Payment, Refund};
use crate::operation::{Ctx, Error, Result};
use crate::store::invoices;
use crate::store::ledger::{Movement, post};
use crate::store::page::{Page, PageQuery};
use crate::store::payments::{self, Filter, RefundFilter};

#[derive(Debug, Clone)]
pub struct NewPayment {
    pub invoice_id: String,
    pub amount: i64,
    pub currency: Currency,
    pub reference: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct NewRefund {
    pub payment_id: String,
    /// The rest of the payment when not given.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub metadata: Metadata,
}

/// Records a payment against an open or uncollectible invoice. The invoice row is held for the
/// transaction, so concurrent payments are applied one after the other and can never overpay.
pub async fn record(conn: &mut AnyConnection, ctx: &Ctx, input: NewPayment) -> Result<Payment> {
    let mut inv = invoices::find_for_update(conn, ctx.backend, &ctx.tenant, &input.invoice_id)
        .await?
        .ok_or(Error::NotFound("invoice"))?;
    let currency = input.currency.code();
    if currency != inv.currency {
        return Err(Error::invalid(
            "currency",
            "currency_mismatch",
            format!("the invoice is in {}", inv.currency),
        ));
    }
    let remaining = inv.amount_remaining();
    if matches!(inv.status, Status::Open | Status::Uncollectible) && input.amount > remaining {
        return Err(Error::invalid(
            "amount",
            "exceeds_amount_remaining",
            format!("the invoice has {remaining} left to pay"),
        ));
    }
    let status = invoice::transition(
        inv.status,
        Action::Pay {
            remaining_after: remaining - input.amount,
        },
    )?;

    let payment = Payment {
        id: new_id(Kind::Payment),
        object: Payment::OBJECT,
        invoice_id: inv.id.clone(),
        customer_id: inv.customer_id.clone(),
        amount: input.amount,
        currency,
        amount_refunded: 0,
        reference: input.reference,
        metadata: input.metadata,
        created: ctx.now,
    };
    if !payments::insert(conn, &ctx.tenant, &payment).await? {
        return Err(Error::Conflict {
            code: "duplicate_reference",
            message: "another payment already has this reference".into(),
        });
    }
    inv.amount_paid += input.amount;
    inv.status = status.unwrap_or(inv.status);
    if inv.status == Status::Paid {
        inv.paid_at = Some(ctx.now);
    }
    invoices::update(conn, &ctx.tenant, &inv, None).await?;
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &inv.customer_id,
        currency: &inv.currency,
        source_id: &payment.id,
        created: ctx.now,
    };
    post(conn, &movement, &ledger::payment(input.amount)).await?;
    ctx.audit(conn, "payment.created", &payment.id).await?;
    ctx.emit(conn, "payment.created", &payment).await?;
    if inv.status == Status::Paid {
        let lines = invoices::lines(conn, &ctx.tenant, &inv.id).await?;
        ctx.emit(conn, "invoice.paid", &inv.with_lines(lines)).await?;
    }
    Ok(payment)
}

/// Refunds part or all of a payment; refunds of one payment never add up to more than it.
pub async fn refund(conn: &mut AnyConnection, ctx: &Ctx, input: NewRefund) -> Result<Refund> {
    // Locks in the order a credit note takes them, the invoice then its payments, so that a
    // refund and a credit note refunding the same payment never deadlock.
    let invoice_id = payments::find(conn, &ctx.tenant, &input.payment_id)
        .await?
        .ok_or(Error::NotFound("payment"))?
        .invoice_id;
    let inv = invoices::find_for_update(conn, ctx.backend, &ctx.tenant, &invoice_id)
        .await?
        .ok_or(Error::NotFound("invoice"))?;
    let payment = payments::find_for_update(conn, ctx.backend, &ctx.tenant, &input.payment_id)
        .await?
        .ok_or(Error::NotFound("payment"))?;
    let left = payment.amount - payment.amount_refunded;
    if left == 0 {
        return Err(Error::Conflict {
            code: "payment_fully_refunded",
            message: "this payment is already fully refunded".into(),
        });
    }
    // Credit notes give back money too: what they gave back is not refunded again.
    let creditable = super::credit_notes::creditable(conn, &ctx.tenant, &inv).await?;
    let refundable = left.min(creditable.max(0));
    let amount = input.amount.unwrap_or(refundable);
    if amount > refundable || amount == 0 {
        let why = if refundable < left {
            ": credit notes and refunds have given back the rest of its invoice"
        } else {
            ""
        };
        return Err(Error::invalid(
            "amount",
            "exceeds_refundable",
            format!("at most {refundable} of this payment can be refunded{why}"),
        ));
    }
    let refund = Refund {
        id: new_id(Kind::Refund),
        object: Refund::OBJECT,
        payment_id: payment.id.clone(),
        invoice_id: payment.invoice_id.clone(),
        amount,
        currency: payment.currency.clone(),
        reason: input.reason,
        metadata: input.metadata,
        created: ctx.now,
    };
    payments::insert_refund(conn, &ctx.tenant, &refund).await?;
    payments::add_refunded(conn, &ctx.tenant, &payment.id, amount).await?;
    invoices::add_refunded(conn, &ctx.tenant, &payment.invoice_id, amount).await?;
    let movement = Movement {
        tenant: &ctx.tenant,
        customer_id: &payment.customer_id,
        currency: &payment.currency,
        source_id: &refund.id,
        created: ctx.now,
    };
    post(conn, &movement, &ledger::refund(amount)).await?;
    ctx.audit(conn, "refund.created", &refund.id).await?;
    ctx.emit(conn, "refund.created", &refund).await?;
    Ok(refund)
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Payment> {
    payments::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("payment"))
}

pub async fn get_refund(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Refund> {
    payments::find_refund(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("refund"))
}

pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery, filter: &Filter) -> Result<Page<Payment>> {
    Ok(payments::list(conn, tenant, page, filter).await?)
}

pub async fn list_refunds(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &RefundFilter,
) -> Result<Page<Refund>> {
    Ok(payments::list_refunds(conn, tenant, page, filter).await?)
}

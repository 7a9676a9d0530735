//! Subscriptions: create (billing the first period), read, cancel, and advance (what the billing
//! cycle runs: each period's invoice when it starts, the trial's end, a cancellation at a
//! period's end; see `domain::subscription::due`).
//!
//! A period's invoice is created and finalized in the transaction that advances the
//! subscription past it, with the subscription's row locked; the unique index
//! `invoices_one_per_period` (subscription, period start) makes a second invoice for one period
//! impossible even so.
use std::collections::HashMap;

use sqlx::AnyConnection;

use crate::domain::calendar::{Anchor, Cadence, CalendarError};
use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::MAX_LINES;
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::domain::pricing;
use crate::domain::proration;
use crate::domain::subscription::{self as domain, Action, Cycle, Status, Step};
use crate::objects::{CollectionMethod, Invoice, Period, Price, Subscription, SubscriptionItem};
use crate::operation::{Ctx, Error, Result};
use crate::store::page::{Page, PageQuery};
use crate::store::subscriptions::{self, Filter, SubscriptionRow};
use crate::store::{catalog, customers, tenants};

use super::invoices::{self, NewInvoice, NewLine, SubscriptionPeriod};

/// The most items a subscription may have.
pub const MAX_ITEMS: usize = 20;
/// The longest trial: two years.
pub const MAX_TRIAL_DAYS: i64 = 730;
/// The longest payment term of an invoice sent to the customer.
pub const MAX_DAYS_UNTIL_DUE: i64 = 365;

#[derive(Debug, Clone)]
pub struct NewItem {
    pub price_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub customer_id: String,
    pub items: Vec<NewItem>,
    /// An IANA name, already checked; UTC when not given.
    pub time_zone: Option<String>,
    /// Bill on this day of the month (1–31, clamped to the month's end), from 00:00 local time;
    /// otherwise periods start at the instant the subscription does.
    pub billing_cycle_day: Option<u8>,
    pub trial_period_days: Option<i64>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<i64>,
    pub metadata: Metadata,
}

fn calendar_error(e: CalendarError) -> Error {
    Error::invalid("billing_cycle_anchor", "out_of_range", e.to_string())
}

/// The prices of `items`, checked against each other and the customer: active, one currency,
/// one interval (422 `price_inactive`, `currency_mismatch`, `interval_mismatch`).
async fn checked_prices(
    conn: &mut AnyConnection,
    tenant: &str,
    items: &[NewItem],
    customer_currency: Option<&str>,
) -> Result<Vec<Price>> {
    let mut prices: Vec<Price> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let price = catalog::find_price(conn, tenant, &item.price_id)
            .await?
            .ok_or(Error::NotFound("price"))?;
        let field = format!("items[{i}].price");
        if !price.active {
            return Err(Error::invalid(
                &field,
                "price_inactive",
                format!("{} is inactive{}", price.id, superseded_note(&price)),
            ));
        }
        if let Some(first) = prices.first() {
            if first.currency != price.currency {
                return Err(Error::invalid(
                    &field,
                    "currency_mismatch",
                    format!("every item's price must be in {}", first.currency),
                ));
            }
            if first.recurring != price.recurring {
                return Err(Error::invalid(
                    &field,
                    "interval_mismatch",
                    "every item's price must have the same interval",
                ));
            }
        } else if customer_currency.is_some_and(|c| c != price.currency) {
            return Err(Error::invalid(
                &field,
                "currency_mismatch",
                format!("the customer is billed in {}", customer_currency.unwrap_or_default()),
            ));
        }
        if price
            .model()
            .and_then(|m| pricing::period_amount(&m, item.quantity))
            .is_none()
        {
            return Err(Error::invalid(
                &format!("items[{i}].quantity"),
                "amount_too_large",
                "the price for this quantity is too large",
            ));
        }
        prices.push(price);
    }
    // Every period's invoice must fit: one line per item, tier and tier flat fee.
    let lines: usize = items
        .iter()
        .zip(&prices)
        .filter_map(|(item, price)| Some(pricing::period_rows(&price.model()?, item.quantity)?.len()))
        .sum();
    if lines > MAX_LINES {
        return Err(Error::invalid(
            "items",
            "too_many_invoice_lines",
            format!("each period would be billed on {lines} lines; an invoice has at most {MAX_LINES}"),
        ));
    }
    Ok(prices)
}

fn superseded_note(price: &Price) -> String {
    price
        .superseded_by
        .as_ref()
        .map(|next| format!(" (replaced by {next})"))
        .unwrap_or_default()
}

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewSubscription) -> Result<Subscription> {
    let customer = customers::find(conn, &ctx.tenant, &input.customer_id)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let prices = checked_prices(conn, &ctx.tenant, &input.items, customer.currency.as_deref()).await?;
    let first = prices
        .first()
        .ok_or_else(|| Error::invalid("items", "required", "at least one item"))?;
    let cadence = first.cadence().ok_or_else(|| {
        Error::invalid(
            "items[0].price",
            "interval_mismatch",
            "the price's interval is not billable",
        )
    })?;
    let zone = input.time_zone.unwrap_or_else(|| "UTC".to_owned());
    let tz = crate::domain::calendar::time_zone(&zone)
        .ok_or_else(|| Error::invalid("time_zone", "invalid_time_zone", "not an IANA time zone name"))?;
    let now = ctx.now;
    let (anchor, anchor_fixed) = match input.billing_cycle_day {
        Some(day) => (Anchor::on_day(now, tz, day).map_err(calendar_error)?, true),
        None => (Anchor::at(now, tz).map_err(calendar_error)?, false),
    };
    let (status, index, period, trial_end) = match input.trial_period_days {
        Some(days) => (
            Status::Trialing,
            0,
            (now, now + days * 86_400),
            Some(now + days * 86_400),
        ),
        None => {
            let index = anchor.index_at(cadence, now).map_err(calendar_error)?;
            let (_, end) = anchor.period(cadence, index).map_err(calendar_error)?;
            (Status::Active, index, (now, end), None)
        }
    };
    tenants::ensure(conn, &ctx.tenant, now).await?;
    let (local, _) = anchor.to_stored();
    let row = SubscriptionRow {
        id: new_id(Kind::Subscription),
        customer_id: customer.id,
        status,
        currency: first.currency.clone(),
        time_zone: zone,
        anchor: local,
        anchor_fixed,
        recurring: first.recurring,
        period_index: index,
        current_period_start: period.0,
        current_period_end: period.1,
        trial_end,
        cancel_at_period_end: false,
        canceled_at: None,
        ended_at: None,
        collection_method: input.collection_method,
        days_until_due: input.days_until_due,
        next_action_at: Some(period.1),
        metadata: input.metadata,
        created: now,
    };
    subscriptions::insert(conn, &ctx.tenant, &row).await?;
    let items: Vec<SubscriptionItem> = input
        .items
        .iter()
        .map(|item| SubscriptionItem {
            id: new_id(Kind::SubscriptionItem),
            object: SubscriptionItem::OBJECT,
            price: item.price_id.clone(),
            quantity: item.quantity,
            created: now,
        })
        .collect();
    for item in &items {
        subscriptions::insert_item(conn, &ctx.tenant, &row.id, item).await?;
    }
    if status == Status::Active {
        // A chosen billing day makes the first period part of one, charged its share. Otherwise
        // the first period starts with the subscription and is charged in full (even where the
        // start's local time occurs twice, at a DST fold, and the anchor takes the first one).
        let nominal = if anchor_fixed {
            anchor.period(cadence, index).map_err(calendar_error)?
        } else {
            period
        };
        bill_period(conn, ctx, &row, &items, &prices, period, nominal, "subscription_create").await?;
    }
    let subscription = row.with_items(items);
    ctx.audit(conn, "subscription.created", &subscription.id).await?;
    ctx.emit(conn, "subscription.created", &subscription).await?;
    Ok(subscription)
}

/// Creates and finalizes the invoice of `period` (part of the nominal period `nominal`: a first
/// period that starts between two billing days is charged its share, rounded once).
#[allow(clippy::too_many_arguments)]
async fn bill_period(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    items: &[SubscriptionItem],
    prices: &[Price],
    period: (i64, i64),
    nominal: (i64, i64),
    reason: &'static str,
) -> Result<Invoice> {
    let partial = period != nominal;
    let span = Period {
        start: period.0,
        end: period.1,
    };
    let mut lines = Vec::new();
    for (item, price) in items.iter().zip(prices) {
        let name = match &price.nickname {
            Some(nickname) => nickname.clone(),
            None => catalog::find_product(conn, &ctx.tenant, &price.product_id)
                .await?
                .map_or_else(|| price.id.clone(), |p| p.name),
        };
        let model = price.model().ok_or(Error::NotFound("price"))?;
        let too_large = || Error::invalid("items", "amount_too_large", "the period's amount is too large");
        if partial {
            // One line for the share of the period: the full amount prorated, rounded once.
            let full = pricing::period_amount(&model, item.quantity).ok_or_else(too_large)?;
            let share = proration::remaining_debit(full, nominal, period.0).ok_or_else(too_large)?;
            lines.push(NewLine {
                description: format!("{name} × {} (part of a period)", item.quantity),
                quantity: 1,
                unit_amount: share,
                tax_rate_bps: None,
                price_id: Some(price.id.clone()),
                period: Some(span),
            });
            continue;
        }
        for r in pricing::period_rows(&model, item.quantity).ok_or_else(too_large)? {
            let description = match (r.tier, r.flat_fee) {
                (Some(tier), true) => format!("{name} (tier {} flat fee)", tier + 1),
                (Some(tier), false) => format!("{name} (tier {})", tier + 1),
                (None, _) => name.clone(),
            };
            lines.push(NewLine {
                description,
                quantity: r.quantity,
                unit_amount: r.unit_amount,
                tax_rate_bps: None,
                price_id: Some(price.id.clone()),
                period: Some(span),
            });
        }
    }
    let due_date = match row.collection_method {
        CollectionMethod::SendInvoice => Some(ctx.now + row.days_until_due.unwrap_or(30) * 86_400),
        CollectionMethod::ChargeAutomatically => Some(ctx.now),
    };
    let draft = invoices::create(
        conn,
        ctx,
        NewInvoice {
            customer_id: row.customer_id.clone(),
            currency: Currency::parse(&row.currency),
            due_date,
            lines,
            metadata: Metadata::new(),
            subscription: Some(SubscriptionPeriod {
                subscription_id: row.id.clone(),
                period: span,
                billing_reason: reason,
            }),
        },
    )
    .await?;
    invoices::finalize(conn, ctx, &draft.id).await
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Subscription> {
    let row = subscriptions::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("subscription"))?;
    let items = subscriptions::items(conn, tenant, id).await?;
    Ok(row.with_items(items))
}

pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<Subscription>> {
    let rows = subscriptions::list(conn, tenant, page, filter).await?;
    let mut data = Vec::with_capacity(rows.data.len());
    for row in rows.data {
        let items = subscriptions::items(conn, tenant, &row.id).await?;
        data.push(row.with_items(items));
    }
    Ok(Page {
        data,
        has_more: rows.has_more,
    })
}

async fn lock(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<SubscriptionRow> {
    subscriptions::find_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("subscription"))
}

/// Cancels now (nothing more is billed; the current period is not credited: proration of
/// cancellations comes with subscription changes), or at the end of the current period.
pub async fn cancel(conn: &mut AnyConnection, ctx: &Ctx, id: &str, at_period_end: bool) -> Result<Subscription> {
    let row = lock(conn, ctx, id).await?;
    // Refused before anything is written (see `operation`).
    domain::transition(row.status, Action::Cancel)?;
    // A period that started before now is owed even if the cycle has not billed it yet (a late
    // scheduler must not make a cancellation cheaper): bill what is due first.
    advance(conn, ctx, id, ctx.now, usize::MAX).await?;
    let mut row = lock(conn, ctx, id).await?;
    if row.status == Status::Canceled {
        // It ended at the end of its period, as it had been told to, before this request.
        let items = subscriptions::items(conn, &ctx.tenant, id).await?;
        return Ok(row.with_items(items));
    }
    let status = domain::transition(row.status, Action::Cancel)?;
    row.canceled_at = Some(ctx.now);
    let event = if at_period_end {
        row.cancel_at_period_end = true;
        "subscription.updated"
    } else {
        row.status = status;
        row.ended_at = Some(ctx.now);
        row.next_action_at = None;
        "subscription.canceled"
    };
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let subscription = row.with_items(items);
    ctx.audit(conn, event, id).await?;
    ctx.emit(conn, event, &subscription).await?;
    Ok(subscription)
}

fn cycle_of(row: &SubscriptionRow) -> Result<(Cycle, Cadence)> {
    let broken = |what: &str| Error::Db(sqlx::Error::Decode(format!("subscription {}: {what}", row.id).into()));
    let anchor = Anchor::from_stored(&row.anchor, &row.time_zone).ok_or_else(|| broken("unreadable anchor"))?;
    let cadence = Cadence::new(
        row.recurring.interval.unit(),
        u16::try_from(row.recurring.interval_count).unwrap_or(0),
    )
    .ok_or_else(|| broken("unreadable interval"))?;
    Ok((
        Cycle {
            status: row.status,
            anchor,
            cadence,
            index: row.period_index,
            period: (row.current_period_start, row.current_period_end),
            anchor_fixed: row.anchor_fixed,
            cancel_at_period_end: row.cancel_at_period_end,
        },
        cadence,
    ))
}

/// Applies what fell due by `until` (at most `max` steps), in the caller's transaction: each
/// period's invoice, the trial's end, a cancellation at a period's end. Returns the number of
/// periods billed. A subscription with nothing due is left as it is, so a second runner that
/// reaches it after the first does nothing.
pub async fn advance(conn: &mut AnyConnection, ctx: &Ctx, id: &str, until: i64, max: usize) -> Result<usize> {
    let mut row = lock(conn, ctx, id).await?;
    let (cycle, cadence) = cycle_of(&row)?;
    let (steps, after) = domain::due(&cycle, until, max).map_err(calendar_error)?;
    if steps.is_empty() {
        // Nothing is due: the stored next action must say so, or the cycle would claim this
        // subscription again and again.
        let next = (row.status.bills() || row.status == Status::Trialing).then_some(row.current_period_end);
        if row.next_action_at != next {
            row.next_action_at = next;
            subscriptions::update(conn, &ctx.tenant, &row).await?;
        }
        return Ok(0);
    }
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let mut prices: HashMap<String, Price> = HashMap::new();
    for item in &items {
        if !prices.contains_key(&item.price) {
            let price = catalog::find_price(conn, &ctx.tenant, &item.price)
                .await?
                .ok_or(Error::NotFound("price"))?;
            prices.insert(item.price.clone(), price);
        }
    }
    let item_prices: Vec<Price> = items
        .iter()
        .filter_map(|item| prices.get(&item.price).cloned())
        .collect();
    let mut billed = 0;
    let mut events = Vec::new();
    for step in &steps {
        match step {
            Step::TrialEnded { index, period } | Step::Renewed { index, period } => {
                let (reason, nominal) = match step {
                    Step::TrialEnded { .. } => {
                        events.push("subscription.updated");
                        let anchor = if after.anchor_fixed {
                            &cycle.anchor
                        } else {
                            &after.anchor
                        };
                        (
                            "subscription_cycle",
                            anchor.period(cadence, *index).map_err(calendar_error)?,
                        )
                    }
                    _ => ("subscription_cycle", *period),
                };
                bill_period(conn, ctx, &row, &items, &item_prices, *period, nominal, reason).await?;
                billed += 1;
            }
            Step::Canceled { at } => {
                row.ended_at = Some(*at);
                events.push("subscription.canceled");
            }
        }
    }
    let (local, _) = after.anchor.to_stored();
    row.status = after.status;
    row.anchor = local;
    row.period_index = after.index;
    row.current_period_start = after.period.0;
    row.current_period_end = after.period.1;
    row.next_action_at = (after.status != Status::Canceled).then_some(after.period.1);
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    let subscription = row.with_items(items);
    for event in events {
        ctx.audit(conn, event, id).await?;
        ctx.emit(conn, event, &subscription).await?;
    }
    Ok(billed)
}

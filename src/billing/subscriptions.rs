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
use crate::domain::invoice::Refusal;
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::domain::pricing;
use crate::domain::proration;
use crate::domain::subscription::{self as domain, Action, Cycle, Status, Step};
use crate::objects::{
    CollectionMethod, Invoice, Period, PlannedLine, Price, Recurring, Subscription, SubscriptionItem, UpcomingInvoice,
};
use crate::operation::{Ctx, Error, Result};
use crate::store::charges::{self, ChargeRow};
use crate::store::page::{Page, PageQuery};
use crate::store::subscriptions::{self, Filter, SubscriptionRow};
use crate::store::{catalog, credits, customers, tenants};

use super::changes::planned_line;
use super::invoices::{self, NewInvoice, NewLine, SubscriptionPeriod};
use super::usage;

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

pub(super) fn calendar_error(e: CalendarError) -> Error {
    Error::invalid("billing_cycle_anchor", "out_of_range", e.to_string())
}

/// The prices of `items`, checked against each other and the customer: active, one currency,
/// one interval (422 `price_inactive`, `currency_mismatch`, `interval_mismatch`).
pub(super) async fn checked_prices(
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
        // The first price must be in the customer's currency; the others like the first.
        let (currency, recurring) = match prices.first() {
            Some(first) => (Some(first.currency.as_str()), Some(first.recurring.every())),
            None => (customer_currency, None),
        };
        check_price(
            &price,
            &format!("items[{i}]"),
            item.quantity,
            true,
            currency,
            recurring.as_ref(),
        )?;
        prices.push(price);
    }
    let quantities: Vec<i64> = items.iter().map(|i| i.quantity).collect();
    period_lines(&quantities, &prices)?;
    Ok(prices)
}

/// 422 `duplicate_meter` when two items bill one meter, of this subscription or of another of
/// the customer's that has not ended (`except` is the subscription being changed): usage is the
/// customer's, and it would be billed twice.
pub(super) async fn one_item_per_meter(
    conn: &mut AnyConnection,
    tenant: &str,
    customer: &str,
    except: Option<&str>,
    prices: &[Price],
) -> Result<()> {
    if prices.iter().all(|p| p.meter().is_none()) {
        return Ok(());
    }
    let elsewhere = subscriptions::meters_billed(conn, tenant, customer, except).await?;
    for (i, price) in prices.iter().enumerate() {
        if let Some(meter) = price.meter()
            && (prices[..i].iter().any(|p| p.meter() == Some(meter)) || elsewhere.iter().any(|m| m == meter))
        {
            return Err(Error::invalid(
                &format!("items[{i}].price"),
                "duplicate_meter",
                format!("another item of the customer's subscriptions already bills the usage of {meter}"),
            ));
        }
    }
    Ok(())
}

/// How many lines each period's invoice has for items of `quantities` at `prices` (one per item,
/// tier reached and tier flat fee; for a metered item, as many as its tiers could make);
/// 422 `too_many_invoice_lines` past an invoice's limit, which would make every period
/// unbillable.
pub(super) fn period_lines(quantities: &[i64], prices: &[Price]) -> Result<usize> {
    let lines: usize = quantities
        .iter()
        .zip(prices)
        .filter_map(|(quantity, price)| match price.meter() {
            Some(_) => Some(price.tiers.as_ref().map_or(1, |tiers| 2 * tiers.len())),
            None => Some(pricing::period_rows(&price.model()?, *quantity)?.len()),
        })
        .sum();
    if lines > MAX_LINES {
        return Err(Error::invalid(
            "items",
            "too_many_invoice_lines",
            format!("each period would be billed on {lines} lines; an invoice has at most {MAX_LINES}"),
        ));
    }
    Ok(lines)
}

/// Whether `price` can bill an item of `quantity` (`field` is the item's place in the request):
/// active, when `newly_chosen` (an item keeps a price that has since been archived or replaced),
/// in `currency` and every `recurring` when they are set, and not too large for the quantity
/// (422 `price_inactive`, `currency_mismatch`, `interval_mismatch`, `amount_too_large`).
pub(super) fn check_price(
    price: &Price,
    field: &str,
    quantity: i64,
    newly_chosen: bool,
    currency: Option<&str>,
    recurring: Option<&Recurring>,
) -> Result<()> {
    let price_field = format!("{field}.price");
    if newly_chosen && !price.active {
        return Err(Error::invalid(
            &price_field,
            "price_inactive",
            format!("{} is inactive{}", price.id, superseded_note(price)),
        ));
    }
    if let Some(currency) = currency.filter(|c| *c != price.currency) {
        return Err(Error::invalid(
            &price_field,
            "currency_mismatch",
            format!("the price must be in {currency}, as the subscription (and its customer) are billed"),
        ));
    }
    if recurring.is_some_and(|r| *r != price.recurring.every()) {
        return Err(Error::invalid(
            &price_field,
            "interval_mismatch",
            "every item's price must have the same interval",
        ));
    }
    if price.meter().is_some() {
        // What a metered item owes is its usage, known at the end of each period.
        if quantity != 1 {
            return Err(Error::invalid(
                &format!("{field}.quantity"),
                "quantity_not_allowed",
                "a metered price bills its meter's usage, not a quantity",
            ));
        }
        return Ok(());
    }
    if price
        .model()
        .and_then(|m| pricing::period_amount(&m, quantity))
        .is_none()
    {
        return Err(Error::invalid(
            &format!("{field}.quantity"),
            "amount_too_large",
            "the price for this quantity is too large",
        ));
    }
    Ok(())
}

fn superseded_note(price: &Price) -> String {
    price
        .superseded_by
        .as_ref()
        .map(|next| format!(" (replaced by {next})"))
        .unwrap_or_default()
}

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, input: NewSubscription) -> Result<Subscription> {
    let ctx = &super::test_clocks::for_customer(conn, ctx, &input.customer_id).await?;
    let customer = customers::find(conn, &ctx.tenant, &input.customer_id)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let prices = checked_prices(conn, &ctx.tenant, &input.items, customer.currency.as_deref()).await?;
    one_item_per_meter(conn, &ctx.tenant, &customer.id, None, &prices).await?;
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
    // Not given: the tenant's default (`billing-api tenant configure --time-zone`), else UTC.
    let zone = match input.time_zone {
        Some(zone) => zone,
        None => tenants::time_zone(conn, &ctx.tenant)
            .await?
            .unwrap_or_else(|| "UTC".to_owned()),
    };
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
        recurring: first.recurring.every(),
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
        metered: prices.iter().any(|p| p.meter().is_some()),
    };
    subscriptions::insert(conn, &ctx.tenant, &row).await?;
    if row.metered {
        subscriptions::mark_metered(conn, &ctx.tenant, &row.id).await?;
    }
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
        let bills = period_bill(
            conn,
            &ctx.tenant,
            &mut Names::default(),
            &items,
            &prices,
            period,
            nominal,
        )
        .await?;
        bill_period(conn, ctx, &row, bills, period, "subscription_create").await?;
    }
    let subscription = row.with_items(items);
    ctx.audit(conn, "subscription.created", &subscription.id).await?;
    ctx.emit(conn, "subscription.created", &subscription).await?;
    Ok(subscription)
}

/// The names lines give prices (a price's nickname, else its product's name), read once each.
#[derive(Default)]
pub(super) struct Names(HashMap<String, String>);

impl Names {
    pub(super) async fn of(&mut self, conn: &mut AnyConnection, tenant: &str, price: &Price) -> Result<String> {
        if let Some(name) = self.0.get(&price.id) {
            return Ok(name.clone());
        }
        let name = match &price.nickname {
            Some(nickname) => nickname.clone(),
            None => catalog::find_product(conn, tenant, &price.product_id)
                .await?
                .map_or_else(|| price.id.clone(), |p| p.name),
        };
        self.0.insert(price.id.clone(), name.clone());
        Ok(name)
    }
}

/// What one item is charged for a period: its lines (one per tier and tier fee, or one for the
/// share of a partial period) and their sum, which proration credits from.
pub(super) struct ItemBill {
    pub item_id: String,
    pub price_id: String,
    pub quantity: i64,
    pub description: String,
    pub amount: i64,
    pub lines: Vec<NewLine>,
}

/// What billing `period` (part of the nominal period `nominal`: a first period that starts
/// between two billing days is charged its share, rounded once) charges each item. Nothing is
/// written: the cycle bills it, the upcoming invoice shows it.
pub(super) async fn period_bill(
    conn: &mut AnyConnection,
    tenant: &str,
    names: &mut Names,
    items: &[SubscriptionItem],
    prices: &[Price],
    period: (i64, i64),
    nominal: (i64, i64),
) -> Result<Vec<ItemBill>> {
    let partial = period != nominal;
    let span = Period {
        start: period.0,
        end: period.1,
    };
    let mut bills = Vec::with_capacity(items.len());
    for (item, price) in items.iter().zip(prices) {
        if price.meter().is_some() {
            // Billed in arrears, by `usage`.
            continue;
        }
        let name = names.of(conn, tenant, price).await?;
        let model = price.model().ok_or(Error::NotFound("price"))?;
        let too_large = || Error::invalid("items", "amount_too_large", "the period's amount is too large");
        let full = pricing::period_amount(&model, item.quantity).ok_or_else(too_large)?;
        let description = format!("{name} × {}", item.quantity);
        let mut lines = Vec::new();
        let amount = if partial {
            // One line for the share of the period: the full amount prorated, rounded once.
            let share = proration::remaining_debit(full, nominal, period.0).ok_or_else(too_large)?;
            lines.push(NewLine {
                description: format!("{description} (part of a period)"),
                quantity: 1,
                unit_amount: share,
                tax_rate_bps: None,
                price_id: Some(price.id.clone()),
                period: Some(span),
            });
            share
        } else {
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
            full
        };
        bills.push(ItemBill {
            item_id: item.id.clone(),
            price_id: price.id.clone(),
            quantity: item.quantity,
            description,
            amount,
            lines,
        });
    }
    Ok(bills)
}

/// A pending proration charge as an invoice line.
pub(super) fn pending_line(charge: &ChargeRow) -> NewLine {
    NewLine {
        description: charge.description.clone(),
        quantity: 1,
        unit_amount: charge.amount,
        tax_rate_bps: None,
        price_id: Some(charge.price_id.clone()),
        period: Some(Period {
            start: charge.period_start,
            end: charge.period_end,
        }),
    }
}

/// When an invoice the subscription makes now is due.
pub(super) fn due_date(row: &SubscriptionRow, now: i64) -> i64 {
    match row.collection_method {
        CollectionMethod::SendInvoice => now + row.days_until_due.unwrap_or(30) * 86_400,
        CollectionMethod::ChargeAutomatically => now,
    }
}

/// Creates and finalizes the invoice of `period`: each item's charge for it, then the proration
/// charges waiting for an invoice. Each item's charge is recorded for later credits.
async fn bill_period(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    bills: Vec<ItemBill>,
    period: (i64, i64),
    reason: &'static str,
) -> Result<Invoice> {
    let pending = charges::pending(conn, &ctx.tenant, &row.id).await?;
    let mut lines: Vec<NewLine> = bills.iter().flat_map(|b| b.lines.iter().cloned()).collect();
    lines.extend(pending.iter().map(pending_line));
    let usage_lines = usage_waiting(conn, ctx, row).await?;
    let has_usage = !usage_lines.is_empty();
    lines.extend(usage_lines);
    let span = Period {
        start: period.0,
        end: period.1,
    };
    // The charges are recorded while the invoice is a draft: finalizing takes the tenant's
    // next number, whose row then stays locked until the transaction ends.
    let draft = draft_invoice(conn, ctx, row, lines, Some(span), reason).await?;
    if !pending.is_empty() {
        charges::attach_pending(conn, &ctx.tenant, &row.id, draft.id()).await?;
    }
    if has_usage {
        usage::attach_pending(conn, &ctx.tenant, row, draft.id()).await?;
    }
    for bill in bills {
        charges::insert(
            conn,
            &ctx.tenant,
            &ChargeRow {
                id: new_id(Kind::SubscriptionCharge),
                subscription_id: row.id.clone(),
                item_id: bill.item_id,
                price_id: bill.price_id,
                quantity: bill.quantity,
                description: bill.description,
                amount: bill.amount,
                period_start: period.0,
                period_end: period.1,
                credited: 0,
                covered_until: period.1,
                invoice_id: Some(draft.id().to_owned()),
                created: ctx.now,
            },
        )
        .await?;
    }
    invoices::finalize_draft(conn, ctx, draft).await
}

/// The usage lines the subscription's next invoice takes: what late events add to windows
/// already billed (`usage::adjust`), then every usage line waiting.
async fn usage_waiting(conn: &mut AnyConnection, ctx: &Ctx, row: &SubscriptionRow) -> Result<Vec<NewLine>> {
    if !row.metered {
        return Ok(Vec::new());
    }
    usage::adjust(conn, ctx, row).await?;
    usage::pending_lines(conn, &ctx.tenant, row).await
}

/// Creates and finalizes one of the subscription's invoices.
async fn make_invoice(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    lines: Vec<NewLine>,
    period: Option<Period>,
    reason: &'static str,
) -> Result<Invoice> {
    let draft = draft_invoice(conn, ctx, row, lines, period, reason).await?;
    invoices::finalize_draft(conn, ctx, draft).await
}

/// Creates one of the subscription's invoices, as a draft.
async fn draft_invoice(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    lines: Vec<NewLine>,
    period: Option<Period>,
    reason: &'static str,
) -> Result<invoices::Draft> {
    invoices::create_draft(
        conn,
        ctx,
        NewInvoice {
            customer_id: row.customer_id.clone(),
            currency: Currency::parse(&row.currency),
            due_date: Some(due_date(row, ctx.now)),
            lines,
            metadata: Metadata::new(),
            subscription: Some(SubscriptionPeriod {
                subscription_id: row.id.clone(),
                period,
                billing_reason: reason,
            }),
        },
    )
    .await
}

/// Invoices the proration charges and usage waiting for an invoice, if any, at once (a change
/// with `always_invoice`, a pause, the end of a subscription).
pub(super) async fn invoice_pending(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    reason: &'static str,
) -> Result<Option<Invoice>> {
    let pending = charges::pending(conn, &ctx.tenant, &row.id).await?;
    let usage_lines = usage_waiting(conn, ctx, row).await?;
    if pending.is_empty() && usage_lines.is_empty() {
        return Ok(None);
    }
    let has_usage = !usage_lines.is_empty();
    let mut lines: Vec<NewLine> = pending.iter().map(pending_line).collect();
    lines.extend(usage_lines);
    let invoice = make_invoice(conn, ctx, row, lines, None, reason).await?;
    charges::attach_pending(conn, &ctx.tenant, &row.id, &invoice.id).await?;
    if has_usage {
        usage::attach_pending(conn, &ctx.tenant, row, &invoice.id).await?;
    }
    Ok(Some(invoice))
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
    // Every subscription's items in one query, not one per subscription.
    let ids: Vec<&str> = rows.data.iter().map(|r| r.id.as_str()).collect();
    let mut items = subscriptions::items_of(conn, tenant, &ids).await?;
    let data = rows
        .data
        .into_iter()
        .map(|row| {
            let mine = items.remove(&row.id).unwrap_or_default();
            row.with_items(mine)
        })
        .collect();
    Ok(Page {
        data,
        has_more: rows.has_more,
    })
}

pub(super) async fn lock(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<SubscriptionRow> {
    subscriptions::find_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("subscription"))
}

/// Puts an active subscription with an invoice still owed that was due at `due_by` or before in
/// `past_due`, and a past-due one with none left back in `active` (event
/// `subscription.updated`). Answers whether its status changed.
pub async fn update_standing(conn: &mut AnyConnection, ctx: &Ctx, id: &str, due_by: i64) -> Result<bool> {
    let mut row = lock(conn, ctx, id).await?;
    let overdue = subscriptions::has_overdue(conn, &ctx.tenant, id, due_by).await?;
    let action = match (row.status, overdue) {
        (Status::Active, true) => Action::Overdue,
        (Status::PastDue, false) => Action::Settled,
        _ => return Ok(false),
    };
    row.status = domain::transition(row.status, action)?;
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let subscription = row.with_items(items);
    ctx.audit(conn, "subscription.updated", id).await?;
    ctx.emit(conn, "subscription.updated", &subscription).await?;
    Ok(true)
}

/// Cancels now (nothing more is billed; with `prorate`, the unused rest of what the current
/// period was charged is credited to the customer), or at the end of the current period.
pub async fn cancel(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    at_period_end: bool,
    prorate: bool,
) -> Result<Subscription> {
    let ctx = &super::test_clocks::for_subscription(conn, ctx, id).await?;
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
    let before = row.status;
    // A paused subscription has no period running to wait for the end of: it ends now.
    let at_period_end = at_period_end && row.status != Status::Paused;
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
    if row.status == Status::Canceled {
        // Usage up to now is billed on the last invoice (none while trialing or paused).
        bill_usage_to(conn, ctx, &row, ctx.now, before.bills()).await?;
        if prorate {
            super::changes::credit_all(conn, ctx, &row, ctx.now).await?;
        }
        invoice_pending(conn, ctx, &row, "subscription_cancel").await?;
    }
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let subscription = row.with_items(items);
    ctx.audit(conn, event, id).await?;
    ctx.emit(conn, event, &subscription).await?;
    Ok(subscription)
}

/// Pauses now: nothing is billed while paused, and the unused rest of what the current period
/// was charged is credited to the customer (they do not pay for time paused). What was due
/// before now is billed first.
pub async fn pause(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Subscription> {
    let ctx = &super::test_clocks::for_subscription(conn, ctx, id).await?;
    let row = lock(conn, ctx, id).await?;
    domain::transition(row.status, Action::Pause)?;
    if row.cancel_at_period_end {
        // Paused, it would never reach the period end it is to end at.
        return Err(Refusal {
            code: "invalid_state_transition",
            message: "this subscription ends at the end of its period: cancel it now instead of pausing it".into(),
        }
        .into());
    }
    advance(conn, ctx, id, ctx.now, usize::MAX).await?;
    let mut row = lock(conn, ctx, id).await?;
    // It may have ended at its period's end just now, as it had been told to.
    let before = row.status;
    row.status = domain::transition(row.status, Action::Pause)?;
    row.next_action_at = None;
    super::changes::credit_all(conn, ctx, &row, ctx.now).await?;
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    if row.metered {
        // The usage so far is invoiced now, with the charges waiting: a pause may be long.
        bill_usage_to(conn, ctx, &row, ctx.now, before.bills()).await?;
        invoice_pending(conn, ctx, &row, "subscription_update").await?;
    }
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let subscription = row.with_items(items);
    ctx.audit(conn, "subscription.paused", id).await?;
    ctx.emit(conn, "subscription.paused", &subscription).await?;
    Ok(subscription)
}

/// Resumes a paused subscription: a new period starts now (up to the next billing day, charged
/// its share, when it has one; a whole period from now otherwise) and is invoiced at once, with
/// any proration charges waiting.
pub async fn resume(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<Subscription> {
    let ctx = &super::test_clocks::for_subscription(conn, ctx, id).await?;
    let mut row = lock(conn, ctx, id).await?;
    let status = domain::transition(row.status, Action::Resume)?;
    let now = ctx.now;
    if now <= row.current_period_start {
        // The new period would start where one was billed already (one invoice per period).
        return Err(Refusal {
            code: "invalid_state_transition",
            message: "a subscription resumes after the start of the period it was paused in".into(),
        }
        .into());
    }
    let (cycle, cadence) = cycle_of(&row)?;
    let anchor = if row.anchor_fixed {
        cycle.anchor
    } else {
        Anchor::at(now, cycle.anchor.time_zone().clone()).map_err(calendar_error)?
    };
    let index = anchor.index_at(cadence, now).map_err(calendar_error)?;
    let nominal = anchor.period(cadence, index).map_err(calendar_error)?;
    let period = (now, nominal.1);
    row.status = status;
    row.anchor = anchor.to_stored().0;
    row.period_index = index;
    row.current_period_start = period.0;
    row.current_period_end = period.1;
    row.next_action_at = Some(period.1);
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    let items = subscriptions::items(conn, &ctx.tenant, id).await?;
    let prices = prices_of(conn, &ctx.tenant, &items).await?;
    // Usage while paused is not billed: metered items count again from now.
    usage::settle(conn, ctx, &row, &usage::metered(&items, &prices), now, false).await?;
    let bills = period_bill(
        conn,
        &ctx.tenant,
        &mut Names::default(),
        &items,
        &prices,
        period,
        nominal,
    )
    .await?;
    bill_period(conn, ctx, &row, bills, period, "subscription_resume").await?;
    let subscription = row.with_items(items);
    ctx.audit(conn, "subscription.resumed", id).await?;
    ctx.emit(conn, "subscription.resumed", &subscription).await?;
    Ok(subscription)
}

/// Bills the usage of the subscription's metered items up to `until` (`bill` false: moves
/// their windows there without billing), to wait for the next invoice.
async fn bill_usage_to(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    until: i64,
    bill: bool,
) -> Result<()> {
    if !row.metered {
        return Ok(());
    }
    let items = subscriptions::items(conn, &ctx.tenant, &row.id).await?;
    let prices = prices_of(conn, &ctx.tenant, &items).await?;
    usage::settle(conn, ctx, row, &usage::metered(&items, &prices), until, bill).await
}

/// The price of each item, in order.
pub(super) async fn prices_of(
    conn: &mut AnyConnection,
    tenant: &str,
    items: &[SubscriptionItem],
) -> Result<Vec<Price>> {
    prices_by_id(conn, tenant, items.iter().map(|i| i.price.as_str())).await
}

/// The prices of `ids`, in order, each read once.
pub(super) async fn prices_by_id<'a>(
    conn: &mut AnyConnection,
    tenant: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Vec<Price>> {
    let mut prices: HashMap<&str, Price> = HashMap::new();
    let mut out = Vec::new();
    for id in ids {
        let price = match prices.get(id) {
            Some(price) => price.clone(),
            None => {
                let price = catalog::find_price(conn, tenant, id)
                    .await?
                    .ok_or(Error::NotFound("price"))?;
                prices.insert(id, price.clone());
                price
            }
        };
        out.push(price);
    }
    Ok(out)
}

pub(super) fn cycle_of(row: &SubscriptionRow) -> Result<(Cycle, Cadence)> {
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

/// The whole period a billing step's period is part of: itself, except for the first paid
/// period after a trial on a chosen billing day, which is a share of one.
pub(super) fn nominal_period(cycle: &Cycle, after: &Cycle, cadence: Cadence, step: &Step) -> Result<(i64, i64)> {
    match step {
        Step::TrialEnded { index, .. } => {
            let anchor = if after.anchor_fixed {
                &cycle.anchor
            } else {
                &after.anchor
            };
            anchor.period(cadence, *index).map_err(calendar_error)
        }
        Step::Renewed { period, .. } => Ok(*period),
        Step::Canceled { at } => Ok((*at, *at)),
    }
}

/// Applies what fell due by `until` (at most `max` steps), in the caller's transaction: each
/// period's invoice, the trial's end, a cancellation at a period's end. Returns the number of
/// periods billed. A subscription with nothing due is left as it is, so a second runner that
/// reaches it after the first does nothing.
pub async fn advance(conn: &mut AnyConnection, ctx: &Ctx, id: &str, until: i64, max: usize) -> Result<usize> {
    let row = lock(conn, ctx, id).await?;
    advance_locked(conn, ctx, row, until, max).await
}

/// [`advance`] for a subscription the transaction has locked already (the cycle's claim).
pub async fn advance_locked(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    mut row: SubscriptionRow,
    until: i64,
    max: usize,
) -> Result<usize> {
    let id = row.id.clone();
    let id = id.as_str();
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
    let item_prices = prices_of(conn, &ctx.tenant, &items).await?;
    // The subscription moves first, and its invoices are made after: each takes the tenant's
    // next number as it is finalized, which holds the tenant's counter until the commit.
    let ended = steps.iter().find_map(|step| match step {
        Step::Canceled { at } => Some(*at),
        _ => None,
    });
    if ended.is_some() {
        row.ended_at = ended;
    }
    let (local, _) = after.anchor.to_stored();
    row.status = after.status;
    row.anchor = local;
    row.period_index = after.index;
    row.current_period_start = after.period.0;
    row.current_period_end = after.period.1;
    row.next_action_at = (after.status != Status::Canceled).then_some(after.period.1);
    subscriptions::update(conn, &ctx.tenant, &row).await?;
    let mut names = Names::default();
    let mut billed = 0;
    let mut events = Vec::new();
    let metered = usage::metered(&items, &item_prices);
    // Usage is billed when the period it happened in ends: none of a trial's.
    let mut trialing = cycle.status == Status::Trialing;
    for step in &steps {
        match step {
            Step::TrialEnded { period, .. } | Step::Renewed { period, .. } => {
                usage::settle(conn, ctx, &row, &metered, period.0, !trialing).await?;
                if matches!(step, Step::TrialEnded { .. }) {
                    events.push("subscription.updated");
                    trialing = false;
                }
                let nominal = nominal_period(&cycle, &after, cadence, step)?;
                let bills = period_bill(conn, &ctx.tenant, &mut names, &items, &item_prices, *period, nominal).await?;
                bill_period(conn, ctx, &row, bills, *period, "subscription_cycle").await?;
                billed += 1;
            }
            Step::Canceled { at } => {
                usage::settle(conn, ctx, &row, &metered, *at, !trialing).await?;
                events.push("subscription.canceled");
            }
        }
    }
    let ended = ended.is_some();
    if ended {
        // Proration charges still waiting for an invoice are billed now: there is no next one.
        invoice_pending(conn, ctx, &row, "subscription_cancel").await?;
    }
    let subscription = row.with_items(items);
    for event in events {
        ctx.audit(conn, event, id).await?;
        ctx.emit(conn, event, &subscription).await?;
    }
    Ok(billed)
}

/// The subscription's next invoice, as the cycle will make it: the next period's charges, the
/// proration charges waiting for an invoice and, for metered items, the usage counted so far of
/// the window the invoice will bill, with what late events add; computed by the code that bills
/// them, less the customer's credit as it stands now. 409 `no_upcoming_invoice` when nothing
/// more will be invoiced (canceled, or ending with nothing left to charge).
pub async fn upcoming(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<UpcomingInvoice> {
    let row = subscriptions::find(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("subscription"))?;
    let none = || -> Error {
        Refusal {
            code: "no_upcoming_invoice",
            message: "nothing more will be invoiced for this subscription".into(),
        }
        .into()
    };
    let (cycle, cadence) = cycle_of(&row)?;
    let (steps, after) = domain::due(&cycle, cycle.period.1, 1).map_err(calendar_error)?;
    let step = steps.first().ok_or_else(none)?;
    let pending: Vec<PlannedLine> = charges::pending(conn, tenant, id)
        .await?
        .iter()
        .map(|c| planned_line(pending_line(c)))
        .collect();
    let items = subscriptions::items(conn, tenant, id).await?;
    let prices = prices_of(conn, tenant, &items).await?;
    let (mut lines, period, issued_at, reason) = match step {
        Step::TrialEnded { period, .. } | Step::Renewed { period, .. } => {
            let nominal = nominal_period(&cycle, &after, cadence, step)?;
            let bills = period_bill(conn, tenant, &mut Names::default(), &items, &prices, *period, nominal).await?;
            let lines: Vec<PlannedLine> = bills.into_iter().flat_map(|b| b.lines).map(planned_line).collect();
            (lines, Some(*period), period.0, "subscription_cycle")
        }
        Step::Canceled { at } => (Vec::new(), None, *at, "subscription_cancel"),
    };
    lines.extend(pending);
    let mut credited = 0;
    if row.metered {
        // As the invoice will be made, at `issued_at`: events not sent yet are not counted.
        let now = issued_at;
        // In the order the invoice will have them: waiting, then this window, then late usage.
        let mut usage_lines = usage::pending_lines(conn, tenant, &row).await?;
        if row.status.bills() {
            let metered = usage::metered(&items, &prices);
            usage_lines.extend(usage::settle_preview(conn, tenant, &row, &metered, now).await?);
        }
        let (adjustments, credits) = usage::adjust_preview(conn, tenant, &row, now).await?;
        usage_lines.extend(adjustments);
        credited = credits;
        lines.extend(usage_lines.into_iter().map(planned_line));
    }
    if lines.is_empty() {
        return Err(none());
    }
    let balance = credits::balance(conn, tenant, &row.customer_id, &row.currency).await? + credited;
    Ok(super::changes::upcoming(
        &row, lines, period, issued_at, reason, balance,
    ))
}

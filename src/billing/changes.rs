//! Changing a subscription in the middle of a period (items' prices and quantities, items added or
//! removed), and previewing a change.
//!
//! One planner serves both: [`plan`] reads the subscription and works out everything the change
//! does (the items after it, the credits for unused time, the charges for the rest of the period,
//! the invoice it makes at once); [`update`] writes that plan, [`preview`] returns it. A preview
//! is therefore the change itself, minus the writes (lago-api #5522: previews computed apart from
//! the real change disagreed with it).
//!
//! Proration (`domain::proration`): a changed or removed item is credited the unused part of what
//! it was actually charged (its `subscription_charges`), and a changed or added item is charged
//! its new price for the rest of the nominal period. Credits go to the customer's credit balance
//! at once and are applied to the next invoices finalized; charges wait for the next period's
//! invoice (`create_prorations`) or are invoiced at once (`always_invoice`).
use std::collections::HashSet;

use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::{MAX_LINES, Refusal};
use crate::domain::ledger;
use crate::domain::metadata::Metadata;
use crate::domain::pricing;
use crate::domain::proration::{self, Charge};
use crate::domain::subscription::Status;
use crate::objects::{
    Period, PlannedCredit, PlannedLine, Price, Subscription, SubscriptionChangePreview, SubscriptionItem,
    UpcomingInvoice,
};
use crate::operation::{Ctx, Error, Result};
use crate::store::charges::{self, ChargeRow};
use crate::store::ledger::{Movement, post};
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{catalog, credits};

use super::invoices::NewLine;
use super::merge_metadata;
use super::subscriptions::{
    MAX_ITEMS, Names, advance, calendar_error, check_price, cycle_of, lock, one_item_per_meter, pending_line,
    period_lines, prices_of,
};
use super::usage;

/// What a change does to the current period, as Stripe's `proration_behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProrationBehavior {
    /// Credit the unused time now; charge the rest of the period on the next invoice.
    CreateProrations,
    /// The same, and invoice the charges at once.
    AlwaysInvoice,
    /// No credit, no charge: the new prices apply from the next period.
    None,
}

impl ProrationBehavior {
    pub const ALL: [ProrationBehavior; 3] = [
        ProrationBehavior::CreateProrations,
        ProrationBehavior::AlwaysInvoice,
        ProrationBehavior::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProrationBehavior::CreateProrations => "create_prorations",
            ProrationBehavior::AlwaysInvoice => "always_invoice",
            ProrationBehavior::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<ProrationBehavior> {
        ProrationBehavior::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// One change to the items.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemChange {
    Add {
        price_id: String,
        quantity: i64,
    },
    Update {
        id: String,
        price_id: Option<String>,
        quantity: Option<i64>,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Clone)]
pub struct Change {
    pub items: Vec<ItemChange>,
    pub proration_behavior: ProrationBehavior,
    /// The instant the change takes effect for proration (now when not given); within the
    /// current period.
    pub proration_date: Option<i64>,
    pub cancel_at_period_end: Option<bool>,
    pub metadata: Option<Metadata>,
}

/// A credit for the unused time of one charge.
struct Credit {
    /// The charge after the credit.
    charge: ChargeRow,
    shown: PlannedCredit,
}

/// Everything a change does, worked out before anything is written.
struct Plan {
    at: i64,
    /// The subscription after the change, and its items.
    row: SubscriptionRow,
    items: Vec<SubscriptionItem>,
    added: Vec<SubscriptionItem>,
    updated: Vec<SubscriptionItem>,
    deleted: Vec<String>,
    credits: Vec<Credit>,
    /// Charges cut by the change that give no credit (nothing left of them to give).
    cut: Vec<ChargeRow>,
    /// Charges for the rest of the period, pending (not on an invoice yet).
    debits: Vec<ChargeRow>,
    invoice_now: bool,
    /// Metered items whose usage is billed up to `at` (removed, or moved to another price), as
    /// they were.
    usage_ends: Vec<(SubscriptionItem, Price)>,
    /// Metered items whose usage counts from `at` (added, or moved to a metered price).
    usage_starts: Vec<String>,
}

fn refuse_canceled(row: &SubscriptionRow) -> Result<()> {
    if matches!(row.status, Status::Canceled | Status::Paused) {
        return Err(Refusal {
            code: "invalid_state_transition",
            message: format!(
                "a {} subscription cannot change{}",
                row.status.as_str(),
                if row.status == Status::Paused {
                    "; resume it first"
                } else {
                    ""
                }
            ),
        }
        .into());
    }
    Ok(())
}

/// A price a change puts on an item (or keeps on it, with a new quantity), checked like at
/// creation against the subscription's currency and interval.
async fn checked_price(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    field: &str,
    price_id: &str,
    quantity: i64,
    newly_chosen: bool,
) -> Result<Price> {
    let price = catalog::find_price(conn, tenant, price_id)
        .await?
        .ok_or(Error::NotFound("price"))?;
    check_price(
        &price,
        field,
        quantity,
        newly_chosen,
        Some(&row.currency),
        Some(&row.recurring),
    )?;
    Ok(price)
}

/// The items after `changes`, which of them are new or changed, and which were removed.
async fn apply_items(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    mut items: Vec<SubscriptionItem>,
    changes: &[ItemChange],
) -> Result<(Vec<SubscriptionItem>, HashSet<String>, Vec<String>)> {
    let mut touched: HashSet<String> = HashSet::new();
    let mut deleted = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let field = format!("items[{i}]");
        let position = |items: &[SubscriptionItem], id: &str| {
            items.iter().position(|item| item.id == id).ok_or_else(|| {
                Error::invalid(
                    &format!("{field}.id"),
                    "unknown_item",
                    format!("{id} is not an item of this subscription"),
                )
            })
        };
        if let ItemChange::Update { id, .. } | ItemChange::Delete { id } = change
            && !touched.insert(id.clone())
        {
            return Err(Error::invalid(
                &format!("{field}.id"),
                "duplicate_item",
                "an item can be changed once per request",
            ));
        }
        match change {
            ItemChange::Add { price_id, quantity } => {
                checked_price(conn, &ctx.tenant, row, &field, price_id, *quantity, true).await?;
                let item = SubscriptionItem {
                    id: new_id(Kind::SubscriptionItem),
                    object: SubscriptionItem::OBJECT,
                    price: price_id.clone(),
                    quantity: *quantity,
                    created: ctx.now,
                };
                touched.insert(item.id.clone());
                items.push(item);
            }
            ItemChange::Update { id, price_id, quantity } => {
                let at = position(&items, id)?;
                let item = &mut items[at];
                if let Some(price_id) = price_id {
                    item.price = price_id.clone();
                }
                if let Some(quantity) = quantity {
                    item.quantity = *quantity;
                }
                let (price, quantity) = (item.price.clone(), item.quantity);
                checked_price(conn, &ctx.tenant, row, &field, &price, quantity, price_id.is_some()).await?;
            }
            ItemChange::Delete { id } => {
                let at = position(&items, id)?;
                deleted.push(items.remove(at).id);
            }
        }
    }
    if items.is_empty() {
        return Err(Error::invalid(
            "items",
            "no_items",
            "a subscription keeps at least one item (cancel it instead)",
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(Error::invalid(
            "items",
            "too_many_items",
            format!("at most {MAX_ITEMS} items"),
        ));
    }
    Ok((items, touched, deleted))
}

/// The credits for the time after `at` of the charges of the items `ended`, from what each
/// charge has left (`domain::proration::unused_credit`), and the charges that end then with
/// nothing left to credit.
async fn unused_credits(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    ended: &HashSet<&str>,
    at: i64,
) -> Result<(Vec<Credit>, Vec<ChargeRow>)> {
    let (mut credits, mut cut) = (Vec::new(), Vec::new());
    for charge in charges::covering(conn, tenant, id, at).await? {
        if !ended.contains(charge.item_id.as_str()) {
            continue;
        }
        let domain = Charge {
            amount: charge.amount,
            start: charge.period_start,
            end: charge.period_end,
            credited: charge.credited,
            covered_until: charge.covered_until,
        };
        let too_large = || Error::invalid("items", "amount_too_large", "the credit is too large");
        let credit = proration::unused_credit(&domain, at).ok_or_else(too_large)?;
        let after = proration::after_credit(&domain, at, credit);
        let shown = PlannedCredit {
            description: format!("Unused time on {}", charge.description),
            amount: credit,
            price: charge.price_id.clone(),
            period: Period {
                start: at.max(charge.period_start),
                end: charge.covered_until,
            },
        };
        let charge = ChargeRow {
            credited: after.credited,
            covered_until: after.covered_until,
            ..charge
        };
        if credit > 0 {
            credits.push(Credit { charge, shown });
        } else {
            cut.push(charge);
        }
    }
    Ok((credits, cut))
}

/// Gives `credits`: each charge keeps what it has given back, the customer's credit balance
/// grows by each (one movement each, described), and the ledger moves their sum off what the
/// customer owes.
async fn give_credits(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    credits: &[Credit],
    cut: &[ChargeRow],
) -> Result<()> {
    for charge in cut.iter().chain(credits.iter().map(|c| &c.charge)) {
        charges::set_credited(conn, &ctx.tenant, &charge.id, charge.credited, charge.covered_until).await?;
    }
    let given: Vec<(i64, &str)> = credits
        .iter()
        .map(|c| (c.shown.amount, c.shown.description.as_str()))
        .collect();
    credit_balance(conn, ctx, row, &given).await
}

/// Grows the customer's credit balance by each of `credits` (amount, description: one movement
/// each), and moves their sum off what the customer owes in the ledger.
pub(super) async fn credit_balance(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    credits: &[(i64, &str)],
) -> Result<()> {
    for &(amount, description) in credits {
        credits::record(
            conn,
            &credits::Movement {
                tenant: &ctx.tenant,
                customer_id: &row.customer_id,
                currency: &row.currency,
                amount,
                description,
                subscription_id: Some(&row.id),
                invoice_id: None,
                created: ctx.now,
            },
        )
        .await?;
    }
    let credited: i64 = credits.iter().map(|c| c.0).sum();
    if credited > 0 {
        let movement = Movement {
            tenant: &ctx.tenant,
            customer_id: &row.customer_id,
            currency: &row.currency,
            source_id: &row.id,
            created: ctx.now,
        };
        post(conn, &movement, &ledger::credit(credited)).await?;
    }
    Ok(())
}

/// Credits the unused time of every item of a subscription canceled at `at` (a cancellation
/// with `prorate`).
pub(super) async fn credit_all(conn: &mut AnyConnection, ctx: &Ctx, row: &SubscriptionRow, at: i64) -> Result<()> {
    let items = subscriptions::items(conn, &ctx.tenant, &row.id).await?;
    let ended: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let (credits, cut) = unused_credits(conn, &ctx.tenant, &row.id, &ended, at).await?;
    give_credits(conn, ctx, row, &credits, &cut).await
}

/// Works out what `change` does to the subscription `id`, as it stands after what was due by now
/// is billed. Reads only.
async fn plan(conn: &mut AnyConnection, ctx: &Ctx, id: &str, change: &Change) -> Result<Plan> {
    let mut row = lock(conn, ctx, id).await?;
    refuse_canceled(&row)?;
    let at = change.proration_date.unwrap_or(ctx.now);
    if !(row.current_period_start..row.current_period_end).contains(&at) {
        return Err(Error::invalid(
            "proration_date",
            "outside_current_period",
            format!(
                "the current period is [{}, {})",
                row.current_period_start, row.current_period_end
            ),
        ));
    }
    let before = subscriptions::items(conn, &ctx.tenant, id).await?;
    let (items, touched, deleted) = apply_items(conn, ctx, &row, before.clone(), &change.items).await?;
    let prices = prices_of(conn, &ctx.tenant, &items).await?;
    one_item_per_meter(conn, &ctx.tenant, &row.customer_id, Some(&row.id), &prices).await?;
    let quantities: Vec<i64> = items.iter().map(|i| i.quantity).collect();
    let lines = period_lines(&quantities, &prices)?;
    // An item is changed when its price or quantity is; one updated to what it was is not.
    let changed = |item: &SubscriptionItem| {
        touched.contains(&item.id)
            && !before
                .iter()
                .any(|b| b.id == item.id && b.price == item.price && b.quantity == item.quantity)
    };
    let added: Vec<SubscriptionItem> = items
        .iter()
        .filter(|i| !before.iter().any(|b| b.id == i.id))
        .cloned()
        .collect();
    let updated: Vec<SubscriptionItem> = items
        .iter()
        .filter(|i| changed(i) && before.iter().any(|b| b.id == i.id))
        .cloned()
        .collect();
    // A metered item's usage is billed at the price it had when it happened: a new price starts
    // a new window at `at`.
    let repriced = |id: &str, price: &str| before.iter().any(|b| b.id == id && b.price != price);
    let before_prices = prices_of(conn, &ctx.tenant, &before).await?;
    let usage_ends: Vec<(SubscriptionItem, Price)> = before
        .iter()
        .zip(&before_prices)
        .filter(|(b, p)| {
            p.meter().is_some() && (deleted.contains(&b.id) || items.iter().any(|i| i.id == b.id && i.price != b.price))
        })
        .map(|(b, p)| (b.clone(), p.clone()))
        .collect();
    let usage_starts: Vec<String> = items
        .iter()
        .zip(&prices)
        .filter(|(i, p)| p.meter().is_some() && (added.iter().any(|a| a.id == i.id) || repriced(&i.id, &i.price)))
        .map(|(i, _)| i.id.clone())
        .collect();

    let (mut credits, mut cut) = (Vec::new(), Vec::new());
    let mut debits = Vec::new();
    // A trial charges nothing, so it has nothing to prorate; nor has a change told not to.
    let prorate = row.status.bills() && change.proration_behavior != ProrationBehavior::None;
    if prorate {
        // Changes in a period are prorated in order: one dated before an earlier one would charge
        // items for time before they had their price (or existed), and bill that time twice.
        let latest = charges::ending_at(conn, &ctx.tenant, id, row.current_period_end)
            .await?
            .iter()
            .map(|c| {
                // A charge starts at a change (or the period's start) and is cut by a later one.
                if c.covered_until < c.period_end {
                    c.period_start.max(c.covered_until)
                } else {
                    c.period_start
                }
            })
            .max();
        if let Some(latest) = latest.filter(|&latest| at < latest) {
            return Err(Error::invalid(
                "proration_date",
                "before_last_change",
                format!("the last change in this period was prorated from {latest}"),
            ));
        }
        let ended: HashSet<&str> = deleted
            .iter()
            .map(String::as_str)
            .chain(updated.iter().map(|i| i.id.as_str()))
            .collect();
        (credits, cut) = unused_credits(conn, &ctx.tenant, id, &ended, at).await?;
        let (cycle, cadence) = cycle_of(&row)?;
        // The whole period the current one is part of: a first period that started between two
        // billing days is a share of one, and the rest of it is charged as a share of the whole.
        let nominal = if row.anchor_fixed {
            cycle.anchor.period(cadence, row.period_index).map_err(calendar_error)?
        } else {
            (row.current_period_start, row.current_period_end)
        };
        let mut names = Names::default();
        for (item, price) in items.iter().zip(&prices) {
            if !(changed(item) || added.iter().any(|a| a.id == item.id)) || price.meter().is_some() {
                // Unchanged, or billed in arrears (`usage`).
                continue;
            }
            let too_large = || Error::invalid("items", "amount_too_large", "the period's amount is too large");
            let model = price.model().ok_or(Error::NotFound("price"))?;
            let full = pricing::period_amount(&model, item.quantity).ok_or_else(too_large)?;
            let debit = proration::remaining_debit(full, nominal, at).ok_or_else(too_large)?;
            if debit == 0 {
                continue;
            }
            let name = names.of(conn, &ctx.tenant, price).await?;
            debits.push(ChargeRow {
                id: new_id(Kind::SubscriptionCharge),
                subscription_id: row.id.clone(),
                item_id: item.id.clone(),
                price_id: price.id.clone(),
                quantity: item.quantity,
                description: format!("Remaining time on {name} × {}", item.quantity),
                amount: debit,
                period_start: at,
                period_end: row.current_period_end,
                credited: 0,
                covered_until: row.current_period_end,
                invoice_id: None,
                created: ctx.now,
            });
        }
    }
    // Every charge waiting for an invoice goes on the next one (or on one made now, with
    // `always_invoice`): it must stay within an invoice's lines, or the cycle could never bill it.
    let invoice_now = prorate && change.proration_behavior == ProrationBehavior::AlwaysInvoice;
    let waiting = charges::pending(conn, &ctx.tenant, id).await?.len() + debits.len();
    let next = if invoice_now {
        lines.max(waiting)
    } else {
        lines + waiting
    };
    if next > MAX_LINES {
        return Err(Error::invalid(
            "items",
            "too_many_invoice_lines",
            format!(
                "the next invoice would have {next} lines; an invoice has at most {MAX_LINES} (use always_invoice to bill the changes now)"
            ),
        ));
    }
    if let Some(cancel) = change.cancel_at_period_end {
        row.cancel_at_period_end = cancel;
        row.canceled_at = cancel.then_some(ctx.now);
    }
    if let Some(metadata) = change.metadata.clone() {
        merge_metadata(&mut row.metadata, metadata)?;
    }
    Ok(Plan {
        at,
        row,
        items,
        added,
        updated,
        deleted,
        credits,
        cut,
        debits,
        invoice_now,
        usage_ends,
        usage_starts,
    })
}

/// Makes the change: the items, the credits (to the customer's balance, posted to the ledger),
/// the charges for the rest of the period, and with `always_invoice` their invoice.
pub async fn update(conn: &mut AnyConnection, ctx: &Ctx, id: &str, change: Change) -> Result<Subscription> {
    let ctx = &super::test_clocks::for_subscription(conn, ctx, id).await?;
    let row = lock(conn, ctx, id).await?;
    // Refused before anything is written (see `operation`).
    refuse_canceled(&row)?;
    // What fell due before now is billed at the old prices first (as `cancel` does). Those
    // writes are the cycle's own work, the same whoever does it and whenever: a refusal by the
    // planner after them stands (and is stored for the idempotency key) with them, as if the
    // cycle had run just before the request.
    advance(conn, ctx, id, ctx.now, usize::MAX).await?;
    let mut plan = plan(conn, ctx, id, &change).await?;
    // Usage up to the change at the prices it happened at, waiting for the next invoice (none in
    // a trial).
    let ending = ending_usage(&plan.usage_ends);
    usage::settle(conn, ctx, &plan.row, &ending, plan.at, plan.row.status.bills()).await?;
    for item in &plan.added {
        subscriptions::insert_item(conn, &ctx.tenant, id, item).await?;
    }
    for item in &plan.updated {
        subscriptions::update_item(conn, &ctx.tenant, item).await?;
    }
    for item in &plan.deleted {
        subscriptions::delete_item(conn, &ctx.tenant, item).await?;
    }
    for item in &plan.usage_starts {
        subscriptions::set_usage_billed_until(conn, &ctx.tenant, item, plan.at).await?;
    }
    if !plan.usage_starts.is_empty() && !plan.row.metered {
        subscriptions::mark_metered(conn, &ctx.tenant, id).await?;
        plan.row.metered = true;
    }
    give_credits(conn, ctx, &plan.row, &plan.credits, &plan.cut).await?;
    for debit in &plan.debits {
        charges::insert(conn, &ctx.tenant, debit).await?;
    }
    subscriptions::update(conn, &ctx.tenant, &plan.row).await?;
    if plan.invoice_now {
        super::subscriptions::invoice_pending(conn, ctx, &plan.row, "subscription_update").await?;
    }
    let subscription = plan.row.with_items(plan.items);
    ctx.audit(conn, "subscription.updated", id).await?;
    ctx.emit(conn, "subscription.updated", &subscription).await?;
    Ok(subscription)
}

fn ending_usage(ends: &[(SubscriptionItem, Price)]) -> Vec<usage::Metered<'_>> {
    ends.iter()
        .filter_map(|(item, price)| price.meter().map(|meter| usage::Metered { item, price, meter }))
        .collect()
}

pub(super) fn planned_line(line: NewLine) -> PlannedLine {
    PlannedLine {
        amount: line.quantity * line.unit_amount,
        description: line.description,
        quantity: line.quantity,
        unit_amount: line.unit_amount,
        price: line.price_id.unwrap_or_default(),
        period: line.period.unwrap_or(Period { start: 0, end: 0 }),
    }
}

/// What `update` with `change` would do now, computed by the same planner. Like the change, it
/// first bills what fell due before now (the cycle would have), so that it describes the
/// subscription the change would meet.
pub async fn preview(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    change: Change,
) -> Result<SubscriptionChangePreview> {
    let ctx = &super::test_clocks::for_subscription(conn, ctx, id).await?;
    let row = lock(conn, ctx, id).await?;
    refuse_canceled(&row)?;
    advance(conn, ctx, id, ctx.now, usize::MAX).await?;
    let plan = plan(conn, ctx, id, &change).await?;
    let mut charges: Vec<PlannedLine> = plan.debits.iter().map(|d| planned_line(pending_line(d))).collect();
    if plan.row.status.bills() {
        let ending = ending_usage(&plan.usage_ends);
        let usage = usage::settle_preview(conn, &ctx.tenant, &plan.row, &ending, plan.at).await?;
        charges.extend(usage.into_iter().map(planned_line));
    }
    let invoice = if plan.invoice_now {
        let mut lines: Vec<PlannedLine> = charges::pending(conn, &ctx.tenant, id)
            .await?
            .iter()
            .map(|c| planned_line(pending_line(c)))
            .collect();
        lines.extend(charges.iter().cloned());
        if lines.is_empty() {
            None
        } else {
            let credited: i64 = plan.credits.iter().map(|c| c.shown.amount).sum();
            let balance =
                credits::balance(conn, &ctx.tenant, &plan.row.customer_id, &plan.row.currency).await? + credited;
            Some(upcoming(
                &plan.row,
                lines,
                None,
                ctx.now,
                "subscription_update",
                balance,
            ))
        }
    } else {
        None
    };
    Ok(SubscriptionChangePreview {
        object: SubscriptionChangePreview::OBJECT,
        proration_date: plan.at,
        subscription: plan.row.with_items(plan.items),
        credits: plan.credits.into_iter().map(|c| c.shown).collect(),
        charges,
        invoice,
    })
}

/// An invoice as it will be made from `lines`, taking what it can of `balance`.
pub(super) fn upcoming(
    row: &SubscriptionRow,
    lines: Vec<PlannedLine>,
    period: Option<(i64, i64)>,
    issued_at: i64,
    reason: &str,
    balance: i64,
) -> UpcomingInvoice {
    let subtotal: i64 = lines.iter().map(|l| l.amount).sum();
    let applied = balance.min(subtotal).max(0);
    UpcomingInvoice {
        object: UpcomingInvoice::OBJECT,
        subscription: row.id.clone(),
        customer: row.customer_id.clone(),
        currency: row.currency.clone(),
        billing_reason: reason.to_owned(),
        period_start: period.map(|p| p.0),
        period_end: period.map(|p| p.1),
        issued_at,
        lines,
        subtotal,
        total: subtotal,
        applied_balance: applied,
        amount_due: subtotal - applied,
    }
}

//! Metered items: what their meters counted for the customer, billed in arrears.
//!
//! A metered item's usage is billed by **window**: from where its last window ended
//! (`usage_billed_until`, else the instant the item was added) up to the instant a period ends,
//! the subscription ends or pauses, or the item is removed or re-priced. A window is priced as a
//! whole (tiers and packages apply to the window's usage, counted to the minute like
//! `GET /v1/customers/{id}/usage`) and its lines wait in `usage_charges` for the subscription's
//! next invoice; every invoice the subscription makes takes them. A trial or a pause bills no
//! usage: the window moves on without a charge.
//!
//! **Late events.** Before each invoice, every window that ended within [`LOOK_BACK`] is priced
//! again from the meter as it stands: more than was billed becomes an adjustment line on that
//! invoice; less (a `latest` meter can go down) a credit to the customer's balance. A window is
//! never billed twice: what is added is always the difference from what its rows add up to.
use std::collections::HashMap;

use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::invoice::MAX_QUANTITY;
use crate::domain::pricing;
use crate::objects::{Meter, Period, Price, SubscriptionItem};
use crate::operation::{Ctx, Error, Result};
use crate::store::meters;
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::usage_charges::{self, UsageChargeRow, UsageKind};

use super::invoices::NewLine;
use super::subscriptions::{Names, prices_by_id};

/// How far back invoices look for late events: the longest grace an event may be sent within,
/// and the five minutes an event may be ahead of the clock.
pub(super) const LOOK_BACK: i64 = crate::config::billing::MAX_METER_EVENT_GRACE + 300;

/// A metered item and its price.
pub(super) struct Metered<'a> {
    pub item: &'a SubscriptionItem,
    pub price: &'a Price,
    pub meter: &'a str,
}

/// The metered items among `items` (with their `prices`, in order).
pub(super) fn metered<'a>(items: &'a [SubscriptionItem], prices: &'a [Price]) -> Vec<Metered<'a>> {
    items
        .iter()
        .zip(prices)
        .filter_map(|(item, price)| price.meter().map(|meter| Metered { item, price, meter }))
        .collect()
}

/// Meters read once per operation.
#[derive(Default)]
pub(super) struct Meters(HashMap<String, Meter>);

impl Meters {
    async fn of(&mut self, conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Meter> {
        if let Some(meter) = self.0.get(id) {
            return Ok(meter.clone());
        }
        let meter = meters::find(conn, tenant, id).await?.ok_or(Error::NotFound("meter"))?;
        self.0.insert(id.to_owned(), meter.clone());
        Ok(meter)
    }
}

fn too_large() -> Error {
    Error::invalid("items", "amount_too_large", "the usage's amount is too large")
}

/// An invoice line of usage: description, quantity, unit amount.
type UsageLine = (String, i64, i64);

/// What a window of `usage` units of `price` comes to, and its invoice lines (the rows of
/// `pricing::usage_rows`; one line of 0 when nothing is owed, so the window shows).
fn priced(name: &str, price: &Price, usage: i64) -> Result<(i64, Vec<UsageLine>)> {
    let model = price.model().ok_or(Error::NotFound("price"))?;
    let rows = pricing::usage_rows(&model, usage).ok_or_else(too_large)?;
    let package = price.transform_quantity.map(|t| t.divide_by);
    let mut lines = Vec::with_capacity(rows.len().max(1));
    let mut amount = 0i64;
    for r in &rows {
        let row_amount = r.amount().ok_or_else(too_large)?;
        amount = amount.checked_add(row_amount).ok_or_else(too_large)?;
        let what = match (r.tier, r.flat_fee, package) {
            (Some(tier), true, _) => format!("{name} (tier {} flat fee)", tier + 1),
            (Some(tier), false, _) => format!("{name} (tier {})", tier + 1),
            (None, _, Some(size)) => format!("{name} (packages of {size})"),
            (None, _, None) => name.to_owned(),
        };
        // An invoice line holds at most MAX_QUANTITY units: more are shown in the description
        // and billed as one line of their amount.
        if (1..=MAX_QUANTITY).contains(&r.quantity) {
            lines.push((format!("{what}: {usage} used"), r.quantity, r.unit_amount));
        } else {
            lines.push((
                format!("{what}: {usage} used, {} × {}", r.quantity, r.unit_amount),
                1,
                row_amount,
            ));
        }
    }
    if lines.is_empty() {
        lines.push((format!("{name}: {usage} used"), 1, 0));
    }
    Ok((amount, lines))
}

/// The rows billing the item's usage over `window`.
async fn window_rows(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    (names, meters): (&mut Names, &mut Meters),
    m: &Metered<'_>,
    window: (i64, i64),
    now: i64,
) -> Result<Vec<UsageChargeRow>> {
    let meter = meters.of(conn, tenant, m.meter).await?;
    let usage = super::metering::meter_value(conn, tenant, &meter, &row.customer_id, window).await?;
    let name = names.of(conn, tenant, m.price).await?;
    let (_, lines) = priced(&name, m.price, usage)?;
    Ok(lines
        .into_iter()
        .map(|(description, quantity, unit_amount)| UsageChargeRow {
            id: new_id(Kind::UsageCharge),
            subscription_id: row.id.clone(),
            item_id: m.item.id.clone(),
            price_id: m.price.id.clone(),
            meter_id: m.meter.to_owned(),
            period_start: window.0,
            period_end: window.1,
            usage,
            kind: UsageKind::Usage,
            description,
            quantity,
            unit_amount,
            invoice_id: None,
            created: now,
        })
        .collect())
}

/// The window of each of `metered` that is not billed yet, up to `until`: from where its last
/// window ended (else from when the item was added); items already billed to `until` are left
/// out.
async fn unbilled<'m, 'a>(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    metered: &'m [Metered<'a>],
    until: i64,
) -> Result<Vec<(&'m Metered<'a>, (i64, i64))>> {
    if metered.is_empty() {
        return Ok(Vec::new());
    }
    let stored = subscriptions::usage_billed_until(conn, tenant, &row.id).await?;
    Ok(metered
        .iter()
        .filter_map(|m| {
            let from = stored.get(&m.item.id).copied().flatten().unwrap_or(m.item.created);
            (from < until).then_some((m, (from, until)))
        })
        .collect())
}

/// Bills the usage of each of `metered` up to `until`, waiting for the next invoice; with `bill`
/// false (a trial, a pause), moves their windows to `until` without billing. An item whose
/// window already reaches `until` is left alone.
pub(super) async fn settle(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    row: &SubscriptionRow,
    metered: &[Metered<'_>],
    until: i64,
    bill: bool,
) -> Result<()> {
    let (mut names, mut meters) = (Names::default(), Meters::default());
    for (m, window) in unbilled(conn, &ctx.tenant, row, metered, until).await? {
        if bill {
            let rows = window_rows(conn, &ctx.tenant, row, (&mut names, &mut meters), m, window, ctx.now).await?;
            for r in &rows {
                usage_charges::insert(conn, &ctx.tenant, r).await?;
            }
        }
        subscriptions::set_usage_billed_until(conn, &ctx.tenant, &m.item.id, until).await?;
    }
    Ok(())
}

/// The lines [`settle`] would bill up to `until`, written nowhere (an upcoming invoice's usage
/// so far).
pub(super) async fn settle_preview(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    metered: &[Metered<'_>],
    until: i64,
) -> Result<Vec<NewLine>> {
    let (mut names, mut meters) = (Names::default(), Meters::default());
    let mut lines = Vec::new();
    for (m, window) in unbilled(conn, tenant, row, metered, until).await? {
        let rows = window_rows(conn, tenant, row, (&mut names, &mut meters), m, window, until).await?;
        lines.extend(rows.iter().map(line));
    }
    Ok(lines)
}

/// The windows ended within [`LOOK_BACK`] of `now` priced again: an adjustment row for each that
/// comes to more than it was billed, a credit row for each that comes to less.
async fn adjustments(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    now: i64,
) -> Result<Vec<UsageChargeRow>> {
    let windows = usage_charges::windows_since(conn, tenant, &row.id, now - LOOK_BACK).await?;
    let prices = prices_by_id(conn, tenant, windows.iter().map(|w| w.price_id.as_str())).await?;
    let (mut names, mut meters) = (Names::default(), Meters::default());
    let mut out = Vec::new();
    for (w, price) in windows.into_iter().zip(prices) {
        let meter = meters.of(conn, tenant, &w.meter_id).await?;
        let window = (w.period_start, w.period_end);
        let usage = super::metering::meter_value(conn, tenant, &meter, &row.customer_id, window).await?;
        let name = names.of(conn, tenant, &price).await?;
        let (amount, _) = priced(&name, &price, usage)?;
        let difference = amount.checked_sub(w.amount).ok_or_else(too_large)?;
        if difference == 0 {
            continue;
        }
        let (kind, description) = if difference > 0 {
            (UsageKind::Adjustment, format!("{name}: {usage} used (late usage)"))
        } else {
            (UsageKind::Credit, format!("{name}: {usage} used (usage corrected)"))
        };
        out.push(UsageChargeRow {
            id: new_id(Kind::UsageCharge),
            subscription_id: row.id.clone(),
            item_id: w.item_id,
            price_id: w.price_id,
            meter_id: w.meter_id,
            period_start: w.period_start,
            period_end: w.period_end,
            usage,
            kind,
            description,
            quantity: 1,
            unit_amount: difference,
            invoice_id: None,
            created: now,
        });
    }
    Ok(out)
}

/// Writes the adjustments late events call for (see the module's comment): adjustment rows wait
/// for the invoice being made, credits go to the customer's balance now.
pub(super) async fn adjust(conn: &mut AnyConnection, ctx: &Ctx, row: &SubscriptionRow) -> Result<()> {
    if !row.metered {
        return Ok(());
    }
    let rows = adjustments(conn, &ctx.tenant, row, ctx.now).await?;
    for r in &rows {
        usage_charges::insert(conn, &ctx.tenant, r).await?;
    }
    let credits: Vec<(i64, &str)> = rows
        .iter()
        .filter(|r| r.kind == UsageKind::Credit)
        .map(|r| (-r.unit_amount, r.description.as_str()))
        .collect();
    super::changes::credit_balance(conn, ctx, row, &credits).await
}

/// The adjustment lines [`adjust`] would add now, written nowhere, and the credits it would give.
pub(super) async fn adjust_preview(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    now: i64,
) -> Result<(Vec<NewLine>, i64)> {
    if !row.metered {
        return Ok((Vec::new(), 0));
    }
    let rows = adjustments(conn, tenant, row, now).await?;
    let credited = rows
        .iter()
        .filter(|r| r.kind == UsageKind::Credit)
        .map(|r| -r.unit_amount)
        .sum();
    let lines = rows.iter().filter(|r| r.kind != UsageKind::Credit).map(line).collect();
    Ok((lines, credited))
}

fn line(r: &UsageChargeRow) -> NewLine {
    NewLine {
        description: r.description.clone(),
        quantity: r.quantity,
        unit_amount: r.unit_amount,
        tax_rate_bps: None,
        price_id: Some(r.price_id.clone()),
        period: Some(Period {
            start: r.period_start,
            end: r.period_end,
        }),
    }
}

/// The usage lines waiting for the subscription's next invoice.
pub(super) async fn pending_lines(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
) -> Result<Vec<NewLine>> {
    if !row.metered {
        return Ok(Vec::new());
    }
    Ok(usage_charges::pending(conn, tenant, &row.id)
        .await?
        .into_iter()
        .map(|p| NewLine {
            description: p.description,
            quantity: p.quantity,
            unit_amount: p.unit_amount,
            tax_rate_bps: None,
            price_id: Some(p.price_id),
            period: Some(Period {
                start: p.period_start,
                end: p.period_end,
            }),
        })
        .collect())
}

/// Puts the usage lines waiting for an invoice on `invoice_id`.
pub(super) async fn attach_pending(
    conn: &mut AnyConnection,
    tenant: &str,
    row: &SubscriptionRow,
    invoice_id: &str,
) -> Result<()> {
    if row.metered {
        usage_charges::attach_pending(conn, tenant, &row.id, invoice_id).await?;
    }
    Ok(())
}

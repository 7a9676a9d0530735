//! Subscriptions: create (the first period is invoiced at once, unless on trial), read, list,
//! cancel now or at the end of the period. Periods are billed by the billing cycle
//! (`billing::cycles`).
use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, JsonBody, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{CustomerId, MetadataParam, PriceId, SubscriptionItemId};
use super::write::{Done, Write};
use crate::billing::changes::{self, Change, ItemChange, ProrationBehavior};
use crate::billing::subscriptions::{
    self as ops, MAX_DAYS_UNTIL_DUE, MAX_ITEMS, MAX_TRIAL_DAYS, NewItem, NewSubscription,
};
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::domain::pricing::MAX_QUANTITY;
use crate::domain::subscription::Status;
use crate::objects::{CollectionMethod, Subscription, SubscriptionChangePreview, UpcomingInvoice};
use crate::store::subscriptions::Filter;

/// One item of a new subscription.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemParams {
    #[serde(default)]
    #[schema(value_type = PriceId, required = true)]
    pub price: Field<String>,
    /// 1 when not given.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub quantity: Field<i64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// A new subscription. Its prices must be active and share one currency (the customer's, if it
/// has one) and one interval.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionParams {
    #[serde(default)]
    #[schema(value_type = CustomerId, required = true)]
    pub customer: Field<String>,
    #[serde(default)]
    #[schema(value_type = Vec<ItemParams>, required = true, min_items = 1, max_items = 20)]
    pub items: Field<Vec<ItemParams>>,
    /// The IANA time zone period boundaries are computed in (`Europe/Paris`); when not given,
    /// the tenant's default (set by `billing-api tenant configure --time-zone`), else UTC (422
    /// `invalid_time_zone` for an unknown name).
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9/_+-]+$", example = "Europe/Paris")]
    pub time_zone: Field<String>,
    /// Bill on this day of each month at 00:00 local time (clamped to the month's last day);
    /// the first period is then charged its share. Otherwise periods start when the
    /// subscription does.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 31)]
    pub billing_cycle_day: Field<i64>,
    /// Days of free trial: nothing is billed until it ends.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 730)]
    pub trial_period_days: Field<i64>,
    /// `charge_automatically` when not given.
    #[serde(default)]
    #[schema(value_type = Option<CollectionMethod>)]
    pub collection_method: Field<String>,
    /// For `send_invoice`: days from an invoice's issue to its due date (30 when not given).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 365)]
    pub days_until_due: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_item(c: &mut Check, i: usize, p: ItemParams) -> Option<NewItem> {
    let f = |name: &str| format!("items[{i}].{name}");
    c.unknown(&format!("items[{i}]."), &p.unknown);
    let price = c.required(&f("price"), p.price);
    let price = c.id(&f("price"), price, Kind::Price);
    let quantity = c.optional(&f("quantity"), p.quantity);
    let quantity = c.range(&f("quantity"), quantity, 1..=MAX_QUANTITY);
    Some(NewItem {
        price_id: price?,
        quantity: quantity.unwrap_or(1),
    })
}

#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", request_body = SubscriptionParams,
    responses((status = 201, description = "Created; unless on trial, the first period's invoice is issued with it", body = Subscription)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let p: SubscriptionParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let customer = c.required("customer", p.customer);
    let customer = c.id("customer", customer, Kind::Customer);
    let items = c.required("items", p.items);
    if items.as_ref().is_some_and(|i| i.is_empty() || i.len() > MAX_ITEMS) {
        c.error("items", "invalid_length", format!("1 to {MAX_ITEMS} items"));
    }
    let items = items.unwrap_or_default();
    let items: Vec<Option<NewItem>> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| check_item(&mut c, i, item))
        .collect();
    let time_zone = c.optional("time_zone", p.time_zone);
    let time_zone = c.text("time_zone", time_zone, 64);
    let day = c.optional("billing_cycle_day", p.billing_cycle_day);
    let day = c.range("billing_cycle_day", day, 1..=31);
    let trial = c.optional("trial_period_days", p.trial_period_days);
    let trial = c.range("trial_period_days", trial, 1..=MAX_TRIAL_DAYS);
    let method = c.optional("collection_method", p.collection_method).and_then(|m| {
        let method = CollectionMethod::parse(&m);
        if method.is_none() {
            c.error("collection_method", "invalid", "charge_automatically or send_invoice");
        }
        method
    });
    let days_until_due = c.optional("days_until_due", p.days_until_due);
    let days_until_due = c.range("days_until_due", days_until_due, 0..=MAX_DAYS_UNTIL_DUE);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewSubscription {
            customer_id: customer?,
            items: items.into_iter().collect::<Option<Vec<_>>>()?,
            time_zone,
            billing_cycle_day: day.and_then(|d| u8::try_from(d).ok()),
            trial_period_days: trial,
            collection_method: method.unwrap_or(CollectionMethod::ChargeAutomatically),
            days_until_due,
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| ops::create(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "The subscription", body = Subscription)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Subscription>, Problem> {
    r.require("subscriptions:read")?;
    let id = path_id(Kind::Subscription, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionFilters {
    /// Only this customer's subscriptions.
    customer: Option<String>,
    /// Only subscriptions in this status.
    status: Option<Status>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(list::PageParams, SubscriptionFilters),
    responses((status = 200, description = "Subscriptions, newest first", body = List<Subscription>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Subscription>>, Problem> {
    r.require("subscriptions:read")?;
    let mut query = list::Query::new(params, &["customer", "status"]);
    let customer = query.filter("customer", Some(Kind::Customer));
    let status = query.filter("status", None).and_then(|s| {
        let status = Status::parse(&s);
        if status.is_none() {
            query.check().error(
                "status",
                "invalid",
                "one of trialing, active, past_due, paused, canceled",
            );
        }
        status
    });
    let page = query.page(Kind::Subscription)?;
    let filter = Filter { customer, status };
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &filter).await)
        .await
}

/// Cancelling a subscription.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelParams {
    /// `true`: keep it until the current period ends, then end it (nothing more is billed).
    /// Otherwise it ends now.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub at_period_end: Field<bool>,
    /// When it ends now: `true` credits the customer the unused rest of what the current period
    /// was charged (to their credit balance, applied to their next invoices); `false` (the
    /// default, as Stripe's) credits nothing.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub prorate: Field<bool>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_cancel(body: &JsonBody) -> Result<(bool, bool), Problem> {
    let p: CancelParams = body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let at_period_end = c.optional("at_period_end", p.at_period_end);
    let prorate = c.optional("prorate", p.prorate);
    c.finish(|| Some((at_period_end.unwrap_or(false), prorate.unwrap_or(false))))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", request_body = CancelParams,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "Canceled, or set to cancel at the end of its period", body = Subscription)))]
pub async fn cancel(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let id = path_id(Kind::Subscription, id)?;
    let (at_period_end, prorate) = check_cancel(&w.body)?;
    w.run(async |conn, ctx| ops::cancel(conn, ctx, &id, at_period_end, prorate).await.map(Done::ok))
        .await
}

/// Pausing or resuming takes no parameters.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PauseParams {
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_empty(body: &JsonBody) -> Result<(), Problem> {
    let p: PauseParams = body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    c.finish(|| Some(()))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", tag = "subscriptions", request_body = PauseParams,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "Paused: nothing is billed until it is resumed; the unused rest of the current period is credited", body = Subscription)))]
pub async fn pause(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let id = path_id(Kind::Subscription, id)?;
    check_empty(&w.body)?;
    w.run(async |conn, ctx| ops::pause(conn, ctx, &id).await.map(Done::ok))
        .await
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions", request_body = PauseParams,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "Resumed: a new period starts now and is invoiced at once", body = Subscription)))]
pub async fn resume(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let id = path_id(Kind::Subscription, id)?;
    check_empty(&w.body)?;
    w.run(async |conn, ctx| ops::resume(conn, ctx, &id).await.map(Done::ok))
        .await
}

/// One change to a subscription's items: an item to add (`price`, `quantity`), an item to
/// change (`id` with a new `price` or `quantity`), or an item to remove (`id`, `deleted`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemChangeParams {
    /// The item to change or remove; absent for an item to add.
    #[serde(default)]
    #[schema(value_type = Option<SubscriptionItemId>)]
    pub id: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<PriceId>)]
    pub price: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub quantity: Field<i64>,
    /// `true` removes the item `id`.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub deleted: Field<bool>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// A change to a subscription, prorated for the rest of the current period (docs/billing.md).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionUpdateParams {
    #[serde(default)]
    #[schema(value_type = Option<Vec<ItemChangeParams>>, max_items = 20)]
    pub items: Field<Vec<ItemChangeParams>>,
    /// `create_prorations` (the default): the unused time of what changes is credited to the
    /// customer's balance now, and the rest of the period at the new prices is charged on the
    /// next invoice; `always_invoice`: the same, invoiced at once; `none`: the new prices apply
    /// from the next period.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(create_prorations|always_invoice|none)$")]
    pub proration_behavior: Field<String>,
    /// The instant (Unix seconds) the change is prorated from; now when not given. It must lie
    /// in the current period (422 `outside_current_period`). Give a preview's
    /// `proration_date` to make exactly the change it showed.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 253_402_300_799_i64)]
    pub proration_date: Field<i64>,
    /// `true`: end the subscription when the current period ends; `false`: renew it again.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub cancel_at_period_end: Field<bool>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_item_change(c: &mut Check, i: usize, p: ItemChangeParams) -> Option<ItemChange> {
    let f = |name: &str| format!("items[{i}].{name}");
    c.unknown(&format!("items[{i}]."), &p.unknown);
    let id = c.optional(&f("id"), p.id);
    let id = c.id(&f("id"), id, Kind::SubscriptionItem);
    let price = c.optional(&f("price"), p.price);
    let price = c.id(&f("price"), price, Kind::Price);
    let quantity = c.optional(&f("quantity"), p.quantity);
    let quantity = c.range(&f("quantity"), quantity, 1..=MAX_QUANTITY);
    let deleted = c.optional(&f("deleted"), p.deleted).unwrap_or(false);
    match id {
        Some(id) if deleted => {
            if price.is_some() || quantity.is_some() {
                c.error(f("deleted"), "invalid", "an item removed takes no price or quantity");
                return None;
            }
            Some(ItemChange::Delete { id })
        }
        Some(id) => Some(ItemChange::Update {
            id,
            price_id: price,
            quantity,
        }),
        None if deleted => {
            c.error(f("id"), "required", "give the id of the item to remove");
            None
        }
        None => {
            if price.is_none() {
                c.error(f("price"), "required", "an item to add needs a price");
            }
            Some(ItemChange::Add {
                price_id: price?,
                quantity: quantity.unwrap_or(1),
            })
        }
    }
}

fn check_update(body: &JsonBody) -> Result<Change, Problem> {
    let p: SubscriptionUpdateParams = body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let items = c.optional("items", p.items).unwrap_or_default();
    if items.len() > MAX_ITEMS {
        c.error("items", "invalid_length", format!("at most {MAX_ITEMS} changes"));
    }
    let items: Vec<Option<ItemChange>> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| check_item_change(&mut c, i, item))
        .collect();
    let behavior = c.optional("proration_behavior", p.proration_behavior).and_then(|b| {
        let behavior = ProrationBehavior::parse(&b);
        if behavior.is_none() {
            c.error(
                "proration_behavior",
                "invalid",
                "create_prorations, always_invoice or none",
            );
        }
        behavior
    });
    let proration_date = c.optional("proration_date", p.proration_date);
    let proration_date = c.range("proration_date", proration_date, 0..=253_402_300_799);
    let cancel_at_period_end = c.optional("cancel_at_period_end", p.cancel_at_period_end);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    c.finish(|| {
        Some(Change {
            items: items.into_iter().collect::<Option<Vec<_>>>()?,
            proration_behavior: behavior.unwrap_or(ProrationBehavior::CreateProrations),
            proration_date,
            cancel_at_period_end,
            metadata,
        })
    })
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}", tag = "subscriptions", request_body = SubscriptionUpdateParams,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "Changed; credits and charges for the rest of the period as `proration_behavior` says", body = Subscription)))]
pub async fn update(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let id = path_id(Kind::Subscription, id)?;
    let change = check_update(&w.body)?;
    w.run(async |conn, ctx| changes::update(conn, ctx, &id, change).await.map(Done::ok))
        .await
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/preview", tag = "subscriptions", request_body = SubscriptionUpdateParams,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "What the same change would do, computed by the same code; nothing is changed (what was already due is billed first, as the cycle would)", body = SubscriptionChangePreview)))]
pub async fn preview(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("subscriptions:write")?;
    let id = path_id(Kind::Subscription, id)?;
    let change = check_update(&w.body)?;
    w.run(async |conn, ctx| changes::preview(conn, ctx, &id, change).await.map(Done::ok))
        .await
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}/upcoming_invoice", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "The next invoice as the billing cycle will make it", body = UpcomingInvoice)))]
pub async fn upcoming_invoice(r: Read, Path(id): Path<String>) -> Result<Json<UpcomingInvoice>, Problem> {
    r.require("subscriptions:read")?;
    let id = path_id(Kind::Subscription, id)?;
    r.answer(async |conn, tenant| ops::upcoming(conn, tenant, &id).await)
        .await
}

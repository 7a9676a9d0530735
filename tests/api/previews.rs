//! Previews equal reality, as a property over generated cases on both backends.
//!
//! Each case is a subscription (random cadence, time zone with DST changes, billing day among
//! 28–31 and others, trial, prices flat or graduated) and a sequence of changes at random
//! instants (quantities, prices, items added or removed, each `proration_behavior`, a
//! `proration_date` anywhere from the period's start to now, cancellation at the period's end
//! set and unset). Before each change the time moves on, and:
//! - the **upcoming invoice** read before the cycle runs must equal the invoice the cycle makes
//!   (lines, amounts, periods, credit applied);
//! - the **change preview** must equal what the change then does: the same credits, the same
//!   charges, the same invoice (lines and credit applied), the same items; or the same refusal.
//!
//! After every step the books must hold together (`properties::check`: totals, gapless numbers,
//! balanced ledger) and what the customer owes in the ledger must be what is left to pay on their
//! invoices less their credit. Cases: `PREVIEW_CASES` (CI runs 10,000 per backend).
use std::collections::BTreeSet;

use billing_api::billing::catalog::{self, NewPrice, NewProduct, Pricing};
use billing_api::billing::changes::{self, Change, ItemChange, ProrationBehavior};
use billing_api::billing::customers::{self, NewCustomer};
use billing_api::billing::subscriptions::{self, NewItem, NewSubscription};
use billing_api::domain::metadata::Metadata;
use billing_api::domain::money::Currency;
use billing_api::objects::{CollectionMethod, Interval, PlannedLine, PriceRecurring, PriceTier, TiersMode, UsageType};
use billing_api::operation::{Ctx, Error};
use billing_api::store::{Backend, Store, charges, credits, invoices};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{TestDb, config_for};
use crate::properties::check;

backend_tests!(previews_equal_reality);

const DAY: i64 = 86_400;

#[derive(Debug, Clone)]
enum Edit {
    Quantity(usize, i64),
    Price(usize, usize),
    Add(usize, i64),
    Delete(usize),
    Nothing,
}

#[derive(Debug, Clone)]
struct Step {
    /// How far time moves before the change, in nominal periods.
    wait: f64,
    edit: Edit,
    behavior: ProrationBehavior,
    /// Where in `[period start, now]` the change is prorated from (now when absent).
    date: Option<f64>,
    cancel_at_period_end: Option<bool>,
}

#[derive(Debug, Clone)]
struct Case {
    interval: Interval,
    count: i64,
    zone: &'static str,
    day: Option<u8>,
    trial: Option<i64>,
    start: i64,
    /// Per price: a unit amount, or graduated tiers.
    prices: Vec<Result<i64, (i64, i64, i64)>>,
    first: Vec<(usize, i64)>,
    steps: Vec<Step>,
}

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Sao_Paulo",
];

/// Instants next to DST changes and month ends (2025–2026).
const STARTS: [i64; 8] = [
    1_741_500_000, // 2025-03-09, US spring forward
    1_743_296_400, // 2025-03-30, EU spring forward
    1_761_440_400, // 2025-10-26, EU fall back
    1_762_063_200, // 2025-11-02, US fall back
    1_738_281_600, // 2025-01-31
    1_740_700_800, // 2025-02-28
    1_775_347_200, // 2026-04-05, Lord Howe half-hour shift
    1_767_139_200, // 2025-12-31
];

fn step() -> impl Strategy<Value = Step> {
    let edit = prop_oneof![
        3 => (0usize..4, 1i64..30).prop_map(|(i, q)| Edit::Quantity(i, q)),
        3 => (0usize..4, 0usize..4).prop_map(|(i, p)| Edit::Price(i, p)),
        2 => (0usize..4, 1i64..5).prop_map(|(p, q)| Edit::Add(p, q)),
        2 => (0usize..4).prop_map(Edit::Delete),
        1 => Just(Edit::Nothing),
    ];
    let behavior = prop_oneof![
        Just(ProrationBehavior::CreateProrations),
        Just(ProrationBehavior::AlwaysInvoice),
        Just(ProrationBehavior::None),
    ];
    (
        prop_oneof![3 => 0.0f64..0.9, 1 => 0.9f64..2.5],
        edit,
        behavior,
        prop::option::of(0.0f64..=1.0),
        prop::option::weighted(0.15, any::<bool>()),
    )
        .prop_map(|(wait, edit, behavior, date, cancel_at_period_end)| Step {
            wait,
            edit,
            behavior,
            date,
            cancel_at_period_end,
        })
}

fn case() -> impl Strategy<Value = Case> {
    let cadence = prop_oneof![
        Just((Interval::Month, 1)),
        Just((Interval::Month, 3)),
        Just((Interval::Week, 1)),
        Just((Interval::Week, 2)),
        Just((Interval::Day, 1)),
        Just((Interval::Day, 10)),
        Just((Interval::Year, 1)),
    ];
    let price = prop_oneof![
        3 => prop_oneof![Just(0i64), Just(999), 1i64..200_000].prop_map(Ok),
        1 => (1i64..10, 1i64..5_000, 0i64..3_000).prop_map(Err),
    ];
    (
        cadence,
        prop::sample::select(&ZONES[..]),
        prop::option::of(prop_oneof![Just(1u8), Just(15), 28u8..=31]),
        prop::option::weighted(0.2, 1i64..20),
        (prop::sample::select(&STARTS[..]), 0i64..3 * DAY),
        prop::collection::vec(price, 4),
        prop::collection::vec((0usize..4, 1i64..10), 1..3),
        prop::collection::vec(step(), 1..6),
    )
        .prop_map(
            |((interval, count), zone, day, trial, (base, offset), prices, first, steps)| Case {
                interval,
                count,
                zone,
                day,
                trial,
                start: base + offset,
                prices,
                first,
                steps,
            },
        )
}

fn nominal_length(case: &Case) -> i64 {
    let unit = match case.interval {
        Interval::Day => DAY,
        Interval::Week => 7 * DAY,
        Interval::Month => 30 * DAY,
        Interval::Year => 365 * DAY,
    };
    unit * case.count
}

/// What was compared, for the report.
#[derive(Default)]
struct Counts {
    changes: usize,
    refused: usize,
    credits: usize,
    invoices_now: usize,
    upcoming: usize,
}

type Outcome<T> = Result<T, String>;

fn db(e: impl std::fmt::Display) -> String {
    format!("database: {e}")
}

async fn write<T>(
    store: &Store,
    op: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> Result<T, Error>,
) -> Outcome<Result<T, Error>> {
    let mut tx = store.begin_write().await.map_err(db)?;
    let result = op(&mut tx).await;
    match &result {
        Ok(_) => tx.commit().await.map_err(db)?,
        Err(Error::Db(e)) => return Err(db(e)),
        Err(_) => tx.rollback().await.map_err(db)?,
    }
    Ok(result)
}

fn line_of(l: &billing_api::objects::LineItem) -> PlannedLine {
    PlannedLine {
        description: l.description.clone(),
        quantity: l.quantity,
        unit_amount: l.unit_amount,
        amount: l.amount,
        price: l.price.clone().unwrap_or_default(),
        period: l.period.unwrap_or(billing_api::objects::Period { start: 0, end: 0 }),
    }
}

async fn invoice_ids(store: &Store, tenant: &str, sub: &str) -> Outcome<Vec<String>> {
    let mut conn = store.acquire().await.map_err(db)?;
    let rows = sqlx::query("SELECT id FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 ORDER BY id")
        .bind(tenant)
        .bind(sub)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|r| r.get::<String, _>("id")).collect())
}

/// What the customer owes in the ledger equals what is left to pay on their invoices less their
/// credit balance: no money appears or disappears between the two books.
async fn owed_matches(store: &Store, tenant: &str, customer: &str) -> Outcome<()> {
    let mut conn = store.acquire().await.map_err(db)?;
    let receivable: Option<i64> = sqlx::query_scalar(
        "SELECT balance FROM customer_balances WHERE tenant_id = $1 AND customer_id = $2 AND currency = 'usd'",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let remaining: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(total - applied_balance - amount_paid - pre_payment_credit_notes_amount) AS BIGINT) FROM invoices WHERE tenant_id = $1 \
         AND customer_id = $2 AND status IN ('open', 'uncollectible')",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let credit = credits::balance(&mut conn, tenant, customer, "usd").await.map_err(db)?;
    let (receivable, remaining) = (receivable.unwrap_or(0), remaining.unwrap_or(0));
    if receivable != remaining - credit {
        return Err(format!(
            "the ledger says the customer owes {receivable}; invoices say {remaining} less {credit} of credit"
        ));
    }
    Ok(())
}

async fn run_case(store: &Store, backend: Backend, tenant: &str, case: &Case, counts: &mut Counts) -> Outcome<()> {
    let mut now = case.start;
    let ctx = |now: i64| Ctx::new(backend, tenant.to_owned(), "test".into(), "test".into(), now);
    let c = ctx(now);
    let setup = write(store, async |conn| {
        let customer = customers::create(
            conn,
            &c,
            NewCustomer {
                name: None,
                email: None,
                currency: Currency::parse("usd"),
                metadata: Metadata::new(),
                test_clock: None,
            },
        )
        .await?;
        let product = catalog::create_product(
            conn,
            &c,
            NewProduct {
                name: "Plan".into(),
                description: None,
                active: true,
                metadata: Metadata::new(),
            },
        )
        .await?;
        let mut prices = Vec::new();
        for p in &case.prices {
            let pricing = match *p {
                Ok(unit_amount) => Pricing::PerUnit {
                    unit_amount,
                    transform: None,
                },
                Err((up_to, first, second)) => Pricing::Tiered {
                    mode: TiersMode::Graduated,
                    tiers: vec![
                        PriceTier {
                            up_to: Some(up_to),
                            unit_amount: first,
                            flat_amount: 100,
                        },
                        PriceTier {
                            up_to: None,
                            unit_amount: second,
                            flat_amount: 0,
                        },
                    ],
                },
            };
            let price = catalog::create_price(
                conn,
                &c,
                NewPrice {
                    product_id: product.id.clone(),
                    currency: Currency::parse("usd").ok_or(Error::NotFound("currency"))?,
                    recurring: PriceRecurring {
                        interval: case.interval,
                        interval_count: case.count,
                        usage_type: UsageType::Licensed,
                        meter: None,
                    },
                    pricing,
                    nickname: None,
                    active: true,
                    metadata: Metadata::new(),
                },
            )
            .await?;
            prices.push(price.id);
        }
        let mut seen = BTreeSet::new();
        let items: Vec<NewItem> = case
            .first
            .iter()
            .filter(|(p, _)| seen.insert(*p))
            .map(|&(p, quantity)| NewItem {
                price_id: prices[p].clone(),
                quantity,
            })
            .collect();
        let sub = subscriptions::create(
            conn,
            &c,
            NewSubscription {
                customer_id: customer.id.clone(),
                items,
                time_zone: Some(case.zone.to_owned()),
                billing_cycle_day: case.day,
                trial_period_days: case.trial,
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
                metadata: Metadata::new(),
            },
        )
        .await?;
        Ok((customer.id, prices, sub.id))
    })
    .await?;
    let (customer, prices, sub) = setup.map_err(|e| format!("setup refused: {e:?}"))?;
    let period_length = nominal_length(case);
    for (n, step) in case.steps.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let wait = (period_length as f64 * step.wait) as i64;
        now += wait;

        // The upcoming invoice, then the cycle up to now: its first invoice must be that one.
        let upcoming = {
            let mut conn = store.acquire().await.map_err(db)?;
            subscriptions::upcoming(&mut conn, tenant, &sub).await
        };
        let before = invoice_ids(store, tenant, &sub).await?;
        let c = ctx(now);
        write(store, async |conn| {
            subscriptions::advance(conn, &c, &sub, now, usize::MAX).await
        })
        .await?
        .map_err(|e| format!("step {n}: the cycle failed: {e:?}"))?;
        let after = invoice_ids(store, tenant, &sub).await?;
        if let (Some(first), Ok(upcoming)) = (after.iter().find(|id| !before.contains(id)), &upcoming) {
            let mut conn = store.acquire().await.map_err(db)?;
            let invoice = invoices::find(&mut conn, tenant, first)
                .await
                .map_err(db)?
                .ok_or("gone")?;
            let lines: Vec<PlannedLine> = invoices::lines(&mut conn, tenant, first)
                .await
                .map_err(db)?
                .iter()
                .map(line_of)
                .collect();
            let actual = (
                lines,
                invoice.applied_balance,
                invoice.period_start,
                invoice.billing_reason.clone(),
            );
            let expected = (
                upcoming.lines.clone(),
                upcoming.applied_balance,
                upcoming.period_start,
                Some(upcoming.billing_reason.clone()),
            );
            if actual != expected {
                return Err(format!(
                    "step {n}: upcoming invoice {expected:?}, the cycle made {actual:?}"
                ));
            }
            counts.upcoming += 1;
        }
        let current = {
            let mut conn = store.acquire().await.map_err(db)?;
            subscriptions::get(&mut conn, tenant, &sub)
                .await
                .map_err(|e| format!("{e:?}"))?
        };
        if current.status == billing_api::domain::subscription::Status::Canceled {
            break;
        }

        // The change, previewed, then made with the same input at the same instant.
        let items = &current.items.data;
        let pick = |i: usize| items[i % items.len()].id.clone();
        let edits = match step.edit {
            Edit::Quantity(i, quantity) => vec![ItemChange::Update {
                id: pick(i),
                price_id: None,
                quantity: Some(quantity),
            }],
            Edit::Price(i, p) => vec![ItemChange::Update {
                id: pick(i),
                price_id: Some(prices[p].clone()),
                quantity: None,
            }],
            Edit::Add(p, quantity) => vec![ItemChange::Add {
                price_id: prices[p].clone(),
                quantity,
            }],
            Edit::Delete(i) => vec![ItemChange::Delete { id: pick(i) }],
            Edit::Nothing => vec![],
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let proration_date = step
            .date
            .map(|f| current.current_period_start + ((now - current.current_period_start) as f64 * f) as i64);
        let change = Change {
            items: edits,
            proration_behavior: step.behavior,
            proration_date,
            cancel_at_period_end: step.cancel_at_period_end,
            metadata: None,
        };
        let c = ctx(now);
        let preview = write(store, async |conn| {
            changes::preview(conn, &c, &sub, change.clone()).await
        })
        .await?;
        let (credits_before, charges_before, invoices_before) = {
            let mut conn = store.acquire().await.map_err(db)?;
            (
                credits::transactions(&mut conn, tenant, &customer)
                    .await
                    .map_err(db)?
                    .len(),
                charges::all(&mut conn, tenant, &sub)
                    .await
                    .map_err(db)?
                    .into_iter()
                    .map(|c| c.id)
                    .collect::<BTreeSet<_>>(),
                invoice_ids(store, tenant, &sub).await?,
            )
        };
        let made = write(store, async |conn| {
            changes::update(conn, &c, &sub, change.clone()).await
        })
        .await?;
        counts.changes += 1;
        let (preview, made) = match (preview, made) {
            (Err(p), Err(m)) => {
                if format!("{p:?}") != format!("{m:?}") {
                    return Err(format!("step {n}: the preview refused {p:?}, the change {m:?}"));
                }
                counts.refused += 1;
                continue;
            }
            (Ok(p), Ok(m)) => (p, m),
            (p, m) => return Err(format!("step {n}: preview {p:?}, change {m:?}")),
        };
        let mut conn = store.acquire().await.map_err(db)?;
        let granted: Vec<(String, i64)> = credits::transactions(&mut conn, tenant, &customer)
            .await
            .map_err(db)?
            .into_iter()
            .skip(credits_before)
            .filter(|t| t.amount > 0)
            .map(|t| (t.description, t.amount))
            .collect();
        let shown: Vec<(String, i64)> = preview
            .credits
            .iter()
            .map(|c| (c.description.clone(), c.amount))
            .collect();
        if granted != shown {
            return Err(format!("step {n}: credits previewed {shown:?}, given {granted:?}"));
        }
        counts.credits += granted.len();
        let charged: Vec<PlannedLine> = charges::all(&mut conn, tenant, &sub)
            .await
            .map_err(db)?
            .into_iter()
            .filter(|c| !charges_before.contains(&c.id))
            .map(|c| PlannedLine {
                amount: c.amount,
                description: c.description,
                quantity: 1,
                unit_amount: c.amount,
                price: c.price_id,
                period: billing_api::objects::Period {
                    start: c.period_start,
                    end: c.period_end,
                },
            })
            .collect();
        if charged != preview.charges {
            return Err(format!(
                "step {n}: charges previewed {:?}, made {charged:?}",
                preview.charges
            ));
        }
        let new_invoices: Vec<String> = invoice_ids(store, tenant, &sub)
            .await?
            .into_iter()
            .filter(|id| !invoices_before.contains(id))
            .collect();
        let made_invoice = match new_invoices.as_slice() {
            [] => None,
            [id] => {
                let invoice = invoices::find(&mut conn, tenant, id).await.map_err(db)?.ok_or("gone")?;
                let lines: Vec<PlannedLine> = invoices::lines(&mut conn, tenant, id)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(line_of)
                    .collect();
                Some((lines, invoice.applied_balance, invoice.total - invoice.applied_balance))
            }
            more => return Err(format!("step {n}: one change made {} invoices", more.len())),
        };
        let previewed_invoice = preview
            .invoice
            .as_ref()
            .map(|i| (i.lines.clone(), i.applied_balance, i.amount_due));
        if made_invoice != previewed_invoice {
            return Err(format!(
                "step {n}: invoice previewed {previewed_invoice:?}, made {made_invoice:?}"
            ));
        }
        counts.invoices_now += usize::from(made_invoice.is_some());
        let shape = |s: &billing_api::objects::Subscription| {
            (
                s.items
                    .data
                    .iter()
                    .map(|i| (i.price.clone(), i.quantity))
                    .collect::<Vec<_>>(),
                s.cancel_at_period_end,
                s.current_period_start,
                s.current_period_end,
                s.status,
            )
        };
        if shape(&preview.subscription) != shape(&made) {
            return Err(format!(
                "step {n}: subscription previewed {:?}, made {:?}",
                shape(&preview.subscription),
                shape(&made)
            ));
        }
        drop(conn);
        check(store, tenant).await.map_err(|e| format!("step {n}: {e}"))?;
        owed_matches(store, tenant, &customer)
            .await
            .map_err(|e| format!("step {n}: {e}"))?;
    }
    Ok(())
}

async fn previews_equal_reality(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let cases = std::env::var("PREVIEW_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let runtime = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let counts = std::sync::Mutex::new(Counts::default());
    // The failure carries the minimal case; it is only printed.
    #[allow(clippy::result_large_err)]
    let result = tokio::task::block_in_place(|| {
        runner.run(&case(), |case| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let tenant = format!("preview-{n}");
            runtime.block_on(async {
                let mut local = Counts::default();
                let outcome = run_case(&store, backend, &tenant, &case, &mut local).await;
                let mut all = counts.lock().unwrap();
                all.changes += local.changes;
                all.refused += local.refused;
                all.credits += local.credits;
                all.invoices_now += local.invoices_now;
                all.upcoming += local.upcoming;
                outcome.map_err(TestCaseError::fail)
            })
        })
    });
    let counts = counts.into_inner().unwrap();
    eprintln!(
        "previews on {}: {} generated cases; {} changes compared ({} refused alike), {} credits, {} invoices made at once, {} upcoming invoices compared with the cycle's",
        backend.name(),
        counter.into_inner(),
        counts.changes,
        counts.refused,
        counts.credits,
        counts.invoices_now,
        counts.upcoming
    );
    store.close().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must reach what it is meant to compare.
    assert!(counts.credits > 0 && counts.invoices_now > 0 && counts.upcoming > 0 && counts.refused > 0);
}

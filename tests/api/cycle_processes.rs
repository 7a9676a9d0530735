//! The billing cycle run by several processes at once, as replicas or cron jobs would run it:
//! three `billing-api cycles run` at the same time, one of them killed with SIGKILL in the middle
//! of its work, then a fourth run to finish. Every period of every subscription is billed exactly
//! once, on both backends.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use billing_api::billing::catalog::{self, NewPrice, NewProduct, Pricing};
use billing_api::billing::customers::{self, NewCustomer};
use billing_api::billing::subscriptions::{self, NewItem, NewSubscription};
use billing_api::domain::metadata::Metadata;
use billing_api::domain::money::Currency;
use billing_api::objects::{CollectionMethod, Interval, PriceRecurring, UsageType};
use billing_api::operation::Ctx;
use billing_api::store::{Backend, Store};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::process::{command, run};
use crate::helpers::{TestDb, config_for};

backend_tests!(three_processes_and_a_kill_bill_each_period_once);

const DAY: i64 = 86_400;
const SUBSCRIPTIONS: i64 = 30;
const DAYS: i64 = 40;

/// `SUBSCRIPTIONS` daily subscriptions created a little less than `DAYS` days ago and never
/// cycled since: `DAYS` periods each have started.
async fn subscriptions_behind(store: &Store, backend: Backend, now: i64) {
    let then = now - DAYS * DAY + 3_600;
    let ctx = Ctx::new(backend, "acme".into(), "test".into(), "test".into(), then);
    let mut tx = store.begin_write().await.unwrap();
    let customer = customers::create(
        &mut tx,
        &ctx,
        NewCustomer {
            name: None,
            email: None,
            currency: Currency::parse("usd"),
            metadata: Metadata::new(),
            test_clock: None,
        },
    )
    .await
    .unwrap();
    let product = catalog::create_product(
        &mut tx,
        &ctx,
        NewProduct {
            name: "Daily".into(),
            description: None,
            active: true,
            metadata: Metadata::new(),
        },
    )
    .await
    .unwrap();
    let price = catalog::create_price(
        &mut tx,
        &ctx,
        NewPrice {
            product_id: product.id,
            currency: Currency::parse("usd").unwrap(),
            recurring: PriceRecurring {
                interval: Interval::Day,
                interval_count: 1,
                usage_type: UsageType::Licensed,
                meter: None,
            },
            pricing: Pricing::PerUnit {
                unit_amount: 100,
                transform: None,
            },
            nickname: None,
            active: true,
            metadata: Metadata::new(),
        },
    )
    .await
    .unwrap();
    for i in 0..SUBSCRIPTIONS {
        let ctx = Ctx::new(backend, "acme".into(), "test".into(), "test".into(), then + i * 60);
        subscriptions::create(
            &mut tx,
            &ctx,
            NewSubscription {
                customer_id: customer.id.clone(),
                items: vec![NewItem {
                    price_id: price.id.clone(),
                    quantity: 1,
                }],
                time_zone: None,
                billing_cycle_day: None,
                trial_period_days: None,
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
                metadata: Metadata::new(),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn invoice_count(store: &Store) -> i64 {
    let mut conn = store.acquire().await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

async fn three_processes_and_a_kill_bill_each_period_once(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let now = billing_api::clock::now();
    subscriptions_behind(&store, backend, now).await;
    assert_eq!(
        invoice_count(&store).await,
        SUBSCRIPTIONS,
        "each first period, at creation"
    );

    let env = [("BILLING_DATABASE__URL", db.url.as_str())];
    let runs: Vec<std::process::Child> = (0..3)
        .map(|_| {
            command(&["cycles", "run"], &env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill the first run once the work is under way, in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while invoice_count(&store).await < SUBSCRIPTIONS + 50 {
        assert!(Instant::now() < deadline, "the runs bill nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut runs = runs.into_iter();
    let mut first = runs.next().unwrap();
    first.kill().unwrap();
    let killed = first.wait().unwrap();
    assert!(!killed.success(), "the first run was killed before it finished");
    let mid_run = invoice_count(&store).await;
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        // A run finishes; a subscription it could not bill (SQLite busy past its timeout while
        // the others write) is left due for the next run, and said so.
        assert!(
            out.status.success() || stdout.contains("failed (left due)"),
            "{stdout}{stderr}"
        );
    }
    // A last run finds nothing left, or what a kill left behind.
    let (status, stdout, stderr) = run(&["cycles", "run"], &env);
    assert!(status.success(), "{stdout}{stderr}");

    let mut conn = store.acquire().await.unwrap();
    let rows = sqlx::query(
        "SELECT subscription_id, period_start, period_end FROM invoices ORDER BY subscription_id, period_start",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut periods: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in &rows {
        periods
            .entry(r.get("subscription_id"))
            .or_default()
            .push((r.get("period_start"), r.get("period_end")));
    }
    assert_eq!(periods.len() as i64, SUBSCRIPTIONS);
    for (id, list) in &periods {
        // One invoice per period, each starting where the last ended, up to the one in progress.
        assert_eq!(list.len() as i64, DAYS, "{id}: {list:?}");
        for pair in list.windows(2) {
            assert_eq!(pair[1].0, pair[0].1, "{id}: contiguous, none twice");
        }
        assert!(list.last().unwrap().1 > now && list.last().unwrap().0 <= now);
    }
    eprintln!(
        "{}: {} invoices by three runs (one killed at {} invoices) and a last one",
        backend.name(),
        rows.len(),
        mid_run
    );
    drop(conn);
    store.close().await;
}

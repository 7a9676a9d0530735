//! Subscriptions and the billing cycle, on both backends. Time is moved by running the cycle up to
//! a later instant (`billing::cycles::run_until`), as a scheduler would at that time.
use std::collections::BTreeSet;

use billing_api::billing::cycles::{self, Report};
use billing_api::store::Backend;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::helpers::api::Api;
use crate::helpers::process::run;
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

backend_tests!(
    a_subscription_invoices_its_first_period_then_each_one_after,
    a_billing_day_prorates_the_first_period_and_bills_on_month_ends,
    a_trial_bills_nothing_until_it_ends,
    cancellation_now_or_at_the_end_of_the_period,
    bad_subscriptions_are_refused_and_change_nothing,
    concurrent_cycle_runs_bill_each_period_once,
    a_subscription_that_fails_stays_due_and_the_run_bills_the_others,
    a_cancellation_first_bills_the_periods_that_have_started,
    what_later_periods_could_not_bill_is_refused_up_front,
    an_overdue_invoice_makes_the_subscription_past_due_until_it_is_paid,
    the_tenant_default_time_zone_sets_period_boundaries,
);

const DAY: i64 = 86_400;

async fn price(api: &Api, body: Value) -> String {
    let product = api.post("/v1/products", json!({"name": "Team plan"})).await.expect(201);
    let mut body = body;
    body["product"] = product["id"].clone();
    api.post("/v1/prices", body).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn monthly(api: &Api, unit_amount: i64) -> String {
    price(
        api,
        json!({"currency": "usd", "recurring": {"interval": "month"}, "unit_amount": unit_amount}),
    )
    .await
}

async fn invoices_of(api: &Api, subscription: &str) -> Vec<Value> {
    let page = api
        .get(&format!("/v1/invoices?subscription={subscription}&limit=100"))
        .await
        .expect(200);
    let mut data = page["data"].as_array().unwrap().clone();
    data.sort_by_key(|i| i["period_start"].as_i64());
    data
}

async fn run_until(app: &TestApp, until: i64) -> Report {
    cycles::run_until(&app.store, until, &CancellationToken::new()).await
}

/// Each invoice bills the period after the previous one's, each once.
fn assert_contiguous(invoices: &[Value]) {
    for pair in invoices.windows(2) {
        assert_eq!(pair[1]["period_start"], pair[0]["period_end"], "{pair:?}");
    }
    let starts: BTreeSet<i64> = invoices.iter().map(|i| i["period_start"].as_i64().unwrap()).collect();
    assert_eq!(starts.len(), invoices.len(), "one invoice per period");
}

async fn a_subscription_invoices_its_first_period_then_each_one_after(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let storage = price(
        &api,
        json!({"currency": "usd", "recurring": {"interval": "month"}, "tiers_mode": "volume",
               "tiers": [{"up_to": 10, "unit_amount": 300}, {"unit_amount": 200, "flat_amount": 500}]}),
    )
    .await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "time_zone": "Europe/Paris",
                   "items": [{"price": seats, "quantity": 3}, {"price": storage, "quantity": 12}]}),
        )
        .await
        .expect(201);
    let id = sub["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sub_"));
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["currency"], "usd");
    assert_eq!(sub["time_zone"], "Europe/Paris");
    assert_eq!(sub["recurring"], json!({"interval": "month", "interval_count": 1}));
    assert_eq!(sub["items"]["data"].as_array().unwrap().len(), 2);
    assert_eq!(sub["current_period_start"], sub["created"]);
    let end = sub["current_period_end"].as_i64().unwrap();
    let start = sub["current_period_start"].as_i64().unwrap();
    assert!(
        (28 * DAY - 3_600..=31 * DAY + 3_600).contains(&(end - start)),
        "a month"
    );

    let first = invoices_of(&api, &id).await;
    assert_eq!(first.len(), 1);
    let invoice = &first[0];
    assert_eq!(invoice["status"], "open", "finalized at once");
    assert!(invoice["number"].as_str().unwrap().starts_with("INV-"));
    assert_eq!(invoice["billing_reason"], "subscription_create");
    assert_eq!(invoice["subscription"], id.as_str());
    assert_eq!(invoice["period_start"], start);
    assert_eq!(invoice["period_end"], end);
    // 3 seats at 10.00, and 12 units at the second tier's 2.00 plus its 5.00 flat fee.
    assert_eq!(invoice["total"], 3 * 1_000 + 12 * 200 + 500);
    for line in invoice["lines"]["data"].as_array().unwrap() {
        assert_eq!(line["period"], json!({"start": start, "end": end}));
        assert!(line["price"] == seats.as_str() || line["price"] == storage.as_str());
    }
    assert_eq!(
        api.get(&format!("/v1/subscriptions/{id}")).await.expect(200)["items"],
        sub["items"]
    );

    // Three months on: three more periods, each after the one before, billed once however
    // often the cycle runs.
    let report = run_until(&app, end + 62 * DAY).await;
    assert_eq!(report.failures, 0);
    let all = invoices_of(&api, &id).await;
    assert_eq!(all.len(), 4, "{report:?}");
    assert_contiguous(&all);
    assert!(all[1..].iter().all(|i| i["billing_reason"] == "subscription_cycle"));
    assert!(all.iter().all(|i| i["total"] == 3 * 1_000 + 12 * 200 + 500));
    assert_eq!(run_until(&app, end + 62 * DAY).await.periods, 0);
    assert_eq!(invoices_of(&api, &id).await.len(), 4);
    let now = api.get(&format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(now["current_period_start"], all[3]["period_start"]);
    assert_eq!(now["current_period_end"], all[3]["period_end"]);
    let listed = api
        .get(&format!("/v1/subscriptions?customer={customer}&status=active"))
        .await
        .expect(200);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let created = api.get("/v1/events?type=subscription.created").await.expect(200);
    assert_eq!(created["data"][0]["data"]["id"], id.as_str());
}

async fn a_billing_day_prorates_the_first_period_and_bills_on_month_ends(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 3_100).await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "billing_cycle_day": 31, "collection_method": "send_invoice",
                   "days_until_due": 14, "items": [{"price": seats, "quantity": 2}]}),
        )
        .await
        .expect(201);
    let id = sub["id"].as_str().unwrap();
    let (start, end) = (
        sub["current_period_start"].as_i64().unwrap(),
        sub["current_period_end"].as_i64().unwrap(),
    );
    let first = &invoices_of(&api, id).await[0];
    assert_eq!(
        first["due_date"].as_i64().unwrap(),
        first["finalized_at"].as_i64().unwrap() + 14 * DAY
    );
    // The first period runs to the next month end: its share of the month, rounded once.
    let report = run_until(&app, end).await;
    assert_eq!(report.periods, 1);
    let all = invoices_of(&api, id).await;
    let full = &all[1];
    let (p0, p1) = (
        full["period_start"].as_i64().unwrap(),
        full["period_end"].as_i64().unwrap(),
    );
    assert_eq!(p0, end);
    assert_eq!(full["total"], 6_200, "a whole period");
    // The first period is the end of the nominal period before [p0, p1): [previous boundary, p0).
    let nominal_start = {
        let sub_now = api.get(&format!("/v1/subscriptions/{id}")).await.expect(200);
        assert_eq!(sub_now["current_period_start"], p0);
        // The month before p0, computed the way the calendar does: the previous month end.
        previous_month_end(p0)
    };
    let share = (6_200i128 * i128::from(end - start) * 2 + i128::from(end - nominal_start))
        / (2 * i128::from(end - nominal_start));
    assert_eq!(all[0]["total"].as_i64().unwrap(), i64::try_from(share).unwrap());
    assert_eq!(all[0]["lines"]["data"].as_array().unwrap().len(), 1);
    // Later periods end on month ends, whatever the month's length.
    run_until(&app, p1 + 200 * DAY).await;
    for invoice in invoices_of(&api, id).await.iter().skip(1) {
        let day = utc_day_of_month(invoice["period_start"].as_i64().unwrap());
        let last = days_in_month_of(invoice["period_start"].as_i64().unwrap());
        assert_eq!(day, last, "{invoice}");
    }
}

/// Day of the month of a Unix instant in UTC (civil-from-days, Howard Hinnant's algorithm).
fn civil(t: i64) -> (i64, i64, i64) {
    let z = t.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn utc_day_of_month(t: i64) -> i64 {
    civil(t).2
}

fn days_in_month_of(t: i64) -> i64 {
    let (y, m, _) = civil(t);
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The last day of the month before `t`'s month, at 00:00 UTC (`t` is a month end at 00:00).
fn previous_month_end(t: i64) -> i64 {
    let (_, _, d) = civil(t);
    let first_of_month = t - (d - 1) * DAY;
    first_of_month - DAY
}

async fn a_trial_bills_nothing_until_it_ends(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "trial_period_days": 14, "items": [{"price": seats}]}),
        )
        .await
        .expect(201);
    let id = sub["id"].as_str().unwrap();
    assert_eq!(sub["status"], "trialing");
    let trial_end = sub["trial_end"].as_i64().unwrap();
    assert_eq!(trial_end, sub["created"].as_i64().unwrap() + 14 * DAY);
    assert_eq!(sub["current_period_end"], trial_end);
    assert!(
        invoices_of(&api, id).await.is_empty(),
        "nothing billed during the trial"
    );
    assert_eq!(run_until(&app, trial_end - 1).await.periods, 0);
    assert_eq!(run_until(&app, trial_end).await.periods, 1);
    let after = api.get(&format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(after["status"], "active");
    assert_eq!(
        after["current_period_start"], trial_end,
        "the cycle starts at the trial's end"
    );
    let invoices = invoices_of(&api, id).await;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["period_start"], trial_end);
    assert_eq!(invoices[0]["total"], 1_000);
    let updated = api.get("/v1/events?type=subscription.updated").await.expect(200);
    assert_eq!(updated["data"][0]["data"]["status"], "active");
}

async fn cancellation_now_or_at_the_end_of_the_period(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let create = || {
        api.post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": seats}]}),
        )
    };
    let later = create().await.expect(201);
    let later_id = later["id"].as_str().unwrap();
    let end = later["current_period_end"].as_i64().unwrap();
    let marked = api
        .post(
            &format!("/v1/subscriptions/{later_id}/cancel"),
            json!({"at_period_end": true}),
        )
        .await
        .expect(200);
    assert_eq!(marked["status"], "active", "until the period ends");
    assert_eq!(marked["cancel_at_period_end"], true);
    run_until(&app, end + 90 * DAY).await;
    let ended = api.get(&format!("/v1/subscriptions/{later_id}")).await.expect(200);
    assert_eq!(ended["status"], "canceled");
    assert_eq!(ended["ended_at"], end);
    assert_eq!(
        invoices_of(&api, later_id).await.len(),
        1,
        "no period after the cancellation"
    );

    let now = create().await.expect(201);
    let now_id = now["id"].as_str().unwrap();
    let canceled = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/subscriptions/{now_id}/cancel"),
            None,
            None,
        )
        .await
        .expect(200);
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["ended_at"].as_i64().is_some());
    run_until(&app, end + 90 * DAY).await;
    assert_eq!(invoices_of(&api, now_id).await.len(), 1);
    let again = api
        .post(&format!("/v1/subscriptions/{now_id}/cancel"), json!({}))
        .await
        .expect(409);
    assert_eq!(again["code"], "invalid_state_transition");
    let events = api.get("/v1/events?type=subscription.canceled").await.expect(200);
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
}

async fn bad_subscriptions_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let euros = price(
        &api,
        json!({"currency": "eur", "recurring": {"interval": "month"}, "unit_amount": 5}),
    )
    .await;
    let yearly = price(
        &api,
        json!({"currency": "usd", "recurring": {"interval": "year"}, "unit_amount": 5}),
    )
    .await;
    let retired = monthly(&api, 7).await;
    api.post(&format!("/v1/prices/{retired}"), json!({"active": false}))
        .await
        .expect(200);
    let cases = [
        (json!([{"price": retired}]), None, ("items[0].price", "price_inactive")),
        (json!([{"price": euros}]), None, ("items[0].price", "currency_mismatch")),
        (
            json!([{"price": seats}, {"price": yearly}]),
            None,
            ("items[1].price", "interval_mismatch"),
        ),
        (
            json!([{"price": seats}]),
            Some("Mars/Olympus"),
            ("time_zone", "invalid_time_zone"),
        ),
        (json!([]), None, ("items", "invalid_length")),
        (
            json!([{"price": seats, "quantity": 0}]),
            None,
            ("items[0].quantity", "out_of_range"),
        ),
    ];
    for (items, zone, (field, code)) in cases {
        let mut body = json!({"customer": customer, "items": items});
        if let Some(zone) = zone {
            body["time_zone"] = json!(zone);
        }
        let refused = api.post("/v1/subscriptions", body.clone()).await.expect(422);
        let errors = crate::helpers::field_errors(&refused);
        assert!(
            errors.contains(&(field.to_owned(), code.to_owned())),
            "{body}: {refused}"
        );
    }
    let missing = format!("price_{}", "0".repeat(32));
    api.post(
        "/v1/subscriptions",
        json!({"customer": customer, "items": [{"price": missing}]}),
    )
    .await
    .expect(404);
    assert_eq!(api.get("/v1/subscriptions").await.expect(200)["data"], json!([]));
    assert_eq!(api.get("/v1/invoices").await.expect(200)["data"], json!([]));

    // Billing ahead of time is refused by the command; billing what is due works.
    let db = crate::helpers::TestDb::shared(&app);
    let env = [("BILLING_DATABASE__URL", db.url.as_str())];
    let ahead = (billing_api::clock::now() + 3_600).to_string();
    let (status, _, stderr) = run(&["cycles", "run", "--until", &ahead], &env);
    assert!(!status.success());
    assert!(stderr.contains("ahead of now"), "{stderr}");
    let (status, stdout, stderr) = run(&["cycles", "run"], &env);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("0 period(s) billed"), "{stdout}");
}

async fn concurrent_cycle_runs_bill_each_period_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let weekly = price(
        &api,
        json!({"currency": "usd", "recurring": {"interval": "week"}, "unit_amount": 700}),
    )
    .await;
    let monthly_price = monthly(&api, 2_000).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let item = if i % 2 == 0 { &weekly } else { &monthly_price };
        let body = json!({"customer": customer, "items": [{"price": item}], "billing_cycle_day": 28 + i % 4});
        let body = if i % 2 == 0 {
            json!({"customer": customer, "items": [{"price": item}]})
        } else {
            body
        };
        ids.push(
            api.post("/v1/subscriptions", body).await.expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let until = billing_api::clock::now() + 120 * DAY;
    let runners = (0..3).map(|_| {
        let store = app.store.clone();
        tokio::spawn(async move { cycles::run_until(&store, until, &CancellationToken::new()).await })
    });
    let mut billed = 0;
    for runner in runners {
        let report = runner.await.unwrap();
        assert_eq!(report.failures, 0, "{report:?}");
        billed += report.periods;
    }
    let mut total = 0;
    for id in &ids {
        let invoices = invoices_of(&api, id).await;
        assert_contiguous(&invoices);
        let last_end = invoices.last().unwrap()["period_end"].as_i64().unwrap();
        assert!(last_end > until, "every period started by then is billed");
        total += invoices.len();
    }
    assert_eq!(
        billed,
        total - ids.len(),
        "the runners billed every period after the first, once"
    );

    // The database refuses a second invoice for a period, whoever writes it.
    let mut conn = app.store.pool().acquire().await.unwrap();
    let sql = format!(
        "UPDATE invoices SET subscription_id = '{0}', period_start = (SELECT MIN(period_start) FROM invoices WHERE subscription_id = '{0}') \
         WHERE id = (SELECT MAX(id) FROM invoices WHERE subscription_id = '{0}')",
        ids[0]
    );
    let error = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(error.to_string().to_lowercase().contains("unique"), "{error}");
}

/// Created three days and a bit ago on a daily price (through the billing layer, with that
/// instant as its clock), never cycled since: cancelling at the period's end first bills the
/// three days that started meanwhile, then ends after the current one.
async fn a_cancellation_first_bills_the_periods_that_have_started(backend: Backend) {
    use billing_api::billing::subscriptions::{NewItem, NewSubscription, create};
    use billing_api::objects::CollectionMethod;
    use billing_api::operation::Ctx;
    let Some(app) = spawn_app_with(backend, &[("BILLING_BILLING__SCHEDULER", "false")]).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let daily = price(
        &api,
        json!({"currency": "usd", "recurring": {"interval": "day"}, "unit_amount": 100}),
    )
    .await;
    let then = billing_api::clock::now() - 3 * DAY - 600;
    let ctx = Ctx::new(app.store.backend(), "acme".into(), "test".into(), "test".into(), then);
    let mut tx = app.store.begin_write().await.unwrap();
    let sub = create(
        &mut tx,
        &ctx,
        NewSubscription {
            customer_id: customer.clone(),
            items: vec![NewItem {
                price_id: daily,
                quantity: 1,
            }],
            time_zone: None,
            billing_cycle_day: None,
            trial_period_days: None,
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            metadata: Default::default(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(invoices_of(&api, &sub.id).await.len(), 1);
    let marked = api
        .post(
            &format!("/v1/subscriptions/{}/cancel", sub.id),
            json!({"at_period_end": true}),
        )
        .await
        .expect(200);
    let invoices = invoices_of(&api, &sub.id).await;
    assert_eq!(
        invoices.len(),
        4,
        "the three days that started before the cancellation are billed"
    );
    assert_contiguous(&invoices);
    assert_eq!(marked["current_period_start"], invoices[3]["period_start"]);
    assert_eq!(marked["status"], "active");
    let end = marked["current_period_end"].as_i64().unwrap();
    run_until(&app, end + 10 * DAY).await;
    let ended = api.get(&format!("/v1/subscriptions/{}", sub.id)).await.expect(200);
    assert_eq!(ended["status"], "canceled");
    assert_eq!(ended["ended_at"], end);
    assert_eq!(invoices_of(&api, &sub.id).await.len(), 4);
}

/// What would make a later period's invoice impossible is refused when the subscription is made
/// (or the customer changed), not found by the cycle: too many invoice lines, another currency.
async fn what_later_periods_could_not_bill_is_refused_up_front(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let tiers: Vec<Value> = (1..=7)
        .map(|i| json!({"up_to": i * 10, "unit_amount": 10, "flat_amount": 5}))
        .chain([json!({"unit_amount": 1, "flat_amount": 5})])
        .collect();
    let tiered = price(
        &api,
        json!({"currency": "usd", "recurring": {"interval": "month"}, "tiers_mode": "graduated", "tiers": tiers}),
    )
    .await;
    // 16 lines per item (8 tiers and their flat fees): 7 items make 112 lines, over 100.
    let items: Vec<Value> = (0..7).map(|_| json!({"price": tiered, "quantity": 100})).collect();
    let refused = api
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": items, "trial_period_days": 3}),
        )
        .await
        .expect(422);
    assert_eq!(refused["errors"][0]["code"], "too_many_invoice_lines", "{refused}");
    let six: Vec<Value> = (0..6).map(|_| json!({"price": tiered, "quantity": 100})).collect();
    api.post("/v1/subscriptions", json!({"customer": customer, "items": six}))
        .await
        .expect(201);

    // A customer without a currency, on trial in dollars: its currency cannot become euros.
    let open = api.post("/v1/customers", json!({"name": "Open"})).await.expect(201);
    let open_id = open["id"].as_str().unwrap();
    let seats = monthly(&api, 1_000).await;
    api.post(
        "/v1/subscriptions",
        json!({"customer": open_id, "items": [{"price": seats}], "trial_period_days": 7}),
    )
    .await
    .expect(201);
    let locked = api
        .post(&format!("/v1/customers/{open_id}"), json!({"currency": "eur"}))
        .await
        .expect(422);
    assert_eq!(locked["errors"][0]["code"], "currency_locked");
    api.post(&format!("/v1/customers/{open_id}"), json!({"currency": "usd"}))
        .await
        .expect(200);
}

/// Created two days ago on a monthly price (through the billing layer, at that instant), its
/// first invoice unpaid since: `billing-api cycles run` makes it past due once the invoice is
/// owed `billing.past_due_after` past its due date, and active again once it is paid.
async fn an_overdue_invoice_makes_the_subscription_past_due_until_it_is_paid(backend: Backend) {
    use billing_api::billing::subscriptions::{NewItem, NewSubscription, create};
    use billing_api::objects::CollectionMethod;
    use billing_api::operation::Ctx;
    let Some(app) = spawn_app_with(backend, &[("BILLING_BILLING__SCHEDULER", "false")]).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let then = billing_api::clock::now() - 2 * DAY;
    let ctx = Ctx::new(app.store.backend(), "acme".into(), "test".into(), "test".into(), then);
    let mut tx = app.store.begin_write().await.unwrap();
    let sub = create(
        &mut tx,
        &ctx,
        NewSubscription {
            customer_id: customer.clone(),
            items: vec![NewItem {
                price_id: seats,
                quantity: 1,
            }],
            time_zone: None,
            billing_cycle_day: None,
            trial_period_days: None,
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            metadata: Default::default(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let invoice = invoices_of(&api, &sub.id).await.remove(0);
    assert_eq!(invoice["due_date"], then, "{invoice}");
    let status = async || {
        api.get(&format!("/v1/subscriptions/{}", sub.id)).await.expect(200)["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let db = crate::helpers::TestDb::shared(&app);
    let cycle = |past_due_after: &str| {
        let env = [
            ("BILLING_DATABASE__URL", db.url.as_str()),
            ("BILLING_BILLING__PAST_DUE_AFTER", past_due_after),
        ];
        let (code, stdout, stderr) = run(&["cycles", "run"], &env);
        assert!(code.success(), "{stderr}");
        stdout
    };
    let moved = |n: usize| format!("{n} subscription(s) became past due or active again");

    // Owed for two days: not past due with three days' grace, past due with one.
    assert!(cycle("3days").contains(&moved(0)));
    assert_eq!(status().await, "active");
    let out = cycle("1day");
    assert!(out.contains(&moved(1)), "{out}");
    assert_eq!(status().await, "past_due");
    assert!(cycle("1day").contains(&moved(0)), "moved once");
    // Paid, it is active again at the next run.
    api.pay(invoice["id"].as_str().unwrap(), 1_000, "usd").await.expect(201);
    let out = cycle("1day");
    assert!(out.contains(&moved(1)), "{out}");
    assert_eq!(status().await, "active");
    let events = api
        .get("/v1/events?type=subscription.updated&limit=100")
        .await
        .expect(200);
    let statuses: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["past_due", "active"], "{events}");
}

async fn the_tenant_default_time_zone_sets_period_boundaries(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let db = crate::helpers::TestDb::shared(&app);
    let env = [("BILLING_DATABASE__URL", db.url.as_str())];
    let configure = |zone: &str| run(&["tenant", "configure", "--tenant", "acme", "--time-zone", zone], &env);
    let (status, _, stderr) = configure("Mars/Olympus_Mons");
    assert!(!status.success());
    assert!(stderr.contains("not an IANA time zone"), "{stderr}");
    let (status, _, stderr) = configure("Asia/Tokyo");
    assert!(status.success(), "{stderr}");

    let customer = api.customer("usd").await;
    let seats = monthly(&api, 1_000).await;
    let subscribe = async |api: &Api, customer: &str, price: &str, extra: Value| {
        let mut body = json!({"customer": customer, "items": [{"price": price}], "billing_cycle_day": 1});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        api.post("/v1/subscriptions", body).await.expect(201)
    };
    // Not given: the tenant's zone. Periods end at midnight in Tokyo (UTC+9, no DST).
    let sub = subscribe(&api, &customer, &seats, json!({})).await;
    assert_eq!(sub["time_zone"], "Asia/Tokyo");
    let end = sub["current_period_end"].as_i64().unwrap();
    assert_eq!((end + 9 * 3_600) % DAY, 0, "midnight in Tokyo: {end}");
    // Given: the subscription's own.
    let utc = subscribe(&api, &customer, &seats, json!({"time_zone": "UTC"})).await;
    assert_eq!(utc["time_zone"], "UTC");
    assert_eq!(utc["current_period_end"].as_i64().unwrap() % DAY, 0);
    // Another tenant keeps UTC.
    let other = app.tenant("globex").await;
    let customer = other.customer("usd").await;
    let price = monthly(&other, 1_000).await;
    assert_eq!(
        subscribe(&other, &customer, &price, json!({})).await["time_zone"],
        "UTC"
    );
}

/// A subscription the cycle cannot advance (here its stored anchor is unreadable) fails alone:
/// the run moves past it and bills the others, it stays due with nothing billed, and once
/// mended the next run bills it.
async fn a_subscription_that_fails_stays_due_and_the_run_bills_the_others(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[("BILLING_BILLING__SCHEDULER", "false")]).await else {
        return;
    };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let plan = monthly(&api, 1_200).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let sub = api
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": plan}]}),
            )
            .await
            .expect(201);
        ids.push(sub["id"].as_str().unwrap().to_owned());
    }
    let broken = ids[3].clone();
    let mut conn = app.store.pool().acquire().await.unwrap();
    let anchor: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT anchor FROM subscriptions WHERE id = '{broken}'"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let set_anchor = |value: &str| format!("UPDATE subscriptions SET anchor = '{value}' WHERE id = '{broken}'");
    sqlx::query(sqlx::AssertSqlSafe(set_anchor("not a time")))
        .execute(&mut *conn)
        .await
        .unwrap();

    let until = billing_api::clock::now() + 40 * DAY;
    let report = run_until(&app, until).await;
    assert_eq!(report.periods, 6, "{report:?}");
    // Each claimer that reaches it fails on it once, then moves past it.
    assert!(report.failures >= 1 && report.failures <= cycles::WORKERS, "{report:?}");
    for id in &ids {
        let expected = if *id == broken { 1 } else { 2 };
        assert_eq!(invoices_of(&api, id).await.len(), expected, "{id}");
    }

    sqlx::query(sqlx::AssertSqlSafe(set_anchor(&anchor)))
        .execute(&mut *conn)
        .await
        .unwrap();
    let report = run_until(&app, until).await;
    assert_eq!((report.periods, report.failures), (1, 0), "{report:?}");
    let invoices = invoices_of(&api, &broken).await;
    assert_eq!(invoices.len(), 2);
    assert_contiguous(&invoices);
}

//! Usage metering on both backends: meters, meter events counted exactly once (duplicates in a
//! batch or across batches answered `duplicate`, a refused batch claiming nothing, concurrent
//! batches sharing identifiers, a server killed mid-load and its client retrying everything),
//! the monthly partitions the service makes on PostgreSQL, and usage equal to an independent
//! computation over the accepted events (a property over generated cases: `METER_CASES` per
//! backend).
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use billing_api::auth::api_key;
use billing_api::billing::customers::{self, NewCustomer};
use billing_api::billing::metering::{self, NewEvent, NewMeter};
use billing_api::billing::rollups;
use billing_api::domain::metadata::Metadata;
use billing_api::domain::metering::{Aggregation, PropertyPath, minute_of, window_minutes};
use billing_api::domain::money::Currency;
use billing_api::objects::MeterEventBatch;
use billing_api::operation::Ctx;
use billing_api::store::{Backend, Store, tenants};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::process::Server;
use crate::helpers::{TestDb, assert_problem, client, config_for, field_errors, spawn_app, spawn_app_with};

backend_tests!(
    meters_count_each_event_once_and_usage_adds_up,
    a_refused_batch_claims_nothing_and_its_retry_counts_once,
    concurrent_batches_sharing_identifiers_count_each_once,
    usage_equals_the_accepted_events,
    a_killed_server_and_a_client_retrying_everything_count_each_event_once,
    a_write_that_fails_after_its_claim_leaves_nothing_claimed,
);

/// A tenant with a customer and a meter counting `call` events, on a PostgreSQL store, and one
/// writer.
struct Grouping {
    store: Store,
    ctx: Ctx,
    customer: String,
    writers: std::sync::Arc<billing_api::billing::group_commit::GroupCommit>,
    _db: TestDb,
}

async fn grouping() -> Option<Grouping> {
    let db = TestDb::migrated(Backend::Postgres).await?;
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let ctx = Ctx::new(
        Backend::Postgres,
        "grouped".into(),
        "test".into(),
        "test".into(),
        billing_api::clock::now(),
    );
    let mut tx = store.begin_write().await.unwrap();
    let input = NewCustomer {
        name: None,
        email: None,
        currency: Currency::parse("usd"),
        metadata: Metadata::new(),
        test_clock: None,
    };
    let customer = customers::create(&mut tx, &ctx, input).await.unwrap().id;
    metering::create_meter(&mut tx, &ctx, count_calls()).await.unwrap();
    tx.commit().await.unwrap();
    let writers = std::sync::Arc::new(billing_api::billing::group_commit::GroupCommit::start(&store, 1));
    Some(Grouping {
        store,
        ctx,
        customer,
        writers,
        _db: db,
    })
}

impl Grouping {
    /// Sends `first` and, while the writer is held up writing it (by a lock on the identifiers'
    /// table), each of `waiting` once the one before it waits: their answers, and the number of
    /// identifiers each transaction claimed, fewest first.
    async fn send_while_held(
        &self,
        first: Vec<(String, Value)>,
        waiting: Vec<Vec<(String, Value)>>,
    ) -> (MeterEventBatch, Vec<Result<MeterEventBatch, String>>, Vec<i64>) {
        let send = |events: Vec<(String, Value)>| {
            let (writers, store, ctx, customer) = (
                self.writers.clone(),
                self.store.clone(),
                self.ctx.clone(),
                self.customer.clone(),
            );
            tokio::spawn(async move {
                let events = events
                    .into_iter()
                    .map(|(identifier, properties)| NewEvent {
                        identifier,
                        event_name: "call".into(),
                        customer: customer.clone(),
                        timestamp: ctx.now,
                        properties,
                    })
                    .collect();
                metering::ingest_copying(&writers, &store, &ctx, events, false)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        let mut lock = self.store.begin_write().await.unwrap();
        sqlx::query("LOCK TABLE meter_event_ids IN SHARE MODE")
            .execute(&mut *lock)
            .await
            .unwrap();
        let first = send(first);
        let mut probe = self.store.acquire().await.unwrap();
        while sqlx::query_scalar::<_, i64>(
            // This database's: the tests' databases are copies of one template, so the
            // table has the same oid in each, and tests run side by side.
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'meter_event_ids'::regclass \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut *probe)
        .await
        .unwrap()
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut sent = Vec::new();
        for batch in waiting {
            sent.push(send(batch));
            let queued = sent.len();
            while self.writers.waiting() < queued {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        lock.commit().await.unwrap();
        let first = first.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for s in sent {
            answers.push(s.await.unwrap());
        }
        let transactions =
            sqlx::query_scalar("SELECT count(*) FROM meter_event_ids GROUP BY xmin::text::bigint ORDER BY count(*)")
                .fetch_all(&mut *probe)
                .await
                .unwrap();
        (first, answers, transactions)
    }

    async fn usage(&self) -> i64 {
        let now = self.ctx.now;
        let mut conn = self.store.acquire().await.unwrap();
        let window = (Some(now - 60), Some(now + 60));
        let usage = metering::usage(&mut conn, "grouped", &self.customer, window, None, now)
            .await
            .unwrap();
        usage.meters[0].value
    }
}

/// A meter counting the events named `call`.
fn count_calls() -> NewMeter {
    NewMeter {
        event_name: "call".into(),
        display_name: None,
        aggregation: Aggregation::Count,
        value_property: None,
        group_by: Vec::new(),
    }
}

fn plain(prefix: &str) -> Vec<(String, Value)> {
    (0..10).map(|i| (format!("{prefix}-{i}"), json!({}))).collect()
}

/// One writer, held up while it writes a first batch: the three batches sent meanwhile wait,
/// then go in one transaction (one `xmin` for their rows), each answered as if written alone,
/// in the order they came: an identifier of the first batch is a duplicate in the second, and
/// one the third and fourth share is accepted in the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_waiting_for_the_writer_commit_together_and_answer_as_if_alone() {
    let Some(g) = grouping().await else { return };
    let shared = || ("shared".to_owned(), json!({}));
    let mut second = plain("b");
    second.push(("a-0".into(), json!({})));
    let mut third = plain("c");
    third.push(shared());
    let mut fourth = plain("d");
    fourth.push(shared());
    let (first, answers, transactions) = g.send_while_held(plain("a"), vec![second, third, fourth]).await;
    assert_eq!((first.accepted, first.duplicates), (10, 0));
    let answers: Vec<MeterEventBatch> = answers.into_iter().map(Result::unwrap).collect();
    let counts: Vec<(i64, i64)> = answers.iter().map(|a| (a.accepted, a.duplicates)).collect();
    assert_eq!(counts, [(10, 1), (11, 0), (10, 1)]);
    assert_eq!(answers[0].events[10].identifier, "a-0");
    assert_eq!(answers[0].events[10].status, "duplicate");
    assert_eq!(answers[1].events[10].status, "accepted");
    assert_eq!(answers[2].events[10].status, "duplicate");
    assert_eq!(
        transactions,
        [10, 31],
        "the first batch alone, then the three that waited together"
    );
    assert_eq!(g.usage().await, 41);
    g.store.close().await;
}

/// A batch PostgreSQL refuses (here by a trigger, standing for any refusal) waits with two
/// others: their group fails, and each is written again alone, so only that batch fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_group_that_fails_is_written_again_batch_by_batch() {
    let Some(g) = grouping().await else { return };
    let mut conn = g.store.acquire().await.unwrap();
    for statement in [
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN IF NEW.identifier = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END$$",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON meter_events FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ] {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    let mut poisoned = plain("p");
    poisoned.push(("poison".into(), json!({})));
    let (first, answers, transactions) = g
        .send_while_held(plain("a"), vec![plain("b"), poisoned, plain("c")])
        .await;
    assert_eq!(first.accepted, 10);
    assert_eq!(answers[0].as_ref().map(|a| a.accepted), Ok(10));
    assert!(answers[1].is_err(), "{:?}", answers[1]);
    assert_eq!(answers[2].as_ref().map(|a| a.accepted), Ok(10));
    assert_eq!(
        transactions,
        [10, 10, 10],
        "the refused batch claimed nothing; the others alone"
    );
    assert_eq!(g.usage().await, 30);
    g.store.close().await;
}

/// The service makes `meter_events`' monthly partitions itself, from the grace period back to
/// two months ahead (the names PostgreSQL gives those months are worked out here, in SQL), and
/// events land in the partition of the month they happened in, a late one included: none in
/// the default partition, which only catches what no partition covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_service_makes_the_monthly_partitions_events_land_in() {
    const GRACE: i64 = 70 * 86_400;
    let Some(app) = spawn_app_with(Backend::Postgres, &[("BILLING_BILLING__METER_EVENT_GRACE", "70days")]).await else {
        return;
    };
    let now = billing_api::clock::now();
    let months = "SELECT to_char(m, '\"meter_events_y\"YYYY\"m\"MM') FROM generate_series( \
         date_trunc('month', to_timestamp($1) AT TIME ZONE 'UTC'), to_timestamp($2) AT TIME ZONE 'UTC', \
         interval '1 month') AS m";
    let mut expected: Vec<String> = sqlx::query_scalar(months)
        .bind(now - GRACE)
        .bind(now + 62 * 86_400)
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert!(expected.len() >= 4, "{expected:?}");
    expected.push("meter_events_default".into());
    expected.sort();
    let partitions = "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'meter_events'::regclass";
    let deadline = Instant::now() + Duration::from_secs(30);
    let made = loop {
        let mut made: Vec<String> = sqlx::query_scalar(partitions)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
        made.sort();
        if made == expected || Instant::now() > deadline {
            break made;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(made, expected);

    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let late = now - GRACE + 3_600;
    let event =
        |id: &str, at: i64| json!({"identifier": id, "event_name": "call", "customer": customer, "timestamp": at});
    let sent = api
        .post(
            "/v1/meter_events",
            json!({"events": [event("now", now), event("late", late)]}),
        )
        .await
        .expect(200);
    assert_eq!(statuses(&sent), ["accepted", "accepted"]);
    let mut placed = Vec::new();
    for (id, at) in [("late", late), ("now", now)] {
        // The months from `at` to `at`: its own.
        let month: String = sqlx::query_scalar(months)
            .bind(at)
            .bind(at)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        placed.push((id.to_owned(), month));
    }
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT identifier, tableoid::regclass::text FROM meter_events ORDER BY identifier")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(stored, placed);
}

fn statuses(batch: &Value) -> Vec<&str> {
    batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

async fn meters_count_each_event_once_and_usage_adds_up(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    let meter = async |body: Value| api.post("/v1/meters", body).await.expect(201);
    let count = meter(json!({"event_name": "api_call", "aggregation": "count", "display_name": "Calls"})).await;
    assert_eq!(
        (&count["object"], &count["value_property"], &count["group_by"]),
        (&json!("meter"), &Value::Null, &json!([]))
    );
    let sum = meter(
        json!({"event_name": "api_call", "aggregation": "sum", "value_property": "$.tokens",
        "group_by": ["$.region"]}),
    )
    .await;
    let max = meter(json!({"event_name": "api_call", "aggregation": "max", "value_property": "$.tokens"})).await;
    let latest = meter(json!({"event_name": "api_call", "aggregation": "latest", "value_property": "$.tokens"})).await;
    let users =
        meter(json!({"event_name": "api_call", "aggregation": "unique_count", "value_property": "$.user"})).await;
    assert_eq!(
        api.get(&format!("/v1/meters/{}", sum["id"].as_str().unwrap()))
            .await
            .expect(200),
        sum
    );
    assert_eq!(
        api.get("/v1/meters?limit=100").await.expect(200)["data"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // Each meter made is an event (for webhooks), carrying the meter as made.
    let created = api.get("/v1/events?type=meter.created&limit=100").await.expect(200);
    let created: Vec<&Value> = created["data"].as_array().unwrap().iter().map(|e| &e["data"]).collect();
    assert_eq!(created.len(), 5);
    assert!(created.contains(&&sum), "{created:?}");

    // An hour ago, on a minute's first second.
    let base = minute_of(billing_api::clock::now()) - 3_600;
    let event = |id: &str, at: i64, tokens: i64, region: Option<&str>, user: &str| {
        let mut properties = json!({"tokens": tokens, "user": user});
        if let Some(region) = region {
            properties["region"] = json!(region);
        }
        json!({"identifier": id, "event_name": "api_call", "customer": customer, "timestamp": at, "properties": properties})
    };
    let batch = json!({"events": [
        event("e1", base + 5, 10, Some("eu"), "ada"),
        event("e2", base + 59, 30, Some("us"), "bob"),
        event("e3", base + 60, 7, Some("eu"), "ada"),
        event("e4", base + 130, 2, None, "cy"),
        event("e5", base + 130, 9, Some("eu"), "bob"),
        // The same identifier again in the batch, with another value: not counted.
        event("e2", base + 61, 999, Some("us"), "zed"),
        // No meter reads this name: accepted, counted by none.
        {"identifier": "x1", "event_name": "login", "customer": customer, "timestamp": base + 1},
    ]});
    let first = api.post("/v1/meter_events", batch.clone()).await.expect(200);
    assert_eq!(
        statuses(&first),
        [
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "duplicate",
            "accepted"
        ]
    );
    assert_eq!((&first["accepted"], &first["duplicates"]), (&json!(6), &json!(1)));
    // The whole batch again (a client's retry): nothing is counted twice, nothing is refused.
    let again = api.post("/v1/meter_events", batch).await.expect(200);
    assert_eq!((&again["accepted"], &again["duplicates"]), (&json!(0), &json!(7)));
    // One event on its own.
    let one = api
        .post("/v1/meter_events", event("e6", base + 3_000, 4, Some("us"), "dan"))
        .await
        .expect(200);
    assert_eq!(statuses(&one), ["accepted"]);
    // Text that `COPY` must escape (backslash, tab, line breaks) is stored as sent.
    let awkward = json!({"note": "a\\b\tc\nd\re", "path": "C:\\x"});
    let escaped = json!({"identifier": "k\\1", "event_name": "login", "customer": customer,
        "timestamp": base + 2, "properties": awkward});
    assert_eq!(
        statuses(&api.post("/v1/meter_events", escaped).await.expect(200)),
        ["accepted"]
    );
    let stored: String = sqlx::query_scalar("SELECT properties FROM meter_events WHERE identifier = 'k\\1'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), awkward);
    // With an Idempotency-Key, the batch is written in the transaction that stores its answer
    // (on PostgreSQL, without `COPY`): a replay gives the first answer, not "duplicate".
    let keyed = json!({"events": [
        event("e6", base + 3_000, 4, Some("us"), "dan"),
        {"identifier": "k2", "event_name": "login", "customer": customer, "timestamp": base + 3},
    ]});
    let key = Some("meter-batch-k2");
    let first_keyed = api
        .send(reqwest::Method::POST, "/v1/meter_events", Some(keyed.clone()), key)
        .await
        .expect(200);
    assert_eq!(statuses(&first_keyed), ["duplicate", "accepted"]);
    let replayed = api
        .send(reqwest::Method::POST, "/v1/meter_events", Some(keyed.clone()), key)
        .await
        .expect(200);
    assert_eq!(replayed, first_keyed);
    let unkeyed = api.post("/v1/meter_events", keyed).await.expect(200);
    assert_eq!(statuses(&unkeyed), ["duplicate", "duplicate"]);

    let usage = api
        .get(&format!(
            "/v1/customers/{customer}/usage?start={base}&end={}",
            base + 3_600
        ))
        .await
        .expect(200);
    assert_eq!(
        (&usage["object"], &usage["start"]),
        (&json!("customer_usage"), &json!(base))
    );
    let by_meter = |usage: &Value, id: &Value| -> Value {
        usage["meters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| &m["meter"] == id)
            .cloned()
            .unwrap()
    };
    let value = |usage: &Value, id: &Value| by_meter(usage, id)["value"].as_i64().unwrap();
    assert_eq!(value(&usage, &count["id"]), 6);
    assert_eq!(value(&usage, &sum["id"]), 10 + 30 + 7 + 2 + 9 + 4);
    assert_eq!(value(&usage, &max["id"]), 30);
    // e4 and e5 share the latest second before e6; e6 is later.
    assert_eq!(value(&usage, &latest["id"]), 4);
    assert_eq!(value(&usage, &users["id"]), 4, "ada, bob, cy, dan");
    let groups: BTreeMap<String, i64> = by_meter(&usage, &sum["id"])["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"]["$.region"].to_string(), g["value"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        groups,
        BTreeMap::from([("\"eu\"".into(), 26), ("\"us\"".into(), 34), ("null".into(), 2)])
    );

    // An event counts in its minute, and a window takes its minutes from the one it starts in:
    // from base + 60 on, e1 and e2 (minute `base`) are out, e3 (second 60) is in.
    let later = api
        .get(&format!(
            "/v1/customers/{customer}/usage?start={}&end={}",
            base + 60,
            base + 180
        ))
        .await
        .expect(200);
    assert_eq!(value(&later, &count["id"]), 3, "e3, e4, e5");
    assert_eq!(
        value(&later, &latest["id"]),
        9,
        "e5: same second as e4, greater identifier"
    );
    let mid_minute = api
        .get(&format!(
            "/v1/customers/{customer}/usage?start={}&end={}",
            base + 30,
            base + 61
        ))
        .await
        .expect(200);
    assert_eq!(
        value(&mid_minute, &count["id"]),
        2,
        "minute base (e1, e2), not base + 60 (where it ends)"
    );

    // Folding the deltas into the rollups (the worker does every second; here, now) changes no
    // usage, grouped or not, latest included.
    let window = format!("/v1/customers/{customer}/usage?start={base}&end={}", base + 3_600);
    let before = api.get(&window).await.expect(200);
    // One delta first (the service's own folder, every second, may take the rest meanwhile).
    billing_api::billing::rollups::fold_once(&app.store, 1).await.unwrap();
    assert_eq!(api.get(&window).await.expect(200), before);
    let mut folded = false;
    for _ in 0..100 {
        billing_api::billing::rollups::fold_all(&app.store).await.unwrap();
        let mut conn = app.store.pool().acquire().await.unwrap();
        let (deltas, rollups): (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM meter_rollup_deltas), (SELECT COUNT(*) FROM meter_rollups)")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if deltas == 0 && rollups > 0 {
            folded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(folded, "every delta folded into the rollups");
    assert_eq!(api.get(&window).await.expect(200), before);
    assert_eq!(value(&before, &count["id"]), 6);

    // Meters refuse what they cannot read.
    for (body, field, code) in [
        (
            json!({"event_name": "a", "aggregation": "count", "value_property": "$.x"}),
            "value_property",
            "invalid",
        ),
        (
            json!({"event_name": "a", "aggregation": "sum"}),
            "value_property",
            "required",
        ),
        (
            json!({"event_name": "a", "aggregation": "sum", "value_property": "tokens"}),
            "value_property",
            "invalid_path",
        ),
        (
            json!({"event_name": "a b", "aggregation": "count"}),
            "event_name",
            "invalid",
        ),
        (
            json!({"event_name": "a", "aggregation": "avg"}),
            "aggregation",
            "invalid",
        ),
        (
            json!({"event_name": "a", "aggregation": "count", "group_by": ["$.a", "$.b", "$.c", "$.d"]}),
            "group_by",
            "too_many",
        ),
    ] {
        let reply = api.post("/v1/meters", body.clone()).await.expect(422);
        assert!(
            field_errors(&reply).contains(&(field.into(), code.into())),
            "{body}: {reply}"
        );
    }
    // Usage answers to the authenticated only.
    let r = app.get(&format!("/v1/customers/{customer}/usage?start={base}")).await;
    assert_eq!(r.status(), 401);
    // A bound not given is the default window's (this UTC month: no subscription); a window
    // that ends where it starts is empty.
    let from_base = api
        .get(&format!("/v1/customers/{customer}/usage?start={base}"))
        .await
        .expect(200);
    assert_eq!(value(&from_base, &count["id"]), 6);
    let empty = api
        .get(&format!("/v1/customers/{customer}/usage?start={base}&end={base}"))
        .await
        .expect(200);
    assert_eq!((value(&empty, &count["id"]), value(&empty, &max["id"])), (0, 0));
    // The default window: this UTC month, the customer having no subscription.
    let month = api.get(&format!("/v1/customers/{customer}/usage")).await.expect(200);
    assert!(month["start"].as_i64().unwrap() <= base && month["end"].as_i64().unwrap() > billing_api::clock::now());
}

/// The write fails inside its transaction, after the identifiers were claimed and the events
/// stored: the database refuses the rollups (a trigger the test adds, as a full disk or a broken
/// connection would). The client gets a 5xx, nothing is left claimed, and its retry counts each
/// event once.
async fn a_write_that_fails_after_its_claim_leaves_nothing_claimed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    api.post("/v1/meters", json!({"event_name": "call", "aggregation": "count"}))
        .await
        .expect(201);
    let sabotage = match backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER fail_rollups BEFORE INSERT ON meter_rollup_deltas \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                .to_owned(),
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION fail_rollups() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END; $$"
                .to_owned(),
            "CREATE TRIGGER fail_rollups BEFORE INSERT ON meter_rollup_deltas \
             FOR EACH ROW EXECUTE FUNCTION fail_rollups()"
                .to_owned(),
        ],
    };
    let mut conn = app.store.pool().acquire().await.unwrap();
    for sql in &sabotage {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let batch = json!({"events": (0..20)
        .map(|i| json!({"identifier": format!("f-{i}"), "event_name": "call", "customer": customer}))
        .collect::<Vec<_>>()});
    let failed = api.post("/v1/meter_events", batch.clone()).await;
    assert!(
        failed.status >= 500,
        "the injected failure is a server error: {}",
        failed.body
    );
    let claimed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meter_event_ids")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meter_events")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!((claimed, stored), (0, 0), "the failed write left nothing behind");
    let mend = match backend {
        Backend::Sqlite => "DROP TRIGGER fail_rollups",
        Backend::Postgres => "DROP TRIGGER fail_rollups ON meter_rollup_deltas",
    };
    sqlx::query(mend).execute(&mut *conn).await.unwrap();
    drop(conn);
    let retried = api.post("/v1/meter_events", batch.clone()).await.expect(200);
    assert_eq!((&retried["accepted"], &retried["duplicates"]), (&json!(20), &json!(0)));
    let again = api.post("/v1/meter_events", batch).await.expect(200);
    assert_eq!(again["duplicates"], 20);
    let usage = api.get(&format!("/v1/customers/{customer}/usage")).await.expect(200);
    assert_eq!(usage["meters"][0]["value"], 20, "each event counted once");
}

async fn a_refused_batch_claims_nothing_and_its_retry_counts_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let other = app.tenant("globex").await;
    let customer = api.customer("usd").await;
    let theirs = other.customer("usd").await;
    api.post(
        "/v1/meters",
        json!({"event_name": "tokens", "aggregation": "sum", "value_property": "$.n"}),
    )
    .await
    .expect(201);
    let now = billing_api::clock::now();
    let event = |id: &str, customer: &str, properties: Value| json!({"identifier": id, "event_name": "tokens", "customer": customer, "timestamp": now - 10, "properties": properties});
    let refused = api
        .post(
            "/v1/meter_events",
            json!({"events": [
                event("a", &customer, json!({"n": 1})),
                event("b", &customer, json!({})),
                event("c", &theirs, json!({"n": 3})),
                event("d", &customer, json!({"n": 2.5})),
            ]}),
        )
        .await
        .expect(422);
    let errors = field_errors(&refused);
    assert_eq!(
        errors,
        BTreeSet::from([
            ("events[1].properties.n".into(), "missing_meter_value".into()),
            ("events[2].customer".into(), "unknown_customer".into()),
            ("events[3].properties.n".into(), "invalid_meter_value".into()),
        ]),
        "another tenant's customer is no customer here"
    );
    // Mended, the same identifiers are all new: the refusal claimed none of them.
    let mended = api
        .post(
            "/v1/meter_events",
            json!({"events": [
                event("a", &customer, json!({"n": 1})),
                event("b", &customer, json!({"n": 2})),
                event("c", &customer, json!({"n": 3})),
                event("d", &customer, json!({"n": 4})),
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(statuses(&mended), ["accepted"; 4]);
    // Identifiers are the tenant's own: another tenant's "a" is another event.
    let theirs_a = other
        .post(
            "/v1/meter_events",
            json!({"identifier": "a", "event_name": "tokens", "customer": theirs}),
        )
        .await
        .expect(200);
    assert_eq!(statuses(&theirs_a), ["accepted"]);

    let usage = api.get(&format!("/v1/customers/{customer}/usage")).await.expect(200);
    assert_eq!(usage["meters"][0]["value"], 10);

    // Shapes and windows: each refused with its field, nothing counted.
    let old = now - 36 * 86_400;
    for (body, field, code) in [
        (json!({"events": []}), "events", "invalid_length"),
        (
            json!({"events": (0..1001).map(|i| event(&format!("z{i}"), &customer, json!({"n": 1}))).collect::<Vec<_>>()}),
            "events",
            "invalid_length",
        ),
        (
            json!({"identifier": "z", "event_name": "tokens", "customer": customer, "timestamp": old, "properties": {"n": 1}}),
            "timestamp",
            "timestamp_out_of_range",
        ),
        (
            json!({"identifier": "z", "event_name": "tokens", "customer": customer, "timestamp": now + 3_600, "properties": {"n": 1}}),
            "timestamp",
            "timestamp_out_of_range",
        ),
        (
            json!({"identifier": "", "event_name": "tokens", "customer": customer}),
            "identifier",
            "invalid",
        ),
        (
            json!({"event_name": "tokens", "customer": customer}),
            "identifier",
            "required",
        ),
        (
            json!({"identifier": "z", "event_name": "tokens", "customer": "cus_1"}),
            "customer",
            "invalid_id",
        ),
        (
            json!({"identifier": "z", "event_name": "tokens", "customer": customer, "value": 3}),
            "value",
            "unknown_field",
        ),
        (
            json!({"events": [{"identifier": "z", "event_name": "tokens", "customer": customer, "properties": [1]}]}),
            "events[0].properties",
            "invalid",
        ),
    ] {
        let response = client()
            .post(app.url("/v1/meter_events"))
            .bearer_auth(&api.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert!(
            field_errors(&problem).contains(&(field.into(), code.into())),
            "{field} {code}: {problem}"
        );
    }
    let usage = api.get(&format!("/v1/customers/{customer}/usage")).await.expect(200);
    assert_eq!(usage["meters"][0]["events"], 4);
}

async fn concurrent_batches_sharing_identifiers_count_each_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = app.tenant("acme").await;
    let customer = api.customer("usd").await;
    api.post("/v1/meters", json!({"event_name": "call", "aggregation": "count"}))
        .await
        .expect(201);
    // 8 clients; client k sends identifiers 50k .. 50k + 200 in 4 batches of 50, so that
    // neighbours overlap by 150 and every batch races others for the same identifiers.
    let now = billing_api::clock::now();
    let mut tasks = Vec::new();
    for k in 0..8 {
        let api = api.clone();
        let customer = customer.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for b in 0..4 {
                let events: Vec<Value> = (0..50)
                    .map(|i| {
                        let n = 50 * k + 50 * b + i;
                        json!({"identifier": format!("id-{n}"), "event_name": "call", "customer": customer, "timestamp": now - n})
                    })
                    .collect();
                let reply = api.post("/v1/meter_events", json!({"events": events})).await.expect(200);
                for e in reply["events"].as_array().unwrap() {
                    if e["status"] == "accepted" {
                        accepted.push(e["identifier"].as_str().unwrap().to_owned());
                    }
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 550, "each identifier accepted by exactly one batch");
    assert_eq!(distinct.len(), 550);
    let usage = api
        .get(&format!(
            "/v1/customers/{customer}/usage?start={}&end={}",
            now - 3_600,
            now + 60
        ))
        .await
        .expect(200);
    assert_eq!(usage["meters"][0]["value"], 550);
}

// ---- The property: usage equals the accepted events, whatever the batches and their order ----

#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) id: u8,
    pub(crate) customer: usize,
    /// Seconds before the case's `now`.
    pub(crate) age: i64,
    pub(crate) tokens: i64,
    pub(crate) region: Option<u8>,
    pub(crate) user: u8,
    pub(crate) other_name: bool,
}

#[derive(Debug, Clone)]
struct Case {
    batches: Vec<Vec<Ev>>,
    /// Windows as (start, length), seconds before `now`.
    windows: Vec<(i64, i64)>,
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        0u8..40,
        0usize..2,
        // Mostly the last three hours, some up to three days late.
        prop_oneof![4 => 0i64..10_800, 1 => 0i64..259_200],
        0i64..1_000,
        prop::option::of(0u8..3),
        0u8..8,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(id, customer, age, tokens, region, user, other_name)| Ev {
            id,
            customer,
            age,
            tokens,
            region,
            user,
            other_name,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(prop::collection::vec(ev(), 1..25), 1..6),
        prop::collection::vec((0i64..270_000, 1i64..100_000), 1..4),
    )
        .prop_map(|(batches, windows)| Case { batches, windows })
}

/// The meters every case has: (aggregation, value path, group by).
const METERS: &[(Aggregation, Option<&str>, &[&str])] = &[
    (Aggregation::Count, None, &[]),
    (Aggregation::Sum, Some("$.tokens"), &["$.region"]),
    (Aggregation::Max, Some("$.tokens"), &[]),
    (Aggregation::Latest, Some("$.tokens"), &["$.region"]),
    (Aggregation::UniqueCount, Some("$.user"), &["$.region"]),
];

fn region_name(r: Option<u8>) -> Value {
    r.map_or(Value::Null, |r| json!(["eu", "us", "ap"][r as usize]))
}

/// What a meter should say over `events` (already filtered to the customer and the window).
pub(crate) fn expected(aggregation: Aggregation, events: &[&(String, i64, Ev)]) -> i64 {
    match aggregation {
        Aggregation::Count => events.len() as i64,
        Aggregation::Sum => events.iter().map(|e| e.2.tokens).sum(),
        Aggregation::Max => events.iter().map(|e| e.2.tokens).max().unwrap_or(0),
        Aggregation::Latest => events
            .iter()
            .max_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
            .map_or(0, |e| e.2.tokens),
        Aggregation::UniqueCount => events.iter().map(|e| e.2.user).collect::<BTreeSet<_>>().len() as i64,
    }
}

async fn run_case(store: &Store, backend: Backend, n: usize, case: &Case) -> Result<usize, TestCaseError> {
    let now = billing_api::clock::now();
    let ctx = Ctx::new(backend, format!("meter-{n}"), "test".into(), "test".into(), now);
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let mut tx = store.begin_write().await.map_err(|e| fail(&e))?;
    let mut customers_ = Vec::new();
    for _ in 0..2 {
        let input = NewCustomer {
            name: None,
            email: None,
            currency: Currency::parse("usd"),
            metadata: Metadata::new(),
            test_clock: None,
        };
        customers_.push(customers::create(&mut tx, &ctx, input).await.map_err(|e| fail(&e))?.id);
    }
    let mut meters = Vec::new();
    for (aggregation, value, group_by) in METERS {
        let input = NewMeter {
            event_name: "api_call".into(),
            display_name: None,
            aggregation: *aggregation,
            value_property: value.and_then(PropertyPath::parse),
            group_by: group_by.iter().filter_map(|g| PropertyPath::parse(g)).collect(),
        };
        meters.push((
            metering::create_meter(&mut tx, &ctx, input)
                .await
                .map_err(|e| fail(&e))?
                .id,
            *aggregation,
        ));
    }
    tx.commit().await.map_err(|e| fail(&e))?;

    // The model: an identifier's first event is accepted, any later one is a duplicate.
    let mut seen: HashSet<u8> = HashSet::new();
    let mut accepted: Vec<(String, i64, Ev)> = Vec::new();
    // The batches go in pairs, written together as the group commit writes batches that wait
    // for a writer side by side (the second answered as if written after the first).
    for (p, pair) in case.batches.chunks(2).enumerate() {
        let sent: Vec<Vec<NewEvent>> = pair
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|e| {
                        let mut properties = json!({"tokens": e.tokens, "user": format!("u{}", e.user)});
                        if e.region.is_some() {
                            properties["region"] = region_name(e.region);
                        }
                        NewEvent {
                            identifier: format!("ev-{}", e.id),
                            event_name: if e.other_name {
                                "other".into()
                            } else {
                                "api_call".into()
                            },
                            customer: customers_[e.customer].clone(),
                            timestamp: now - e.age,
                            properties,
                        }
                    })
                    .collect()
            })
            .collect();
        // One pair in three goes batch by batch, through the group commit's queue.
        let replies = if p % 3 == 2 {
            let mut replies = Vec::new();
            for events in sent {
                replies.push(
                    crate::helpers::ingest(store, &ctx, events)
                        .await
                        .map_err(|e| fail(&e))?,
                );
            }
            replies
        } else {
            crate::helpers::ingest_group(store, &ctx, sent)
                .await
                .map_err(|e| fail(&e))?
        };
        prop_assert_eq!(replies.len(), pair.len());
        // After every pair, some deltas (at most 7, so often not all) are folded into the
        // rollups: usage is then read from rollups, deltas, or both for one minute.
        rollups::fold_once(store, 7).await.map_err(|e| fail(&e))?;
        for (batch, reply) in pair.iter().zip(&replies) {
            prop_assert_eq!(reply.events.len(), batch.len());
            for (e, status) in batch.iter().zip(&reply.events) {
                let new = seen.insert(e.id);
                let want = if new { "accepted" } else { "duplicate" };
                prop_assert_eq!(status.status, want, "event {:?}", e);
                if new && !e.other_name {
                    accepted.push((format!("ev-{}", e.id), now - e.age, e.clone()));
                }
            }
        }
    }

    let mut conn = store.acquire().await.map_err(|e| fail(&e))?;
    let mut compared = 0;
    for &(back, length) in &case.windows {
        let (start, end) = (now - back, now - back + length);
        for (c, customer) in customers_.iter().enumerate() {
            let usage = metering::usage(&mut conn, &ctx.tenant, customer, (Some(start), Some(end)), None, now)
                .await
                .map_err(|e| fail(&e))?;
            let (first, last) = window_minutes(start, end);
            let inside: Vec<&(String, i64, Ev)> = accepted
                .iter()
                .filter(|e| e.2.customer == c && (first..last).contains(&minute_of(e.1)))
                .collect();
            for (meter, aggregation) in &meters {
                let got = usage
                    .meters
                    .iter()
                    .find(|m| &m.meter == meter)
                    .ok_or_else(|| fail(&"meter missing"))?;
                prop_assert_eq!(
                    got.value,
                    expected(*aggregation, &inside),
                    "{:?} over [{}, {})",
                    aggregation,
                    start,
                    end
                );
                prop_assert_eq!(got.events, inside.len() as i64);
                let grouped = METERS.iter().any(|(a, _, g)| a == aggregation && !g.is_empty());
                if grouped {
                    let mut by_region: HashMap<Value, Vec<&(String, i64, Ev)>> = HashMap::new();
                    for e in &inside {
                        by_region.entry(region_name(e.2.region)).or_default().push(e);
                    }
                    prop_assert_eq!(got.groups.len(), by_region.len());
                    for g in &got.groups {
                        let region = g.group.get("$.region").cloned().unwrap_or(Value::Null);
                        let events = by_region.get(&region).cloned().unwrap_or_default();
                        prop_assert_eq!(
                            g.value,
                            expected(*aggregation, &events),
                            "{:?} group {}",
                            aggregation,
                            region
                        );
                    }
                }
                compared += 1;
            }
        }
    }
    Ok(compared)
}

async fn usage_equals_the_accepted_events(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let asked: Option<u32> = std::env::var("METER_CASES").ok().and_then(|c| c.parse().ok());
    let config = Config {
        cases: asked.unwrap_or(40),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = match asked {
        Some(_) => TestRunner::new(config),
        None => TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32])),
    };
    let runtime = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let compared = std::sync::atomic::AtomicUsize::new(0);
    let events = std::sync::atomic::AtomicUsize::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&case(), |case| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            events.fetch_add(
                case.batches.iter().map(Vec::len).sum(),
                std::sync::atomic::Ordering::SeqCst,
            );
            let c = runtime.block_on(run_case(&store, backend, n, &case))?;
            compared.fetch_add(c, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    });
    eprintln!(
        "usage on {}: {} generated cases, {} events sent, {} meter values compared",
        backend.name(),
        counter.into_inner(),
        events.into_inner(),
        compared.into_inner()
    );
    store.close().await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---- The fault: the server killed under load, the client sending everything again ----

const BATCHES: usize = 40;
const PER_BATCH: usize = 250;

async fn post_batch(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    customer: &str,
    b: usize,
    now: i64,
) -> Option<Value> {
    let events: Vec<Value> = (0..PER_BATCH)
        .map(|i| json!({"identifier": format!("b{b}-{i}"), "event_name": "call", "customer": customer, "timestamp": now - i as i64}))
        .collect();
    let response = http
        .post(format!("{base}/v1/meter_events"))
        .bearer_auth(key)
        .json(&json!({"events": events}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json().await.ok()
}

async fn a_killed_server_and_a_client_retrying_everything_count_each_event_once(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap();
    let generated = api_key::generate("acme", &["*".to_owned()], None, billing_api::clock::now()).unwrap();
    {
        let mut conn = store.pool().acquire().await.unwrap();
        tenants::insert_key(&mut conn, &generated.row).await.unwrap();
    }
    let key = generated.key;
    let env = [
        ("BILLING_DATABASE__URL", db.url.as_str()),
        ("BILLING_SERVER__PORT", "0"),
        ("BILLING_ADMIN__PORT", "0"),
        ("BILLING_RATE_LIMIT__WRITE_PER_SECOND", "100000"),
        ("BILLING_RATE_LIMIT__WRITE_BURST", "100000"),
    ];
    let http = client();
    let mut server = Server::start(&env);
    let base = format!("http://{}", tokio::task::block_in_place(|| server.wait_for_address()));
    let create = async |path: &str, body: Value| -> String {
        let reply: Value = http
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["id"].as_str().unwrap().to_owned()
    };
    let customer = create("/v1/customers", json!({"currency": "usd"})).await;
    let meter = create("/v1/meters", json!({"event_name": "call", "aggregation": "count"})).await;
    let now = billing_api::clock::now();

    // Two clients send the batches; the server is killed while they do.
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let (http, base, key, customer, acknowledged) = (
                http.clone(),
                base.clone(),
                key.clone(),
                customer.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                for b in (t..BATCHES).step_by(2) {
                    if post_batch(&http, &base, &key, &customer, b, now).await.is_none() {
                        return;
                    }
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < BATCHES / 4 {
        assert!(Instant::now() < deadline, "no batch went through:\n{}", server.text());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.signal("KILL");
    let killed_at = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        tokio::task::block_in_place(|| server.wait(Duration::from_secs(10))).is_some(),
        "killed"
    );
    for s in senders {
        s.await.unwrap();
    }
    assert!(killed_at < BATCHES, "killed before the clients were done");

    // A new server on the same database; the client sends every batch again.
    let server = Server::start(&env);
    let base = format!("http://{}", tokio::task::block_in_place(|| server.wait_for_address()));
    let mut accepted_on_retry = 0;
    for b in 0..BATCHES {
        let reply = post_batch(&http, &base, &key, &customer, b, now)
            .await
            .expect("the retry is answered");
        accepted_on_retry += reply["accepted"].as_u64().unwrap() as usize;
    }
    assert!(
        accepted_on_retry <= (BATCHES - killed_at) * PER_BATCH,
        "the batches acknowledged before the kill are duplicates on retry"
    );
    assert!(
        accepted_on_retry > 0,
        "the kill cut the load short: some batches were never stored"
    );
    drop(server);

    let mut conn = store.pool().acquire().await.unwrap();
    for table in ["meter_event_ids", "meter_events"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n as usize, BATCHES * PER_BATCH, "{table}");
    }
    let now = billing_api::clock::now();
    let usage = metering::usage(
        &mut conn,
        "acme",
        &customer,
        (Some(now - 3_600), Some(now + 60)),
        Some(&meter),
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        usage.meters[0].value as usize,
        BATCHES * PER_BATCH,
        "each event counted once"
    );
    eprintln!(
        "{}: killed after {killed_at} of {BATCHES} batches acknowledged; {accepted_on_retry} events accepted on retry; {} counted, each once",
        backend.name(),
        usage.meters[0].value
    );
    drop(conn);
    store.close().await;
}

//! `POST /v1/meter_events`: one event, or a batch of up to 1,000, each counted exactly once
//! (see `billing::metering`). The body is read straight from the parsed JSON, event by event,
//! without copying it into intermediate types: a batch is the hot path of usage billing.
use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::input::Check;
use super::meters::check_event_name;
use super::problem::Problem;
use super::schema::{CustomerId, EventIdentifier, EventName};
use super::state::AppState;
use super::write::{Done, Write};
use crate::billing::metering::{self as ops, NewEvent};
use crate::domain::ids::{self, Kind};
use crate::objects::MeterEventBatch;
use crate::telemetry::metrics;

/// The most events a request may carry.
pub const MAX_BATCH: usize = 1_000;
/// How far ahead of the server's clock an event's timestamp may be (clocks drift).
const MAX_AHEAD: i64 = 300;
/// The latest instant a timestamp can name: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;
const FIELDS: &[&str] = &["identifier", "event_name", "customer", "timestamp", "properties"];

/// One usage event.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct MeterEventParams {
    identifier: EventIdentifier,
    event_name: EventName,
    customer: CustomerId,
    /// When it happened (Unix seconds); now when not given. At most `billing.meter_event_grace`
    /// old (35 days unless configured) and 5 minutes ahead (422 `timestamp_out_of_range`).
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    timestamp: Option<i64>,
    /// What the meters of this `event_name` read (their `value_property` and `group_by`).
    #[schema(value_type = Option<Object>)]
    properties: Option<Map<String, Value>>,
}

/// A batch of usage events, answered event by event.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct MeterEventBatchParams {
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<MeterEventParams>,
}

/// One event, or a batch.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(untagged)]
pub enum MeterEventsBody {
    One(MeterEventParams),
    Batch(MeterEventBatchParams),
}

/// Reads one event of the body; `prefix` names it in errors (`events[3].`, or empty).
fn read_event(c: &mut Check, prefix: &str, value: &Value, now: i64, oldest: i64) -> Option<NewEvent> {
    let Some(object) = value.as_object() else {
        let field = prefix.trim_end_matches('.');
        c.error(field, "invalid", "an event is a JSON object");
        return None;
    };
    for name in object.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        c.error(
            format!("{prefix}{name}"),
            "unknown_field",
            "this field is not accepted here",
        );
    }
    let text = |c: &mut Check, name: &str| -> Option<String> {
        match object.get(name) {
            None | Some(Value::Null) => {
                c.error(format!("{prefix}{name}"), "required", "this field is required");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                c.error(format!("{prefix}{name}"), "invalid", "must be a string");
                None
            }
        }
    };
    let identifier = text(c, "identifier").and_then(|id| {
        let valid = super::idempotency::is_key_shaped(id.as_bytes());
        if !valid {
            c.error(
                format!("{prefix}identifier"),
                "invalid",
                "1 to 255 visible ASCII characters (spaces inside only)",
            );
        }
        valid.then_some(id)
    });
    let event_name = text(c, "event_name");
    let event_name = check_event_name(c, &format!("{prefix}event_name"), event_name);
    let customer = text(c, "customer").and_then(|id| {
        let valid = ids::is_valid(Kind::Customer, &id);
        if !valid {
            c.error(format!("{prefix}customer"), "invalid_id", "not a customer id (cus_…)");
        }
        valid.then_some(id)
    });
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => Some(now),
        Some(v) => match v.as_i64().filter(|t| (0..=MAX_TIME).contains(t)) {
            None => {
                c.error(
                    format!("{prefix}timestamp"),
                    "out_of_range",
                    format!("Unix seconds from 0 to {MAX_TIME}"),
                );
                None
            }
            Some(t) if t < oldest || t > now + MAX_AHEAD => {
                c.error(
                    format!("{prefix}timestamp"),
                    "timestamp_out_of_range",
                    format!(
                        "from {oldest} (the grace period) to {} (5 minutes ahead)",
                        now + MAX_AHEAD
                    ),
                );
                None
            }
            Some(t) => Some(t),
        },
    };
    let properties = match object.get("properties") {
        None | Some(Value::Null) => Some(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            c.error(format!("{prefix}properties"), "invalid", "must be a JSON object");
            None
        }
    };
    Some(NewEvent {
        identifier: identifier?,
        event_name: event_name?,
        customer: customer?,
        timestamp: timestamp?,
        properties: properties?,
    })
}

#[utoipa::path(post, path = "/v1/meter_events", tag = "meter_events", request_body = MeterEventsBody,
    responses((status = 200, description = "Each event's status, in the order sent: `accepted` (counted now) or `duplicate` (its identifier was accepted before; not counted again). A batch with duplicates is never refused for them.", body = MeterEventBatch)))]
pub async fn create(State(state): State<AppState>, w: Write) -> Result<Response, Problem> {
    w.principal.require("meter_events:write")?;
    let now = crate::clock::now();
    let oldest = now.saturating_sub(state.meter_event_grace);
    let mut c = Check::new();
    let events = match &w.body.0 {
        Value::Object(body) if body.contains_key("events") => {
            for name in body.keys().filter(|k| *k != "events") {
                c.error(name.clone(), "unknown_field", "a batch has only `events`");
            }
            match &body["events"] {
                Value::Array(items) if (1..=MAX_BATCH).contains(&items.len()) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| read_event(&mut c, &format!("events[{i}]."), v, now, oldest))
                    .collect::<Vec<_>>(),
                Value::Array(_) => {
                    c.error("events", "invalid_length", format!("1 to {MAX_BATCH} events"));
                    Vec::new()
                }
                _ => {
                    c.error("events", "invalid", "an array of events");
                    Vec::new()
                }
            }
        }
        v @ Value::Object(_) => vec![read_event(&mut c, "", v, now, oldest)],
        _ => {
            c.error("", "invalid", "the body must be a JSON object");
            Vec::new()
        }
    };
    let single = !matches!(&w.body.0, Value::Object(b) if b.contains_key("events"));
    let events = c.finish(|| events.into_iter().collect::<Option<Vec<_>>>())?;
    // A batch counts its events once committed, whichever way it is written.
    let done = |batch: MeterEventBatch| {
        let (accepted, duplicates) = (batch.accepted as u64, batch.duplicates as u64);
        Done::ok(batch)
            .counting_by(metrics::METER_EVENTS_ACCEPTED, accepted)
            .counting_by(metrics::METER_EVENTS_DUPLICATE, duplicates)
    };
    w.run_copying(
        events,
        async |writers, store, ctx, events| Ok(done(ops::ingest_copying(writers, store, ctx, events, single).await?)),
        async |conn, ctx, events| Ok(done(ops::ingest(conn, ctx, events, single).await?)),
    )
    .await
}

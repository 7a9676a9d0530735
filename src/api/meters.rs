//! Meters (create, read, list) and a customer's usage by them.
use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{EventName, PropertyPathText, Text255};
use super::write::{Done, Write};
use crate::billing::metering::{self as ops, NewMeter};
use crate::domain::ids::Kind;
use crate::domain::metering::{Aggregation, MAX_GROUP_BY, PropertyPath};
use crate::objects::{CustomerUsage, Meter};

/// The latest instant a usage window may end at: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;

/// How a meter adds up its events.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AggregationName {
    Count,
    Sum,
    Max,
    UniqueCount,
    Latest,
}

/// A new meter. `value_property` is required for every aggregation but `count`, which takes none.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MeterCreateParams {
    /// The events it reads: those sent with this name.
    #[serde(default)]
    #[schema(value_type = EventName, required = true)]
    pub event_name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<Text255>)]
    pub display_name: Field<String>,
    #[serde(default)]
    #[schema(value_type = AggregationName, required = true)]
    pub aggregation: Field<String>,
    /// Where the value is in the event's properties: a JSON path of member names (`$.tokens`,
    /// `$.usage.input_tokens`). `sum`, `max` and `latest` read a whole number from 0 to 10^12 there;
    /// `unique_count` a string, number or boolean.
    #[serde(default)]
    #[schema(value_type = Option<PropertyPathText>)]
    pub value_property: Field<String>,
    /// Up to 3 JSON paths, each once, whose values split the usage into groups.
    #[serde(default)]
    #[schema(value_type = Option<Vec<PropertyPathText>>, max_items = 3)]
    pub group_by: Field<Vec<String>>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

fn check_path(c: &mut Check, field: &str, text: String) -> Option<PropertyPath> {
    let path = PropertyPath::parse(&text);
    if path.is_none() {
        c.error(
            field,
            "invalid_path",
            "a JSON path of 1 to 4 member names of letters, digits, _ and -: $.tokens",
        );
    }
    path
}

/// An event name: 1 to 100 letters, digits, `_`, `.`, `:` and `-`, the first a letter or digit.
pub fn check_event_name(c: &mut Check, field: &str, name: Option<String>) -> Option<String> {
    let name = name?;
    let valid = (1..=100).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !valid {
        c.error(
            field,
            "invalid",
            "1 to 100 letters, digits, _, ., : and -, starting with a letter or digit",
        );
        return None;
    }
    Some(name)
}

#[utoipa::path(post, path = "/v1/meters", tag = "meters", request_body = MeterCreateParams,
    responses((status = 201, description = "Created", body = Meter)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("meters:write")?;
    let p: MeterCreateParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let event_name = c.required("event_name", p.event_name);
    let event_name = check_event_name(&mut c, "event_name", event_name);
    let display_name = c.optional("display_name", p.display_name);
    let display_name = c.text("display_name", display_name, 255);
    let aggregation = c.required("aggregation", p.aggregation).and_then(|s| {
        let a = Aggregation::parse(&s);
        if a.is_none() {
            c.error("aggregation", "invalid", "one of count, sum, max, unique_count, latest");
        }
        a
    });
    let value_property = c
        .optional("value_property", p.value_property)
        .map(|text| check_path(&mut c, "value_property", text));
    let group_by = c.optional("group_by", p.group_by).unwrap_or_default();
    if group_by.len() > MAX_GROUP_BY {
        c.error("group_by", "too_many", format!("at most {MAX_GROUP_BY} paths"));
    }
    let mut paths = Vec::with_capacity(group_by.len());
    for (i, text) in group_by.into_iter().enumerate() {
        if let Some(path) = check_path(&mut c, &format!("group_by[{i}]"), text) {
            if paths.contains(&path) {
                c.error(format!("group_by[{i}]"), "invalid", "each path once");
            }
            paths.push(path);
        }
    }
    match (aggregation, &value_property) {
        (Some(Aggregation::Count), Some(_)) => {
            c.error("value_property", "invalid", "a count meter reads no value");
        }
        (Some(a), None) if a.reads_value() => {
            c.error("value_property", "required", "this aggregation reads a value");
        }
        _ => {}
    }
    let input = c.finish(|| {
        Some(NewMeter {
            event_name: event_name?,
            display_name,
            aggregation: aggregation?,
            value_property: value_property.map(|p| p.ok_or(())).transpose().ok()?,
            group_by: paths,
        })
    })?;
    w.run(async |conn, ctx| ops::create_meter(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(get, path = "/v1/meters/{id}", tag = "meters", params(("id" = String, Path, description = "Meter id")),
    responses((status = 200, description = "The meter", body = Meter)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Meter>, Problem> {
    r.require("meters:read")?;
    let id = path_id(Kind::Meter, id)?;
    r.answer(async |conn, tenant| ops::get_meter(conn, tenant, &id).await)
        .await
}

#[utoipa::path(get, path = "/v1/meters", tag = "meters", params(list::PageParams),
    responses((status = 200, description = "Meters, newest first", body = List<Meter>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Meter>>, Problem> {
    r.require("meters:read")?;
    let page = list::Query::new(params, &[]).page(Kind::Meter)?;
    r.list(async |conn, tenant| ops::list_meters(conn, tenant, &page).await)
        .await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The window's first second (Unix seconds). Either bound not given is the current period's
    /// (of the customer's latest subscription that is not canceled, else this UTC month's).
    #[param(minimum = 0, maximum = 253_402_300_799_i64)]
    start: Option<i64>,
    /// The second after the window's last (Unix seconds). At or before `start`, the window is
    /// empty (and every meter says 0).
    #[param(minimum = 0, maximum = 253_402_300_799_i64)]
    end: Option<i64>,
    /// Only this meter (`mtr_…`).
    meter: Option<String>,
}

#[utoipa::path(get, path = "/v1/customers/{id}/usage", tag = "meters", params(("id" = String, Path, description = "Customer id"), UsageParams),
    responses((status = 200, description = "What each meter counted for the customer over the window", body = CustomerUsage)))]
pub async fn usage(
    r: Read,
    Path(id): Path<String>,
    RawQuery(params): RawQuery,
) -> Result<Json<CustomerUsage>, Problem> {
    r.require("meters:read")?;
    let id = path_id(Kind::Customer, id)?;
    let mut query = list::Query::unpaged(params, &["start", "end", "meter"]);
    let start = query.integer("start", 0..=MAX_TIME);
    let end = query.integer("end", 0..=MAX_TIME);
    let meter = query.filter("meter", Some(Kind::Meter));
    let window = (start, end);
    query.finish(|| Some(()))?;
    let now = crate::clock::now();
    r.answer(async |conn, tenant| ops::usage(conn, tenant, &id, window, meter.as_deref(), now).await)
        .await
}

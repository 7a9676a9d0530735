//! Usage metering: what a meter reads from an event, and how readings add up.
//!
//! A meter counts the events of one name, or aggregates a whole number read from their
//! properties (`sum`, `max`, `latest`), or counts the distinct values of a property
//! (`unique_count`), optionally per group (the values of up to three other properties).
//!
//! Readings are folded into one **rollup** per meter, customer, minute and group, written in
//! the transaction that accepts the events. Usage is counted to the minute: an event counts in
//! the minute its timestamp falls in, and a window `[start, end)` takes the minutes from the one
//! `start` falls in up to (not including) the one `end` falls in ([`window_minutes`]). Usage
//! over a period is the sum of the rollups of its minutes; consecutive periods share no minute
//! and miss none, and an event in the minute a period starts in (before or after its first
//! second) counts in that period.
//!
//! `latest` is the value of the event with the greatest timestamp, and of those the greatest
//! identifier: the order events arrive in never changes a result.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::FieldError;

/// The largest value an event may carry (whole numbers: send bytes rather than gigabytes).
pub const MAX_VALUE: i64 = 1_000_000_000_000;
/// The most properties a meter groups by.
pub const MAX_GROUP_BY: usize = 3;
/// The longest JSON path a meter names (`$.` and up to four keys).
pub const MAX_PATH_KEYS: usize = 4;
/// The longest text of a distinct value counted by `unique_count`, or of a group's value.
pub const MAX_VALUE_TEXT: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Count,
    Sum,
    Max,
    UniqueCount,
    Latest,
}

impl Aggregation {
    pub const ALL: [Aggregation; 5] = [
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Max,
        Aggregation::UniqueCount,
        Aggregation::Latest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Max => "max",
            Aggregation::UniqueCount => "unique_count",
            Aggregation::Latest => "latest",
        }
    }

    pub fn parse(s: &str) -> Option<Aggregation> {
        Aggregation::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the meter reads a value (every aggregation but `count`).
    pub fn reads_value(self) -> bool {
        self != Aggregation::Count
    }
}

/// A JSON path into an event's properties: `$.` then member names separated by dots, each of
/// letters, digits, `_` and `-` (`$.usage.input_tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyPath {
    text: String,
    keys: Vec<String>,
}

impl PropertyPath {
    pub fn parse(text: &str) -> Option<PropertyPath> {
        let rest = text.strip_prefix("$.")?;
        let keys: Vec<String> = rest.split('.').map(str::to_owned).collect();
        let valid_key = |k: &String| {
            !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if keys.len() > MAX_PATH_KEYS || !keys.iter().all(valid_key) {
            return None;
        }
        Some(PropertyPath {
            text: text.to_owned(),
            keys,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if the properties have one (`null` counts as none).
    pub fn find<'a>(&self, properties: &'a Value) -> Option<&'a Value> {
        let mut at = properties;
        for key in &self.keys {
            at = at.as_object()?.get(key)?;
        }
        (!at.is_null()).then_some(at)
    }

    /// Where the value is in an event: `properties.usage.input_tokens`.
    fn field(&self) -> String {
        format!("properties.{}", self.keys.join("."))
    }
}

/// A meter, as aggregation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterSpec {
    pub id: String,
    pub event_name: String,
    pub aggregation: Aggregation,
    pub value: Option<PropertyPath>,
    pub group_by: Vec<PropertyPath>,
}

/// What a meter read from one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The whole number read (`sum`, `max`, `latest`); 0 for the others.
    pub value: i64,
    /// The value counted once by `unique_count`, as JSON text.
    pub distinct: Option<String>,
    /// The group's values as a JSON array; `None` when the meter has no groups (stored as `[]`).
    pub group: Option<String>,
}

impl Reading {
    /// The group's key as stored: `[]` for a meter without groups.
    pub fn group_key(&self) -> &str {
        self.group.as_deref().unwrap_or(NO_GROUP)
    }
}

/// The group key of a meter without groups.
pub const NO_GROUP: &str = "[]";

fn refusal(field: String, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code,
        message: message.into(),
    }
}

/// A value as text for counting or grouping: strings as they are, numbers and booleans as JSON.
fn value_text(value: &Value, field: impl Fn() -> String) -> Result<String, FieldError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        _ => {
            return Err(refusal(
                field(),
                "invalid_meter_value",
                "must be a string, a number or a boolean",
            ));
        }
    };
    if text.len() > MAX_VALUE_TEXT {
        return Err(refusal(
            field(),
            "invalid_meter_value",
            format!("at most {MAX_VALUE_TEXT} bytes"),
        ));
    }
    Ok(text)
}

impl MeterSpec {
    /// What this meter reads from an event's properties; an error names the field within the
    /// event (`properties.tokens`). An event without the value a meter needs is refused, never
    /// counted as 0.
    pub fn read(&self, properties: &Value) -> Result<Reading, FieldError> {
        let mut reading = Reading {
            value: 0,
            distinct: None,
            group: None,
        };
        if let Some(path) = &self.value {
            let field = || path.field();
            let Some(found) = path.find(properties) else {
                return Err(refusal(
                    field(),
                    "missing_meter_value",
                    format!("meter {} reads this property", self.id),
                ));
            };
            if self.aggregation == Aggregation::UniqueCount {
                reading.distinct = Some(value_text(found, field)?);
            } else {
                reading.value = found.as_i64().filter(|v| (0..=MAX_VALUE).contains(v)).ok_or_else(|| {
                    refusal(
                        field(),
                        "invalid_meter_value",
                        format!("meter {} needs a whole number from 0 to {MAX_VALUE}", self.id),
                    )
                })?;
            }
        }
        if !self.group_by.is_empty() {
            let mut values = Vec::with_capacity(self.group_by.len());
            for path in &self.group_by {
                values.push(match path.find(properties) {
                    None => Value::Null,
                    Some(v) => Value::String(value_text(v, || path.field())?),
                });
            }
            reading.group = Some(Value::Array(values).to_string());
        }
        Ok(reading)
    }
}

/// One event accepted for a meter: when it happened, its identifier, what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'a> {
    pub meter: &'a str,
    pub customer: &'a str,
    pub identifier: &'a str,
    pub timestamp: i64,
    pub reading: Reading,
}

/// Where a rollup sits: its meter, customer, minute (Unix seconds of its first second) and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey<'a> {
    pub meter: &'a str,
    pub customer: &'a str,
    pub minute: i64,
    pub group: &'a str,
}

/// The latest event of a rollup: its timestamp, identifier and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Latest<'a> {
    pub timestamp: i64,
    pub identifier: &'a str,
    pub value: i64,
}

/// What events add to a rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup<'a> {
    pub events: i64,
    pub sum: i64,
    pub max: i64,
    pub latest: Latest<'a>,
}

impl<'a> Rollup<'a> {
    fn of(a: &'a Accepted<'a>) -> Rollup<'a> {
        Rollup {
            events: 1,
            sum: a.reading.value,
            max: a.reading.value,
            latest: Latest {
                timestamp: a.timestamp,
                identifier: a.identifier,
                value: a.reading.value,
            },
        }
    }

    /// Adds another's events; `None` when the sum would overflow.
    pub fn merge(&mut self, other: &Rollup<'a>) -> Option<()> {
        self.events = self.events.checked_add(other.events)?;
        self.sum = self.sum.checked_add(other.sum)?;
        self.max = self.max.max(other.max);
        if (other.latest.timestamp, other.latest.identifier) > (self.latest.timestamp, self.latest.identifier) {
            self.latest = other.latest;
        }
        Some(())
    }
}

/// The minute an instant falls in.
pub fn minute_of(timestamp: i64) -> i64 {
    timestamp.div_euclid(60) * 60
}

/// The minutes a window `[start, end)` counts: `[minute_of(start), minute_of(end))`.
pub fn window_minutes(start: i64, end: i64) -> (i64, i64) {
    (minute_of(start), minute_of(end))
}

/// Rollups, in key order, and the distinct values seen.
pub type Folded<'a> = (BTreeMap<RollupKey<'a>, Rollup<'a>>, BTreeSet<(RollupKey<'a>, &'a str)>);

/// Folds accepted readings into rollups and distinct values, in key order (the order rows are
/// written in). `None` on overflow.
pub fn fold<'a>(accepted: &'a [Accepted<'a>]) -> Option<Folded<'a>> {
    let mut rollups: BTreeMap<RollupKey<'a>, Rollup<'a>> = BTreeMap::new();
    let mut distinct = BTreeSet::new();
    for a in accepted {
        let key = RollupKey {
            meter: a.meter,
            customer: a.customer,
            minute: minute_of(a.timestamp),
            group: a.reading.group_key(),
        };
        if let Some(value) = &a.reading.distinct {
            distinct.insert((key, value.as_str()));
        }
        let one = Rollup::of(a);
        match rollups.get_mut(&key) {
            Some(r) => r.merge(&one)?,
            None => {
                rollups.insert(key, one);
            }
        }
    }
    Some((rollups, distinct))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meter(aggregation: Aggregation, value: Option<&str>, group_by: &[&str]) -> MeterSpec {
        MeterSpec {
            id: "mtr_1".into(),
            event_name: "api_call".into(),
            aggregation,
            value: value.map(|v| PropertyPath::parse(v).unwrap()),
            group_by: group_by.iter().map(|g| PropertyPath::parse(g).unwrap()).collect(),
        }
    }

    #[test]
    fn paths_are_dollar_dot_member_names() {
        for ok in ["$.tokens", "$.usage.input_tokens", "$.a-b.c_d.e.f"] {
            assert!(PropertyPath::parse(ok).is_some(), "{ok}");
        }
        for bad in ["tokens", "$.", "$..a", "$.a[0]", "$.a.b.c.d.e", "$.a b", "$"] {
            assert!(PropertyPath::parse(bad).is_none(), "{bad}");
        }
        let p = PropertyPath::parse("$.usage.tokens").unwrap();
        assert_eq!(p.find(&json!({"usage": {"tokens": 7}})), Some(&json!(7)));
        assert_eq!(p.find(&json!({"usage": {"tokens": null}})), None);
        assert_eq!(p.find(&json!({"usage": 3})), None);
    }

    #[test]
    fn readings_take_whole_numbers_and_refuse_what_is_missing() {
        let sum = meter(Aggregation::Sum, Some("$.tokens"), &["$.region"]);
        let r = sum.read(&json!({"tokens": 12, "region": "eu"})).unwrap();
        assert_eq!((r.value, r.group_key()), (12, r#"["eu"]"#));
        let r = sum.read(&json!({"tokens": 0})).unwrap();
        assert_eq!(r.group_key(), "[null]");
        for (properties, code) in [
            (json!({}), "missing_meter_value"),
            (json!({"tokens": 1.5}), "invalid_meter_value"),
            (json!({"tokens": -1}), "invalid_meter_value"),
            (json!({"tokens": "3"}), "invalid_meter_value"),
            (json!({"tokens": MAX_VALUE + 1}), "invalid_meter_value"),
            (json!({"tokens": 1, "region": {"a": 1}}), "invalid_meter_value"),
        ] {
            let e = sum.read(&properties).unwrap_err();
            assert_eq!(e.code, code, "{properties}");
            assert!(e.field.starts_with("properties."), "{}", e.field);
        }
        let unique = meter(Aggregation::UniqueCount, Some("$.user"), &[]);
        assert_eq!(
            unique.read(&json!({"user": "u1"})).unwrap().distinct.as_deref(),
            Some("u1")
        );
        assert_eq!(unique.read(&json!({"user": 7})).unwrap().distinct.as_deref(), Some("7"));
        let count = meter(Aggregation::Count, None, &[]);
        let r = count.read(&json!({})).unwrap();
        assert_eq!((r.value, r.group_key()), (0, NO_GROUP));
    }

    #[test]
    fn rollups_add_up_and_the_latest_does_not_depend_on_arrival_order() {
        let reading = |value| Reading {
            value,
            distinct: None,
            group: None,
        };
        let events = [
            ("b", 125, 5),
            ("a", 130, 9),
            ("c", 130, 2), // same second as "a": the greater identifier is the latest
            ("d", 59, 4),  // another minute
        ];
        let accepted: Vec<Accepted<'_>> = events
            .iter()
            .map(|(id, t, v)| Accepted {
                meter: "m",
                customer: "c",
                identifier: id,
                timestamp: *t,
                reading: reading(*v),
            })
            .collect();
        let mut reversed = accepted.clone();
        reversed.reverse();
        let (forward, _) = fold(&accepted).unwrap();
        let (backward, _) = fold(&reversed).unwrap();
        assert_eq!(forward, backward);
        let minutes: Vec<i64> = forward.keys().map(|k| k.minute).collect();
        assert_eq!(minutes, vec![0, 120]);
        let r = &forward.values().nth(1).unwrap();
        assert_eq!((r.events, r.sum, r.max, r.latest.value), (3, 16, 9, 2));
        assert_eq!(minute_of(-1), -60);
    }
}

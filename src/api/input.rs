//! Reading request bodies so that every problem is reported at once: each field is read on its
//! own ([`Field`] never fails to deserialize), unknown fields are collected, and a [`Check`]
//! gathers every problem before answering 422.
use std::collections::BTreeMap;

use axum::extract::{FromRequest, Request};
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::problem::Problem;
use crate::domain::FieldError;
use crate::domain::ids::{self, Kind};
use crate::domain::metadata::{self, Metadata};
use crate::domain::money::Currency;
use crate::domain::text::is_control;

/// One field of a request body: absent (or `null`), of the wrong type, or a value.
#[derive(Debug, Clone, Default)]
pub enum Field<T> {
    #[default]
    Missing,
    Invalid(String),
    Value(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Field::Missing);
        }
        Ok(match serde_json::from_value::<T>(value) {
            Ok(v) => Field::Value(v),
            Err(e) => Field::Invalid(e.to_string()),
        })
    }
}

/// Fields a body has but its type does not know.
pub type Unknown = BTreeMap<String, Value>;

/// A JSON request body, parsed once. An empty body counts as `{}` (actions such as `finalize`
/// take no parameters); any other body must be declared `application/json`.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let declared_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
        // The body is bounded by the request layer (`server.body_limit`), which every route is behind;
        // over it, reading fails with a length limit error.
        let _ = state;
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX).await.map_err(|e| {
            if is_length_limit(&e) {
                Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Bad Request",
                    "the request body could not be read",
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Object(Default::default())));
        }
        if !declared_json {
            return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        JsonBody::parse(&bytes)
    }
}

/// Whether reading a body failed because it is over the body limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl JsonBody {
    /// Parses a body. An object may not name a key twice (which of the two would count is a
    /// guess no money API should make). `null` is kept: an action without parameters takes it
    /// for none ([`NoParams`]), every other route refuses it, as the document says.
    pub fn parse(bytes: &[u8]) -> Result<JsonBody, Problem> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = Strict::deserialize(&mut deserializer)
            .and_then(|Strict(v)| deserializer.end().map(|()| v))
            .map_err(|e| Problem::malformed_json(format!("the body is not valid JSON: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON Schema counts `1.0` as the integer 1, and so do we: an integral number that a
        // double holds exactly is read as an integer (amounts and quantities are integers).
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        if v.fract() == 0.0 && v.abs() <= EXACT {
            return Ok(Value::from(v as i64));
        }
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format_args!("the key {key:?} appears twice")));
            }
        }
        Ok(Value::Object(object))
    }
}

impl JsonBody {
    /// Reads the body into a type made of [`Field`]s; only a body that is not an object fails here.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.0.is_object() {
            return Err(Problem::validation(vec![FieldError::new(
                "",
                "invalid",
                "the body must be a JSON object",
            )]));
        }
        serde_json::from_value(self.0.clone())
            .map_err(|e| Problem::validation(vec![FieldError::new("", "invalid", e.to_string())]))
    }
}

const CONTROL_MESSAGE: &str = "must not contain control characters (other than tab, line feed and carriage return)";

/// The body of an action that takes no parameters: nothing, `null` or `{}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NoParams {
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

impl NoParams {
    /// 422 for any field.
    pub fn check(body: &JsonBody) -> Result<(), Problem> {
        if body.0.is_null() {
            return Ok(());
        }
        let params: NoParams = body.read()?;
        let mut c = Check::new();
        c.unknown("", &params.unknown);
        c.finish(|| Some(()))
    }
}

/// Collects the problems of a request.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, code, message));
    }

    pub fn unknown(&mut self, prefix: &str, unknown: &Unknown) {
        for name in unknown.keys() {
            self.error(
                format!("{prefix}{name}"),
                "unknown_field",
                "this field is not accepted here",
            );
        }
    }

    /// The value of an optional field.
    pub fn optional<T>(&mut self, field: &str, value: Field<T>) -> Option<T> {
        match value {
            Field::Missing => None,
            Field::Invalid(message) => {
                self.error(field, "invalid", message);
                None
            }
            Field::Value(v) => Some(v),
        }
    }

    pub fn required<T>(&mut self, field: &str, value: Field<T>) -> Option<T> {
        if matches!(value, Field::Missing) {
            self.error(field, "required", "this field is required");
            return None;
        }
        self.optional(field, value)
    }

    /// Free text of at most `max` characters, with no control character and something besides
    /// white space; stored with the white space around it removed (see `schema::text_pattern`).
    pub fn text(&mut self, field: &str, value: Option<String>, max: usize) -> Option<String> {
        let text = value?;
        if text.contains(is_control) {
            self.error(field, "invalid_characters", CONTROL_MESSAGE);
            return None;
        }
        let trimmed = text.trim();
        if trimmed.is_empty() || text.chars().count() > max {
            self.error(
                field,
                "invalid_length",
                format!("must be 1 to {max} characters, not all white space"),
            );
            return None;
        }
        Some(trimmed.to_owned())
    }

    /// One `@` between a local part and a domain with a dot inside it; no white space or control
    /// character anywhere; at most 254 characters.
    pub fn email(&mut self, field: &str, value: Option<String>) -> Option<String> {
        let email = value?;
        let atom = |s: &str| !s.is_empty() && !s.contains(|c: char| c == '@' || c.is_whitespace() || is_control(c));
        let valid = email.chars().count() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                atom(local)
                    && atom(domain)
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if !valid {
            self.error(field, "invalid_email", "not an email address");
            return None;
        }
        Some(email)
    }

    pub fn currency(&mut self, field: &str, value: Option<String>) -> Option<Currency> {
        let code = value?;
        let currency = Currency::parse(&code);
        if currency.is_none() {
            self.error(
                field,
                "invalid_currency",
                format!("{code:?} is not an ISO 4217 currency with a minor unit"),
            );
        }
        currency
    }

    pub fn range(&mut self, field: &str, value: Option<i64>, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let v = value?;
        if !range.contains(&v) {
            self.error(
                field,
                "out_of_range",
                format!("must be between {} and {}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    /// An id of `kind`. A malformed id cannot exist, so it is reported like a missing object.
    pub fn id(&mut self, field: &str, value: Option<String>, kind: Kind) -> Option<String> {
        let id = value?;
        if !ids::is_valid(kind, &id) {
            self.error(field, "invalid_id", format!("not a {} id", kind.prefix()));
            return None;
        }
        Some(id)
    }

    pub fn metadata(&mut self, field: &str, value: Option<Metadata>) -> Option<Metadata> {
        let metadata = value?;
        let problems = metadata::problems(&metadata);
        for (suffix, message) in &problems {
            self.error(format!("{field}{suffix}"), "invalid_metadata", message.clone());
        }
        problems.is_empty().then_some(metadata)
    }

    /// 422 with every problem, or the value `build` makes from the checked fields.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Problem> {
        if !self.errors.is_empty() {
            return Err(Problem::validation(self.errors));
        }
        build().ok_or_else(Problem::internal)
    }
}

/// A body with a required text and a required number, read the way every route reads its body:
/// the debug builds' `/__test/echo` route and the tests below use it.
#[cfg(any(test, debug_assertions))]
pub mod sample {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(default)]
        name: Field<String>,
        #[serde(default)]
        amount: Field<i64>,
        #[serde(flatten)]
        unknown: Unknown,
    }

    pub fn check(body: &JsonBody) -> Result<(String, i64), Problem> {
        let sample: Sample = body.read()?;
        let mut c = Check::new();
        c.unknown("", &sample.unknown);
        let name = c.required("name", sample.name);
        let amount = c.required("amount", sample.amount);
        c.finish(|| Some((name?, amount?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: Value) -> Result<(String, i64), Problem> {
        sample::check(&JsonBody(json))
    }

    #[test]
    fn every_field_problem_is_reported_at_once() {
        assert_eq!(
            check(serde_json::json!({"name": "a", "amount": 1})).unwrap(),
            ("a".into(), 1)
        );
        let p = check(serde_json::json!({"name": 5, "typo": true})).unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (422, "validation_failed"));
        let fields: Vec<(&str, &str)> = p.errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [("typo", "unknown_field"), ("name", "invalid"), ("amount", "required")]
        );
        let p = check(serde_json::json!([1, 2])).unwrap_err();
        assert_eq!(p.status.as_u16(), 422, "a body that is not an object");
    }

    #[test]
    fn a_key_given_twice_is_malformed_and_null_is_no_parameters() {
        let p = JsonBody::parse(br#"{"name": "a", "amount": 1, "name": "b"}"#).unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (400, "malformed_json"));
        assert!(p.detail.contains("\"name\" appears twice"), "{}", p.detail);
        let nested = JsonBody::parse(br#"{"metadata": {"k": "1", "k": "2"}}"#).unwrap_err();
        assert_eq!(nested.code, "malformed_json");
        assert!(JsonBody::parse(b"null").unwrap().0.is_null());
        assert!(NoParams::check(&JsonBody::parse(b"null").unwrap()).is_ok());
        assert!(NoParams::check(&JsonBody::parse(b"{}").unwrap()).is_ok());
        assert!(NoParams::check(&JsonBody::parse(br#"{"a": 1}"#).unwrap()).is_err());
        let p = check(serde_json::Value::Null).unwrap_err();
        assert_eq!(p.status.as_u16(), 422, "null where an object is documented");
        assert!(JsonBody::parse(br#"{"a": 1} x"#).is_err(), "trailing bytes");
        assert_eq!(
            JsonBody::parse(br#"{"a": 70577.0, "b": 1e3, "c": 1.5, "d": -0.0}"#)
                .unwrap()
                .0,
            serde_json::json!({"a": 70577, "b": 1000, "c": 1.5, "d": 0}),
            "integral numbers are integers, as in JSON Schema"
        );
        assert_eq!(
            JsonBody::parse(br#"{"a": [1, {"b": null}]}"#).unwrap().0,
            serde_json::json!({"a": [1, {"b": null}]})
        );
    }

    #[test]
    fn texts_refuse_control_characters_and_emails_have_one_at() {
        let text = |s: &str| {
            let mut c = Check::new();
            let v = c.text("name", Some(s.to_owned()), 5);
            (v, c.errors.first().map(|e| e.code))
        };
        assert_eq!(text(" Ada "), (Some("Ada".into()), None));
        assert_eq!(text("Ada\u{0}"), (None, Some("invalid_characters")));
        assert_eq!(text("a\tb"), (Some("a\tb".into()), None), "tab is text");
        assert_eq!(text("   "), (None, Some("invalid_length")));
        assert_eq!(
            text(" abcde"),
            (None, Some("invalid_length")),
            "the length counts the spaces"
        );
        let email = |s: &str| Check::new().email("email", Some(s.to_owned()));
        assert!(email("ada@example.com").is_some());
        for bad in [
            "a@b@c.d",
            " ada@example.com",
            "ada@example",
            "ada@.example.com",
            "@x.y",
            "a\u{0}@x.y",
        ] {
            assert!(email(bad).is_none(), "{bad:?}");
        }
    }
}

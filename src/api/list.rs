//! List endpoints: `limit` (1–100, default 10), `starting_after` / `ending_before` cursors,
//! newest first, answered as `{"object": "list", "data": [...], "has_more": bool}`.
use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::input::Check;
use super::problem::Problem;
use crate::domain::ids::Kind;
use crate::store::page::{Cursor, Page, PageQuery};

pub const DEFAULT_LIMIT: i64 = 10;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<T>,
    /// Whether there are more objects after this page.
    pub has_more: bool,
}

impl<T> From<Page<T>> for List<T> {
    fn from(page: Page<T>) -> Self {
        List {
            object: "list",
            data: page.data,
            has_more: page.has_more,
        }
    }
}

/// The query string of a listing, as strings, checked by [`Query::page`] and [`Query::filter`].
pub struct Query {
    params: HashMap<String, String>,
    check: Check,
}

impl Query {
    /// The raw query string (percent-decoded here). Only `allowed_filters` (besides the paging
    /// parameters) are accepted, each at most once.
    pub fn new(raw: Option<String>, allowed_filters: &[&str]) -> Self {
        Query::with(raw, allowed_filters, &["limit", "starting_after", "ending_before"])
    }

    /// The query string of a route that is not a list: only `allowed` parameters, no paging.
    pub fn unpaged(raw: Option<String>, allowed: &[&str]) -> Self {
        Query::with(raw, allowed, &[])
    }

    fn with(raw: Option<String>, allowed_filters: &[&str], paging: &[&str]) -> Self {
        let mut check = Check::new();
        let mut params = HashMap::new();
        let mut repeated = Vec::new();
        let raw = raw.unwrap_or_default();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            if params.insert(name.to_string(), value.into_owned()).is_some() && !repeated.contains(&name) {
                repeated.push(name);
            }
        }
        for name in repeated {
            check.error(
                name.to_string(),
                "repeated_parameter",
                "give this parameter once (which of several would count is not guessed)",
            );
        }
        let mut unknown: Vec<&String> = params
            .keys()
            .filter(|k| !paging.contains(&k.as_str()) && !allowed_filters.contains(&k.as_str()))
            .collect();
        unknown.sort();
        for name in unknown {
            check.error(name.clone(), "unknown_parameter", "this parameter is not accepted here");
        }
        Query { params, check }
    }

    pub fn filter(&mut self, name: &str, kind: Option<Kind>) -> Option<String> {
        let value = self.params.get(name).cloned()?;
        match kind {
            Some(kind) => self.check.id(name, Some(value), kind),
            None => Some(value),
        }
    }

    pub fn check(&mut self) -> &mut Check {
        &mut self.check
    }

    /// A parameter that must be a whole number in `range`, if given.
    pub fn integer(&mut self, name: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let text = self.params.get(name).cloned()?;
        match text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.check.error(
                    name.to_owned(),
                    "out_of_range",
                    format!("must be a whole number from {} to {}", range.start(), range.end()),
                );
                None
            }
        }
    }

    /// Every problem found so far, or what `build` makes.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Problem> {
        self.check.finish(build)
    }

    /// Checks the paging parameters (cursors are ids of `kind`) and every problem found so far.
    /// Whether a cursor names an object of this tenant's listing is the store's to say (404).
    pub fn page(mut self, kind: Kind) -> Result<PageQuery, Problem> {
        let limit = match self.params.get("limit") {
            None => Some(DEFAULT_LIMIT),
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
                _ => {
                    self.check.error(
                        "limit",
                        "out_of_range",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    );
                    None
                }
            },
        };
        let after = self.params.get("starting_after").cloned();
        let before = self.params.get("ending_before").cloned();
        let (had_after, had_before) = (after.is_some(), before.is_some());
        let starting_after = self.check.id("starting_after", after, kind);
        let ending_before = self.check.id("ending_before", before, kind);
        self.check.finish(|| {
            // A cursor that failed its check was reported; none is dropped silently.
            (starting_after.is_some() == had_after && ending_before.is_some() == had_before).then_some(())?;
            Some(PageQuery {
                limit: limit?,
                cursor: Cursor {
                    starting_after,
                    ending_before,
                },
            })
        })
    }
}

/// The paging parameters, for the OpenAPI document.
#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many objects to return, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// An object id: return the objects after it (older).
    starting_after: Option<String>,
    /// An object id: return the objects before it (newer). With `starting_after`, the objects
    /// between the two, newest first.
    ending_before: Option<String>,
}

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::Text255;
use super::state::AppState;
use super::write::{Done, Write};
use crate::billing::test_clocks as ops;
use crate::domain::ids::Kind;
use crate::objects::TestClock;

/// The latest instant a clock can show: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;

/// A new test clock.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TestClockParams {
    /// Where the clock starts (Unix seconds).
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 253_402_300_799_i64, required = true)]
    pub frozen_time: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Text255>)]
    pub name: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Where to move a test clock.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AdvanceParams {
    /// Later than the clock's time, by at most 732 days (422 `invalid_advance`).
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 253_402_300_799_i64, required = true)]
    pub frozen_time: Field<i64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

#[utoipa::path(post, path = "/v1/test_clocks", tag = "test_clocks", request_body = TestClockParams,
    responses((status = 201, description = "Created", body = TestClock)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("test_clocks:write")?;
    let p: TestClockParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let time = c.required("frozen_time", p.frozen_time);
    let time = c.range("frozen_time", time, 0..=MAX_TIME);
    let name = c.optional("name", p.name);
    let name = c.text("name", name, 255);
    let time = c.finish(|| time)?;
    w.run(async |conn, ctx| ops::create(conn, ctx, time, name).await.map(Done::created))
        .await
}

#[utoipa::path(post, path = "/v1/test_clocks/{id}/advance", tag = "test_clocks", request_body = AdvanceParams,
    params(("id" = String, Path, description = "Test clock id")),
    responses((status = 200, description = "Advanced: every period of its customers' subscriptions that fell due by then is billed", body = TestClock)))]
pub async fn advance(State(state): State<AppState>, Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("test_clocks:write")?;
    let id = path_id(Kind::TestClock, id)?;
    let p: AdvanceParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let time = c.required("frozen_time", p.frozen_time);
    let time = c.range("frozen_time", time, 0..=MAX_TIME);
    let time = c.finish(|| time)?;
    w.run(async |conn, ctx| {
        ops::advance_clock(conn, ctx, &id, time, state.past_due_after)
            .await
            .map(Done::ok)
    })
    .await
}

#[utoipa::path(get, path = "/v1/test_clocks/{id}", tag = "test_clocks", params(("id" = String, Path, description = "Test clock id")),
    responses((status = 200, description = "The test clock", body = TestClock)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<TestClock>, Problem> {
    r.require("test_clocks:read")?;
    let id = path_id(Kind::TestClock, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[utoipa::path(get, path = "/v1/test_clocks", tag = "test_clocks", params(list::PageParams),
    responses((status = 200, description = "Test clocks, newest first", body = List<TestClock>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<TestClock>>, Problem> {
    r.require("test_clocks:read")?;
    let page = list::Query::new(params, &[]).page(Kind::TestClock)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page).await).await
}

//! Test clocks, as Stripe's: a customer created on a clock lives in its time. The operations on
//! their subscriptions take the clock's time as "now", the billing cycle leaves them alone, and
//! advancing the clock bills what falls due up to its new time, with the code the cycle runs.
use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::objects::TestClock;
use crate::operation::{Ctx, Error, Result};
use crate::store::page::{Page, PageQuery};
use crate::store::{subscriptions, test_clocks};

use super::cycles::MAX_PERIODS_PER_RUN;
use super::subscriptions::{advance, update_standing};

/// How far one advance may move a clock: two years, so that one request bills a bounded number
/// of periods (daily prices included).
pub const MAX_ADVANCE_SECONDS: i64 = 2 * 366 * 86_400;

pub async fn create(conn: &mut AnyConnection, ctx: &Ctx, frozen_time: i64, name: Option<String>) -> Result<TestClock> {
    let clock = TestClock {
        id: new_id(Kind::TestClock),
        object: TestClock::OBJECT,
        name,
        frozen_time,
        created: ctx.now,
    };
    test_clocks::insert(conn, &ctx.tenant, &clock).await?;
    ctx.audit(conn, "test_clock.created", &clock.id).await?;
    Ok(clock)
}

pub async fn get(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<TestClock> {
    test_clocks::find(conn, None, tenant, id)
        .await?
        .ok_or(Error::NotFound("test clock"))
}

pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<TestClock>> {
    Ok(test_clocks::list(conn, tenant, page).await?)
}

/// Moves the clock forward to `to` and bills every period of its customers' subscriptions that
/// falls due by then, then moves their standing (`past_due_after`: seconds an invoice may stay
/// owed past its due date), in this transaction: the clock and its bills move together or not
/// at all.
pub async fn advance_clock(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    id: &str,
    to: i64,
    past_due_after: i64,
) -> Result<TestClock> {
    let mut clock = test_clocks::find(conn, Some(ctx.backend), &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("test clock"))?;
    if to <= clock.frozen_time || to - clock.frozen_time > MAX_ADVANCE_SECONDS {
        return Err(Error::invalid(
            "frozen_time",
            "invalid_advance",
            format!(
                "a clock moves forward, by at most {} days at a time; it is at {}",
                MAX_ADVANCE_SECONDS / 86_400,
                clock.frozen_time
            ),
        ));
    }
    test_clocks::set_time(conn, &ctx.tenant, id, to).await?;
    clock.frozen_time = to;
    let at = ctx.at(to);
    for subscription in test_clocks::due_subscriptions(conn, &ctx.tenant, id, to).await? {
        // A subscription bills at most MAX_PERIODS_PER_RUN periods per call; keep going.
        while advance(conn, &at, &subscription, to, MAX_PERIODS_PER_RUN).await? == MAX_PERIODS_PER_RUN {}
    }
    for subscription in subscriptions::of_clock(conn, &ctx.tenant, id).await? {
        update_standing(conn, &at, &subscription, to.saturating_sub(past_due_after)).await?;
    }
    ctx.audit(conn, "test_clock.advanced", &clock.id).await?;
    ctx.emit(conn, "test_clock.advanced", &clock).await?;
    Ok(clock)
}

/// The operation as it runs for the customer: at their clock's time, if they are on one (the
/// clock cannot move until the operation's transaction ends).
pub async fn for_customer(conn: &mut AnyConnection, ctx: &Ctx, customer_id: &str) -> Result<Ctx> {
    let time = test_clocks::time_of_customer(conn, ctx.backend, &ctx.tenant, customer_id).await?;
    Ok(time.map_or_else(|| ctx.clone(), |t| ctx.at(t)))
}

/// The operation as it runs for the subscription: at its customer's clock's time, if any.
pub async fn for_subscription(conn: &mut AnyConnection, ctx: &Ctx, subscription_id: &str) -> Result<Ctx> {
    let time = test_clocks::time_of_subscription(conn, ctx.backend, &ctx.tenant, subscription_id).await?;
    Ok(time.map_or_else(|| ctx.clone(), |t| ctx.at(t)))
}

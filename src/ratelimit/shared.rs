//! Budgets shared by every instance, in Redis: the same GCRA as the local budgets, run as one
//! Lua script per request, so that reading and moving a budget's timestamp is atomic across
//! instances. The script reads Redis' own clock (`TIME`): the instances' clocks never matter.
//!
//! The connection is made in the background and kept by redis' `ConnectionManager`, which
//! reconnects by itself. A call that fails or outlasts `redis_timeout` makes the caller fall
//! back to the instance's own budgets, and the next second's calls skip Redis altogether.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use super::{Class, Decision};
use crate::config::Budget;

/// How long Redis is left alone after a failed or slow call.
const REST: Duration = Duration::from_secs(1);

/// KEYS[1]: the budget's key. ARGV[1]: the interval a request costs (µs); ARGV[2]: the burst.
/// Returns {allowed (0|1), remaining, retry after (µs), until whole again (µs)}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
local allowed_from = next - tolerance
if now < allowed_from then
  return {0, 0, allowed_from - now, tat - now}
end
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000))
return {1, math.floor((now + tolerance - next) / interval), 0, next - now}
";

pub struct Budgets {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    connecting: AtomicBool,
    timeout: Duration,
    prefix: String,
    script: redis::Script,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked.
    resting_until: AtomicU64,
}

impl Budgets {
    /// Checks the URL; the connection is made on first use, in the background.
    pub fn connect(url: &SecretString, timeout: Duration, prefix: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url.expose_secret()).map_err(|e| anyhow::anyhow!("rate_limit.redis_url: {e}"))?;
        Ok(Budgets {
            inner: Arc::new(Inner {
                client,
                connection: OnceCell::new(),
                connecting: AtomicBool::new(false),
                timeout,
                prefix: prefix.to_owned(),
                script: redis::Script::new(GCRA),
                started: Instant::now(),
                resting_until: AtomicU64::new(0),
            }),
        })
    }

    /// The decision of the shared budget, or `None` when Redis cannot give one now.
    pub async fn check(&self, class: Class, key: &str, budget: Budget) -> Option<Decision> {
        let inner = &self.inner;
        if inner.elapsed_ms() < inner.resting_until.load(Ordering::Relaxed) {
            return None;
        }
        let Some(connection) = inner.connection.get() else {
            self.connect_in_background();
            return None;
        };
        let mut connection = connection.clone();
        let interval = u64::try_from(budget.interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = inner.script.key(format!("{}{}:{key}", inner.prefix, class.name()));
        invocation.arg(interval).arg(budget.burst);
        let answer = tokio::time::timeout(inner.timeout, invocation.invoke_async::<Vec<i64>>(&mut connection)).await;
        match answer {
            Ok(Ok(values)) if values.len() == 4 => {
                let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
                Some(Decision {
                    allowed: values[0] == 1,
                    remaining: u32::try_from(values[1]).unwrap_or(0),
                    retry_after: micros(values[2]),
                    reset: micros(values[3]),
                })
            }
            other => {
                let why = match other {
                    Err(_) => format!("no answer within {:?}", inner.timeout),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(values)) => format!("unexpected answer {values:?}"),
                };
                tracing::warn!(error = %why, "shared rate limit unavailable: using this instance's budgets");
                inner.rest();
                None
            }
        }
    }

    fn connect_in_background(&self) {
        let inner = &self.inner;
        if inner.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let made = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(inner.client.clone())).await;
            match made {
                Ok(Ok(connection)) => {
                    let _ = inner.connection.set(connection);
                    tracing::info!("shared rate limit: connected to Redis");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "shared rate limit: cannot connect to Redis yet");
                    inner.rest();
                }
                Err(_) => {
                    tracing::warn!("shared rate limit: connecting to Redis timed out");
                    inner.rest();
                }
            }
            inner.connecting.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn rest(&self) {
        let until = self.elapsed_ms() + u64::try_from(REST.as_millis()).unwrap_or(1000);
        self.resting_until.store(until, Ordering::Relaxed);
    }
}

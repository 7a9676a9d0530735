//! Budgets kept in this process, by the governor crate (GCRA, one timestamp per key in a sharded
//! map): one keyed limiter per class. Keys whose budget is whole again are swept now and then,
//! so the maps hold only recently seen tenants and addresses.
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{Class, Decision};
use crate::config::Budget;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Every this many checks, keys whose budget is whole again are dropped.
const SWEEP_EVERY: u64 = 4096;

pub struct Budgets {
    limiters: [(Keyed, Budget); 3],
    checks: AtomicU64,
}

impl Budgets {
    pub fn new(budgets: [Budget; 3]) -> Self {
        Budgets {
            limiters: budgets.map(|b| (RateLimiter::keyed(quota(b)).with_middleware(), b)),
            checks: AtomicU64::new(0),
        }
    }

    pub fn check(&self, class: Class, key: &str) -> Decision {
        let (limiter, budget) = &self.limiters[class.index()];
        let interval = budget.interval();
        let decision = match limiter.check_key(&key.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    reset: interval * budget.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset: wait + interval * budget.burst.saturating_sub(1),
                    retry_after: wait,
                }
            }
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for (limiter, _) in &self.limiters {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        decision
    }
}

fn quota(budget: Budget) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(budget.per_second).unwrap_or(one))
        .allow_burst(NonZeroU32::new(budget.burst).unwrap_or(one))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_classes_have_budgets_of_their_own() {
        let budget = Budget {
            per_second: 1,
            burst: 2,
        };
        let budgets = Budgets::new([budget; 3]);
        let first = budgets.check(Class::Read, "acme");
        assert!(first.allowed && first.remaining == 1, "{first:?}");
        assert!(budgets.check(Class::Read, "acme").allowed);
        let refused = budgets.check(Class::Read, "acme");
        assert!(!refused.allowed, "{refused:?}");
        assert!(
            refused.retry_after > Duration::from_millis(900) && refused.retry_after <= Duration::from_secs(1),
            "{refused:?}"
        );
        assert!(budgets.check(Class::Write, "acme").allowed, "writes apart from reads");
        assert!(budgets.check(Class::Read, "globex").allowed, "tenants apart");
    }
}

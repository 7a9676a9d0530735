//! Proration: what a change in the middle of a period credits and charges.
//!
//! The rules (docs/billing.md has them for users):
//! - **Credits come from what was charged**, never from a list price: a charge of `amount` for
//!   the interval `[start, end)`, of which `credited` has already been given back, credits the
//!   unused part of what remains, `(amount − credited) × unused / covered`. Prices edited since,
//!   a 100 %-off first period or a credit note on the invoice are therefore all accounted for
//!   (stripe-dotnet #3103, lago-api #1776).
//! - A tail of a charge is credited once: after a credit from `t`, the charge covers only
//!   `[start, t)` (`covered_until`), so a second change credits a fraction of that, and never
//!   more than remains (lago-api #1778: consecutive upgrades credited more than the last fee).
//! - **Debits are at the new price** for the rest of the period: `full × (end − t) / (end −
//!   start)`, where `[start, end)` is the whole nominal period (lago-api #6194).
//! - Time is counted in seconds of real time: a 23-hour DST day costs 23 hours' worth.
//! - Every fraction is exact (i128) and rounded once, half away from zero (`ratio`).
//! - Tax on a credit is cumulative against its charge: it is the tax of everything credited so
//!   far minus the tax already credited, so crediting a charge in full gives back exactly the tax
//!   it carried, never a cent more or less.
use super::money::line_tax;
use super::ratio::mul_div_round;

/// What was charged for an interval, and what of it has been credited since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Pre-tax, ≥ 0.
    pub amount: i64,
    pub start: i64,
    pub end: i64,
    /// Given back so far (proration credits and credit notes), pre-tax, ≥ 0.
    pub credited: i64,
    /// The end of the time this charge still pays for: `end` until a proration credit cut its
    /// tail, then the instant that credit started from.
    pub covered_until: i64,
}

impl Charge {
    pub fn new(amount: i64, start: i64, end: i64) -> Charge {
        Charge {
            amount,
            start,
            end,
            credited: 0,
            covered_until: end,
        }
    }

    /// What is left of the charge to credit.
    pub fn remaining(&self) -> i64 {
        self.amount - self.credited
    }
}

/// The credit (≥ 0, pre-tax) for the time of `charge` not used when it stops at `t`: nothing if
/// the charge covers nothing after `t`, all that remains if `t` is at or before its start.
pub fn unused_credit(charge: &Charge, t: i64) -> Option<i64> {
    let remaining = charge.remaining();
    if t >= charge.covered_until || remaining <= 0 {
        return Some(0);
    }
    if t <= charge.start {
        return Some(remaining);
    }
    mul_div_round(remaining, charge.covered_until - t, charge.covered_until - charge.start)
}

/// `charge` after crediting `credit` from `t` on (the tail from `t` is no longer covered).
pub fn after_credit(charge: &Charge, t: i64, credit: i64) -> Charge {
    Charge {
        credited: charge.credited + credit,
        covered_until: charge.covered_until.min(t.max(charge.start)),
        ..*charge
    }
}

/// The charge (≥ 0, pre-tax) for the rest of the period `[start, end)` from `t`, when a full period
/// costs `full`: `full × (end − t) / (end − start)`; `None` when `t` is outside the period.
pub fn remaining_debit(full: i64, (start, end): (i64, i64), t: i64) -> Option<i64> {
    if !(start..end).contains(&t) {
        return None;
    }
    mul_div_round(full, end - t, end - start)
}

/// The tax of crediting `credit` more of a charge already credited `credited_before`, at the
/// charge's rate: cumulative, so that the credits' taxes add up to the tax of their sum.
pub fn credit_tax(rate_bps: Option<i64>, credited_before: i64, credit: i64) -> Option<i64> {
    let Some(rate) = rate_bps else { return Some(0) };
    let after = credited_before.checked_add(credit)?;
    line_tax(after, rate)?.checked_sub(line_tax(credited_before, rate)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400;

    #[test]
    fn halfway_through_a_month() {
        // 30-day period, 30.00 charged; a change at day 15 credits 15.00 and charges 30.00 of a
        // 60.00 price.
        let period = (0, 30 * DAY);
        let charge = Charge::new(3_000, 0, 30 * DAY);
        assert_eq!(unused_credit(&charge, 15 * DAY), Some(1_500));
        assert_eq!(remaining_debit(6_000, period, 15 * DAY), Some(3_000));
        // A second change at day 20 credits from what the first debit charged, not the first charge.
        let upgrade = Charge::new(3_000, 15 * DAY, 30 * DAY);
        assert_eq!(unused_credit(&upgrade, 20 * DAY), Some(2_000));
        // The first charge's tail is already credited: nothing more from it.
        let cut = after_credit(&charge, 15 * DAY, 1_500);
        assert_eq!(unused_credit(&cut, 20 * DAY), Some(0));
        assert_eq!(cut.covered_until, 15 * DAY);
        // Before its start, a charge is credited whole; after its end, not at all.
        assert_eq!(unused_credit(&upgrade, 10 * DAY), Some(3_000));
        assert_eq!(unused_credit(&upgrade, 30 * DAY), Some(0));
        assert_eq!(remaining_debit(6_000, period, 30 * DAY), None);
        assert_eq!(remaining_debit(6_000, period, -1), None);
    }

    #[test]
    fn a_free_period_credits_nothing() {
        // stripe-dotnet #3103: a 100 %-off first period was credited as if paid in full.
        let free = Charge::new(0, 0, 30 * DAY);
        assert_eq!(unused_credit(&free, 10 * DAY), Some(0));
        // A credit note that gave everything back leaves nothing to credit.
        let refunded = Charge {
            credited: 3_000,
            ..Charge::new(3_000, 0, 30 * DAY)
        };
        assert_eq!(unused_credit(&refunded, 10 * DAY), Some(0));
    }

    #[test]
    fn credited_tax_adds_up_to_the_tax_charged() {
        // 10.01 at 19.6 %: tax 1.96. Credited in three parts, the taxes sum to 1.96 exactly.
        let rate = Some(1_960);
        let parts = [333, 334, 334];
        let mut before = 0;
        let mut tax = 0;
        for part in parts {
            tax += credit_tax(rate, before, part).unwrap();
            before += part;
        }
        assert_eq!(tax, line_tax(1_001, 1_960).unwrap());
        assert_eq!(credit_tax(None, 0, 500), Some(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// Any sequence of price changes within one period: what is billed for the period (the
        /// first charge, then per change a credit and a debit) equals Σ price × time used, exact,
        /// within half a unit per rounded amount; no credit is ever larger than what remains of
        /// the charge it credits; and the charges left cover the period exactly once.
        #[test]
        fn many_changes_add_up(
            length in DAY..=31 * DAY,
            first in 0i64..1_000_000,
            changes in prop::collection::vec((0.0f64..1.0, 0i64..1_000_000), 0..8),
        ) {
            let period = (0, length);
            let mut instants: Vec<(i64, i64)> = changes
                .iter()
                .map(|&(at, price)| {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                    let t = (length as f64 * at) as i64;
                    (t.min(length - 1), price)
                })
                .collect();
            instants.sort_by_key(|&(t, _)| t);

            let mut live = vec![Charge::new(first, 0, length)];
            let mut billed = first;
            let mut rounded: i128 = 0;
            // Σ price × seconds used: the exact amount for the period is this over `length`.
            let mut exact: i128 = 0;
            let mut price = first;
            let mut since = 0;
            for &(t, new_price) in &instants {
                exact += i128::from(price) * i128::from(t - since);
                for charge in &mut live {
                    let credit = unused_credit(charge, t).unwrap();
                    prop_assert!(credit >= 0 && credit <= charge.remaining());
                    billed -= credit;
                    rounded += 1;
                    *charge = after_credit(charge, t, credit);
                }
                let debit = remaining_debit(new_price, period, t).unwrap();
                billed += debit;
                rounded += 1;
                live.push(Charge::new(debit, t, length));
                price = new_price;
                since = t;
            }
            exact += i128::from(price) * i128::from(length - since);
            // |billed − exact / length| ≤ rounded / 2, in integers.
            let error = (i128::from(billed) * i128::from(length) - exact).abs() * 2;
            prop_assert!(
                error <= rounded * i128::from(length),
                "billed {billed}, exact {exact}/{length}, {rounded} roundings"
            );
            // What is still covered tiles [0, length): the covered intervals of the live charges,
            // in order, each ending where the next starts.
            let mut covered: Vec<(i64, i64)> = live
                .iter()
                .filter(|c| c.covered_until > c.start)
                .map(|c| (c.start, c.covered_until))
                .collect();
            covered.sort_unstable();
            let mut at = 0;
            for (start, end) in covered {
                prop_assert_eq!(start, at);
                at = end;
            }
            prop_assert_eq!(at, length);
        }
    }
}

//! A subscription's life: its statuses, and the billing steps that fall due as time passes.
//!
//! ```text
//! trialing ──trial ends──▶ active ◀──settled── past_due
//!     │                     │  ╲──invoice overdue──▶ past_due
//!     │                     ├──pause──▶ paused ──resume──▶ active
//!     └──cancel──▶ canceled ◀──cancel (now, or at the end of the period)──┘
//! ```
//! `canceled` is terminal.
//!
//! [`due`] says what falls due up to an instant: the trial's end, each period's renewal, a
//! cancellation at a period's end. It depends only on the subscription's stored state and the
//! instant, so the scheduler, the `cycles run --until` command and a preview all compute the same
//! steps; and it is **resumable**: the steps due by `t1`, then from the state they lead to the
//! steps due by `t2`, are exactly the steps due by `t2` at once. A run cut short (a crash, the
//! per-run limit) and run again bills every period once, neither skipping nor repeating one.
use super::calendar::{Anchor, Cadence, CalendarError};
use super::invoice::Refusal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SubscriptionStatus)]
pub enum Status {
    Trialing,
    Active,
    PastDue,
    Paused,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Trialing,
        Status::Active,
        Status::PastDue,
        Status::Paused,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Paused => "paused",
            Status::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether periods are billed in this status (a paused or canceled subscription bills none;
    /// a past-due one keeps billing, as Stripe's does).
    pub fn bills(self) -> bool {
        matches!(self, Status::Active | Status::PastDue)
    }
}

/// What happens to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TrialEnds,
    /// A period invoice is still unpaid at its due date.
    Overdue,
    /// Every overdue invoice is paid (or credited).
    Settled,
    Pause,
    Resume,
    Cancel,
}

/// The status after `action`, or why it is not allowed (409 `invalid_state_transition`).
pub fn transition(status: Status, action: Action) -> Result<Status, Refusal> {
    use Status::*;
    let next = match (status, action) {
        (Trialing, Action::TrialEnds) => Active,
        (Active, Action::Overdue) | (PastDue, Action::Overdue) => PastDue,
        (PastDue, Action::Settled) | (Active, Action::Settled) => Active,
        (Active | PastDue, Action::Pause) => Paused,
        (Paused, Action::Resume) => Active,
        (Trialing | Active | PastDue | Paused, Action::Cancel) => Canceled,
        _ => {
            return Err(Refusal {
                code: "invalid_state_transition",
                message: format!("a {} subscription cannot {:?}", status.as_str(), action),
            });
        }
    };
    Ok(next)
}

/// Where a subscription's billing stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub status: Status,
    /// Periods are counted from here (see `calendar`).
    pub anchor: Anchor,
    pub cadence: Cadence,
    /// The current period's index from the anchor (meaningless while trialing).
    pub index: i64,
    /// The current period: `[start, end)`. The first one may start after its nominal boundary (a
    /// subscription started between two billing days); while trialing, it is the trial.
    pub period: (i64, i64),
    /// When trialing: whether the anchor was chosen (a billing day or instant) and stays, or the
    /// first paid period starts the cycle at the trial's end (the default).
    pub anchor_fixed: bool,
    /// Canceled at the end of the current period instead of renewing.
    pub cancel_at_period_end: bool,
}

/// One thing that falls due.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The trial ended at `period.0`; the first paid period starts: bill it.
    TrialEnded { index: i64, period: (i64, i64) },
    /// Period `index` starts: bill it.
    Renewed { index: i64, period: (i64, i64) },
    /// The subscription ended at `at`, the end of its last period.
    Canceled { at: i64 },
}

/// The steps due by `until` (those at an instant `≤ until`), in order, at most `max` of them, with
/// the cycle they lead to.
pub fn due(cycle: &Cycle, until: i64, max: usize) -> Result<(Vec<Step>, Cycle), CalendarError> {
    let mut cycle = cycle.clone();
    let mut steps = Vec::new();
    while steps.len() < max && cycle.period.1 <= until {
        let at = cycle.period.1;
        let step = match cycle.status {
            Status::Trialing if cycle.cancel_at_period_end => Step::Canceled { at },
            Status::Trialing => {
                let (index, period) = if cycle.anchor_fixed {
                    // A partial first period, up to the next boundary after the trial.
                    let index = cycle.anchor.index_at(cycle.cadence, at)?;
                    let (_, end) = cycle.anchor.period(cycle.cadence, index)?;
                    (index, (at, end))
                } else {
                    // The cycle starts at the trial's end. (At a DST fold the anchor's local time
                    // resolves to its first occurrence, an hour before: the period still starts
                    // at the trial's end, never inside the trial.)
                    cycle.anchor = Anchor::at(at, cycle.anchor.time_zone().clone())?;
                    let (_, end) = cycle.anchor.period(cycle.cadence, 0)?;
                    (0, (at, end))
                };
                Step::TrialEnded { index, period }
            }
            status if status.bills() && cycle.cancel_at_period_end => Step::Canceled { at },
            status if status.bills() => {
                let (index, period) = cycle.anchor.next_period(cycle.cadence, cycle.index)?;
                Step::Renewed { index, period }
            }
            // Paused and canceled subscriptions have nothing due.
            _ => break,
        };
        match &step {
            Step::TrialEnded { index, period } | Step::Renewed { index, period } => {
                if matches!(step, Step::TrialEnded { .. }) {
                    cycle.status = Status::Active;
                }
                cycle.index = *index;
                cycle.period = *period;
            }
            Step::Canceled { .. } => cycle.status = Status::Canceled,
        }
        steps.push(step);
    }
    Ok((steps, cycle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Unit, time_zone};
    use jiff::civil::date;
    use jiff::tz::TimeZone;
    use proptest::prelude::*;

    fn cycle_from(anchor: Anchor, cadence: Cadence, start: i64) -> Cycle {
        let index = anchor.index_at(cadence, start).unwrap();
        let (_, end) = anchor.period(cadence, index).unwrap();
        Cycle {
            status: Status::Active,
            anchor,
            cadence,
            index,
            period: (start, end),
            anchor_fixed: true,
            cancel_at_period_end: false,
        }
    }

    fn utc(y: i16, m: i8, d: i8) -> i64 {
        TimeZone::UTC
            .to_ambiguous_timestamp(date(y, m, d).at(0, 0, 0, 0))
            .unambiguous()
            .unwrap()
            .as_second()
    }

    #[test]
    fn the_state_machine_allows_what_the_diagram_shows() {
        use Action::*;
        use Status::*;
        assert_eq!(transition(Trialing, TrialEnds), Ok(Active));
        assert_eq!(transition(Active, Overdue), Ok(PastDue));
        assert_eq!(transition(PastDue, Settled), Ok(Active));
        assert_eq!(transition(Active, Pause), Ok(Paused));
        assert_eq!(transition(Paused, Resume), Ok(Active));
        for status in [Trialing, Active, PastDue, Paused] {
            assert_eq!(transition(status, Cancel), Ok(Canceled));
        }
        for action in [TrialEnds, Overdue, Settled, Pause, Resume, Cancel] {
            assert_eq!(
                transition(Canceled, action).unwrap_err().code,
                "invalid_state_transition"
            );
        }
        assert!(transition(Trialing, Pause).is_err());
        assert!(transition(Active, Resume).is_err());
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn a_monthly_subscription_renews_each_month_end_and_cancels_at_the_end() {
        let monthly = Cadence::new(Unit::Month, 1).unwrap();
        let anchor = Anchor::new(date(2025, 1, 31).at(0, 0, 0, 0), TimeZone::UTC);
        // Subscribed on 10 February, billed on the 31st: a partial first period to 28 February.
        let cycle = cycle_from(anchor, monthly, utc(2025, 2, 10));
        assert_eq!(cycle.period, (utc(2025, 2, 10), utc(2025, 2, 28)));
        let (steps, after) = due(&cycle, utc(2025, 5, 1), 100).unwrap();
        assert_eq!(
            steps,
            [
                Step::Renewed {
                    index: 1,
                    period: (utc(2025, 2, 28), utc(2025, 3, 31))
                },
                Step::Renewed {
                    index: 2,
                    period: (utc(2025, 3, 31), utc(2025, 4, 30))
                },
                Step::Renewed {
                    index: 3,
                    period: (utc(2025, 4, 30), utc(2025, 5, 31))
                },
            ]
        );
        let cancel = Cycle {
            cancel_at_period_end: true,
            ..after
        };
        let (steps, end) = due(&cancel, utc(2026, 1, 1), 100).unwrap();
        assert_eq!(steps, [Step::Canceled { at: utc(2025, 5, 31) }]);
        assert_eq!(end.status, Status::Canceled);
        assert_eq!(due(&end, utc(2030, 1, 1), 100).unwrap().0, []);
    }

    #[test]
    fn a_trial_starts_the_cycle_at_its_end_unless_the_anchor_is_fixed() {
        let monthly = Cadence::new(Unit::Month, 1).unwrap();
        let start = utc(2025, 3, 5);
        let trial = Cycle {
            status: Status::Trialing,
            anchor: Anchor::at(start, TimeZone::UTC).unwrap(),
            cadence: monthly,
            index: 0,
            period: (start, utc(2025, 3, 19)),
            anchor_fixed: false,
            cancel_at_period_end: false,
        };
        let (steps, after) = due(&trial, utc(2025, 3, 19), 10).unwrap();
        assert_eq!(
            steps,
            [Step::TrialEnded {
                index: 0,
                period: (utc(2025, 3, 19), utc(2025, 4, 19))
            }]
        );
        assert_eq!(after.status, Status::Active);
        // Billed on the 1st: the first paid period is the rest of March.
        let fixed = Cycle {
            anchor: Anchor::on_day(start, TimeZone::UTC, 1).unwrap(),
            anchor_fixed: true,
            ..trial.clone()
        };
        let (steps, _) = due(&fixed, utc(2025, 3, 19), 10).unwrap();
        assert_eq!(
            steps,
            [Step::TrialEnded {
                index: 0,
                period: (utc(2025, 3, 19), utc(2025, 4, 1))
            }]
        );
        // Canceled during the trial, at its end: nothing is ever billed.
        let quit = Cycle {
            cancel_at_period_end: true,
            ..trial
        };
        assert_eq!(
            due(&quit, utc(2026, 1, 1), 10).unwrap().0,
            [Step::Canceled { at: utc(2025, 3, 19) }]
        );
    }

    #[test]
    fn a_trial_ending_in_a_repeated_hour_starts_the_period_at_its_end() {
        let ny = time_zone("America/New_York").unwrap();
        let daily = Cadence::new(Unit::Day, 1).unwrap();
        // 2 November 2025, 01:30 EST (06:30Z): the second 01:30 of that night.
        let end = TimeZone::UTC
            .to_ambiguous_timestamp(date(2025, 11, 2).at(6, 30, 0, 0))
            .unambiguous()
            .unwrap()
            .as_second();
        let trial = Cycle {
            status: Status::Trialing,
            anchor: Anchor::at(end - 14 * 86_400, ny).unwrap(),
            cadence: daily,
            index: 0,
            period: (end - 14 * 86_400, end),
            anchor_fixed: false,
            cancel_at_period_end: false,
        };
        let (steps, _) = due(&trial, end, 1).unwrap();
        let Step::TrialEnded { period, .. } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!(period.0, end, "not an hour inside the trial");
        assert!(period.1 > end);
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Apia",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Cutting a run anywhere, and at any per-run limit, then running again gives exactly the
        /// steps of one run: billed periods follow each other without gap or overlap, each once.
        #[test]
        fn runs_resume_where_they_stopped(
            zone in 0..ZONES.len(),
            unit in 0usize..4,
            count in 1u16..=3,
            day in 1i8..=31,
            start_offset in 0i64..40_000_000,
            trial_days in prop::option::of(1i64..60),
            anchor_fixed in any::<bool>(),
            cuts in prop::collection::vec((0i64..120_000_000, 1usize..5), 0..4),
            horizon in 0i64..150_000_000,
        ) {
            let tz = time_zone(ZONES[zone]).unwrap();
            let cadence = Cadence::new(Unit::ALL[unit], count).unwrap();
            let base = utc(2023, 1, 1);
            let start = base + start_offset;
            let anchor_date = date(2023, 1, day.min(31));
            let anchor = Anchor::new(anchor_date.at(0, 0, 0, 0), tz.clone());
            let mut cycle = cycle_from(anchor.clone(), cadence, start);
            if let Some(days) = trial_days {
                cycle.status = Status::Trialing;
                cycle.period = (start, start + days * 86_400);
                cycle.anchor_fixed = anchor_fixed;
                if !anchor_fixed {
                    cycle.anchor = Anchor::at(start, tz).unwrap();
                }
            }
            let until = start + horizon;
            let (all, end) = due(&cycle, until, usize::MAX).unwrap();

            let mut pieces = Vec::new();
            let mut state = cycle.clone();
            let mut cuts = cuts;
            cuts.sort_unstable();
            for (cut, max) in cuts {
                let (steps, next) = due(&state, (start + cut).min(until), max).unwrap();
                pieces.extend(steps);
                state = next;
            }
            let (rest, resumed) = due(&state, until, usize::MAX).unwrap();
            pieces.extend(rest);
            prop_assert_eq!(&pieces, &all);
            prop_assert_eq!(resumed, end);

            let mut at = cycle.period.1;
            for step in &all {
                match step {
                    Step::TrialEnded { period, .. } | Step::Renewed { period, .. } => {
                        prop_assert_eq!(period.0, at, "no gap, no overlap");
                        prop_assert!(period.1 > period.0, "never an empty period");
                        at = period.1;
                    }
                    Step::Canceled { .. } => prop_assert!(false, "not canceled"),
                }
            }
            prop_assert!(at > until, "everything due by `until` was returned");
        }
    }
}

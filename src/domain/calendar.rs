//! Billing periods: where each one starts, in the tenant's time zone, as a Unix instant.
//!
//! Every boundary is computed **from the anchor**, never from the previous boundary: period `k`
//! starts at the anchor's local date plus `k × cadence`, at the anchor's local time of day.
//! Months (and years, as 12 months) are added the way jiff adds them, clamping to the month's
//! last day: an anchor on 31 January gives 28 or 29 February, then 31 March, 30 April, 31 May.
//! Computing from the previous boundary instead would drift to the 28th for ever (Lago's and
//! Kill Bill's month-end bugs).
//!
//! A local time that does not exist (a DST gap) maps to the instant after the gap, a local time
//! that occurs twice (a fold) to its first occurrence (jiff's "compatible" rule, as RFC 5545 and
//! Temporal do). A day removed from a calendar (Samoa skipped 30 December 2011) gives a period of
//! length zero: `index_at` never answers one, and `next_period` steps over it.
//!
//! This is the only module that knows jiff; everything stored is Unix seconds, a local date-time
//! and a time zone name (the IANA database is bundled into the binary, so that every replica and
//! every build computes the same boundaries).
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// The unit of a cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == s)
    }

    /// The most units a cadence may count: three years' worth.
    pub fn max_count(self) -> u16 {
        match self {
            Unit::Day => 1_095,
            Unit::Week => 156,
            Unit::Month => 36,
            Unit::Year => 3,
        }
    }

    /// An average length in seconds, only to guess an index before checking it exactly.
    fn approximate_seconds(self) -> i64 {
        match self {
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            Unit::Month => 2_629_746,
            Unit::Year => 31_556_952,
        }
    }
}

/// How often a period repeats: every `count` `unit`s (`1 month`, `3 months`, `2 weeks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cadence {
    unit: Unit,
    count: u16,
}

impl Cadence {
    /// A cadence of 1 to `unit.max_count()` units.
    pub fn new(unit: Unit, count: u16) -> Option<Cadence> {
        (1..=unit.max_count())
            .contains(&count)
            .then_some(Cadence { unit, count })
    }

    pub fn unit(self) -> Unit {
        self.unit
    }

    pub fn count(self) -> u16 {
        self.count
    }

    /// The calendar span of `k` periods.
    fn span(self, k: i64) -> Result<Span, CalendarError> {
        let n = k.checked_mul(i64::from(self.count)).ok_or(CalendarError::OutOfRange)?;
        let span = match self.unit {
            Unit::Day => Span::new().try_days(n),
            Unit::Week => Span::new().try_days(n.checked_mul(7).ok_or(CalendarError::OutOfRange)?),
            Unit::Month => Span::new().try_months(n),
            Unit::Year => Span::new().try_months(n.checked_mul(12).ok_or(CalendarError::OutOfRange)?),
        };
        span.map_err(|_| CalendarError::OutOfRange)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("the date is outside the supported range")]
    OutOfRange,
    #[error("billing_cycle_day must be between 1 and 31")]
    InvalidDay,
}

/// An IANA time zone (`Europe/Paris`, `UTC`), from the database bundled into the binary. Only
/// names: fixed offsets and POSIX rules are refused, since they ignore the zone's DST rules.
pub fn time_zone(name: &str) -> Option<TimeZone> {
    let plain =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
    if !plain {
        return None;
    }
    TimeZone::get(name).ok()
}

/// Where a subscription's periods are counted from: a local date and time of day in a time zone.
/// Period 0 starts at the anchor; period `k` at the anchor's date plus `k` cadences.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    local: DateTime,
    tz: TimeZone,
}

impl Anchor {
    pub fn new(local: DateTime, tz: TimeZone) -> Anchor {
        Anchor { local, tz }
    }

    /// The anchor at `instant`'s local date and time of day in `tz`.
    pub fn at(instant: i64, tz: TimeZone) -> Result<Anchor, CalendarError> {
        let local = tz.to_datetime(timestamp(instant)?);
        Ok(Anchor { local, tz })
    }

    /// The anchor of periods starting at 00:00 on day `day` (1–31) of each month (clamped to the
    /// month's last day), counted from a month at or before `instant`'s month in which that day
    /// exists, so that clamping never carries from one month into the next (day 31 gives 30
    /// April, then 31 May). Its period 0 may start before `instant`: see `index_at`.
    pub fn on_day(instant: i64, tz: TimeZone, day: u8) -> Result<Anchor, CalendarError> {
        let day = i8::try_from(day)
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or(CalendarError::InvalidDay)?;
        let mut month = tz.to_datetime(timestamp(instant)?).date().first_of_month();
        // A month of 31 days is at most two months back (before February, January).
        while month.days_in_month() < day {
            month = month
                .checked_add(Span::new().months(-1))
                .map_err(|_| CalendarError::OutOfRange)?;
        }
        let date = Date::new(month.year(), month.month(), day).map_err(|_| CalendarError::OutOfRange)?;
        Ok(Anchor {
            local: DateTime::from_parts(date, Time::midnight()),
            tz,
        })
    }

    /// The anchor's local date and time, as stored (`2024-01-31T00:00:00`).
    pub fn local(&self) -> DateTime {
        self.local
    }

    /// The anchor as stored: its local date and time, and the IANA name of its zone.
    pub fn to_stored(&self) -> (String, String) {
        (self.local.to_string(), self.tz.iana_name().unwrap_or("UTC").to_owned())
    }

    /// An anchor read back from `to_stored`'s parts.
    pub fn from_stored(local: &str, zone: &str) -> Option<Anchor> {
        Some(Anchor {
            local: local.parse().ok()?,
            tz: time_zone(zone)?,
        })
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The instant period `k` starts.
    pub fn boundary(&self, cadence: Cadence, k: i64) -> Result<i64, CalendarError> {
        let date = self
            .local
            .date()
            .checked_add(cadence.span(k)?)
            .map_err(|_| CalendarError::OutOfRange)?;
        let local = DateTime::from_parts(date, self.local.time());
        let instant = self
            .tz
            .to_ambiguous_timestamp(local)
            .compatible()
            .map_err(|_| CalendarError::OutOfRange)?;
        Ok(instant.as_second())
    }

    /// Period `k`: `[boundary(k), boundary(k + 1))`. Of length zero only where a calendar
    /// skipped the day it would start on.
    pub fn period(&self, cadence: Cadence, k: i64) -> Result<(i64, i64), CalendarError> {
        let next = k.checked_add(1).ok_or(CalendarError::OutOfRange)?;
        Ok((self.boundary(cadence, k)?, self.boundary(cadence, next)?))
    }

    /// The index of the period that contains `t`: the largest `k` with `boundary(k) ≤ t` (so never
    /// a period of length zero). Negative before the anchor.
    pub fn index_at(&self, cadence: Cadence, t: i64) -> Result<i64, CalendarError> {
        let origin = self.boundary(cadence, 0)?;
        let length = cadence.unit.approximate_seconds() * i64::from(cadence.count);
        let mut k = (t - origin).div_euclid(length);
        // The guess is off by at most a period or two (month lengths, DST); walk to the answer.
        while self.boundary(cadence, k)? > t {
            k -= 1;
        }
        while self.boundary(cadence, k + 1)? <= t {
            k += 1;
        }
        Ok(k)
    }

    /// The first period that starts after period `k` and is not of length zero.
    pub fn next_period(&self, cadence: Cadence, k: i64) -> Result<(i64, (i64, i64)), CalendarError> {
        let mut next = k + 1;
        loop {
            let (start, end) = self.period(cadence, next)?;
            if end > start {
                return Ok((next, (start, end)));
            }
            next += 1;
        }
    }
}

fn timestamp(instant: i64) -> Result<Timestamp, CalendarError> {
    Timestamp::from_second(instant).map_err(|_| CalendarError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
        TimeZone::UTC
            .to_ambiguous_timestamp(date(y, m, d).at(h, min, 0, 0))
            .unambiguous()
            .unwrap()
            .as_second()
    }

    fn local(tz: &str, instant: i64) -> String {
        time_zone(tz)
            .unwrap()
            .to_datetime(Timestamp::from_second(instant).unwrap())
            .to_string()
    }

    fn monthly() -> Cadence {
        Cadence::new(Unit::Month, 1).unwrap()
    }

    #[test]
    fn month_ends_clamp_and_come_back() {
        let anchor = Anchor::new(date(2024, 1, 31).at(0, 0, 0, 0), TimeZone::UTC);
        let starts: Vec<String> = (0..6)
            .map(|k| local("UTC", anchor.boundary(monthly(), k).unwrap()))
            .collect();
        assert_eq!(
            starts,
            [
                "2024-01-31T00:00:00",
                "2024-02-29T00:00:00",
                "2024-03-31T00:00:00",
                "2024-04-30T00:00:00",
                "2024-05-31T00:00:00",
                "2024-06-30T00:00:00",
            ]
        );
        let yearly = Cadence::new(Unit::Year, 1).unwrap();
        let leap = Anchor::new(date(2024, 2, 29).at(12, 0, 0, 0), TimeZone::UTC);
        let years: Vec<String> = (0..5)
            .map(|k| local("UTC", leap.boundary(yearly, k).unwrap()))
            .collect();
        assert_eq!(
            years,
            [
                "2024-02-29T12:00:00",
                "2025-02-28T12:00:00",
                "2026-02-28T12:00:00",
                "2027-02-28T12:00:00",
                "2028-02-29T12:00:00",
            ]
        );
    }

    #[test]
    fn billing_cycle_day_31_is_anchored_where_the_day_exists() {
        let paris = time_zone("Europe/Paris").unwrap();
        // Subscribed on 10 April: day 31 is anchored on 31 March, whose period ends 30 April.
        let anchor = Anchor::on_day(utc(2025, 4, 10, 9, 0), paris.clone(), 31).unwrap();
        assert_eq!(anchor.local().to_string(), "2025-03-31T00:00:00");
        let k = anchor.index_at(monthly(), utc(2025, 4, 10, 9, 0)).unwrap();
        assert_eq!(k, 0);
        let (start, end) = anchor.period(monthly(), k).unwrap();
        assert_eq!(local("Europe/Paris", start), "2025-03-31T00:00:00");
        assert_eq!(local("Europe/Paris", end), "2025-04-30T00:00:00");
        assert_eq!(
            local("Europe/Paris", anchor.boundary(monthly(), 2).unwrap()),
            "2025-05-31T00:00:00"
        );
        // In February: anchored on 31 January.
        let feb = Anchor::on_day(utc(2025, 2, 3, 0, 0), paris.clone(), 31).unwrap();
        assert_eq!(feb.local().to_string(), "2025-01-31T00:00:00");
        assert_eq!(Anchor::on_day(0, paris.clone(), 0), Err(CalendarError::InvalidDay));
        assert_eq!(Anchor::on_day(0, paris, 32), Err(CalendarError::InvalidDay));
    }

    #[test]
    fn local_midnight_stays_midnight_across_daylight_saving() {
        let paris = time_zone("Europe/Paris").unwrap();
        let anchor = Anchor::new(date(2025, 1, 31).at(0, 0, 0, 0), paris);
        for k in 0..14 {
            let start = anchor.boundary(monthly(), k).unwrap();
            assert!(local("Europe/Paris", start).ends_with("T00:00:00"), "{k}");
        }
        // March 2025 has 23 hours on the 30th in Paris: the period is 1 hour short of 31 days.
        let (start, end) = anchor.period(monthly(), 2).unwrap();
        assert_eq!(local("Europe/Paris", start), "2025-03-31T00:00:00");
        let (feb, mar) = anchor.period(monthly(), 1).unwrap();
        assert_eq!(mar, start);
        assert_eq!(mar - feb, 31 * 86_400 - 3_600);
        assert_eq!(end - start, 30 * 86_400);
    }

    #[test]
    fn times_in_a_gap_move_after_it_and_folds_take_the_first() {
        let ny = time_zone("America/New_York").unwrap();
        let daily = Cadence::new(Unit::Day, 1).unwrap();
        // 02:30 does not exist on 9 March 2025 in New York: that day's period starts at 03:30.
        let anchor = Anchor::new(date(2025, 3, 7).at(2, 30, 0, 0), ny.clone());
        assert_eq!(
            local("America/New_York", anchor.boundary(daily, 2).unwrap()),
            "2025-03-09T03:30:00"
        );
        assert_eq!(
            local("America/New_York", anchor.boundary(daily, 3).unwrap()),
            "2025-03-10T02:30:00"
        );
        // 01:30 happens twice on 2 November 2025: the first (EDT, UTC−4) is the boundary.
        let fold = Anchor::new(date(2025, 11, 1).at(1, 30, 0, 0), ny);
        assert_eq!(fold.boundary(daily, 1).unwrap(), utc(2025, 11, 2, 5, 30));
    }

    #[test]
    fn a_skipped_day_gives_an_empty_period_that_is_stepped_over() {
        // Samoa skipped 30 December 2011 (UTC−10 → UTC+14).
        let apia = time_zone("Pacific/Apia").unwrap();
        let daily = Cadence::new(Unit::Day, 1).unwrap();
        let anchor = Anchor::new(date(2011, 12, 28).at(0, 0, 0, 0), apia);
        let (start, end) = anchor.period(daily, 2).unwrap();
        assert_eq!(start, end, "30 December did not exist");
        assert_eq!(anchor.index_at(daily, start).unwrap(), 3);
        let (next, (s, e)) = anchor.next_period(daily, 1).unwrap();
        assert_eq!(next, 3);
        assert_eq!(local("Pacific/Apia", s), "2011-12-31T00:00:00");
        assert_eq!(e - s, 86_400);
    }

    #[test]
    fn anchors_are_stored_as_text_and_read_back() {
        let anchor = Anchor::on_day(1_740_000_000, time_zone("Asia/Kolkata").unwrap(), 30).unwrap();
        let (local, zone) = anchor.to_stored();
        assert_eq!(zone, "Asia/Kolkata");
        assert_eq!(Anchor::from_stored(&local, &zone), Some(anchor));
        assert_eq!(Anchor::from_stored("2025-02-30T00:00:00", "UTC"), None);
        assert_eq!(Anchor::from_stored("2025-01-30T00:00:00", "Nowhere/City"), None);
    }

    #[test]
    fn only_iana_names_are_time_zones() {
        assert!(time_zone("UTC").is_some());
        assert!(time_zone("Europe/Paris").is_some());
        assert!(time_zone("America/Argentina/Buenos_Aires").is_some());
        for bad in [
            "",
            "Mars/Olympus",
            "+05:00",
            "EST5EDT,M3.2.0,M11.1.0",
            "../../etc/passwd",
            "Europe/Paris\0",
        ] {
            assert!(time_zone(bad).is_none(), "{bad:?}");
        }
        assert!(Cadence::new(Unit::Month, 0).is_none());
        assert!(Cadence::new(Unit::Month, 37).is_none());
        assert!(Cadence::new(Unit::Year, 3).is_some());
        assert_eq!(Unit::parse("week"), Some(Unit::Week));
        assert_eq!(Unit::parse("Week"), None);
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Pacific/Apia",
        "Asia/Kolkata",
    ];

    fn cadence() -> impl Strategy<Value = Cadence> {
        (0usize..4, 1u16..=36).prop_map(|(u, n)| {
            let unit = Unit::ALL[u];
            Cadence::new(unit, n.min(unit.max_count())).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]
        /// The periods tile time: boundaries never go back, every instant falls in exactly the
        /// period `index_at` names, which is not empty; and each boundary is on the anchor's day
        /// of the month (clamped) for monthly and yearly cadences.
        #[test]
        fn periods_tile_time(
            zone in 0..ZONES.len(),
            cadence in cadence(),
            year in 1990i16..2040,
            month in 1i8..=12,
            day in 1i8..=31,
            hour in 0i8..24,
            minute in prop::sample::select(vec![0i8, 15, 30, 45]),
            k in -30i64..30,
            offset_of_period in 0.0f64..1.0,
        ) {
            let tz = time_zone(ZONES[zone]).unwrap();
            let day = day.min(date(year, month, 1).days_in_month());
            let anchor = Anchor::new(date(year, month, day).at(hour, minute, 0, 0), tz.clone());
            let (start, end) = anchor.period(cadence, k).unwrap();
            prop_assert!(end >= start);
            if end > start {
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                let t = start + ((end - start) as f64 * offset_of_period) as i64;
                prop_assert_eq!(anchor.index_at(cadence, t).unwrap(), k);
                prop_assert_eq!(anchor.index_at(cadence, start).unwrap(), k);
                prop_assert_eq!(anchor.index_at(cadence, end - 1).unwrap(), k);
            }
            prop_assert_eq!(anchor.index_at(cadence, end).unwrap(), anchor.next_period(cadence, k).unwrap().0);
            if matches!(cadence.unit(), Unit::Month | Unit::Year) {
                let local_day = tz.to_datetime(Timestamp::from_second(start).unwrap()).date();
                // A gap can move a start past midnight into the next day; never by more.
                let expected = anchor.local().date().checked_add(cadence.span(k).unwrap()).unwrap();
                prop_assert!(local_day == expected || local_day == expected.tomorrow().unwrap());
                prop_assert_eq!(expected.day(), day.min(expected.days_in_month()));
            }
        }
    }
}

/// The UTC calendar month that contains `instant`: its first second and the next month's.
pub fn utc_month_of(instant: i64) -> Result<(i64, i64), CalendarError> {
    let at = Timestamp::from_second(instant).map_err(|_| CalendarError::OutOfRange)?;
    let first = TimeZone::UTC.to_datetime(at).date().first_of_month();
    let next = first
        .checked_add(Span::new().months(1))
        .map_err(|_| CalendarError::OutOfRange)?;
    let second = |d: Date| -> Result<i64, CalendarError> {
        let t = TimeZone::UTC
            .to_ambiguous_timestamp(d.to_datetime(Time::midnight()))
            .compatible()
            .map_err(|_| CalendarError::OutOfRange)?;
        Ok(t.as_second())
    };
    Ok((second(first)?, second(next)?))
}

#[cfg(test)]
mod month_tests {
    #[test]
    fn the_utc_month_of_an_instant() {
        // 2025-02-14T12:00:00Z is in [2025-02-01, 2025-03-01).
        assert_eq!(super::utc_month_of(1_739_534_400), Ok((1_738_368_000, 1_740_787_200)));
    }
}

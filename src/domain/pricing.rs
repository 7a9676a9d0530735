//! What a price charges for one full period of a given quantity.
//!
//! Four models, as Stripe has them (a flat fee is a per-unit price of quantity 1):
//! - **per unit**: `quantity × unit_amount`;
//! - **package** (metered prices only; Stripe's `transform_quantity`): the units in packages
//!   of `divide_by`, rounded up or down, each package at `unit_amount`;
//! - **graduated** tiers: each unit is charged at the tier it falls in (the first 10 at one
//!   price, the next 40 at another…), plus the flat fee of every tier reached;
//! - **volume** tiers: every unit at the price of the tier the whole quantity falls in, plus
//!   that tier's flat fee.
//!
//! The amounts are what one full period costs; a part of a period is a fraction of it (see
//! `proration`). Every sum is overflow-checked and bounded by `money::MAX_AMOUNT`.
use super::FieldError;
use super::money::MAX_AMOUNT;

/// The most units an item may have.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// The most units a metered price's tier may be bounded at (usage is not a seat count).
pub const MAX_USAGE_BOUND: i64 = 1_000_000_000_000_000;
/// The most tiers a price may have.
pub const MAX_TIERS: usize = 8;

/// One tier: the units up to `up_to` (inclusive; `None` for the last, unbounded tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub up_to: Option<i64>,
    pub unit_amount: i64,
    pub flat_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    PerUnit {
        unit_amount: i64,
    },
    Package {
        unit_amount: i64,
        divide_by: i64,
        round_up: bool,
    },
    Graduated(Vec<Tier>),
    Volume(Vec<Tier>),
}

/// One row of a period's charge, as it appears on an invoice: `quantity × unit_amount`. A tier's
/// flat fee is a row of quantity 1. `tier` is the tier's position (from 0) for tiered models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub quantity: i64,
    pub unit_amount: i64,
    pub tier: Option<usize>,
    pub flat_fee: bool,
}

impl Row {
    pub fn amount(&self) -> Option<i64> {
        self.quantity.checked_mul(self.unit_amount)
    }
}

fn field(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// Tiers are 1 to `MAX_TIERS`, bounded by strictly increasing `up_to` values (at most
/// `max_up_to`) except the last, which is unbounded; amounts are 0 to `MAX_AMOUNT`.
pub fn check_tiers(tiers: &[Tier], max_up_to: i64) -> Result<(), FieldError> {
    if tiers.is_empty() {
        return Err(field("tiers", "required", "at least one tier is required"));
    }
    if tiers.len() > MAX_TIERS {
        return Err(field("tiers", "too_many", format!("at most {MAX_TIERS} tiers")));
    }
    let mut previous = 0;
    for (i, tier) in tiers.iter().enumerate() {
        let last = i + 1 == tiers.len();
        match (tier.up_to, last) {
            (None, true) => {}
            (None, false) => {
                return Err(field(
                    format!("tiers[{i}].up_to"),
                    "required",
                    "only the last tier is unbounded",
                ));
            }
            (Some(_), true) => {
                return Err(field(
                    format!("tiers[{i}].up_to"),
                    "invalid",
                    "the last tier must be unbounded (up_to: null)",
                ));
            }
            (Some(up_to), false) => {
                if up_to <= previous || up_to > max_up_to {
                    return Err(field(
                        format!("tiers[{i}].up_to"),
                        "out_of_range",
                        format!("up_to must be above the previous tier's and at most {max_up_to}"),
                    ));
                }
                previous = up_to;
            }
        }
        for (name, amount) in [("unit_amount", tier.unit_amount), ("flat_amount", tier.flat_amount)] {
            if !(0..=MAX_AMOUNT).contains(&amount) {
                return Err(field(
                    format!("tiers[{i}].{name}"),
                    "out_of_range",
                    format!("must be between 0 and {MAX_AMOUNT}"),
                ));
            }
        }
    }
    Ok(())
}

/// The rows one full period of `quantity` units costs; `None` when the quantity does not fit the
/// model (0 or above `MAX_QUANTITY`; a package price bills usage, never a quantity) or the amount
/// goes over `MAX_AMOUNT`. Rows of amount 0 are left out, except the single row of a price that
/// costs nothing.
pub fn period_rows(model: &Model, quantity: i64) -> Option<Vec<Row>> {
    if !(1..=MAX_QUANTITY).contains(&quantity) || matches!(model, Model::Package { .. }) {
        return None;
    }
    rows(model, quantity)
}

/// The rows `usage` units of a metered price cost (any model); no rows when the usage (or its
/// packages, rounded down) is 0. `None` when the amount goes over `MAX_AMOUNT`.
pub fn usage_rows(model: &Model, usage: i64) -> Option<Vec<Row>> {
    let units = match model {
        Model::Package {
            divide_by, round_up, ..
        } => {
            let packages = usage.checked_div(*divide_by)?;
            if *round_up && usage % divide_by != 0 {
                packages + 1
            } else {
                packages
            }
        }
        _ => usage,
    };
    if units < 0 {
        return None;
    }
    if units == 0 {
        return Some(Vec::new());
    }
    rows(model, units)
}

/// `quantity` (≥ 1 units, or packages for a package price) at `model`, amounts checked.
fn rows(model: &Model, quantity: i64) -> Option<Vec<Row>> {
    let row = |quantity, unit_amount, tier, flat_fee| Row {
        quantity,
        unit_amount,
        tier,
        flat_fee,
    };
    let mut rows = match model {
        Model::PerUnit { unit_amount } | Model::Package { unit_amount, .. } => {
            vec![row(quantity, *unit_amount, None, false)]
        }
        Model::Volume(tiers) => {
            let (i, tier) = tiers
                .iter()
                .enumerate()
                .find(|(_, t)| t.up_to.is_none_or(|up_to| quantity <= up_to))?;
            vec![
                row(quantity, tier.unit_amount, Some(i), false),
                row(1, tier.flat_amount, Some(i), true),
            ]
        }
        Model::Graduated(tiers) => {
            let mut rows = Vec::new();
            let mut below = 0;
            for (i, tier) in tiers.iter().enumerate() {
                if quantity <= below {
                    break;
                }
                let top = tier.up_to.map_or(quantity, |up_to| up_to.min(quantity));
                rows.push(row(top - below, tier.unit_amount, Some(i), false));
                rows.push(row(1, tier.flat_amount, Some(i), true));
                below = top;
            }
            rows
        }
    };
    let total = rows.iter().try_fold(0i64, |sum, r| sum.checked_add(r.amount()?))?;
    if total > MAX_AMOUNT {
        return None;
    }
    if rows.len() > 1 {
        rows.retain(|r| r.unit_amount != 0);
        if rows.is_empty() {
            rows.push(row(quantity, 0, None, false));
        }
    }
    Some(rows)
}

/// What `usage` units of a metered price cost.
pub fn usage_amount(model: &Model, usage: i64) -> Option<i64> {
    usage_rows(model, usage)?
        .iter()
        .try_fold(0i64, |sum, r| sum.checked_add(r.amount()?))
}

/// What one full period of `quantity` units costs.
pub fn period_amount(model: &Model, quantity: i64) -> Option<i64> {
    period_rows(model, quantity)?
        .iter()
        .try_fold(0i64, |sum, r| sum.checked_add(r.amount()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tier(up_to: Option<i64>, unit_amount: i64, flat_amount: i64) -> Tier {
        Tier {
            up_to,
            unit_amount,
            flat_amount,
        }
    }

    fn tiers() -> Vec<Tier> {
        vec![tier(Some(10), 500, 0), tier(Some(50), 400, 1_000), tier(None, 300, 0)]
    }

    #[test]
    fn each_model_charges_as_documented() {
        assert_eq!(period_amount(&Model::PerUnit { unit_amount: 2_900 }, 1), Some(2_900));
        assert_eq!(period_amount(&Model::PerUnit { unit_amount: 700 }, 3), Some(2_100));
        // Graduated, 60 units: 10 × 5.00 + (40 × 4.00 + 10.00) + 10 × 3.00.
        assert_eq!(
            period_amount(&Model::Graduated(tiers()), 60),
            Some(5_000 + 16_000 + 1_000 + 3_000)
        );
        assert_eq!(period_amount(&Model::Graduated(tiers()), 10), Some(5_000));
        assert_eq!(period_amount(&Model::Graduated(tiers()), 11), Some(5_000 + 400 + 1_000));
        // Volume, 60 units: all at the third tier's price.
        assert_eq!(period_amount(&Model::Volume(tiers()), 60), Some(18_000));
        assert_eq!(period_amount(&Model::Volume(tiers()), 50), Some(20_000 + 1_000));
        assert_eq!(period_amount(&Model::PerUnit { unit_amount: 1 }, 0), None);
        assert_eq!(
            period_amount(&Model::PerUnit { unit_amount: 1 }, MAX_QUANTITY + 1),
            None
        );
        assert_eq!(
            period_amount(
                &Model::PerUnit {
                    unit_amount: MAX_AMOUNT
                },
                2
            ),
            None
        );
        assert_eq!(
            period_rows(&Model::Graduated(tiers()), 11).unwrap(),
            vec![
                Row {
                    quantity: 10,
                    unit_amount: 500,
                    tier: Some(0),
                    flat_fee: false
                },
                Row {
                    quantity: 1,
                    unit_amount: 400,
                    tier: Some(1),
                    flat_fee: false
                },
                Row {
                    quantity: 1,
                    unit_amount: 1_000,
                    tier: Some(1),
                    flat_fee: true
                },
            ]
        );
        assert_eq!(
            period_rows(&Model::PerUnit { unit_amount: 0 }, 4).unwrap(),
            vec![Row {
                quantity: 4,
                unit_amount: 0,
                tier: None,
                flat_fee: false
            }]
        );
    }

    #[test]
    fn usage_is_priced_in_units_packages_or_tiers() {
        let package = |round_up| Model::Package {
            unit_amount: 150,
            divide_by: 1_000,
            round_up,
        };
        assert_eq!(usage_amount(&package(true), 2_200), Some(450));
        assert_eq!(usage_amount(&package(false), 2_200), Some(300));
        assert_eq!(usage_amount(&package(true), 3_000), Some(450));
        assert_eq!(usage_amount(&package(false), 999), Some(0));
        assert_eq!(usage_rows(&package(false), 999), Some(Vec::new()));
        assert_eq!(usage_amount(&Model::PerUnit { unit_amount: 2 }, 0), Some(0));
        // Usage is not bounded by an item's largest quantity.
        assert_eq!(
            usage_amount(&Model::PerUnit { unit_amount: 2 }, 5 * MAX_QUANTITY),
            Some(10 * MAX_QUANTITY)
        );
        assert_eq!(
            usage_amount(&Model::Graduated(tiers()), 60),
            period_amount(&Model::Graduated(tiers()), 60)
        );
        assert_eq!(
            usage_amount(
                &Model::PerUnit {
                    unit_amount: MAX_AMOUNT
                },
                2
            ),
            None
        );
        assert_eq!(usage_amount(&Model::PerUnit { unit_amount: 1 }, -1), None);
        // A package price never bills a quantity.
        assert_eq!(period_rows(&package(true), 5), None);
    }

    #[test]
    fn tiers_are_checked() {
        assert!(check_tiers(&tiers(), MAX_QUANTITY).is_ok());
        assert_eq!(check_tiers(&[], MAX_QUANTITY).unwrap_err().code, "required");
        assert_eq!(
            check_tiers(&[tier(Some(5), 1, 0)], MAX_QUANTITY).unwrap_err().field,
            "tiers[0].up_to"
        );
        assert_eq!(
            check_tiers(&[tier(None, 1, 0), tier(None, 1, 0)], MAX_QUANTITY)
                .unwrap_err()
                .field,
            "tiers[0].up_to"
        );
        assert_eq!(
            check_tiers(
                &[tier(Some(5), 1, 0), tier(Some(5), 1, 0), tier(None, 1, 0)],
                MAX_QUANTITY
            )
            .unwrap_err()
            .code,
            "out_of_range"
        );
        assert_eq!(
            check_tiers(&[tier(Some(5), -1, 0), tier(None, 1, 0)], MAX_QUANTITY)
                .unwrap_err()
                .field,
            "tiers[0].unit_amount"
        );
        assert_eq!(
            check_tiers(&vec![tier(None, 1, 0); 9], MAX_QUANTITY).unwrap_err().code,
            "too_many"
        );
    }

    fn valid_tiers() -> impl Strategy<Value = Vec<Tier>> {
        prop::collection::vec((1i64..200, 0i64..10_000, 0i64..5_000), 1..=MAX_TIERS).prop_map(|raw| {
            let mut up_to = 0;
            let last = raw.len() - 1;
            raw.into_iter()
                .enumerate()
                .map(|(i, (step, unit_amount, flat_amount))| {
                    up_to += step;
                    tier((i < last).then_some(up_to), unit_amount, flat_amount)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Against a unit-by-unit count: graduated charges each unit at its own tier, volume all
        /// units at the tier of the last one; flat fees of the tiers reached.
        #[test]
        fn tiers_match_a_unit_by_unit_count(tiers in valid_tiers(), quantity in 1i64..2_000) {
            prop_assert!(check_tiers(&tiers, MAX_QUANTITY).is_ok());
            let tier_of = |unit: i64| tiers.iter().position(|t| t.up_to.is_none_or(|u| unit <= u)).unwrap();
            let mut graduated = 0;
            let mut reached = std::collections::BTreeSet::new();
            for unit in 1..=quantity {
                let t = tier_of(unit);
                graduated += tiers[t].unit_amount;
                reached.insert(t);
            }
            graduated += reached.iter().map(|&t| tiers[t].flat_amount).sum::<i64>();
            let top = &tiers[tier_of(quantity)];
            let volume = quantity * top.unit_amount + top.flat_amount;
            prop_assert_eq!(period_amount(&Model::Graduated(tiers.clone()), quantity), Some(graduated));
            prop_assert_eq!(period_amount(&Model::Volume(tiers.clone()), quantity), Some(volume));
            let rows = period_rows(&Model::Graduated(tiers.clone()), quantity).unwrap();
            prop_assert!(rows.iter().all(|r| r.quantity >= 1));
        }
    }
}

//! Fractions of amounts, computed exactly and rounded once.
//!
//! A prorated amount is `amount × part / whole` (seconds used over seconds in the period). It is
//! computed in i128, where it cannot overflow (|amount| ≤ 10^18 and part, whole ≤ 10^10 seconds
//! give products below 10^28 ≪ 1.7·10^38), and rounded once, half away from zero: the rule
//! `money::line_tax` uses, so that every rounding in a bill follows one rule.

/// `round(amount × part / whole)`, half away from zero; `None` when `whole` is not positive or the
/// result does not fit an i64.
pub fn mul_div_round(amount: i64, part: i64, whole: i64) -> Option<i64> {
    if whole <= 0 {
        return None;
    }
    let product = i128::from(amount) * i128::from(part);
    let whole = i128::from(whole);
    let quotient = product / whole;
    let remainder = product % whole;
    // |remainder| ≥ whole / 2 rounds away from zero (compared doubled, so odd wholes are exact).
    let rounded = if 2 * remainder.abs() >= whole {
        quotient + product.signum()
    } else {
        quotient
    };
    i64::try_from(rounded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn halves_round_away_from_zero() {
        assert_eq!(mul_div_round(1, 1, 2), Some(1));
        assert_eq!(mul_div_round(-1, 1, 2), Some(-1));
        assert_eq!(mul_div_round(1, 1, 3), Some(0));
        assert_eq!(mul_div_round(2, 1, 3), Some(1));
        assert_eq!(mul_div_round(-2, 1, 3), Some(-1));
        assert_eq!(mul_div_round(3_000, 15, 30), Some(1_500));
        assert_eq!(mul_div_round(999, 1, 1), Some(999));
        assert_eq!(mul_div_round(5, 0, 7), Some(0));
        assert_eq!(mul_div_round(5, 1, 0), None);
        assert_eq!(mul_div_round(i64::MAX, 2, 1), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The result is within half a unit of the exact fraction, and exactly half rounds away.
        #[test]
        fn within_half_a_unit_of_the_exact_value(
            amount in -1_000_000_000_000_000_000i64..=1_000_000_000_000_000_000,
            whole in 1i64..=10_000_000_000,
            part_of in 0.0f64..=1.0,
        ) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let part = ((whole as f64) * part_of) as i64;
            let got = i128::from(mul_div_round(amount, part, whole).unwrap());
            let exact_doubled = 2 * i128::from(amount) * i128::from(part);
            // |2·got·whole − 2·amount·part| ≤ whole, i.e. |got − exact| ≤ ½.
            let error = (2 * got * i128::from(whole) - exact_doubled).abs();
            prop_assert!(error <= i128::from(whole));
            if error == i128::from(whole) {
                prop_assert!(got.abs() * 2 * i128::from(whole) > exact_doubled.abs());
            }
        }
    }
}

//! Currencies and amounts. Amounts are integers in the currency's minor unit, whose size comes
//! from ISO 4217 (the `iso_currency` crate): 1 USD = 100, 1 JPY = 1, 1 KWD = 1000.
use std::fmt;

use iso_currency::Currency as Iso;

/// The largest amount accepted anywhere (10^12 minor units); sums are still overflow-checked.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A currency money can be billed in: an active ISO 4217 currency with a minor unit (not a fund,
/// a precious metal or a superseded code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency(Iso);

impl Currency {
    /// Parses a code in lower or upper case (`usd`, `USD`; not `Usd`).
    pub fn parse(code: &str) -> Option<Currency> {
        let one_case = code.bytes().all(|b| b.is_ascii_lowercase()) || code.bytes().all(|b| b.is_ascii_uppercase());
        if !one_case {
            return None;
        }
        let iso = Iso::from_code(&code.to_ascii_uppercase())?;
        let billable = iso.exponent().is_some() && !iso.is_fund() && !iso.is_special() && iso.is_superseded().is_none();
        billable.then_some(Currency(iso))
    }

    /// Lower-case code, as the API writes it.
    pub fn code(self) -> String {
        self.0.code().to_ascii_lowercase()
    }

    /// Digits after the decimal point.
    pub fn exponent(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// `12345` in USD is `"123.45"`, in JPY `"12345"`, in KWD `"12.345"`.
    pub fn format(self, amount: i64) -> String {
        let exp = self.exponent();
        if exp == 0 {
            return amount.to_string();
        }
        let unit = 10u64.pow(exp);
        let abs = amount.unsigned_abs();
        let sign = if amount < 0 { "-" } else { "" };
        format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = exp as usize)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// Tax on a line: `amount × rate_bps / 10 000`, rounded half away from zero to the minor unit.
/// Each line is rounded on its own and the invoice's tax is the sum of its lines' taxes.
pub fn line_tax(amount: i64, rate_bps: i64) -> Option<i64> {
    let product = i128::from(amount).checked_mul(i128::from(rate_bps))?;
    let half = if product >= 0 { 5_000 } else { -5_000 };
    i64::try_from((product + half) / 10_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_come_from_iso_4217() {
        assert_eq!(Currency::parse("usd").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("kwd").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("usd").unwrap().code(), "usd");
        for unbillable in ["xau", "xxx", "bov", "abc", "", "usdd", "Usd", "uSD"] {
            assert!(Currency::parse(unbillable).is_none(), "{unbillable}");
        }
    }

    #[test]
    fn formatting_uses_the_minor_unit() {
        assert_eq!(Currency::parse("usd").unwrap().format(12345), "123.45");
        assert_eq!(Currency::parse("usd").unwrap().format(5), "0.05");
        assert_eq!(Currency::parse("jpy").unwrap().format(12345), "12345");
        assert_eq!(Currency::parse("kwd").unwrap().format(-12345), "-12.345");
    }

    #[test]
    fn tax_rounds_half_away_from_zero_per_line() {
        assert_eq!(line_tax(1000, 825), Some(83)); // 82.5 -> 83
        assert_eq!(line_tax(1000, 824), Some(82)); // 82.4 -> 82
        assert_eq!(line_tax(999, 1000), Some(100)); // 99.9 -> 100
        assert_eq!(line_tax(1, 4999), Some(0)); // 0.4999 -> 0
        assert_eq!(line_tax(1, 5000), Some(1)); // 0.5 -> 1
        assert_eq!(line_tax(0, 2000), Some(0));
        assert_eq!(line_tax(i64::MAX, 10_000), Some(i64::MAX));
        assert_eq!(line_tax(i64::MAX, 20_000), None);
    }
}

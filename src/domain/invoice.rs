//! The invoice state machine and how an invoice's amounts follow from its lines.
//!
//! ```text
//! draft ──finalize──▶ open ──(paid in full)──▶ paid
//!   │                  │  ╲──mark_uncollectible──▶ uncollectible ──(paid in full)──▶ paid
//!   └─delete           └──void (no payments)──▶ void ◀──void (no payments)──┘
//! ```
//! `paid` and `void` are terminal. Finalizing an invoice whose total is zero pays it at once, so
//! that "paid" always means "finalized with nothing left to pay".
use serde::{Deserialize, Serialize};

use super::money::{MAX_AMOUNT, line_tax};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Open => "open",
            Status::Paid => "paid",
            Status::Void => "void",
            Status::Uncollectible => "uncollectible",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Draft,
            Status::Open,
            Status::Paid,
            Status::Void,
            Status::Uncollectible,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// What happens to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Finalize {
        total: i64,
    },
    Delete,
    EditLines,
    /// A payment that leaves `remaining_after` to pay.
    Pay {
        remaining_after: i64,
    },
    Void {
        has_payments: bool,
    },
    MarkUncollectible,
    /// A credit note that leaves `remaining_after` to pay.
    Credit {
        remaining_after: i64,
    },
}

/// Why an action is refused: a 409 with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: String) -> Refusal {
    Refusal { code, message }
}

/// The status after `action`, or why it is not allowed. `None` means the invoice is deleted.
pub fn transition(status: Status, action: Action) -> Result<Option<Status>, Refusal> {
    use Status::*;
    let s = status.as_str();
    match (status, action) {
        (Draft, Action::Finalize { total: 0 }) => Ok(Some(Paid)),
        (Draft, Action::Finalize { .. }) => Ok(Some(Open)),
        (Draft, Action::Delete) => Ok(None),
        (Draft, Action::EditLines) => Ok(Some(Draft)),
        (_, Action::Finalize { .. }) => Err(refuse(
            "invoice_not_draft",
            format!("only a draft can be finalized; this invoice is {s}"),
        )),
        (_, Action::Delete) => Err(refuse(
            "invoice_not_draft",
            format!("only a draft can be deleted; this invoice is {s} (void it instead)"),
        )),
        (_, Action::EditLines) => Err(refuse(
            "invoice_not_draft",
            format!("lines can only change while the invoice is a draft; it is {s}"),
        )),
        (Open | Uncollectible, Action::Pay { remaining_after: 0 }) => Ok(Some(Paid)),
        (Open | Uncollectible, Action::Pay { .. }) => Ok(Some(status)),
        (_, Action::Pay { .. }) => Err(refuse(
            "invoice_not_payable",
            format!("payments are accepted for open or uncollectible invoices; this one is {s}"),
        )),
        (Open | Uncollectible, Action::Void { has_payments: true }) => Err(refuse(
            "invoice_has_payments",
            "an invoice with a payment cannot be voided".into(),
        )),
        (Open | Uncollectible, Action::Void { has_payments: false }) => Ok(Some(Void)),
        (_, Action::Void { .. }) => Err(refuse(
            "invalid_state_transition",
            format!("a {s} invoice cannot be voided"),
        )),
        (Open, Action::MarkUncollectible) => Ok(Some(Uncollectible)),
        (_, Action::MarkUncollectible) => Err(refuse(
            "invalid_state_transition",
            format!("only an open invoice can be marked uncollectible; this one is {s}"),
        )),
        // Crediting what is left to pay settles the invoice, as a payment would.
        (Open | Uncollectible, Action::Credit { remaining_after: 0 }) => Ok(Some(Paid)),
        (Open | Uncollectible | Paid, Action::Credit { .. }) => Ok(Some(status)),
        (_, Action::Credit { .. }) => Err(refuse(
            "invoice_not_creditable",
            format!("credit notes are issued for finalized invoices (open, paid or uncollectible); this one is {s}"),
        )),
    }
}

pub const MAX_QUANTITY: i64 = 1_000_000;
pub const MAX_TAX_RATE_BPS: i64 = 10_000;
pub const MAX_LINES: usize = 100;

/// A line's amount and tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAmounts {
    pub amount: i64,
    pub tax: i64,
}

/// `quantity × unit_amount`, and its tax (see [`line_tax`] for the rounding rule). `None` when a
/// value is out of range.
pub fn line_amounts(quantity: i64, unit_amount: i64, tax_rate_bps: Option<i64>) -> Option<LineAmounts> {
    if !(1..=MAX_QUANTITY).contains(&quantity) || !(0..=MAX_AMOUNT).contains(&unit_amount) {
        return None;
    }
    let amount = quantity.checked_mul(unit_amount)?;
    let tax = match tax_rate_bps {
        Some(bps) if (0..=MAX_TAX_RATE_BPS).contains(&bps) => line_tax(amount, bps)?,
        Some(_) => return None,
        None => 0,
    };
    Some(LineAmounts { amount, tax })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

/// Sums lines; `None` if a sum overflows.
pub fn totals(lines: impl IntoIterator<Item = LineAmounts>) -> Option<Totals> {
    let mut t = Totals::default();
    for line in lines {
        t.subtotal = t.subtotal.checked_add(line.amount)?;
        t.tax = t.tax.checked_add(line.tax)?;
    }
    t.total = t.subtotal.checked_add(t.tax)?;
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        let all = [Draft, Open, Paid, Void, Uncollectible];
        let actions = [
            Action::Finalize { total: 10 },
            Action::Finalize { total: 0 },
            Action::Delete,
            Action::EditLines,
            Action::Pay { remaining_after: 5 },
            Action::Pay { remaining_after: 0 },
            Action::Void { has_payments: false },
            Action::Void { has_payments: true },
            Action::MarkUncollectible,
            Action::Credit { remaining_after: 5 },
            Action::Credit { remaining_after: 0 },
        ];
        let mut allowed = Vec::new();
        for from in all {
            for action in actions {
                if let Ok(to) = transition(from, action) {
                    allowed.push((from, action, to));
                }
            }
        }
        let expected = vec![
            (Draft, Action::Finalize { total: 10 }, Some(Open)),
            (Draft, Action::Finalize { total: 0 }, Some(Paid)),
            (Draft, Action::Delete, None),
            (Draft, Action::EditLines, Some(Draft)),
            (Open, Action::Pay { remaining_after: 5 }, Some(Open)),
            (Open, Action::Pay { remaining_after: 0 }, Some(Paid)),
            (Open, Action::Void { has_payments: false }, Some(Void)),
            (Open, Action::MarkUncollectible, Some(Uncollectible)),
            (Open, Action::Credit { remaining_after: 5 }, Some(Open)),
            (Open, Action::Credit { remaining_after: 0 }, Some(Paid)),
            (Paid, Action::Credit { remaining_after: 5 }, Some(Paid)),
            (Paid, Action::Credit { remaining_after: 0 }, Some(Paid)),
            (Uncollectible, Action::Pay { remaining_after: 5 }, Some(Uncollectible)),
            (Uncollectible, Action::Pay { remaining_after: 0 }, Some(Paid)),
            (Uncollectible, Action::Void { has_payments: false }, Some(Void)),
            (
                Uncollectible,
                Action::Credit { remaining_after: 5 },
                Some(Uncollectible),
            ),
            (Uncollectible, Action::Credit { remaining_after: 0 }, Some(Paid)),
        ];
        assert_eq!(allowed, expected);
        assert_eq!(
            transition(Open, Action::Void { has_payments: true }).unwrap_err().code,
            "invoice_has_payments"
        );
        assert_eq!(
            transition(Paid, Action::EditLines).unwrap_err().code,
            "invoice_not_draft"
        );
    }

    #[test]
    fn amounts_are_range_and_overflow_checked() {
        assert_eq!(
            line_amounts(3, 250, Some(1000)),
            Some(LineAmounts { amount: 750, tax: 75 })
        );
        assert_eq!(line_amounts(1, 999, None), Some(LineAmounts { amount: 999, tax: 0 }));
        assert_eq!(line_amounts(0, 100, None), None);
        assert_eq!(line_amounts(1, -1, None), None);
        assert_eq!(line_amounts(1, 100, Some(10_001)), None);
        assert_eq!(
            line_amounts(MAX_QUANTITY, MAX_AMOUNT, Some(10_000)).map(|l| l.tax),
            Some(MAX_QUANTITY * MAX_AMOUNT)
        );
        let big = LineAmounts {
            amount: i64::MAX,
            tax: 0,
        };
        assert_eq!(totals([big, LineAmounts { amount: 1, tax: 0 }]), None);
        assert_eq!(
            totals([
                LineAmounts { amount: 750, tax: 75 },
                LineAmounts { amount: 100, tax: 0 }
            ]),
            Some(Totals {
                subtotal: 850,
                tax: 75,
                total: 925
            })
        );
    }
}

//! Double-entry postings. Every money movement is one ledger transaction whose postings sum to
//! zero: debits are positive, credits negative. A customer's receivable balance (what they owe)
//! is the sum of their `accounts_receivable` postings.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// What customers owe, per customer.
    AccountsReceivable,
    /// Income from finalized invoices (before tax).
    Revenue,
    /// Tax collected on behalf of tax authorities.
    TaxPayable,
    /// Money received.
    Cash,
    /// Money given back (a contra-revenue account).
    Refunds,
}

impl Account {
    pub fn as_str(self) -> &'static str {
        match self {
            Account::AccountsReceivable => "accounts_receivable",
            Account::Revenue => "revenue",
            Account::TaxPayable => "tax_payable",
            Account::Cash => "cash",
            Account::Refunds => "refunds",
        }
    }

    pub fn parse(s: &str) -> Option<Account> {
        [
            Account::AccountsReceivable,
            Account::Revenue,
            Account::TaxPayable,
            Account::Cash,
            Account::Refunds,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub account: Account,
    /// Positive is a debit, negative a credit.
    pub amount: i64,
}

fn postings(pairs: &[(Account, i64)]) -> Vec<Posting> {
    pairs
        .iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|&(account, amount)| Posting { account, amount })
        .collect()
}

/// Finalizing bills the customer: they owe the total; revenue and tax are recognised.
pub fn finalize(subtotal: i64, tax: i64, total: i64) -> Vec<Posting> {
    postings(&[
        (Account::AccountsReceivable, total),
        (Account::Revenue, -subtotal),
        (Account::TaxPayable, -tax),
    ])
}

/// Voiding reverses the finalization (only invoices without payments can be voided).
pub fn void(subtotal: i64, tax: i64, total: i64) -> Vec<Posting> {
    postings(&[
        (Account::AccountsReceivable, -total),
        (Account::Revenue, subtotal),
        (Account::TaxPayable, tax),
    ])
}

/// A payment brings cash in and reduces what the customer owes.
pub fn payment(amount: i64) -> Vec<Posting> {
    postings(&[(Account::Cash, amount), (Account::AccountsReceivable, -amount)])
}

/// A refund pays cash back; the invoice stays paid, so it is booked against `refunds`.
pub fn refund(amount: i64) -> Vec<Posting> {
    postings(&[(Account::Refunds, amount), (Account::Cash, -amount)])
}

/// A credit for unused time (proration) gives revenue back and lowers what the customer owes:
/// below zero, the business owes the customer, until the credit is applied to an invoice.
pub fn credit(amount: i64) -> Vec<Posting> {
    postings(&[(Account::Revenue, amount), (Account::AccountsReceivable, -amount)])
}

/// A credit note gives back revenue and the tax on it, and lowers what the customer owes; the
/// part of it refunded pays cash back from what they owe.
pub fn credit_note(subtotal: i64, tax: i64, total: i64, refund: i64) -> Vec<Posting> {
    postings(&[
        (Account::Revenue, subtotal),
        (Account::TaxPayable, tax),
        (Account::AccountsReceivable, refund - total),
        (Account::Cash, -refund),
    ])
}

pub fn is_balanced(postings: &[Posting]) -> bool {
    postings.iter().map(|p| i128::from(p.amount)).sum::<i128>() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_movement_balances() {
        for postings in [
            finalize(1000, 80, 1080),
            void(1000, 80, 1080),
            payment(500),
            refund(200),
            credit(300),
            credit_note(1000, 80, 1080, 500),
            finalize(0, 0, 0),
        ] {
            assert!(is_balanced(&postings), "{postings:?}");
        }
        assert_eq!(finalize(1000, 0, 1000).len(), 2, "zero postings are left out");
        let ar: i64 = finalize(1000, 80, 1080)
            .into_iter()
            .chain(payment(1080))
            .filter(|p| p.account == Account::AccountsReceivable)
            .map(|p| p.amount)
            .sum();
        assert_eq!(ar, 0, "a paid invoice leaves nothing receivable");
    }
}

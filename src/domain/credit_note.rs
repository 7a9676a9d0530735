//! Credit notes: where a credit note's total goes.
//!
//! The rules (docs/billing.md has them for users), as Stripe's:
//! - A credit note first reduces what is left to pay on the invoice (the *pre-payment* part): a
//!   customer is never refunded money while they still owe it on the same invoice.
//! - What exceeds it (the *post-payment* part) is refunded to the invoice's payments
//!   (`refund_amount`), added to the customer's credit balance (`credit_amount`), or split
//!   between the two. When neither is given, it all goes to the credit balance: no money leaves
//!   unless asked for. When one is given, the other takes the rest; when both are, they must
//!   add up to the post-payment part.

/// Reasons a credit note may give, as Stripe's.
pub const REASONS: &[&str] = &["duplicate", "fraudulent", "order_change", "product_unsatisfactory"];

/// Where a credit note's total goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Taken off what is left to pay on the invoice.
    pub pre_payment: i64,
    /// Refunded to the invoice's payments.
    pub refund: i64,
    /// Added to the customer's credit balance.
    pub credit: i64,
}

/// The refund and credit asked for do not add up to the post-payment part, which is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoesNotAddUp {
    pub post_payment: i64,
}

/// Splits `total` (> 0) for an invoice with `remaining` (≥ 0) left to pay.
pub fn split(total: i64, remaining: i64, refund: Option<i64>, credit: Option<i64>) -> Result<Split, DoesNotAddUp> {
    let pre_payment = total.min(remaining.max(0));
    let post_payment = total - pre_payment;
    let rest = |given: i64| post_payment.checked_sub(given).filter(|rest| *rest >= 0);
    let (refund, credit) = match (refund, credit) {
        (None, None) => (0, post_payment),
        (Some(refund), None) => (refund, rest(refund).ok_or(DoesNotAddUp { post_payment })?),
        (None, Some(credit)) => (rest(credit).ok_or(DoesNotAddUp { post_payment })?, credit),
        (Some(refund), Some(credit)) => (refund, credit),
    };
    if refund.checked_add(credit) != Some(post_payment) {
        return Err(DoesNotAddUp { post_payment });
    }
    Ok(Split {
        pre_payment,
        refund,
        credit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_to_pay_is_credited_first() {
        // Open invoice, 100 left: a credit of 30 takes 30 off it.
        assert_eq!(
            split(30, 100, None, None),
            Ok(Split {
                pre_payment: 30,
                refund: 0,
                credit: 0
            })
        );
        // 40 left, a credit of 100: 40 off the invoice, the rest to the credit balance.
        assert_eq!(
            split(100, 40, None, None),
            Ok(Split {
                pre_payment: 40,
                refund: 0,
                credit: 60
            })
        );
    }

    #[test]
    fn after_payment_it_is_refunded_or_credited_as_asked() {
        assert_eq!(
            split(100, 0, Some(70), Some(30)),
            Ok(Split {
                pre_payment: 0,
                refund: 70,
                credit: 30
            })
        );
        assert_eq!(
            split(100, 0, Some(100), None),
            Ok(Split {
                pre_payment: 0,
                refund: 100,
                credit: 0
            })
        );
        // One given: the other takes the rest.
        assert_eq!(
            split(100, 0, Some(70), None),
            Ok(Split {
                pre_payment: 0,
                refund: 70,
                credit: 30
            })
        );
        assert_eq!(
            split(100, 40, None, Some(10)),
            Ok(Split {
                pre_payment: 40,
                refund: 50,
                credit: 10
            })
        );
        assert_eq!(
            split(100, 0, Some(70), Some(20)),
            Err(DoesNotAddUp { post_payment: 100 })
        );
        assert_eq!(split(100, 40, Some(100), None), Err(DoesNotAddUp { post_payment: 60 }));
        assert_eq!(split(100, 40, None, Some(61)), Err(DoesNotAddUp { post_payment: 60 }));
        assert_eq!(split(10, 40, Some(1), None), Err(DoesNotAddUp { post_payment: 0 }));
        assert_eq!(
            split(1, 0, Some(i64::MAX), Some(1)),
            Err(DoesNotAddUp { post_payment: 1 })
        );
    }
}

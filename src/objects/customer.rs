use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Customer {
    pub id: String,
    #[schema(example = "customer")]
    pub object: &'static str,
    pub name: Option<String>,
    pub email: Option<String>,
    /// ISO 4217, lower case; invoices default to it.
    pub currency: Option<String>,
    pub metadata: Metadata,
    /// The test clock the customer lives on (set at creation): their subscriptions run on its
    /// time and are billed when it is advanced.
    pub test_clock: Option<String>,
    pub created: i64,
}

impl Customer {
    pub const OBJECT: &'static str = "customer";
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Balance {
    pub currency: String,
    /// In the minor unit. In a `customer_balance`: what the customer owes (negative: what they
    /// are owed). In a `customer_credit_balance`: the credit they have, applied to their next
    /// invoices.
    pub amount: i64,
    /// The same amount in major units, e.g. `"12.50"`.
    pub formatted: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerBalance {
    /// `customer_balance` or `customer_credit_balance`.
    #[schema(example = "customer_balance")]
    pub object: &'static str,
    pub customer: String,
    pub balances: Vec<Balance>,
}

impl CustomerBalance {
    pub fn new(customer: String, balances: Vec<(String, i64)>) -> Self {
        Self::of("customer_balance", customer, balances)
    }

    /// The customer's credit balance per currency.
    pub fn credit(customer: String, balances: Vec<(String, i64)>) -> Self {
        Self::of("customer_credit_balance", customer, balances)
    }

    fn of(object: &'static str, customer: String, balances: Vec<(String, i64)>) -> Self {
        let balances = balances
            .into_iter()
            .map(|(currency, amount)| Balance {
                formatted: Currency::parse(&currency).map_or_else(|| amount.to_string(), |c| c.format(amount)),
                currency,
                amount,
            })
            .collect();
        CustomerBalance {
            object,
            customer,
            balances,
        }
    }
}

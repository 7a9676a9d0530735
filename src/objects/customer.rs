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
    pub created: i64,
}

impl Customer {
    pub const OBJECT: &'static str = "customer";
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Balance {
    pub currency: String,
    /// What the customer owes (negative: what they are owed), in the minor unit.
    pub amount: i64,
    /// The same amount in major units, e.g. `"12.50"`.
    pub formatted: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerBalance {
    #[schema(example = "customer_balance")]
    pub object: &'static str,
    pub customer: String,
    pub balances: Vec<Balance>,
}

impl CustomerBalance {
    pub fn new(customer: String, balances: Vec<(String, i64)>) -> Self {
        let balances = balances
            .into_iter()
            .map(|(currency, amount)| Balance {
                formatted: Currency::parse(&currency).map_or_else(|| amount.to_string(), |c| c.format(amount)),
                currency,
                amount,
            })
            .collect();
        CustomerBalance {
            object: "customer_balance",
            customer,
            balances,
        }
    }
}

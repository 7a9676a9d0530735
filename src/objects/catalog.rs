use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::calendar::{Cadence, Unit};
use crate::domain::metadata::Metadata;
use crate::domain::pricing::{Model, Tier};

/// What is sold: prices say for how much and how often.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Product {
    pub id: String,
    #[schema(example = "product")]
    pub object: &'static str,
    pub name: String,
    pub description: Option<String>,
    /// Whether it is offered; archiving a product leaves its prices and subscriptions as they are.
    pub active: bool,
    pub metadata: Metadata,
    pub created: i64,
}

impl Product {
    pub const OBJECT: &'static str = "product";
}

/// The unit a recurring price counts its interval in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub fn unit(self) -> Unit {
        match self {
            Interval::Day => Unit::Day,
            Interval::Week => Unit::Week,
            Interval::Month => Unit::Month,
            Interval::Year => Unit::Year,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.unit().as_str()
    }

    pub fn parse(s: &str) -> Option<Interval> {
        Some(match Unit::parse(s)? {
            Unit::Day => Interval::Day,
            Unit::Week => Interval::Week,
            Unit::Month => Interval::Month,
            Unit::Year => Interval::Year,
        })
    }
}

/// How often a price charges: every `interval_count` `interval`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Recurring {
    pub interval: Interval,
    pub interval_count: i64,
}

/// How a price's items are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageType {
    /// A quantity, in advance: each period's invoice charges the period starting.
    Licensed,
    /// What a meter counted, in arrears: each period's usage is billed on the invoice made when
    /// the next period starts (or when the subscription ends).
    Metered,
}

impl UsageType {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageType::Licensed => "licensed",
            UsageType::Metered => "metered",
        }
    }

    pub fn parse(s: &str) -> Option<UsageType> {
        [UsageType::Licensed, UsageType::Metered]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// How often a price charges, and for what: a quantity (`licensed`) or a meter's usage
/// (`metered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceRecurring {
    pub interval: Interval,
    pub interval_count: i64,
    pub usage_type: UsageType,
    /// For `metered`: the meter (`mtr_…`) whose usage it bills.
    pub meter: Option<String>,
}

impl PriceRecurring {
    /// The interval alone, which every item of a subscription shares.
    pub fn every(&self) -> Recurring {
        Recurring {
            interval: self.interval,
            interval_count: self.interval_count,
        }
    }
}

/// How package pricing rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    Up,
    Down,
}

impl Round {
    pub fn as_str(self) -> &'static str {
        match self {
            Round::Up => "up",
            Round::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<Round> {
        [Round::Up, Round::Down].into_iter().find(|r| r.as_str() == s)
    }
}

/// Package pricing (metered `per_unit` prices): the usage is divided by `divide_by` and rounded,
/// and `unit_amount` is the price of one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct TransformQuantity {
    pub divide_by: i64,
    pub round: Round,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingScheme {
    /// `quantity × unit_amount`.
    PerUnit,
    /// By `tiers`, in `tiers_mode`.
    Tiered,
}

impl BillingScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingScheme::PerUnit => "per_unit",
            BillingScheme::Tiered => "tiered",
        }
    }

    pub fn parse(s: &str) -> Option<BillingScheme> {
        [BillingScheme::PerUnit, BillingScheme::Tiered]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TiersMode {
    /// Each unit at the price of the tier it falls in, plus the flat fee of every tier reached.
    Graduated,
    /// Every unit at the price of the tier the whole quantity falls in, plus its flat fee.
    Volume,
}

impl TiersMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TiersMode::Graduated => "graduated",
            TiersMode::Volume => "volume",
        }
    }

    pub fn parse(s: &str) -> Option<TiersMode> {
        [TiersMode::Graduated, TiersMode::Volume]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// One tier: the units up to `up_to`, inclusive (`null`: every unit above the previous tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceTier {
    pub up_to: Option<i64>,
    pub unit_amount: i64,
    pub flat_amount: i64,
}

impl PriceTier {
    /// The tier as `pricing` computes with it.
    pub fn tier(&self) -> Tier {
        Tier {
            up_to: self.up_to,
            unit_amount: self.unit_amount,
            flat_amount: self.flat_amount,
        }
    }
}

/// What a product costs per period, in one currency. What it charges never changes: a change is
/// a new version (`POST /v1/prices/{id}/versions`), which replaces this one for new
/// subscriptions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Price {
    pub id: String,
    #[schema(example = "price")]
    pub object: &'static str,
    #[serde(rename = "product")]
    pub product_id: String,
    pub currency: String,
    /// Whether new subscriptions may use it.
    pub active: bool,
    /// A name for people, never shown to customers.
    pub nickname: Option<String>,
    pub recurring: PriceRecurring,
    pub billing_scheme: BillingScheme,
    /// For `per_unit`: the amount of one unit for one period (of one package, with
    /// `transform_quantity`), in the minor unit.
    pub unit_amount: Option<i64>,
    /// For metered `per_unit` prices: usage billed in packages.
    pub transform_quantity: Option<TransformQuantity>,
    /// For `tiered`.
    pub tiers_mode: Option<TiersMode>,
    /// For `tiered`: in order, the last one unbounded.
    pub tiers: Option<Vec<PriceTier>>,
    /// 1 for a new price; one more for each version after it.
    pub version: i64,
    /// The price this version replaced.
    pub previous_version: Option<String>,
    /// The version that replaced this price.
    pub superseded_by: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

impl Price {
    pub const OBJECT: &'static str = "price";

    /// What the price charges per period, as `pricing` computes it.
    pub fn model(&self) -> Option<Model> {
        match (self.billing_scheme, self.unit_amount, self.tiers_mode, &self.tiers) {
            (BillingScheme::PerUnit, Some(unit_amount), None, None) => Some(match self.transform_quantity {
                None => Model::PerUnit { unit_amount },
                Some(t) => Model::Package {
                    unit_amount,
                    divide_by: t.divide_by,
                    round_up: t.round == Round::Up,
                },
            }),
            (BillingScheme::Tiered, None, Some(mode), Some(tiers)) => {
                let tiers = tiers.iter().map(PriceTier::tier).collect();
                Some(match mode {
                    TiersMode::Graduated => Model::Graduated(tiers),
                    TiersMode::Volume => Model::Volume(tiers),
                })
            }
            _ => None,
        }
    }

    /// The meter a metered price bills the usage of.
    pub fn meter(&self) -> Option<&str> {
        match self.recurring.usage_type {
            UsageType::Metered => self.recurring.meter.as_deref(),
            UsageType::Licensed => None,
        }
    }

    /// How often it charges.
    pub fn cadence(&self) -> Option<Cadence> {
        Cadence::new(
            self.recurring.interval.unit(),
            u16::try_from(self.recurring.interval_count).ok()?,
        )
    }
}

//! The exact shapes of what the API accepts, for the OpenAPI document. The types here only
//! describe: handlers read [`Field`](super::input::Field)s and check them with
//! [`Check`](super::input::Check), and each type states precisely what `Check` enforces, so that
//! a client generated from the document sends nothing the server refuses for its shape (and CI's
//! schema-driven fuzzer holds the two to it).
use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::ids::Kind;
use crate::domain::money::Currency;

use crate::domain::text::{CONTROL_CLASS as CONTROL, SPACE_CLASS as SPACE};

/// Free text: no control character, and something besides white space.
pub fn text_pattern() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*$")
}

/// Any string without a control character, empty included (a metadata value).
pub fn plain_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

fn text(max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(text_pattern()))
}

macro_rules! schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.build().into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema!(
    /// A text of at most 255 characters.
    Text255 => text(255)
);
schema!(
    /// A text of at most 256 characters.
    Text256 => text(256)
);
schema!(
    /// A text of at most 500 characters.
    Text500 => text(500)
);
schema!(
    /// An email address: at most 254 characters, a local part, `@`, and a domain with a dot.
    /// Letters of any script are accepted (internationalized addresses), so no `format: email`,
    /// which means ASCII only: the pattern is the whole rule.
    EmailAddress => text(254)
        .pattern(Some(format!("^[^{CONTROL}{SPACE}@]+@[^{CONTROL}{SPACE}@.][^{CONTROL}{SPACE}@]*\\.[^{CONTROL}{SPACE}@]*[^{CONTROL}{SPACE}@.]$")))
);
schema!(
    /// An `https://` URL (`http://` too where the operator allows it), at most 2048 characters.
    WebhookUrl => ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(super::webhooks::MAX_URL_CHARS))
        .format(Some(SchemaFormat::Custom("uri".into())))
        .pattern(Some(crate::webhooks::policy::url_pattern()))
);
schema!(
    /// An ISO 4217 code of a currency with a minor unit, in lower or upper case.
    CurrencyCode => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(currency_codes()))
        .examples(["usd"])
);
schema!(
    /// Up to 50 keys of 1 to 40 characters, values of at most 500; no control characters. On
    /// update, keys are merged and an empty value removes a key.
    MetadataParam => ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(crate::domain::metadata::MAX_KEYS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::domain::metadata::MAX_KEY_LEN))
                .pattern(Some(plain_pattern())),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(crate::domain::metadata::MAX_VALUE_LEN))
                .pattern(Some(plain_pattern())),
        ))
);

schema!(
    /// An event type, or `*` for all of them.
    EventTypeOrAll => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(std::iter::once("*").chain(crate::objects::EVENT_TYPES.iter().copied())))
);

fn id(kind: Kind) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(id_pattern(kind)))
        .examples([format!("{}0192f0c3a1b07d3e9c4f5a6b7c8d9e0f", kind.prefix())])
}

/// The exact shape of an id of `kind`: its prefix and 32 lower-case hex digits.
pub fn id_pattern(kind: Kind) -> String {
    format!("^{}[0-9a-f]{{32}}$", kind.prefix())
}

schema!(
    /// A customer id (`cus_…`).
    CustomerId => id(Kind::Customer)
);
schema!(
    /// An invoice id (`in_…`).
    InvoiceId => id(Kind::Invoice)
);
schema!(
    /// An invoice line id (`il_…`).
    InvoiceLineId => id(Kind::InvoiceLine)
);
schema!(
    /// A payment id (`pay_…`).
    PaymentId => id(Kind::Payment)
);
schema!(
    /// A meter id (`mtr_…`).
    MeterId => id(Kind::Meter)
);
schema!(
    /// A product id (`prod_…`).
    ProductId => id(Kind::Product)
);
schema!(
    /// A price id (`price_…`).
    PriceId => id(Kind::Price)
);
schema!(
    /// A subscription item id (`si_…`).
    SubscriptionItemId => id(Kind::SubscriptionItem)
);
schema!(
    /// A test clock id (`clock_…`).
    TestClockId => id(Kind::TestClock)
);
schema!(
    /// A webhook endpoint id (`we_…`).
    WebhookEndpointId => id(Kind::WebhookEndpoint)
);

/// Every code [`Currency::parse`] accepts, lower case first, then upper case.
pub fn currency_codes() -> Vec<String> {
    let mut lower = Vec::new();
    for a in b'a'..=b'z' {
        for b in b'a'..=b'z' {
            for c in b'a'..=b'z' {
                let code = String::from_utf8(vec![a, b, c]).unwrap_or_default();
                if Currency::parse(&code).is_some() {
                    lower.push(code);
                }
            }
        }
    }
    let upper: Vec<String> = lower.iter().map(|c| c.to_ascii_uppercase()).collect();
    lower.into_iter().chain(upper).collect()
}

schema!(
    /// An event name: 1 to 100 letters, digits, `_`, `.`, `:` and `-`, the first a letter or digit.
    EventName => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"))
        .examples(["api_call"])
);
schema!(
    /// A JSON path into an event's properties: `$.` and 1 to 4 member names of letters, digits,
    /// `_` and `-`, separated by dots.
    PropertyPathText => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^\\$\\.[A-Za-z0-9_-]{1,64}(\\.[A-Za-z0-9_-]{1,64}){0,3}$"))
        .examples(["$.tokens"])
);
schema!(
    /// An event's identifier, unique per tenant: 1 to 255 visible ASCII characters (spaces inside
    /// only). An event sent again with it is a duplicate, never counted twice.
    EventIdentifier => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some(super::idempotency::KEY_PATTERN))
);

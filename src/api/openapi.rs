//! The OpenAPI 3.1 document: operations come from the handlers' annotations; what every
//! operation shares (security, error responses, the Idempotency-Key header) is added here once.
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{OpenApi as _, ToSchema};

use crate::domain::FieldError;
use crate::domain::ids::Kind;

/// RFC 9457 problem details, as every error is answered.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// A URI naming the problem type (the `code` section of docs/errors.md).
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable and machine-readable: match on this.
    code: String,
    /// The `X-Request-Id` of the request; every log line of it carries the same id.
    request_id: String,
    /// With `validation_failed`: every problem found.
    errors: Option<Vec<FieldError>>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "billing-api",
        description = "Multi-tenant billing: customers, invoices, payments, refunds, credit notes, subscriptions, a double-entry ledger, events and signed webhooks. \
            Amounts are integers in the currency's minor unit. Every error is application/problem+json.",
    ),
    components(schemas(ProblemDoc, FieldError, crate::domain::ledger::Account)),
    tags(
        (name = "customers", description = "The parties you bill"),
        (name = "invoices", description = "Drafts, finalization, voiding; numbers are gapless per tenant"),
        (name = "payments", description = "Money received against invoices"),
        (name = "refunds", description = "Money given back against payments"),
        (name = "credit_notes", description = "Documents that reduce a finalized invoice: refunds or credit to the customer's balance"),
        (name = "products", description = "What you sell"),
        (name = "prices", description = "What a product costs per period; a change is a new version"),
        (name = "subscriptions", description = "Customers billed every period; each period's invoice is issued when it starts"),
        (name = "meters", description = "Meters, and what they counted of a customer's usage"),
        (name = "meter_events", description = "Usage events, each counted once by the meters of its name"),
        (name = "test_clocks", description = "Simulated time: customers on a clock are billed when it is advanced"),
        (name = "ledger", description = "The append-only double-entry ledger"),
        (name = "events", description = "What changed, recorded with the change (a transactional outbox)"),
        (name = "webhooks", description = "Signed deliveries of events to your endpoints (Standard Webhooks)"),
    )
)]
struct Base;

pub fn base() -> OpenApi {
    let mut api = Base::openapi();
    api.info.version = crate::build_info::VERSION.to_owned();
    api
}

const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed request (bad JSON, bad Idempotency-Key)"),
    ("401", "Missing or invalid credentials"),
    ("403", "The credential lacks the scope this operation needs"),
    ("404", "No such object for this tenant, or no such route"),
    ("408", "The request took too long"),
    (
        "409",
        "The object's state does not allow this, or the Idempotency-Key is in use",
    ),
    ("413", "The body is too large"),
    ("415", "The body is not JSON"),
    ("431", "The request line and headers are too large"),
    ("422", "Validation failed: `errors` lists every problem"),
    (
        "429",
        "The tenant's budget for reads or writes (or the client address's, for refused credentials) is spent; retry after `Retry-After`",
    ),
    ("500", "Internal error"),
    (
        "503",
        "Overloaded or the database is unavailable; retry after `Retry-After`",
    ),
];

/// Adds what all operations share.
pub fn finish(mut api: OpenApi) -> OpenApi {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`bsk_…`) or a JWT from the configured identity provider",
                ))
                .build(),
        ),
    );
    let problem = ContentBuilder::new()
        .schema(Some(RefOr::<Schema>::Ref(utoipa::openapi::Ref::from_schema_name(
            "Problem",
        ))))
        .build();
    // Request bodies accept exactly the fields they list. One that requires no field may be left
    // out altogether (the body reader takes no body, or `null`, as `{}`).
    let mut optional_bodies = Vec::new();
    for (name, schema) in components.schemas.iter_mut() {
        if let (true, RefOr::T(Schema::Object(object))) = (name.ends_with("Params"), &mut *schema) {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            if PRICING_BODIES.contains(&name.as_str()) {
                let fields = std::mem::take(object);
                *schema = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(Schema::Object(fields))
                        .item(pricing_alternatives())
                        .build(),
                ));
            } else if name == "MeterCreateParams" {
                if let Some(RefOr::T(Schema::Array(paths))) = object.properties.get_mut("group_by") {
                    paths.unique_items = true;
                }
                let fields = std::mem::take(object);
                *schema = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(Schema::Object(fields))
                        .item(meter_alternatives())
                        .build(),
                ));
            } else if name == "ItemChangeParams" {
                let fields = std::mem::take(object);
                *schema = RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(Schema::Object(fields))
                        .item(item_change_alternatives())
                        .build(),
                ));
            } else if object.required.is_empty() {
                optional_bodies.push(format!("#/components/schemas/{name}"));
            }
        }
    }
    let rules: Vec<String> = crate::domain::RULE_CODES.iter().map(|c| format!("`{c}`")).collect();
    let unprocessable = format!(
        "Validation failed: `errors` lists every problem. A request that fits this document gets \
         422 only for a rule about the objects it names or the operator's policy, with \
         `errors[].code` one of: {}.",
        rules.join(", ")
    );
    for (path, item) in api.paths.paths.iter_mut() {
        let writes = [item.post.as_mut(), item.delete.as_mut()];
        for op in writes.into_iter().flatten() {
            add_idempotency_key(op);
            if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                let refs_optional = body.content.values().all(|content| {
                    matches!(content, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r))
                        if optional_bodies.contains(&r.ref_location)))
                });
                if refs_optional {
                    body.required = Some(Required::False);
                }
            }
        }
        let all = [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()];
        for op in all.into_iter().flatten() {
            constrain_parameters(path, op);
            // Handler names repeat across resources (`list`, `create`): qualify them by tag.
            if let (Some(tag), Some(id)) = (op.tags.as_ref().and_then(|t| t.first()), op.operation_id.as_ref()) {
                op.operation_id = Some(format!("{tag}_{id}"));
            }
            op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            for (status, description) in ERRORS {
                let description = if *status == "422" {
                    unprocessable.as_str()
                } else {
                    description
                };
                op.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem.clone())
                        .build()
                        .into()
                });
            }
            // Every answer of an API operation tells where the caller's budget stands.
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    add_rate_limit_headers(response);
                }
            }
        }
    }
    add_links(&mut api);
    api
}

/// The bodies that say what a price charges: `unit_amount`, or `tiers_mode` with `tiers`, one or
/// the other (as `api::prices` checks it).
const PRICING_BODIES: &[&str] = &["PriceCreateParams", "PriceVersionParams"];

fn pricing_alternatives() -> Schema {
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let per_unit = ObjectBuilder::new()
        .property("unit_amount", ObjectBuilder::new().schema_type(Type::Integer))
        .property("tiers_mode", null())
        .property("tiers", null())
        .required("unit_amount");
    let tiered = ObjectBuilder::new()
        .property("unit_amount", null())
        .property("tiers_mode", ObjectBuilder::new().schema_type(Type::String))
        .property("tiers", ObjectBuilder::new().schema_type(Type::Array))
        .required("tiers_mode")
        .required("tiers");
    OneOfBuilder::new().item(per_unit).item(tiered).build().into()
}

/// A meter counts events (`count`, no `value_property`) or reads a value (`value_property`), as
/// `api::meters` checks it.
fn meter_alternatives() -> Schema {
    let counts = ObjectBuilder::new()
        .property(
            "aggregation",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["count"])),
        )
        .property("value_property", ObjectBuilder::new().schema_type(Type::Null));
    let reads = ObjectBuilder::new()
        .property(
            "aggregation",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["sum", "max", "unique_count", "latest"])),
        )
        .property("value_property", ObjectBuilder::new().schema_type(Type::String))
        .required("value_property");
    OneOfBuilder::new().item(counts).item(reads).build().into()
}

/// A change to a subscription's items is one of: an item to add (`price`, no `id`), an item to
/// change (`id`, not `deleted`), an item to remove (`id`, `deleted: true`, no price or
/// quantity), as `api::subscriptions` checks it.
fn item_change_alternatives() -> Schema {
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let add = ObjectBuilder::new()
        .property("id", null())
        .property("price", string())
        .property(
            "deleted",
            ObjectBuilder::new().enum_values(Some([serde_json::json!(false), serde_json::Value::Null])),
        )
        .required("price");
    let change = ObjectBuilder::new()
        .property("id", string())
        .property(
            "deleted",
            ObjectBuilder::new().enum_values(Some([serde_json::json!(false), serde_json::Value::Null])),
        )
        .required("id");
    let remove = ObjectBuilder::new()
        .property("id", string())
        .property("deleted", ObjectBuilder::new().enum_values(Some([true])))
        .property("price", null())
        .property("quantity", null())
        .required("id")
        .required("deleted");
    OneOfBuilder::new().item(add).item(change).item(remove).build().into()
}

/// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft) on a response; `Retry-After` on 429.
fn add_rate_limit_headers(response: &mut utoipa::openapi::Response) {
    let text = || ObjectBuilder::new().schema_type(Type::String).build();
    response.headers.insert(
        "RateLimit-Policy".to_owned(),
        HeaderBuilder::new()
            .schema(Some(text()))
            .description(Some(
                "The budget this request drew on: `\"read\";q=200;w=2` (200 at once, whole again within 2 s)",
            ))
            .build()
            .into(),
    );
    response.headers.insert(
        "RateLimit".to_owned(),
        HeaderBuilder::new()
            .schema(Some(text()))
            .description(Some(
                "Where that budget stands: `\"read\";r=57;t=1` (57 left, whole again in 1 s)",
            ))
            .build()
            .into(),
    );
}

fn add_idempotency_key(op: &mut Operation) {
    let param: Parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .description(Some(
            "Makes the request safe to retry: the first result is stored and replayed for 24 hours. \
             1 to 255 visible ASCII characters (spaces inside only).",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some(super::idempotency::KEY_PATTERN)),
        ))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(param));
}

/// The kinds of object each collection holds, by the first segment of its path.
const COLLECTIONS: &[(&str, Kind)] = &[
    ("/v1/customers", Kind::Customer),
    ("/v1/invoices", Kind::Invoice),
    ("/v1/payments", Kind::Payment),
    ("/v1/refunds", Kind::Refund),
    ("/v1/credit_notes", Kind::CreditNote),
    ("/v1/products", Kind::Product),
    ("/v1/prices", Kind::Price),
    ("/v1/subscriptions", Kind::Subscription),
    ("/v1/meters", Kind::Meter),
    ("/v1/test_clocks", Kind::TestClock),
    ("/v1/ledger_entries", Kind::LedgerEntry),
    ("/v1/events", Kind::Event),
    ("/v1/webhook_endpoints", Kind::WebhookEndpoint),
    ("/v1/webhook_deliveries", Kind::WebhookDelivery),
];

/// Parameters described as exactly as the handlers check them: ids by their prefix and shape
/// (a path id of the wrong shape is 404, a query id 422), enumerations by their values.
fn constrain_parameters(path: &str, op: &mut Operation) {
    let collection = COLLECTIONS
        .iter()
        .filter(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}/")))
        .map(|(_, kind)| *kind)
        .next();
    let listed = match path {
        // The attempt log lists attempts; every other list lists its collection.
        p if p.ends_with("/deliveries") => Some(Kind::WebhookAttempt),
        p if p.ends_with("/credit_transactions") => Some(Kind::CreditTransaction),
        _ => collection,
    };
    for param in op.parameters.iter_mut().flatten() {
        let RefOr::T(param) = param else { continue };
        let schema = match (&param.parameter_in, param.name.as_str()) {
            (ParameterIn::Path, "id") => collection.map(id_schema),
            (ParameterIn::Path, "line_id") => Some(id_schema(Kind::InvoiceLine)),
            (ParameterIn::Query, "starting_after" | "ending_before") => listed.map(id_schema),
            (ParameterIn::Query, "customer") => Some(id_schema(Kind::Customer)),
            (ParameterIn::Query, "meter") => Some(id_schema(Kind::Meter)),
            (ParameterIn::Query, "product") => Some(id_schema(Kind::Product)),
            (ParameterIn::Query, "subscription") => Some(id_schema(Kind::Subscription)),
            (ParameterIn::Query, "invoice") => Some(id_schema(Kind::Invoice)),
            (ParameterIn::Query, "payment") => Some(id_schema(Kind::Payment)),
            (ParameterIn::Query, "endpoint") => Some(id_schema(Kind::WebhookEndpoint)),
            (ParameterIn::Query, "event") => Some(id_schema(Kind::Event)),
            (ParameterIn::Query, "type") => Some(enum_schema(crate::objects::EVENT_TYPES.iter().copied())),
            (ParameterIn::Query, "status") if path == "/v1/webhook_deliveries" => {
                Some(enum_schema(["pending", "succeeded", "failed"]))
            }
            _ => None,
        };
        if let Some(schema) = schema {
            param.schema = Some(schema);
        }
    }
}

fn id_schema(kind: Kind) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(super::schema::id_pattern(kind)))
        .build()
        .into()
}

fn enum_schema<'a>(values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
        .into()
}

/// What a created object leads to, for clients and for stateful testing: (operation, status,
/// link name, the operation it leads to, path parameters, request body), each value a runtime
/// expression or a constant.
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<fn() -> serde_json::Value>,
);

const LINKS: &[LinkSpec] = &[
    (
        "subscriptions_create",
        "201",
        "GetSubscription",
        "subscriptions_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "subscriptions_create",
        "201",
        "CancelSubscription",
        "subscriptions_cancel",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "products_create",
        "201",
        "GetProduct",
        "products_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "products_create",
        "201",
        "UpdateProduct",
        "products_update",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "products_create",
        "201",
        "CreatePrice",
        "prices_create",
        &[],
        Some(|| {
            serde_json::json!({"product": "$response.body#/id", "currency": "usd",
            "recurring": {"interval": "month"}, "unit_amount": 2900})
        }),
    ),
    (
        "prices_create",
        "201",
        "GetPrice",
        "prices_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "prices_create",
        "201",
        "UpdatePrice",
        "prices_update",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "prices_create",
        "201",
        "VersionPrice",
        "prices_create_version",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "customers_create",
        "201",
        "GetCustomer",
        "customers_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "customers_create",
        "201",
        "UpdateCustomer",
        "customers_update",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "customers_create",
        "201",
        "GetCustomerBalance",
        "customers_balance",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "customers_create",
        "201",
        "CreateInvoice",
        "invoices_create",
        &[],
        Some(|| {
            serde_json::json!({"customer": "$response.body#/id", "currency": "usd",
            "lines": [{"description": "Plan", "quantity": 2, "unit_amount": 1500, "tax_rate_bps": 825}]})
        }),
    ),
    (
        "invoices_create",
        "201",
        "GetInvoice",
        "invoices_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_create",
        "201",
        "AddLine",
        "invoices_add_line",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_create",
        "201",
        "UpdateLine",
        "invoices_update_line",
        &[
            ("id", "$response.body#/id"),
            ("line_id", "$response.body#/lines/data/0/id"),
        ],
        None,
    ),
    (
        "invoices_create",
        "201",
        "DeleteLine",
        "invoices_delete_line",
        &[
            ("id", "$response.body#/id"),
            ("line_id", "$response.body#/lines/data/0/id"),
        ],
        None,
    ),
    (
        "invoices_create",
        "201",
        "FinalizeInvoice",
        "invoices_finalize",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_create",
        "201",
        "DeleteInvoice",
        "invoices_delete",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_finalize",
        "200",
        "PayInvoice",
        "payments_create",
        &[],
        Some(|| {
            serde_json::json!({"invoice": "$response.body#/id", "amount": "$response.body#/amount_remaining",
            "currency": "$response.body#/currency"})
        }),
    ),
    (
        "invoices_finalize",
        "200",
        "CreditInvoice",
        "credit_notes_create",
        &[],
        Some(|| serde_json::json!({"invoice": "$response.body#/id"})),
    ),
    (
        "test_clocks_create",
        "201",
        "GetTestClock",
        "test_clocks_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "credit_notes_create",
        "201",
        "GetCreditNote",
        "credit_notes_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_finalize",
        "200",
        "VoidInvoice",
        "invoices_void",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "invoices_finalize",
        "200",
        "MarkUncollectible",
        "invoices_mark_uncollectible",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "payments_create",
        "201",
        "GetPayment",
        "payments_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "payments_create",
        "201",
        "RefundPayment",
        "refunds_create",
        &[],
        Some(|| serde_json::json!({"payment": "$response.body#/id"})),
    ),
    (
        "refunds_create",
        "201",
        "GetRefund",
        "refunds_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "webhooks_create",
        "201",
        "GetWebhookEndpoint",
        "webhooks_retrieve",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "webhooks_create",
        "201",
        "UpdateWebhookEndpoint",
        "webhooks_update",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "webhooks_create",
        "201",
        "RotateSecret",
        "webhooks_rotate_secret",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "webhooks_create",
        "201",
        "ListAttempts",
        "webhooks_attempts",
        &[("id", "$response.body#/id")],
        None,
    ),
    (
        "webhooks_create",
        "201",
        "DeleteWebhookEndpoint",
        "webhooks_delete",
        &[("id", "$response.body#/id")],
        None,
    ),
];

/// Adds the links of [`LINKS`] to the responses they start from.
fn add_links(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        let all = [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()];
        for op in all.into_iter().flatten() {
            let Some(id) = op.operation_id.clone() else { continue };
            for (from, status, name, to, params, body) in LINKS {
                if *from != id {
                    continue;
                }
                let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
                    continue;
                };
                let mut link = LinkBuilder::new().operation_id(*to);
                for (param, value) in *params {
                    link = link.parameter(*param, *value);
                }
                if let Some(body) = body {
                    link = link.request_body(Some(body()));
                }
                response.links.insert((*name).to_owned(), RefOr::T(link.build()));
            }
        }
    }
}

/// The document as JSON, for `/openapi.json` and `billing-api openapi`.
pub fn json() -> String {
    let (_, api) = super::routes();
    api.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

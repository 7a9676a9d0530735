//! The OpenAPI 3.1 document: operations come from the handlers' annotations; what every
//! operation shares (security, error responses, the Idempotency-Key header) is added here once.
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder, Schema};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};

use crate::domain::FieldError;

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
        description = "Multi-tenant billing: customers, invoices, payments, refunds, a double-entry ledger, events and signed webhooks. \
            Amounts are integers in the currency's minor unit. Every error is application/problem+json.",
    ),
    components(schemas(ProblemDoc, FieldError, crate::domain::ledger::Account)),
    tags(
        (name = "customers", description = "The parties you bill"),
        (name = "invoices", description = "Drafts, finalization, voiding; numbers are gapless per tenant"),
        (name = "payments", description = "Money received against invoices"),
        (name = "refunds", description = "Money given back against payments"),
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
    ("422", "Validation failed: `errors` lists every problem"),
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
    for item in api.paths.paths.values_mut() {
        let writes = [item.post.as_mut(), item.delete.as_mut()];
        for op in writes.into_iter().flatten() {
            add_idempotency_key(op);
        }
        let all = [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()];
        for op in all.into_iter().flatten() {
            // Handler names repeat across resources (`list`, `create`): qualify them by tag.
            if let (Some(tag), Some(id)) = (op.tags.as_ref().and_then(|t| t.first()), op.operation_id.as_ref()) {
                op.operation_id = Some(format!("{tag}_{id}"));
            }
            op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            for (status, description) in ERRORS {
                op.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(*description)
                        .content("application/problem+json", problem.clone())
                        .build()
                        .into()
                });
            }
        }
    }
    api
}

fn add_idempotency_key(op: &mut Operation) {
    let param: Parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .description(Some(
            "Makes the request safe to retry: the first result is stored and replayed for 24 hours",
        ))
        .schema(Some(String::schema()))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(param));
}

/// The document as JSON, for `/openapi.json` and `billing-api openapi`.
pub fn json() -> String {
    let (_, api) = super::routes();
    api.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

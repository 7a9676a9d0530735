//! RFC 9457 problem details: the one shape of every error this API returns, and the mapping of
//! every error the layers below return (operations, credentials, the database) onto it.
//!
//! A handler (or a layer) returns a [`Problem`]; it travels in the response extensions and the
//! request layer renders it as `application/problem+json`, adding the request id. Responses the
//! framework produces without a body (404, 405, 408, 413, …) are given one from their status.
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Every problem `code` the API answers with, each documented in docs/errors.md.
pub const CODES: &[&str] = &[
    "bad_request",
    "malformed_json",
    "invalid_idempotency_key",
    "unauthenticated",
    "insufficient_scope",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "invoice_not_draft",
    "invoice_not_payable",
    "invoice_has_payments",
    "invoice_has_credits",
    "invoice_not_creditable",
    "invalid_state_transition",
    "duplicate_reference",
    "payment_fully_refunded",
    "too_many_lines",
    "price_superseded",
    "no_upcoming_invoice",
    "idempotency_key_in_use",
    "payload_too_large",
    "request_header_fields_too_large",
    "unsupported_media_type",
    "validation_failed",
    "idempotency_key_reused",
    "rate_limited",
    "http_error",
    "internal_error",
    "overloaded",
    "database_unavailable",
    "webhooks_not_configured",
];

/// Where the `type` URIs point: the error catalogue in the repository.
const TYPE_BASE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/errors.md#");

use crate::auth::{Failure, MissingScope};
pub use crate::domain::FieldError;
use crate::operation;

/// A problem, boxed so that `Result<_, Problem>` stays small on the happy path.
#[derive(Debug, Clone)]
pub struct Problem(Box<Details>);

impl std::ops::Deref for Problem {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

#[derive(Debug, Clone)]
pub struct Details {
    pub status: StatusCode,
    /// Stable, machine-readable; documented in docs/errors.md.
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    pub www_authenticate: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        debug_assert!(
            CODES.contains(&code),
            "problem code {code:?} is not in CODES (and docs/errors.md)"
        );
        Problem(Box::new(Details {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            www_authenticate: None,
        }))
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not_found", "Not Found", detail)
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        let detail = format!("{n} field{} failed validation", if n == 1 { "" } else { "s" });
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation Failed",
            detail,
        )
        .with_errors(errors)
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal Server Error",
            "the server failed to handle this request; it has been logged under the request id",
        )
    }

    pub fn overloaded() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            "the server is handling as many requests as it is configured to; retry shortly",
        )
        .retry_after(1)
    }

    /// Endpoints cannot be created (or their secrets rotated) without a key to encrypt their
    /// signing secrets at rest.
    pub fn webhooks_not_configured() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks_not_configured",
            "Webhooks Not Configured",
            "the operator has not set webhooks.encryption_key",
        )
    }

    pub fn database_unavailable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "Database Unavailable",
            detail,
        )
        .retry_after(1)
    }

    /// The problem for a bodiless error response the framework produced.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, title, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "Not Found", "no route matches this path"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "Method Not Allowed",
                "this route does not accept this method; see the Allow header",
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "request_timeout",
                "Request Timeout",
                "the request took longer than the server allows",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "Payload Too Large",
                "the request body is larger than the server accepts",
            ),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                "request_header_fields_too_large",
                "Request Header Fields Too Large",
                "the request line and headers are larger than the server accepts",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "Unsupported Media Type",
                "send the body as application/json",
            ),
            StatusCode::BAD_REQUEST => ("bad_request", "Bad Request", "the request could not be understood"),
            StatusCode::SERVICE_UNAVAILABLE => return Problem::overloaded(),
            s if s.is_server_error() => return Problem::internal(),
            _ => ("http_error", "HTTP Error", "the request failed"),
        };
        Problem::new(status, code, title, detail)
    }

    /// The response body, with the request id it belongs to.
    pub fn to_json(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            r#type: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
            code: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            errors: &'a [FieldError],
        }
        let body = Body {
            r#type: format!("{TYPE_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id,
            errors: &self.errors,
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Database failures: a pool that cannot hand out a connection in time is a fast 503; anything
/// else is logged with its cause and answered 500 without it.
impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                Problem::database_unavailable("no database connection became free in time; retry shortly")
            }
            other => {
                tracing::error!(error = %crate::store::describe_error(&other), "database error");
                Problem::internal()
            }
        }
    }
}

impl From<operation::Error> for Problem {
    fn from(e: operation::Error) -> Self {
        use operation::Error;
        match e {
            Error::NotFound(what) => Problem::not_found(format!("no such {what}")),
            Error::UnknownCursor(id) => Problem::not_found(format!("no such object: {id}")),
            Error::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, "Conflict", message),
            Error::Invalid(errors) => Problem::validation(errors),
            Error::Db(e) => Problem::from(e),
            Error::NoRandomness(why) => {
                tracing::error!(error = %why, "the random number source failed");
                Problem::internal()
            }
            Error::WebhooksNotConfigured => Problem::webhooks_not_configured(),
        }
    }
}

/// A refused credential is 401 with a `WWW-Authenticate` challenge (RFC 6750); why it was
/// refused is logged and counted, never told beyond "invalid".
impl From<Failure> for Problem {
    fn from(failure: Failure) -> Self {
        if failure == Failure::Unavailable {
            return Problem::database_unavailable("credentials could not be checked right now; retry shortly");
        }
        let (error, detail) = match failure {
            Failure::Missing => (None, "send Authorization: Bearer <API key or token>"),
            Failure::Expired => (Some("invalid_token"), "the token has expired"),
            _ => (Some("invalid_token"), "the credential is not valid"),
        };
        let mut problem = Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", detail);
        problem.www_authenticate = Some(match error {
            Some(error) => format!("Bearer realm=\"billing-api\", error=\"{error}\""),
            None => "Bearer realm=\"billing-api\"".to_owned(),
        });
        problem
    }
}

impl From<MissingScope> for Problem {
    fn from(MissingScope(scope): MissingScope) -> Self {
        let mut problem = Problem::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient Scope",
            format!("this credential lacks the {scope} scope"),
        );
        problem.www_authenticate = Some(format!(
            "Bearer realm=\"billing-api\", error=\"insufficient_scope\", scope=\"{scope}\""
        ));
        problem
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_code_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md")).unwrap();
        for code in super::CODES {
            assert!(
                doc.contains(&format!("<a id=\"{code}\"></a>`{code}`")),
                "docs/errors.md lacks {code}"
            );
        }
        for code in crate::domain::FIELD_CODES {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "docs/errors.md lacks field code {code}"
            );
        }
    }
}

//! Who is calling: `Authorization: Bearer <credential>` is an API key (`bsk_…`) or a JWT from an
//! external identity provider. Either way it resolves to a [`Principal`]: a tenant, an actor and
//! scopes. The tenant scopes every query the request makes.
pub mod api_key;
pub mod jwt;

use http::{HeaderMap, header};

use crate::store::Store;

/// Every scope the API checks: `<resource>:<action>`. A credential with `*` has them all.
pub const SCOPES: &[&str] = &[
    "customers:read",
    "customers:write",
    "invoices:read",
    "invoices:write",
    "payments:read",
    "payments:write",
    "refunds:read",
    "refunds:write",
    "credit_notes:read",
    "credit_notes:write",
    "products:read",
    "products:write",
    "prices:read",
    "prices:write",
    "subscriptions:read",
    "subscriptions:write",
    "meters:read",
    "meters:write",
    "meter_events:write",
    "test_clocks:read",
    "test_clocks:write",
    "ledger:read",
    "events:read",
    "webhooks:read",
    "webhooks:write",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    /// The API key id (`key_…`) or `jwt:<subject>`, recorded in the audit trail.
    pub actor: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == "*" || s == scope)
    }

    /// Refused (403 to the caller) unless the credential carries `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), MissingScope> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(MissingScope(scope))
        }
    }
}

/// The scope a credential lacks for what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingScope(pub &'static str);

/// Why a credential was refused. The reason is logged (and counted), never told to the caller
/// beyond "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    Malformed,
    UnknownKey,
    Revoked,
    InvalidToken,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    BadSignature,
    AlgorithmNotAllowed,
    UnknownKid,
    MissingTenant,
    JwtDisabled,
    Unavailable,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::UnknownKey => "unknown_key",
            Failure::Revoked => "revoked",
            Failure::InvalidToken => "invalid_token",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::BadSignature => "bad_signature",
            Failure::AlgorithmNotAllowed => "algorithm_not_allowed",
            Failure::UnknownKid => "unknown_kid",
            Failure::MissingTenant => "missing_tenant",
            Failure::JwtDisabled => "jwt_disabled",
            Failure::Unavailable => "unavailable",
        }
    }
}

/// The longest credential looked at (an API key is 85 bytes; identity providers' tokens are a
/// few hundred to a couple of thousand): a larger one is refused before it is parsed, so a
/// signed token cannot carry an unbounded claim into every request.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// Checks credentials. Shared by every request.
#[derive(Debug)]
pub struct Authenticator {
    keys: api_key::Verifier,
    jwt: Option<jwt::Verifier>,
}

impl Authenticator {
    pub fn new(store: Store, jwt: Option<jwt::Verifier>) -> Self {
        Authenticator {
            keys: api_key::Verifier::new(store),
            jwt,
        }
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Failure> {
        let value = headers.get(header::AUTHORIZATION).ok_or(Failure::Missing)?;
        let value = value.to_str().map_err(|_| Failure::Malformed)?;
        let (scheme, credential) = value.split_once(' ').ok_or(Failure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed);
        }
        let credential = credential.trim();
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(Failure::Malformed);
        }
        if credential.starts_with(api_key::PREFIX) {
            return self.keys.verify(credential).await;
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(credential).await,
            None => Err(Failure::JwtDisabled),
        }
    }
}

//! `[auth]`: JWT verification, off unless a key source (public key, HMAC secret or JWKS URL) is
//! set. Loading turns the settings into [`JwtSettings`] (keys read and parsed once), or reports
//! every problem with them.
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::section::{Checks, KeyDoc, Reader, key};
use super::value::{as_humantime, redacted_opt};

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    pub jwt_algorithms: Vec<String>,
    pub jwt_public_key_file: Option<PathBuf>,
    #[serde(serialize_with = "redacted_opt")]
    pub jwt_hmac_secret: Option<SecretString>,
    pub jwt_jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    #[serde(serialize_with = "as_humantime")]
    pub jwt_leeway: Duration,
    pub jwt_tenant_claim: String,
    pub jwt_scope_claim: String,
    #[serde(serialize_with = "as_humantime")]
    pub jwks_refresh_interval: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub jwks_max_age: Duration,
    /// What the settings above come to, once checked; `None` when JWTs are off.
    #[serde(skip)]
    pub jwt: Option<JwtSettings>,
}

/// Where the keys that verify JWTs come from.
#[derive(Clone)]
pub enum JwtKeys {
    Static(Box<DecodingKey>),
    Jwks { url: String },
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeys::Static(_) => f.write_str("Static(..)"),
            JwtKeys::Jwks { url } => write!(f, "Jwks({url})"),
        }
    }
}

/// JWT verification as configured: the accepted algorithms are fixed here, never by a token.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub algorithms: Vec<Algorithm>,
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub tenant_claim: String,
    pub scope_claim: String,
    /// Least time between two JWKS fetches.
    pub jwks_refresh_interval: Duration,
    /// A JWKS older than this is fetched again on the next token.
    pub jwks_max_age: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_algorithms: Vec::new(),
            jwt_public_key_file: None,
            jwt_hmac_secret: None,
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
            jwt_tenant_claim: "tenant_id".into(),
            jwt_scope_claim: "scope".into(),
            jwks_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            jwt: None,
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "auth.jwt_algorithms",
        "Accepted JWT algorithms, e.g. `RS256` or `ES256,EdDSA` (one family). Fixed here, never taken from the token.",
    ),
    key(
        "auth.jwt_public_key_file",
        "PEM public key that verifies JWTs (RSA, EC or Ed25519, matching the algorithms).",
    ),
    KeyDoc {
        key: "auth.jwt_hmac_secret",
        secret: true,
        default_text: None,
        description: "Shared secret (at least 32 bytes) for `HS256`/`HS384`/`HS512` JWTs. Cannot be combined with public keys.",
    },
    key(
        "auth.jwt_jwks_url",
        "JWKS URL of the identity provider; the token's `kid` picks the key.",
    ),
    key(
        "auth.jwt_issuer",
        "Required `iss` of JWTs (must be set when JWTs are enabled).",
    ),
    key(
        "auth.jwt_audience",
        "Required `aud` of JWTs (must be set when JWTs are enabled).",
    ),
    key("auth.jwt_leeway", "Clock skew allowed when checking `exp` and `nbf`."),
    key("auth.jwt_tenant_claim", "Claim that names the tenant."),
    key(
        "auth.jwt_scope_claim",
        "Claim with the scopes: a space-separated string or an array.",
    ),
    key(
        "auth.jwks_refresh_interval",
        "Least time between two JWKS fetches (a token with an unknown `kid` triggers one).",
    ),
    key("auth.jwks_max_age", "A JWKS older than this is fetched again."),
];

impl AuthConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        AuthConfig {
            jwt_algorithms: r.get("jwt_algorithms", d.jwt_algorithms),
            jwt_public_key_file: r.get_opt("jwt_public_key_file"),
            jwt_hmac_secret: r.secret("jwt_hmac_secret"),
            jwt_jwks_url: r.get_opt("jwt_jwks_url"),
            jwt_issuer: r.get_opt("jwt_issuer"),
            jwt_audience: r.get_opt("jwt_audience"),
            jwt_leeway: r.get("jwt_leeway", d.jwt_leeway),
            jwt_tenant_claim: r.get("jwt_tenant_claim", d.jwt_tenant_claim),
            jwt_scope_claim: r.get("jwt_scope_claim", d.jwt_scope_claim),
            jwks_refresh_interval: r.get("jwks_refresh_interval", d.jwks_refresh_interval),
            jwks_max_age: r.get("jwks_max_age", d.jwks_max_age),
            jwt: None,
        }
    }

    /// Checks the JWT settings and keeps what they come to in [`AuthConfig::jwt`].
    pub(super) fn validate(&mut self, c: &mut Checks<'_>) {
        match self.jwt_settings() {
            Ok(settings) => self.jwt = settings,
            Err(problems) => {
                for (name, message) in problems {
                    c.require(false, name, message);
                }
            }
        }
    }

    /// `Ok(None)` when JWTs are off, or every problem found (by key within `[auth]`).
    fn jwt_settings(&self) -> Result<Option<JwtSettings>, Vec<(&'static str, String)>> {
        let sources = [
            self.jwt_public_key_file.is_some(),
            self.jwt_hmac_secret.is_some(),
            self.jwt_jwks_url.is_some(),
        ];
        if !sources.contains(&true) {
            return Ok(None);
        }
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if sources.iter().filter(|s| **s).count() > 1 {
            problems.push((
                "jwt_hmac_secret",
                "set exactly one of auth.jwt_public_key_file, auth.jwt_hmac_secret and auth.jwt_jwks_url".into(),
            ));
        }
        let mut algorithms = Vec::new();
        for name in &self.jwt_algorithms {
            match name.parse::<Algorithm>() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => problems.push((
                    "jwt_algorithms",
                    format!("{name:?} is not a JWT algorithm such as RS256, ES256, EdDSA or HS256"),
                )),
            }
        }
        if self.jwt_algorithms.is_empty() {
            problems.push(("jwt_algorithms", "required when JWTs are enabled".into()));
        }
        let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        if self.jwt_hmac_secret.is_some() && !algorithms.iter().all(hmac) {
            problems.push((
                "jwt_algorithms",
                "an HMAC secret only verifies HS256, HS384 or HS512".into(),
            ));
        }
        if self.jwt_hmac_secret.is_none() && algorithms.iter().any(hmac) {
            problems.push((
                "jwt_algorithms",
                "HS* algorithms need auth.jwt_hmac_secret, not public keys".into(),
            ));
        }
        let mixed = algorithms.windows(2).any(|w| w[0].family() != w[1].family());
        if self.jwt_public_key_file.is_some() && mixed {
            problems.push((
                "jwt_algorithms",
                "one public key cannot verify algorithms of different families".into(),
            ));
        }
        let issuer = self.jwt_issuer.clone().unwrap_or_default();
        let audience = self.jwt_audience.clone().unwrap_or_default();
        if issuer.is_empty() {
            problems.push(("jwt_issuer", "required when JWTs are enabled".into()));
        }
        if audience.is_empty() {
            problems.push(("jwt_audience", "required when JWTs are enabled".into()));
        }
        let keys = if let Some(secret) = &self.jwt_hmac_secret {
            if secret.expose_secret().len() < 32 {
                problems.push(("jwt_hmac_secret", "must be at least 32 bytes".into()));
            }
            Some(JwtKeys::Static(Box::new(DecodingKey::from_secret(
                secret.expose_secret().as_bytes(),
            ))))
        } else if let Some(path) = &self.jwt_public_key_file {
            match std::fs::read(path) {
                Ok(pem) => {
                    let key = match algorithms.first().map(|a| a.family()) {
                        Some(AlgorithmFamily::Rsa) => DecodingKey::from_rsa_pem(&pem),
                        Some(AlgorithmFamily::Ec) => DecodingKey::from_ec_pem(&pem),
                        _ => DecodingKey::from_ed_pem(&pem),
                    };
                    match key {
                        Ok(key) => Some(JwtKeys::Static(Box::new(key))),
                        Err(e) => {
                            problems.push((
                                "jwt_public_key_file",
                                format!("{} is not a usable public key: {e}", path.display()),
                            ));
                            None
                        }
                    }
                }
                Err(e) => {
                    problems.push(("jwt_public_key_file", format!("cannot read {}: {e}", path.display())));
                    None
                }
            }
        } else if let Some(url) = &self.jwt_jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(("jwt_jwks_url", "must be an http(s) URL".into()));
            }
            Some(JwtKeys::Jwks { url: url.clone() })
        } else {
            None
        };
        match (problems.is_empty(), keys) {
            (true, Some(keys)) => Ok(Some(JwtSettings {
                algorithms,
                keys,
                issuer,
                audience,
                leeway: self.jwt_leeway,
                tenant_claim: self.jwt_tenant_claim.clone(),
                scope_claim: self.jwt_scope_claim.clone(),
                jwks_refresh_interval: self.jwks_refresh_interval,
                jwks_max_age: self.jwks_max_age,
            })),
            _ => Err(problems),
        }
    }
}

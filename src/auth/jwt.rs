//! JWTs from an external identity provider. Which algorithms are accepted is fixed by
//! configuration, never by the token: `alg: none` cannot even be parsed, and a token naming an
//! algorithm outside the configured family (HMAC signed with an RSA public key, say) is refused
//! before any key is touched. Keys come from configuration (a PEM public key, or an HMAC secret)
//! or from a JWKS URL, fetched when needed and again when a token names an unknown `kid`, at most
//! once per `auth.jwks_refresh_interval`.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::{Failure, Principal};

#[derive(Clone)]
pub enum Keys {
    Static(Box<DecodingKey>),
    Jwks { url: String },
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Static(_) => f.write_str("Static(..)"),
            Keys::Jwks { url } => write!(f, "Jwks({url})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub algorithms: Vec<Algorithm>,
    pub keys: Keys,
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

#[derive(Debug)]
pub struct Verifier {
    settings: Settings,
    jwks: Option<Jwks>,
}

#[derive(Debug)]
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<(HashMap<String, DecodingKey>, Option<Instant>)>,
    last_fetch: Mutex<Option<Instant>>,
}

impl Verifier {
    pub fn new(settings: Settings) -> Result<Self, String> {
        let jwks = match &settings.keys {
            Keys::Jwks { url } => Some(Jwks {
                url: url.clone(),
                client: crate::outbound::client(Duration::from_secs(2), Duration::from_secs(5))?,
                keys: RwLock::new((HashMap::new(), None)),
                last_fetch: Mutex::new(None),
            }),
            Keys::Static(_) => None,
        };
        Ok(Verifier { settings, jwks })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, Failure> {
        let header = decode_header(token).map_err(|_| Failure::InvalidToken)?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(Failure::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        let claims = match (&self.settings.keys, &self.jwks) {
            (Keys::Static(key), _) => decode::<Map<String, Value>>(token, key, &validation),
            (Keys::Jwks { .. }, Some(jwks)) => {
                let kid = header.kid.as_deref().ok_or(Failure::InvalidToken)?;
                let key = jwks.key(kid, &self.settings).await?;
                decode::<Map<String, Value>>(token, &key, &validation)
            }
            (Keys::Jwks { .. }, None) => return Err(Failure::UnknownKid),
        }
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Failure::Expired,
            ErrorKind::ImmatureSignature => Failure::NotYetValid,
            ErrorKind::InvalidIssuer => Failure::WrongIssuer,
            ErrorKind::InvalidAudience => Failure::WrongAudience,
            ErrorKind::InvalidSignature => Failure::BadSignature,
            ErrorKind::InvalidAlgorithm => Failure::AlgorithmNotAllowed,
            _ => Failure::InvalidToken,
        })?
        .claims;

        let tenant = claims
            .get(&self.settings.tenant_claim)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(Failure::MissingTenant)?
            .to_owned();
        let scopes = match claims.get(&self.settings.scope_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("unknown");
        Ok(Principal {
            tenant,
            actor: format!("jwt:{subject}"),
            scopes,
        })
    }
}

impl Jwks {
    /// The key for `kid`, fetching the set when it is unknown or stale (rate-limited).
    async fn key(&self, kid: &str, settings: &Settings) -> Result<DecodingKey, Failure> {
        {
            let (keys, fetched) = &*self.keys.read().await;
            let fresh = fetched.is_some_and(|at| at.elapsed() < settings.jwks_max_age);
            if let (Some(key), true) = (keys.get(kid), fresh) {
                return Ok(key.clone());
            }
        }
        self.refresh(settings.jwks_refresh_interval).await;
        self.keys.read().await.0.get(kid).cloned().ok_or(Failure::UnknownKid)
    }

    async fn refresh(&self, min_interval: Duration) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write().await = (keys, Some(Instant::now()));
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the keys we have"),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let response = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect())
    }
}

impl Settings {
    /// JWT settings from configuration: `Ok(None)` when JWTs are off, or every problem found.
    pub fn from_config(c: &crate::config::AuthConfig) -> Result<Option<Settings>, Vec<(&'static str, String)>> {
        use secrecy::ExposeSecret;
        let sources = [
            c.jwt_public_key_file.is_some(),
            c.jwt_hmac_secret.is_some(),
            c.jwt_jwks_url.is_some(),
        ];
        if !sources.contains(&true) {
            return Ok(None);
        }
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if sources.iter().filter(|s| **s).count() > 1 {
            problems.push((
                "auth.jwt_hmac_secret",
                "set exactly one of auth.jwt_public_key_file, auth.jwt_hmac_secret and auth.jwt_jwks_url".into(),
            ));
        }
        let mut algorithms = Vec::new();
        for name in &c.jwt_algorithms {
            match name.parse::<Algorithm>() {
                Ok(alg) => algorithms.push(alg),
                Err(_) => problems.push((
                    "auth.jwt_algorithms",
                    format!("{name:?} is not a JWT algorithm such as RS256, ES256, EdDSA or HS256"),
                )),
            }
        }
        if c.jwt_algorithms.is_empty() {
            problems.push(("auth.jwt_algorithms", "required when JWTs are enabled".into()));
        }
        let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        if c.jwt_hmac_secret.is_some() && !algorithms.iter().all(hmac) {
            problems.push((
                "auth.jwt_algorithms",
                "an HMAC secret only verifies HS256, HS384 or HS512".into(),
            ));
        }
        if c.jwt_hmac_secret.is_none() && algorithms.iter().any(hmac) {
            problems.push((
                "auth.jwt_algorithms",
                "HS* algorithms need auth.jwt_hmac_secret, not public keys".into(),
            ));
        }
        let mixed = algorithms.windows(2).any(|w| w[0].family() != w[1].family());
        if c.jwt_public_key_file.is_some() && mixed {
            problems.push((
                "auth.jwt_algorithms",
                "one public key cannot verify algorithms of different families".into(),
            ));
        }
        let issuer = c.jwt_issuer.clone().unwrap_or_default();
        let audience = c.jwt_audience.clone().unwrap_or_default();
        if issuer.is_empty() {
            problems.push(("auth.jwt_issuer", "required when JWTs are enabled".into()));
        }
        if audience.is_empty() {
            problems.push(("auth.jwt_audience", "required when JWTs are enabled".into()));
        }
        let keys = if let Some(secret) = &c.jwt_hmac_secret {
            if secret.expose_secret().len() < 32 {
                problems.push(("auth.jwt_hmac_secret", "must be at least 32 bytes".into()));
            }
            Some(Keys::Static(Box::new(DecodingKey::from_secret(
                secret.expose_secret().as_bytes(),
            ))))
        } else if let Some(path) = &c.jwt_public_key_file {
            match std::fs::read(path) {
                Ok(pem) => {
                    let key = match algorithms.first().map(|a| a.family()) {
                        Some(jsonwebtoken::AlgorithmFamily::Rsa) => DecodingKey::from_rsa_pem(&pem),
                        Some(jsonwebtoken::AlgorithmFamily::Ec) => DecodingKey::from_ec_pem(&pem),
                        _ => DecodingKey::from_ed_pem(&pem),
                    };
                    match key {
                        Ok(key) => Some(Keys::Static(Box::new(key))),
                        Err(e) => {
                            problems.push((
                                "auth.jwt_public_key_file",
                                format!("{} is not a usable public key: {e}", path.display()),
                            ));
                            None
                        }
                    }
                }
                Err(e) => {
                    problems.push((
                        "auth.jwt_public_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    None
                }
            }
        } else if let Some(url) = &c.jwt_jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(("auth.jwt_jwks_url", "must be an http(s) URL".into()));
            }
            Some(Keys::Jwks { url: url.clone() })
        } else {
            None
        };
        match (problems.is_empty(), keys) {
            (true, Some(keys)) => Ok(Some(Settings {
                algorithms,
                keys,
                issuer,
                audience,
                leeway: c.jwt_leeway,
                tenant_claim: c.jwt_tenant_claim.clone(),
                scope_claim: c.jwt_scope_claim.clone(),
                jwks_refresh_interval: c.jwks_refresh_interval,
                jwks_max_age: c.jwks_max_age,
            })),
            _ => Err(problems),
        }
    }
}

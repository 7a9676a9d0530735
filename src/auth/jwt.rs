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
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::{Failure, Principal};

use crate::config::{JwtKeys, JwtSettings};

/// The largest JWKS answer read (real ones hold a handful of keys: a few KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct Verifier {
    settings: JwtSettings,
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
    pub fn new(settings: JwtSettings) -> Result<Self, String> {
        let jwks = match &settings.keys {
            JwtKeys::Jwks { url } => Some(Jwks {
                url: url.clone(),
                client: crate::outbound::client(Duration::from_secs(2), Duration::from_secs(5))?,
                keys: RwLock::new((HashMap::new(), None)),
                last_fetch: Mutex::new(None),
            }),
            JwtKeys::Static(_) => None,
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
            (JwtKeys::Static(key), _) => decode::<Map<String, Value>>(token, key, &validation),
            (JwtKeys::Jwks { .. }, Some(jwks)) => {
                let kid = header.kid.as_deref().ok_or(Failure::InvalidToken)?;
                let key = jwks.key(kid, &self.settings).await?;
                decode::<Map<String, Value>>(token, &key, &validation)
            }
            (JwtKeys::Jwks { .. }, None) => return Err(Failure::UnknownKid),
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
            .filter(|t| !t.is_empty() && t.len() <= 128 && !t.contains(crate::domain::text::is_control))
            .ok_or(Failure::MissingTenant)?
            .to_owned();
        let scopes = match claims.get(&self.settings.scope_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("unknown");
        // The subject is recorded in the audit trail: it must be text, and short.
        if subject.len() > 255 || subject.contains(crate::domain::text::is_control) {
            return Err(Failure::InvalidToken);
        }
        Ok(Principal {
            tenant,
            actor: format!("jwt:{subject}"),
            scopes,
        })
    }
}

impl Jwks {
    /// The key for `kid`, fetching the set when it is unknown or stale (rate-limited).
    async fn key(&self, kid: &str, settings: &JwtSettings) -> Result<DecodingKey, Failure> {
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
        let mut response = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        // The provider is not ours: its answer is read up to a bound (a key set is a few KiB).
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the key set is larger than {} KiB", MAX_JWKS_BYTES / 1024));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect())
    }
}

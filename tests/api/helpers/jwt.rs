//! An identity provider for tests: an Ed25519 key pair that signs tokens, published as a PEM
//! file or from a JWKS endpoint that counts its fetches.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub struct Issuer {
    pub kid: String,
    seed: [u8; 32],
    public: [u8; 32],
}

impl Issuer {
    pub fn new(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Issuer {
            kid: kid.to_owned(),
            seed,
            public,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        // PKCS#8 v1 for Ed25519: a fixed header, then the 32-byte seed.
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&self.seed);
        EncodingKey::from_ed_der(&der)
    }

    /// The public key as an SPKI PEM file.
    pub fn public_pem(&self) -> String {
        let mut der = hex::decode("302a300506032b6570032100").unwrap();
        der.extend_from_slice(&self.public);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    pub fn jwk(&self) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(self.public), "kid": self.kid, "alg": "EdDSA", "use": "sig" })
    }

    pub fn token(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding_key()).unwrap()
    }
}

pub fn now() -> i64 {
    billing_api::clock::now()
}

/// Claims a valid token carries for `tenant`.
pub fn claims(tenant: &str) -> Value {
    json!({ "iss": "https://idp.test", "aud": "billing", "sub": "user-1", "tenant_id": tenant, "scope": "customers:read customers:write", "exp": now() + 300, "iat": now() })
}

/// A JWKS endpoint on loopback whose keys the test can change.
pub struct JwksServer {
    pub url: String,
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": *k.lock().await }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { url, keys, fetches }
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

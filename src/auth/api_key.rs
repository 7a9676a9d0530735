//! API keys: `bsk_<key id>_<secret>`. The recognisable prefix lets secret scanners find a leaked
//! key; the secret is 32 random bytes. Only a SHA-256 of the secret is stored (the secret is
//! random, so a slow hash adds nothing), and it is compared in constant time.
use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Failure, Principal};
use crate::store::Store;
use crate::store::tenants::{self, ApiKeyRow};

pub const PREFIX: &str = "bsk_";
/// Last-used times are written at most this often per key, off the request path.
const TOUCH_EVERY_SECS: i64 = 60;

/// A new key: the text to hand out (once) and the row to store.
pub struct Generated {
    pub key: String,
    pub row: ApiKeyRow,
}

fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn generate(
    tenant: &str,
    scopes: &[String],
    description: Option<String>,
    now: i64,
) -> Result<Generated, getrandom::Error> {
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    Ok(Generated {
        key: format!("{PREFIX}{id}_{secret}"),
        row: ApiKeyRow {
            id: format!("key_{id}"),
            tenant_id: tenant.to_owned(),
            secret_hash: hash(&secret),
            scopes: scopes.join(" "),
            description,
            created: now,
            last_used: None,
            revoked: None,
        },
    })
}

/// Splits a presented key into the stored id and the secret.
fn parse(key: &str) -> Option<(String, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then(|| (format!("key_{id}"), secret))
}

#[derive(Debug)]
pub struct Verifier {
    store: Store,
    last_touched: Mutex<HashMap<String, i64>>,
}

impl Verifier {
    pub fn new(store: Store) -> Self {
        Verifier {
            store,
            last_touched: Mutex::new(HashMap::new()),
        }
    }

    /// Looks the key up on every request, so a revoked key stops working at once everywhere.
    pub async fn verify(&self, key: &str) -> Result<Principal, Failure> {
        let (id, secret) = parse(key).ok_or(Failure::Malformed)?;
        let mut conn = self.store.acquire().await.map_err(|_| Failure::Unavailable)?;
        let row = tenants::find_key(&mut conn, &id)
            .await
            .map_err(|_| Failure::Unavailable)?;
        drop(conn);
        let row = row.ok_or(Failure::UnknownKey)?;
        let matches: bool = hash(secret).as_bytes().ct_eq(row.secret_hash.as_bytes()).into();
        if !matches {
            return Err(Failure::UnknownKey);
        }
        if row.revoked.is_some() {
            return Err(Failure::Revoked);
        }
        self.touch(&row.id);
        Ok(Principal {
            tenant: row.tenant_id,
            actor: row.id,
            scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// Records the last-used time, at most once a minute per key, in the background.
    fn touch(&self, id: &str) {
        let now = crate::clock::now();
        {
            let Ok(mut seen) = self.last_touched.lock() else { return };
            match seen.get(id) {
                Some(at) if now - at < TOUCH_EVERY_SECS => return,
                _ => seen.insert(id.to_owned(), now),
            };
        }
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let result = async {
                let mut conn = store.acquire().await?;
                tenants::touch_key(&mut conn, &id, now).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(key = %id, error = %crate::store::describe_error(&e), "could not record API key use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_stored_as_hashes() {
        let a = generate("t1", &["*".into()], None, 0).unwrap();
        let b = generate("t1", &["*".into()], None, 0).unwrap();
        assert!(a.key.starts_with("bsk_") && a.key.len() == 4 + 16 + 1 + 64);
        assert_ne!(a.key, b.key);
        let (id, secret) = parse(&a.key).unwrap();
        assert_eq!(id, a.row.id);
        assert_eq!(hash(secret), a.row.secret_hash);
        assert!(!a.row.secret_hash.contains(secret));
        assert!(parse("bsk_short_abc").is_none());
        assert!(parse(&a.key.replace("bsk_", "xsk_")).is_none());
    }
}

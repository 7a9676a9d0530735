//! Signing secrets: made in the Standard Webhooks format (`whsec_` + base64 of 24 random bytes)
//! and stored encrypted with XChaCha20-Poly1305 under `webhooks.encryption_key`. The stored form
//! names the key (`v1.<key id>.<base64 nonce+ciphertext>`), so a rotated-out key can still be
//! used to read while everything is re-encrypted under the new one.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "whsec_";

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: [u8; 32]) -> Self {
        Key {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }
}

pub struct Cipher {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("key_id", &self.current.id)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    pub fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Self {
        Cipher {
            current: Key::new(current),
            previous: previous.map(Key::new),
        }
    }

    pub fn encrypt(&self, plain: &str) -> Result<String, String> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let sealed = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), plain.as_bytes())
            .map_err(|_| "encryption failed".to_owned())?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("v1.{}.{}", self.current.id, STANDARD.encode(blob)))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, String> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("not an encrypted secret".into());
        };
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
            .ok_or_else(|| format!("encrypted with key {key_id}, which is not configured"))?;
        let blob = STANDARD.decode(blob).map_err(|_| "corrupt secret".to_owned())?;
        if blob.len() < 24 {
            return Err("corrupt secret".into());
        }
        let (nonce, sealed) = blob.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| "corrupt secret".to_owned())?;
        let plain = key
            .cipher
            .decrypt(&XNonce::from(nonce), sealed)
            .map_err(|_| "the secret does not decrypt (wrong key or tampered)".to_owned())?;
        String::from_utf8(plain).map_err(|_| "corrupt secret".to_owned())
    }

    /// Whether `stored` is under the current key (re-encryption can skip it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.split('.').nth(1) == Some(self.current.id.as_str())
    }
}

/// A new signing secret: `whsec_` and 24 random bytes in base64.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_old_keys_still_read() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let old = Cipher::new(k1, None);
        let stored = old.encrypt("whsec_abc").unwrap();
        assert!(!stored.contains("whsec_abc"));
        assert_eq!(old.decrypt(&stored).unwrap(), "whsec_abc");
        let rotated = Cipher::new(k2, Some(k1));
        assert_eq!(rotated.decrypt(&stored).unwrap(), "whsec_abc");
        assert!(!rotated.is_current(&stored));
        assert!(
            Cipher::new(k2, None).decrypt(&stored).is_err(),
            "an unknown key cannot read"
        );
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert!(old.decrypt(&tampered).is_err(), "tampering is detected");
    }

    #[test]
    fn generated_secrets_have_the_standard_shape() {
        let s = generate().unwrap();
        assert!(s.starts_with(PREFIX));
        assert_eq!(STANDARD.decode(&s[PREFIX.len()..]).unwrap().len(), 24);
        assert_ne!(s, generate().unwrap());
        let parse_key = crate::config::parse_key;
        assert_eq!(parse_key(&STANDARD.encode([7u8; 32])), Some([7u8; 32]));
        assert_eq!(parse_key("c2hvcnQ="), None);
    }
}

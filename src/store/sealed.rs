//! Secrets at rest: the server's certificate signing keys (retired ones too) and programs' HS256
//! secrets are sealed with a key-encryption key (KEK) before they reach the database.
//!
//! The KEK comes from the environment (`HAVEN_KEY_ENCRYPTION_KEY`) or a file
//! (`key_encryption_key_file`), never from the database, so a copy of the database (a backup, a
//! replica, a dump) does not hold usable keys. Sealed values are `enc:v1:` and the base64url of a
//! random 96-bit nonce followed by the ChaCha20-Poly1305 ciphertext; the row's own id (the key id,
//! the program id) is the associated data, so a sealed value moved to another row does not open.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "enc:v1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be 32 bytes, base64 encoded (make one: `openssl rand -base64 32`)")]
    BadKey,
    #[error("a stored secret is sealed, and no key-encryption key is configured (HAVEN_KEY_ENCRYPTION_KEY)")]
    NoKey,
    #[error(
        "a stored secret does not open with the configured key-encryption key (wrong key, or the value was altered)"
    )]
    WrongKey,
}

/// The key-encryption key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A KEK from its base64 text (standard or URL-safe alphabet, padding optional).
    pub fn from_base64(text: &str) -> Result<Sealer, SealError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .or_else(|_| B64.decode(text.trim_end_matches('=')))
            .map_err(|_| SealError::BadKey)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::BadKey)?;
        Ok(Sealer { cipher: ChaCha20Poly1305::new(&Key::from(key)) })
    }

    /// Seals `secret` for the row `row_id`.
    pub fn seal(&self, secret: &str, row_id: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        // Encryption with a valid key and nonce cannot fail for inputs this small.
        let ct =
            self.cipher.encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: row_id.as_bytes() }).unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    fn open(&self, stored: &str, row_id: &str) -> Result<String, SealError> {
        let body = stored.strip_prefix(PREFIX).ok_or(SealError::WrongKey)?;
        let bytes = B64.decode(body).map_err(|_| SealError::WrongKey)?;
        if bytes.len() < 12 {
            return Err(SealError::WrongKey);
        }
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::WrongKey)?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: row_id.as_bytes() })
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SealError::WrongKey)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The secret a stored value holds: opened when sealed, as it is otherwise (a database written
/// before a KEK was configured; the next start with a KEK seals it).
pub fn open(sealer: Option<&Sealer>, stored: &str, row_id: &str) -> Result<String, SealError> {
    match (is_sealed(stored), sealer) {
        (false, _) => Ok(stored.to_string()),
        (true, Some(s)) => s.open(stored, row_id),
        (true, None) => Err(SealError::NoKey),
    }
}

/// The value to store for `secret`: sealed when there is a KEK.
pub fn seal(sealer: Option<&Sealer>, secret: &str, row_id: &str) -> String {
    match sealer {
        Some(s) => s.seal(secret, row_id),
        None => secret.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Sealer {
        Sealer::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_row() {
        let k = kek(7);
        let sealed = k.seal("-----BEGIN PRIVATE KEY-----", "kid-1");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(open(Some(&k), &sealed, "kid-1").unwrap(), "-----BEGIN PRIVATE KEY-----");
        assert_eq!(open(Some(&kek(8)), &sealed, "kid-1"), Err(SealError::WrongKey));
        assert_eq!(open(Some(&k), &sealed, "kid-2"), Err(SealError::WrongKey), "moved to another row");
        assert_eq!(open(None, &sealed, "kid-1"), Err(SealError::NoKey));
        // Two seals of one secret differ (fresh nonce), and both open.
        let again = k.seal("-----BEGIN PRIVATE KEY-----", "kid-1");
        assert_ne!(sealed, again);
        assert!(open(Some(&k), &again, "kid-1").is_ok());
        // An unsealed value (written before a KEK existed) reads as it is.
        assert_eq!(open(Some(&k), "plain", "kid-1").unwrap(), "plain");
    }

    #[test]
    fn a_key_that_is_not_32_bytes_is_refused() {
        assert_eq!(Sealer::from_base64("c2hvcnQ=").err(), Some(SealError::BadKey));
        assert_eq!(Sealer::from_base64("not base64!").err(), Some(SealError::BadKey));
        assert!(Sealer::from_base64(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32])).is_ok());
    }

    #[test]
    fn debug_never_prints_the_key() {
        assert_eq!(format!("{:?}", kek(1)), "Sealer([redacted])");
    }
}

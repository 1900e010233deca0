//! Attendance certificates: compact JWS (EdDSA) signed with the server's Ed25519 key.
//!
//! Anyone can check one offline with the public keys at `/.well-known/jwks.json`, or ask
//! `POST /v1/certificates/verify`. Keys rotate (`haven rotate-key`): only the newest signs; every
//! key ever used stays published, so old certificates keep verifying. A certificate holds what a
//! court or payer needs and nothing said in the meeting.

use super::credit::CreditPolicy;
use super::{rfc3339, StoredResult};
use crate::store::{KeyRow, ResultRow, Store, StoreError};
use base64::Engine;
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The issuer of certificates signed before the issuer was the server's URL; they still verify.
pub const LEGACY_ISSUER: &str = "haven";

/// The meeting as a certificate describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertMeeting {
    /// The meeting's id as the member's program names it: its own id, or `<owner>/<id>` for a
    /// meeting another program shared with it.
    pub id: String,
    pub title: String,
    pub scheduled_start: Option<String>,
    pub scheduled_end: Option<String>,
}

/// The verdict and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    pub credited: bool,
    pub rule: String,
}

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateClaims {
    /// The issuing server's public URL; its keys are at `{iss}/.well-known/jwks.json`.
    pub iss: String,
    /// The program's reference for the member.
    pub sub: String,
    /// The attendance id.
    pub jti: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    pub program: String,
    pub meeting: CertMeeting,
    pub minutes_present: i64,
    pub first_admitted: Option<String>,
    pub last_left: Option<String>,
    pub interruptions: u32,
    pub policy: CreditPolicy,
    pub verdict: Verdict,
}

impl CertificateClaims {
    /// The claims for a stored (final) result, issued by the server at `issuer` (its public URL).
    /// `meeting_id`: the meeting's id as the member's program names it.
    pub fn for_result(
        r: &ResultRow,
        meeting_id: &str,
        issuer: &str,
        now_s: i64,
    ) -> Result<CertificateClaims, StoreError> {
        let s: StoredResult = serde_json::from_str(&r.result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(CertificateClaims {
            iss: issuer.to_string(),
            sub: r.member_ref.clone(),
            jti: r.id.clone(),
            iat: now_s,
            program: r.program_id.clone(),
            meeting: CertMeeting {
                id: meeting_id.to_string(),
                title: s.meeting_title,
                scheduled_start: s.scheduled_start.map(rfc3339),
                scheduled_end: s.scheduled_end.map(rfc3339),
            },
            minutes_present: s.outcome.seconds_present / 60,
            first_admitted: s.outcome.first_admitted.map(rfc3339),
            last_left: s.outcome.last_left.map(rfc3339),
            interruptions: s.outcome.interruptions,
            policy: s.policy,
            verdict: Verdict { credited: s.outcome.credited, rule: s.outcome.rule },
        })
    }
}

struct Key {
    kid: String,
    public_x: String,
    decoding: DecodingKey,
}

/// The server's keys: the newest signs; all verify.
pub struct Keyring {
    signing_kid: String,
    signing: EncodingKey,
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("signing_kid", &self.signing_kid).finish_non_exhaustive()
    }
}

/// Why a certificate is not genuine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a well-formed certificate")]
    Malformed,
    #[error("signed by a key this server never published")]
    UnknownKey,
    #[error("the signature does not match the contents")]
    BadSignature,
}

impl VerifyError {
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed => "certificate_malformed",
            VerifyError::UnknownKey => "certificate_unknown_key",
            VerifyError::BadSignature => "certificate_bad_signature",
        }
    }
}

/// A new Ed25519 key, as stored.
pub fn generate_key(now: i64) -> KeyRow {
    let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let public = sk.verifying_key().to_bytes();
    let kid = hex::encode(&Sha256::digest(public)[..8]);
    // Encoding a freshly generated key cannot fail.
    let private_pem = sk.to_pkcs8_pem(LineEnding::LF).map(|p| p.to_string()).unwrap_or_default();
    KeyRow {
        kid,
        private_pem,
        public_x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        created_at: now,
        retired_at: None,
    }
}

/// Why the keyring could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored key {0} is unusable: {1}")]
    Key(String, jsonwebtoken::errors::Error),
}

impl Keyring {
    /// Loads the keys, creating the first one when there is none.
    pub async fn load_or_create(store: &Store, now: i64) -> Result<Keyring, KeyringError> {
        let mut rows = store.server_keys().await?;
        if rows.is_empty() {
            store.rotate_key(&generate_key(now)).await?;
            rows = store.server_keys().await?;
        }
        Keyring::from_rows(&rows)
    }

    fn from_rows(rows: &[KeyRow]) -> Result<Keyring, KeyringError> {
        let signer = rows.iter().find(|r| r.retired_at.is_none()).or(rows.first());
        let Some(signer) = signer else {
            return Err(KeyringError::Store(StoreError::Corrupt("no server key".into())));
        };
        let signing = EncodingKey::from_ed_pem(signer.private_pem.as_bytes())
            .map_err(|e| KeyringError::Key(signer.kid.clone(), e))?;
        let keys = rows
            .iter()
            .map(|r| {
                Ok(Key {
                    kid: r.kid.clone(),
                    public_x: r.public_x.clone(),
                    decoding: DecodingKey::from_ed_components(&r.public_x)
                        .map_err(|e| KeyringError::Key(r.kid.clone(), e))?,
                })
            })
            .collect::<Result<Vec<_>, KeyringError>>()?;
        Ok(Keyring { signing_kid: signer.kid.clone(), signing, keys })
    }

    /// The key ids, signing key first (to tell whether a reload changed anything).
    fn kids(&self) -> Vec<&str> {
        std::iter::once(self.signing_kid.as_str()).chain(self.keys.iter().map(|k| k.kid.as_str())).collect()
    }

    /// Signs a certificate.
    pub fn sign(&self, claims: &CertificateClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some("haven-attendance+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    /// Checks a certificate and returns what it says.
    pub fn verify(&self, token: &str) -> Result<CertificateClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Malformed);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or(VerifyError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.validate_aud = false;
        // Only this server's keys sign, so the signature proves the origin; `iss` (the public URL
        // at signing time, or the legacy "haven") tells an offline verifier where the keys are.
        v.set_required_spec_claims(&["iss", "sub"]);
        jsonwebtoken::decode::<CertificateClaims>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
                _ => VerifyError::Malformed,
            }
        })
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": k.public_x, "kid": k.kid, "alg": "EdDSA", "use": "sig"})
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The id of the key that signs now.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }
}

/// The keyring a running server uses, reloaded from the database: a key rotated by
/// `haven rotate-key`, or by another node of a cluster (the keyring lives in the shared database),
/// reaches every running node within `RELOAD_EVERY`, and at once for a verification that names a
/// key this node has not seen yet.
pub struct LiveKeyring {
    current: std::sync::RwLock<std::sync::Arc<Keyring>>,
}

/// How often a running server reloads its keyring.
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl LiveKeyring {
    pub fn new(k: Keyring) -> LiveKeyring {
        LiveKeyring { current: std::sync::RwLock::new(std::sync::Arc::new(k)) }
    }

    /// The keyring now (cheap: a read lock and a reference count).
    pub fn get(&self) -> std::sync::Arc<Keyring> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads from the database; true when the keys changed.
    pub async fn reload(&self, store: &Store) -> Result<bool, KeyringError> {
        let fresh = Keyring::from_rows(&store.server_keys().await?)?;
        let changed = fresh.kids() != self.get().kids();
        if changed {
            tracing::info!(signing = %fresh.signing_kid, "certificate keys reloaded");
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(fresh);
        }
        Ok(changed)
    }

    /// Verifies with the current keys; a key id this node does not know yet makes it reload once.
    pub async fn verify(&self, store: &Store, token: &str) -> Result<CertificateClaims, VerifyError> {
        match self.get().verify(token) {
            Err(VerifyError::UnknownKey) => {
                if let Err(e) = self.reload(store).await {
                    tracing::warn!(error = %e, "cannot reload certificate keys");
                }
                self.get().verify(token)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> CertificateClaims {
        CertificateClaims {
            iss: "https://meet.example.org".into(),
            sub: "ref-1".into(),
            jti: "att_1".into(),
            iat: 1,
            program: "p1".into(),
            meeting: CertMeeting { id: "m1".into(), title: "Group".into(), scheduled_start: None, scheduled_end: None },
            minutes_present: 50,
            first_admitted: None,
            last_left: None,
            interruptions: 0,
            policy: CreditPolicy::default(),
            verdict: Verdict { credited: true, rule: "met".into() },
        }
    }

    #[test]
    fn signs_verifies_and_rejects_a_changed_byte() {
        let ring = Keyring::from_rows(&[generate_key(1)]).unwrap();
        let cert = ring.sign(&claims()).unwrap();
        assert_eq!(ring.verify(&cert).unwrap(), claims());
        // Flip one character in the payload.
        let mut parts: Vec<String> = cert.split('.').map(String::from).collect();
        let mut p: Vec<u8> = parts[1].clone().into_bytes();
        p[10] = if p[10] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(p).unwrap();
        assert!(ring.verify(&parts.join(".")).is_err());
    }

    #[test]
    fn a_rotated_out_key_still_verifies_and_the_new_one_signs() {
        let old = generate_key(1);
        let ring_old = Keyring::from_rows(std::slice::from_ref(&old)).unwrap();
        let cert = ring_old.sign(&claims()).unwrap();
        let new = generate_key(2);
        let retired = KeyRow { retired_at: Some(2), ..old };
        let ring = Keyring::from_rows(&[new.clone(), retired]).unwrap();
        assert_eq!(ring.signing_kid(), new.kid);
        assert_eq!(ring.verify(&cert).unwrap().jti, "att_1");
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        let other = Keyring::from_rows(&[generate_key(3)]).unwrap();
        assert_eq!(other.verify(&cert), Err(VerifyError::UnknownKey));
    }
}

//! Who may do what: programs, their API keys and the join tokens they sign.

pub mod join_token;
pub mod resume;

use crate::config::TokenAlg;
use crate::store::ProgramRow;
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// A program, ready to verify its tokens and recognise its API key.
pub struct Program {
    pub id: String,
    pub name: String,
    pub alg: TokenAlg,
    pub decoding_key: DecodingKey,
    /// The raw key material (secret or PEM), kept to mint tokens for HS256 programs.
    pub(crate) key_material: secrecy::SecretString,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("id", &self.id).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Why a program's stored key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("program {0}: unknown token algorithm `{1}` (use HS256, EdDSA or RS256)")]
    Algorithm(String, String),
    #[error("program {0}: token key does not parse for {1}: {2}")]
    Key(String, &'static str, String),
    #[error("program {0}: api_key_sha256 must be 64 hex digits")]
    ApiKeyHash(String),
    #[error("program {0}: an HS256 secret must be at least 32 bytes")]
    ShortSecret(String),
}

/// The SHA-256 of an API key, hex. API keys are 256-bit random strings, so a plain hash is
/// enough to keep a leaked database from revealing them (no password-style stretching needed).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh random API key (`hk_` + 43 url-safe characters).
pub fn new_api_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!("hk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh random HS256 secret (43 url-safe characters, 256 bits).
pub fn new_hs256_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// All programs, by id and by API-key hash. Built once at start; programs change with a restart.
#[derive(Debug, Default)]
pub struct Programs {
    by_id: HashMap<String, Arc<Program>>,
    by_key_hash: HashMap<[u8; 32], String>,
}

impl Programs {
    /// Builds the registry from stored programs, refusing any with an unusable key.
    pub fn from_rows(rows: &[ProgramRow]) -> Result<Programs, ProgramError> {
        let mut out = Programs::default();
        for r in rows {
            let alg = TokenAlg::parse(&r.token_alg)
                .ok_or_else(|| ProgramError::Algorithm(r.id.clone(), r.token_alg.clone()))?;
            let decoding_key = match alg {
                TokenAlg::HS256 => {
                    if r.token_key.len() < 32 {
                        return Err(ProgramError::ShortSecret(r.id.clone()));
                    }
                    DecodingKey::from_secret(r.token_key.as_bytes())
                }
                TokenAlg::EdDSA => DecodingKey::from_ed_pem(r.token_key.as_bytes())
                    .map_err(|e| ProgramError::Key(r.id.clone(), "EdDSA", e.to_string()))?,
                TokenAlg::RS256 => DecodingKey::from_rsa_pem(r.token_key.as_bytes())
                    .map_err(|e| ProgramError::Key(r.id.clone(), "RS256", e.to_string()))?,
            };
            let mut hash = [0u8; 32];
            hex::decode_to_slice(r.api_key_sha256.trim(), &mut hash)
                .map_err(|_| ProgramError::ApiKeyHash(r.id.clone()))?;
            out.by_key_hash.insert(hash, r.id.clone());
            out.by_id.insert(
                r.id.clone(),
                Arc::new(Program {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    alg,
                    decoding_key,
                    key_material: r.token_key.clone().into(),
                }),
            );
        }
        Ok(out)
    }

    /// A program by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Program>> {
        self.by_id.get(id)
    }

    /// The program an API key belongs to.
    pub fn by_api_key(&self, key: &str) -> Option<&Arc<Program>> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_key_hash.get(&hash).and_then(|id| self.by_id.get(id))
    }

    /// Whether any program exists.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

//! Join tokens: JWTs a program signs for one member, one meeting and one role.
//!
//! Each program has exactly one algorithm. The header's `alg` is checked against it before the
//! signature, and `none` is refused by name, so neither algorithm confusion nor unsigned tokens
//! get through. Every refusal has its own stable code.

use super::{Program, Programs};
use crate::config::TokenAlg;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The audience every join token must name.
pub const AUDIENCE: &str = "haven";

/// The role a token grants. Co-facilitators are made in the meeting, by promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    Facilitator,
    Member,
    Observer,
}

impl From<TokenRole> for crate::protocol::Role {
    fn from(r: TokenRole) -> Self {
        match r {
            TokenRole::Facilitator => crate::protocol::Role::Facilitator,
            TokenRole::Member => crate::protocol::Role::Member,
            TokenRole::Observer => crate::protocol::Role::Observer,
        }
    }
}

/// The claims of a join token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The program id.
    pub iss: String,
    /// The program's reference for the member. Never shown to other participants or logged.
    pub sub: String,
    pub aud: String,
    /// The meeting, as the program names it: one of its own meetings by its id, a meeting another
    /// program shares with it as `<owner program id>/<meeting id>`, or a series as `series:<id>`.
    pub meeting: String,
    pub role: TokenRole,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a token was refused. The codes are part of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no join token given (Authorization: Bearer, or the `token` query parameter)")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("unsigned tokens (alg: none) are not accepted")]
    AlgNone,
    #[error("the token's algorithm is not the one configured for its program")]
    WrongAlgorithm,
    #[error("the token's program is not known here")]
    UnknownProgram,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not meant for Haven (aud)")]
    WrongAudience,
    #[error("the token lacks a required claim (iss, sub, aud, exp, meeting, role)")]
    MissingClaim,
}

impl TokenError {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::AlgNone => "token_alg_none",
            TokenError::WrongAlgorithm => "token_wrong_algorithm",
            TokenError::UnknownProgram => "token_unknown_program",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::MissingClaim => "token_missing_claim",
        }
    }
}

fn algorithm(alg: TokenAlg) -> Algorithm {
    match alg {
        TokenAlg::HS256 => Algorithm::HS256,
        TokenAlg::EdDSA => Algorithm::EdDSA,
        TokenAlg::RS256 => Algorithm::RS256,
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

fn b64_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies a join token: header, program, algorithm, signature, times, audience, claims.
pub fn verify(programs: &Programs, token: &str, leeway_seconds: u64) -> Result<(Arc<Program>, JoinClaims), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: RawHeader = b64_json(header)?;
    let alg = header.alg.ok_or(TokenError::Malformed)?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let iss = b64_json::<IssuerOnly>(payload)?.iss.ok_or(TokenError::MissingClaim)?;
    let program = programs.get(&iss).ok_or(TokenError::UnknownProgram)?;
    if alg != program.alg.as_str() {
        return Err(TokenError::WrongAlgorithm);
    }
    let mut v = Validation::new(algorithm(program.alg));
    v.leeway = leeway_seconds;
    v.validate_nbf = true;
    v.set_audience(&[AUDIENCE]);
    v.set_issuer(&[program.id.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = jsonwebtoken::decode::<JoinClaims>(token, &program.decoding_key, &v).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::UnknownProgram,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
        // serde could not fill the claims: a required Haven claim is missing or mistyped.
        ErrorKind::Json(_) => TokenError::MissingClaim,
        _ => TokenError::Malformed,
    })?;
    let claims = data.claims;
    if claims.sub.is_empty() || claims.meeting.is_empty() {
        return Err(TokenError::MissingClaim);
    }
    Ok((program.clone(), claims))
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("program {0} verifies tokens with a public key; give its private key with --signing-key")]
    NeedsPrivateKey(String),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Signs join claims as `program` would. HS256 programs sign with their stored secret; others need
/// the private key in PEM.
pub fn mint(program: &Program, claims: &JoinClaims, private_pem: Option<&[u8]>) -> Result<String, MintError> {
    let key = match (program.alg, private_pem) {
        (TokenAlg::HS256, _) => EncodingKey::from_secret(program.key_material.expose_secret().as_bytes()),
        (TokenAlg::EdDSA, Some(pem)) => EncodingKey::from_ed_pem(pem)?,
        (TokenAlg::RS256, Some(pem)) => EncodingKey::from_rsa_pem(pem)?,
        _ => return Err(MintError::NeedsPrivateKey(program.id.clone())),
    };
    Ok(jsonwebtoken::encode(&Header::new(algorithm(program.alg)), claims, &key)?)
}

/// Claims for `member` of `program` in `meeting`, valid from now for `ttl_seconds`.
pub fn claims_for(program: &str, meeting: &str, member: &str, role: TokenRole, ttl_seconds: u64) -> JoinClaims {
    let now = jsonwebtoken::get_current_timestamp();
    JoinClaims {
        iss: program.to_string(),
        sub: member.to_string(),
        aud: AUDIENCE.to_string(),
        meeting: meeting.to_string(),
        role,
        exp: now + ttl_seconds,
        nbf: Some(now.saturating_sub(1)),
        iat: Some(now),
        jti: Some(hex::encode(rand::random::<[u8; 12]>())),
    }
}

//! Resume tokens: `hvr.<base64url meeting id>.<base64url(16 random bytes ‖ 16-byte MAC)>`.
//!
//! The room holds the live token and decides whether it is the current one; the MAC (HMAC-SHA256
//! under a key made at start, or in cluster mode derived from the cluster's shared secret) lets
//! the upgrade refuse a forged token before it holds a connection slot, without asking the room.
//! On a single node tokens do not outlive the process, and neither do live rooms; in a cluster
//! they outlive their node, since rooms do (snapshots).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::OnceLock;

const RANDOM: usize = 16;
const TAG: usize = 16;
/// Length of the base64url secret part: 32 bytes without padding.
const SECRET_B64: usize = 43;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

fn key() -> &'static [u8; 32] {
    KEY.get_or_init(rand::random)
}

/// Cluster mode: every node uses the key derived from the cluster's secret, so a token minted by
/// one node is accepted by the node that takes the meeting over. Set once, before any token is
/// minted; false when this process already uses another key.
pub fn use_shared_key(shared: [u8; 32]) -> bool {
    KEY.get_or_init(|| shared) == &shared
}

fn mac(meeting: &str, random: &[u8]) -> Hmac<Sha256> {
    // `new_from_slice` accepts any key length for HMAC.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key()).unwrap_or_else(|_| unreachable!());
    m.update(meeting.as_bytes());
    m.update(random);
    m
}

/// A fresh resume token for `meeting`.
pub fn mint(meeting: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let random: [u8; RANDOM] = rand::random();
    let tag = mac(meeting, &random).finalize().into_bytes();
    let mut secret = [0u8; RANDOM + TAG];
    secret[..RANDOM].copy_from_slice(&random);
    secret[RANDOM..].copy_from_slice(&tag[..TAG]);
    format!("hvr.{}.{}", b64.encode(meeting.as_bytes()), b64.encode(secret))
}

fn split(token: &str) -> Option<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some("hvr"), Some(m), Some(r), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if r.len() != SECRET_B64 || m.len() > 128 {
        return None;
    }
    let meeting = String::from_utf8(b64.decode(m).ok()?).ok()?;
    let secret = b64.decode(r).ok()?;
    (secret.len() == RANDOM + TAG).then_some((meeting, secret))
}

/// The meeting id inside a token of the right shape (not checked for authenticity).
pub fn meeting_of(token: &str) -> Option<String> {
    split(token).map(|(m, _)| m)
}

/// The meeting id of a token this server minted (MAC checked in constant time); `None` for a
/// forged or malformed one. Whether it is still the participant's current token is the room's call.
pub fn verify(token: &str) -> Option<String> {
    let (meeting, secret) = split(token)?;
    mac(&meeting, &secret[..RANDOM]).verify_truncated_left(&secret[RANDOM..]).ok()?;
    Some(meeting)
}

/// Compares two tokens in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_name_their_meeting() {
        let t = mint("demo-1");
        assert_eq!(verify(&t).as_deref(), Some("demo-1"));
        assert_eq!(meeting_of(&t).as_deref(), Some("demo-1"));
    }

    #[test]
    fn forged_tokens_of_the_right_shape_do_not_verify() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = format!("hvr.{}.{}", b64.encode("demo-1"), b64.encode([7u8; 32]));
        assert_eq!(meeting_of(&forged).as_deref(), Some("demo-1"), "shape is right");
        assert_eq!(verify(&forged), None);
        // A genuine secret moved to another meeting does not verify either.
        let t = mint("demo-1");
        let moved = format!("hvr.{}.{}", b64.encode("demo-2"), t.rsplit('.').next().unwrap());
        assert_eq!(verify(&moved), None);
        assert_eq!(verify("hvr.x.y"), None);
        assert_eq!(verify("eyJhbGciOi.x.y"), None);
    }

    #[test]
    fn same_compares_whole_tokens() {
        let t = mint("m");
        assert!(same(&t, &t.clone()));
        assert!(!same(&t, &mint("m")));
        assert!(!same(&t, &t[..t.len() - 1]));
        assert!(!same("", "a"));
    }
}

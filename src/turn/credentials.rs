//! TURN REST credentials: username `<expiry, Unix seconds>:<participant id>`, password
//! `base64(HMAC-SHA1(secret, username))` (the scheme coturn and browsers' deployments use). The
//! server checks the expiry and recomputes the password; it stores nothing per credential.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a participant is given for its `RTCPeerConnection`'s `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// The signing key (never printed).
#[derive(Clone)]
pub struct TurnSecret(Arc<[u8]>);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

impl TurnSecret {
    pub fn new(key: &[u8]) -> TurnSecret {
        TurnSecret(key.into())
    }

    pub fn random() -> TurnSecret {
        TurnSecret::new(&rand::random::<[u8; 32]>())
    }

    /// The password for `username`.
    pub fn password(&self, username: &str) -> String {
        // HMAC accepts keys of any length.
        let mut mac = match Hmac::<Sha1>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(username.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The long-term key (RFC 5389 §15.4) for `username`, if it is one of ours and not expired at
    /// `now_s`.
    pub fn key_for(&self, username: &str, realm: &str, now_s: u64) -> Option<Vec<u8>> {
        let (expiry, participant) = username.split_once(':')?;
        let expiry: u64 = expiry.parse().ok()?;
        if expiry < now_s || participant.is_empty() {
            return None;
        }
        let password = self.password(username);
        Some(turn::auth::generate_auth_key(username, realm, &password))
    }
}

impl TurnSecret {
    /// [`Self::key_for`] now.
    pub fn key_now(&self, username: &str, realm: &str) -> Option<Vec<u8>> {
        let now_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.key_for(username, realm, now_s)
    }
}

impl turn::auth::AuthHandler for TurnSecret {
    fn auth_handle(&self, username: &str, realm: &str, _src: SocketAddr) -> Result<Vec<u8>, turn::Error> {
        // Refused the same way whether unknown, forged or expired: the client gets 401.
        self.key_now(username, realm).ok_or_else(|| turn::Error::Other("credential refused".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_accepted_until_it_expires_and_only_with_its_own_key() {
        let s = TurnSecret::new(b"k1");
        let user = "1000:p1";
        let key = s.key_for(user, "haven", 999).expect("valid before expiry");
        assert_eq!(key, turn::auth::generate_auth_key(user, "haven", &s.password(user)));
        assert!(s.key_for(user, "haven", 1000).is_some(), "valid at the expiry second");
        assert!(s.key_for(user, "haven", 1001).is_none(), "expired");
        assert!(s.key_for("p1", "haven", 0).is_none(), "no expiry");
        assert!(s.key_for("soon:p1", "haven", 0).is_none());
        // Another server's key gives another password.
        assert_ne!(TurnSecret::new(b"k2").password(user), s.password(user));
    }
}

//! Join tokens, minted as a program would: HS256 JWTs with `iss`, `sub`, `aud`, `meeting`, `role`, `exp`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The audience Haven requires.
pub const AUDIENCE: &str = "haven";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    meeting: &'a str,
    role: &'a str,
    exp: u64,
    iat: u64,
}

/// Signs join tokens for one program.
pub struct Minter {
    program: String,
    key: EncodingKey,
    header: Header,
}

impl Minter {
    pub fn new(program: &str, secret: &str) -> Minter {
        Minter {
            program: program.to_string(),
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
        }
    }

    /// A token for `member` in `meeting` with `role` (`member` or `facilitator`), valid for `ttl_seconds`.
    pub fn mint(&self, meeting: &str, member: &str, role: &str, ttl_seconds: u64) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            Claims { iss: &self.program, sub: member, aud: AUDIENCE, meeting, role, exp: now + ttl_seconds, iat: now };
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_same_secret() {
        let secret = "0123456789abcdef0123456789abcdef-load";
        let t = Minter::new("load", secret).mint("m1", "u1", "member", 60).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        let d = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &v,
        )
        .unwrap();
        assert_eq!(d.claims["iss"], "load");
        assert_eq!(d.claims["meeting"], "m1");
        assert_eq!(d.claims["role"], "member");
    }
}

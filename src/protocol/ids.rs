//! Identifiers that appear on the wire.
//!
//! A participant id is random per meeting (never derived from the member reference), so it
//! cannot link a person across meetings. It is `Copy` so the room core can pass it freely.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A participant's id within one meeting: `p` followed by 12 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(u64);

impl ParticipantId {
    const MASK: u64 = 0xffff_ffff_ffff;

    /// Builds an id from random bits (only the low 48 bits are used).
    pub fn from_random(bits: u64) -> Self {
        ParticipantId(bits & Self::MASK)
    }

    /// Parses the wire form `p` + 12 hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix('p')?;
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(ParticipantId)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{:012x}", self.0)
    }
}

impl Serialize for ParticipantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ParticipantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ParticipantId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("participant_id must be `p` followed by 12 hex digits"))
    }
}

impl JsonSchema for ParticipantId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ParticipantId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^p[0-9a-f]{12}$",
            "description": "A participant's id, random per meeting."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_id_round_trips_and_rejects_other_forms() {
        let id = ParticipantId::from_random(0xdead_beef_cafe_f00d);
        let s = id.to_string();
        assert_eq!(s, "pbeefcafef00d");
        assert_eq!(ParticipantId::parse(&s), Some(id));
        for bad in ["", "p", "pBEEFCAFEF00D", "x0000000000000", "p0000000000000", "p00000000000g"] {
            assert_eq!(ParticipantId::parse(bad), None, "{bad}");
        }
    }
}

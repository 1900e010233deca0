//! Which session a UDP datagram belongs to, in O(1).
//!
//! A known source address maps to its session. A datagram from an unknown address can only be a
//! session's first ICE connectivity check: a STUN binding request whose USERNAME is
//! `<our ufrag>:<their ufrag>`, so the local ufrag names the session (one hash lookup). Anything
//! else from an unknown address is dropped without touching any session: trying every peer would
//! let anyone make the media thread do work proportional to the number of participants.

use std::collections::HashMap;
use std::net::SocketAddr;

/// STUN magic cookie (RFC 5389).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// The USERNAME attribute.
const ATTR_USERNAME: u16 = 0x0006;

/// The local ufrag in a STUN message's USERNAME (`local:remote`), if `data` is STUN and has one.
pub(super) fn stun_local_ufrag(data: &[u8]) -> Option<&[u8]> {
    // Header: 2 bits zero, type (14), length (16), cookie (32), transaction id (96).
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if ty == ATTR_USERNAME {
            let colon = value.iter().position(|&b| b == b':')?;
            return Some(&value[..colon]);
        }
        // Attributes are padded to 4 bytes.
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// Session lookups by source address and by local ICE ufrag.
#[derive(Default)]
pub(super) struct Demux {
    by_addr: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<Box<[u8]>, usize>,
}

impl Demux {
    pub(super) fn add_session(&mut self, ufrag: &str, idx: usize) {
        self.by_ufrag.insert(ufrag.as_bytes().into(), idx);
    }

    /// Forgets a session's ufrag and every address that led to it.
    pub(super) fn remove_session(&mut self, idx: usize) {
        self.by_ufrag.retain(|_, &mut i| i != idx);
        self.by_addr.retain(|_, &mut i| i != idx);
    }

    /// The session a datagram from `source` is for, by address, or for an unknown address by
    /// the STUN USERNAME. `None`: drop it.
    pub(super) fn route(&self, data: &[u8], source: SocketAddr) -> Option<Route> {
        if let Some(&i) = self.by_addr.get(&source) {
            return Some(Route::Known(i));
        }
        let ufrag = stun_local_ufrag(data)?;
        self.by_ufrag.get(ufrag).map(|&i| Route::New(i))
    }

    /// The session a STUN request names by its USERNAME (for a new ICE-TCP connection).
    pub(super) fn route_by_ufrag(&self, data: &[u8]) -> Option<usize> {
        self.by_ufrag.get(stun_local_ufrag(data)?).copied()
    }

    /// Remembers the address once the session accepted a datagram from it.
    pub(super) fn learn(&mut self, source: SocketAddr, idx: usize) {
        self.by_addr.insert(source, idx);
    }

    /// Known addresses (diagnostics).
    pub(super) fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

/// How a datagram was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// From an address this session already uses.
    Known(usize),
    /// A STUN request naming this session's ufrag from a new address.
    New(usize),
}

#[cfg(test)]
pub(super) fn binding_request(username: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    // A PRIORITY attribute after it, as browsers send.
    attr.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&attr);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn stun_username_gives_the_local_ufrag() {
        assert_eq!(stun_local_ufrag(&binding_request("srvA:cli1")), Some(&b"srvA"[..]));
        // Not STUN: RTP, DTLS, a truncated message, no USERNAME.
        assert_eq!(stun_local_ufrag(&[0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42]), None);
        assert_eq!(stun_local_ufrag(&[22, 254, 253, 0, 0]), None);
        let mut cut = binding_request("srvA:cli1");
        cut.truncate(26);
        assert_eq!(stun_local_ufrag(&cut), None);
        let mut bare = binding_request("srvA:cli1");
        bare.truncate(20);
        bare[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(stun_local_ufrag(&bare), None);
    }

    #[test]
    fn unknown_sources_are_routed_by_ufrag_and_anything_else_is_dropped() {
        let mut d = Demux::default();
        // Many sessions: the route depends only on the ufrag, never on trying sessions in turn.
        for i in 0..10_000 {
            d.add_session(&format!("u{i}"), i);
        }
        assert_eq!(d.route(&binding_request("u7321:x"), addr(1000)), Some(Route::New(7321)));
        assert_eq!(d.route(&binding_request("nosuch:x"), addr(1000)), None);
        // Non-STUN from an unknown address: dropped at once.
        assert_eq!(d.route(&[0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], addr(1000)), None);
        d.learn(addr(1000), 7321);
        assert_eq!(d.route(&[0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], addr(1000)), Some(Route::Known(7321)));
        d.remove_session(7321);
        assert_eq!(d.route(&binding_request("u7321:x"), addr(1000)), None);
        assert_eq!(d.addresses(), 0);
    }
}

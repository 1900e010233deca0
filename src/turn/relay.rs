//! Not an open relay: peers are this server's media addresses, nothing else.
//!
//! Two layers. `Guarded` wraps each listener and answers a CreatePermission or ChannelBind that
//! names any other peer with 403 Forbidden (and drops such Send indications) before the `turn`
//! crate sees them. `MediaOnly` makes every allocation's relay socket a `RelayConn` that sends only
//! to media addresses and takes datagrams only from them, whatever passed the first layer.

use super::MediaAddrs;
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use stun::message::{Message, MessageType, Setter, CLASS_ERROR_RESPONSE};
use util::Conn;

const MAGIC_COOKIE: u32 = 0x2112_a442;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
/// TURN methods that name a peer (RFC 5766).
const SEND: u16 = 0x006;
const CREATE_PERMISSION: u16 = 0x008;
const CHANNEL_BIND: u16 = 0x009;
const CLASS_REQUEST: u16 = 0;
/// Relay sockets open at once, for everyone (each is a UDP socket; a participant's browser opens
/// about three). Beyond it an Allocate is refused and the browser uses another path.
pub(super) const MAX_ALLOCATIONS: i64 = 8192;

/// The peers (XOR-PEER-ADDRESS values) a STUN message names.
fn peer_addresses(m: &Message) -> Vec<Option<SocketAddr>> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ.0 == ATTR_XOR_PEER_ADDRESS)
        .map(|a| xor_address(&a.value, &m.transaction_id.0))
        .collect()
}

fn xor_address(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(tid);
    match (v[1], v.len()) {
        (0x01, 8) => {
            let mut ip = [0u8; 4];
            for i in 0..4 {
                ip[i] = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// The method of a STUN message, from its type field (RFC 5389 §6), without decoding it.
fn stun_method(data: &[u8]) -> Option<(u16, u16)> {
    if data.len() < 20 || data[0] & 0xc0 != 0 {
        return None;
    }
    let t = u16::from_be_bytes([data[0], data[1]]);
    let method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
    let class = ((t & 0x0010) >> 4) | ((t & 0x0100) >> 7);
    Some((method, class))
}

/// What to do with a message from a client.
#[derive(Debug)]
enum Verdict {
    Pass,
    Drop,
    /// Answer 403 to this request.
    Forbid(Message),
}

fn judge(data: &[u8], allowed: &MediaAddrs) -> Verdict {
    let Some((method, class)) = stun_method(data) else { return Verdict::Pass };
    if method != CREATE_PERMISSION && method != CHANNEL_BIND && method != SEND {
        return Verdict::Pass;
    }
    let mut msg = Message::new();
    msg.raw = data.to_vec();
    if msg.decode().is_err() {
        return Verdict::Drop;
    }
    let peers = peer_addresses(&msg);
    if !peers.is_empty() && peers.iter().all(|p| p.is_some_and(|a| allowed.contains_key(&a))) {
        return Verdict::Pass;
    }
    // A Send indication (or anything but a request) to another peer: dropped, as RFC 5766 drops
    // indications without permission.
    if class != CLASS_REQUEST {
        return Verdict::Drop;
    }
    let mut res = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(msg.transaction_id),
        Box::new(MessageType::new(msg.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(stun::error_code::ErrorCodeAttribute {
            code: stun::error_code::CODE_FORBIDDEN,
            reason: b"this relay reaches the meeting server only".to_vec(),
        }),
    ];
    if res.build(&setters).is_err() {
        return Verdict::Drop;
    }
    Verdict::Forbid(res)
}

/// A listener's connection with the permission check in front of the `turn` crate.
pub(super) struct Guarded {
    inner: Arc<dyn Conn + Send + Sync>,
    allowed: MediaAddrs,
    metrics: Arc<Metrics>,
}

impl Guarded {
    pub(super) fn new(inner: Arc<dyn Conn + Send + Sync>, allowed: MediaAddrs, metrics: Arc<Metrics>) -> Guarded {
        Guarded { inner, allowed, metrics }
    }
}

#[async_trait]
impl Conn for Guarded {
    async fn connect(&self, addr: SocketAddr) -> util::Result<()> {
        self.inner.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            match judge(&buf[..n], &self.allowed) {
                Verdict::Pass => return Ok((n, from)),
                Verdict::Drop => {
                    self.metrics.turn_refused_peers.inc();
                }
                Verdict::Forbid(res) => {
                    self.metrics.turn_refused_peers.inc();
                    let _ = self.inner.send_to(&res.raw, from).await;
                }
            }
        }
    }
    async fn send(&self, buf: &[u8]) -> util::Result<usize> {
        self.inner.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> util::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }
    async fn close(&self) -> util::Result<()> {
        self.inner.close().await
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// Allocates relay sockets that reach media addresses only.
pub(super) struct MediaOnly {
    pub(super) bind: IpAddr,
    pub(super) advertise: IpAddr,
    pub(super) allowed: MediaAddrs,
    pub(super) metrics: Arc<Metrics>,
    /// Where each relay socket's datagrams come from, as the media engines see them.
    pub(super) relays: crate::sfu::RelayAddrs,
}

#[async_trait]
impl turn::relay::RelayAddressGenerator for MediaOnly {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        _use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        if self.metrics.turn_allocations.get() >= MAX_ALLOCATIONS {
            return Err(turn::Error::Other("relay full".into()));
        }
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(self.bind, requested_port))
            .await
            .map_err(|e| turn::Error::Other(e.to_string()))?;
        let port = socket.local_addr().map_err(|e| turn::Error::Other(e.to_string()))?.port();
        let relayed = SocketAddr::new(self.advertise, port);
        self.metrics.turn_allocations.inc();
        // The socket sends to the engines' local addresses: from loopback when it is bound to
        // every interface, else from its own address.
        let source = match self.bind {
            ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::from([127, 0, 0, 1]),
            ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let sources = [SocketAddr::new(source, port), relayed];
        for a in sources {
            self.relays.insert(a);
        }
        let conn = RelayConn {
            socket,
            relayed,
            allowed: self.allowed.clone(),
            allocations: self.metrics.turn_allocations.clone(),
            closed: tokio_util::sync::CancellationToken::new(),
            sources,
            relays: self.relays.clone(),
        };
        Ok((Arc::new(conn), relayed))
    }
}

/// An allocation's relay socket. Media addresses are given to clients as advertised (perhaps a
/// public address behind NAT); the socket sends to the matching local address and reports
/// datagrams from it under the advertised one, so the client sees one consistent peer.
struct RelayConn {
    socket: tokio::net::UdpSocket,
    relayed: SocketAddr,
    allowed: MediaAddrs,
    /// Counted while the allocation holds this socket.
    allocations: prometheus_client::metrics::gauge::Gauge,
    /// Closed with its allocation: ends the crate's read loop, which frees the socket.
    closed: tokio_util::sync::CancellationToken,
    /// This socket's entries in `relays`, removed with it.
    sources: [SocketAddr; 2],
    relays: crate::sfu::RelayAddrs,
}

impl Drop for RelayConn {
    fn drop(&mut self) {
        self.allocations.dec();
        for a in &self.sources {
            self.relays.remove(a);
        }
    }
}

#[async_trait]
impl Conn for RelayConn {
    async fn connect(&self, _addr: SocketAddr) -> util::Result<()> {
        Err(util::Error::Other("not supported".into()))
    }
    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = tokio::select! {
                r = self.socket.recv_from(buf) => r.map_err(|e| util::Error::Other(e.to_string()))?,
                _ = self.closed.cancelled() => return Err(util::Error::ErrUseClosedNetworkConn),
            };
            // Datagrams from anyone but the media engines are dropped here.
            let advertised = self.allowed.iter().find(|(adv, local)| **local == from && **adv != from).map(|(a, _)| *a);
            match advertised {
                Some(a) => return Ok((n, a)),
                None if self.allowed.contains_key(&from) => return Ok((n, from)),
                None => {}
            }
        }
    }
    async fn send(&self, _buf: &[u8]) -> util::Result<usize> {
        Err(util::Error::Other("not supported".into()))
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        let Some(&to) = self.allowed.get(&target) else {
            return Err(util::Error::Other("this relay reaches the meeting server only".into()));
        };
        self.socket.send_to(buf, to).await.map_err(|e| util::Error::Other(e.to_string()))
    }
    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.relayed)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> util::Result<()> {
        self.closed.cancel();
        Ok(())
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use stun::agent::TransactionId;

    fn permission(peer: SocketAddr) -> Vec<u8> {
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(stun::message::METHOD_CREATE_PERMISSION, stun::message::CLASS_REQUEST)),
            Box::new(turn::proto::peeraddr::PeerAddress { ip: peer.ip(), port: peer.port() }),
        ];
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn permissions_for_media_addresses_pass_and_any_other_is_forbidden() {
        let media: SocketAddr = "203.0.113.10:50000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let allowed: MediaAddrs = Arc::new(HashMap::from([(media, local), (local, local)]));
        assert!(matches!(judge(&permission(media), &allowed), Verdict::Pass));
        let Verdict::Forbid(res) = judge(&permission("203.0.113.10:50001".parse().unwrap()), &allowed) else {
            panic!("another port of the same host is refused");
        };
        assert_eq!(res.typ, MessageType::new(stun::message::METHOD_CREATE_PERMISSION, CLASS_ERROR_RESPONSE));
        assert!(matches!(judge(&permission("[2001:db8::1]:9".parse().unwrap()), &allowed), Verdict::Forbid(_)));
        // Not STUN (ChannelData, RTP): not this layer's business.
        assert!(matches!(judge(&[0x40, 0, 0, 4, 1, 2, 3, 4], &allowed), Verdict::Pass));
    }

    #[tokio::test]
    async fn a_relay_socket_sends_to_and_hears_from_media_addresses_only() {
        let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = media.local_addr().unwrap();
        // Advertised under a public address, reached locally.
        let advertised: SocketAddr = SocketAddr::new("203.0.113.10".parse().unwrap(), local.port());
        let allowed: MediaAddrs = Arc::new(HashMap::from([(advertised, local), (local, local)]));
        let m = Metrics::new();
        let gen = MediaOnly {
            bind: "127.0.0.1".parse().unwrap(),
            advertise: "203.0.113.10".parse().unwrap(),
            allowed,
            metrics: Arc::new(m),
            relays: Default::default(),
        };
        let (relay, relayed) = turn::relay::RelayAddressGenerator::allocate_conn(&gen, true, 0).await.unwrap();
        assert_eq!(relayed.ip().to_string(), "203.0.113.10");
        assert_eq!(gen.metrics.turn_allocations.get(), 1);
        assert!(gen.relays.contains(&SocketAddr::new("127.0.0.1".parse().unwrap(), relayed.port())));
        assert!(relay.send_to(b"no", other.local_addr().unwrap()).await.is_err(), "not an open relay");
        assert_eq!(relay.send_to(b"yes", advertised).await.unwrap(), 3);
        let mut buf = [0u8; 8];
        let (n, from) = media.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"yes");
        // A stranger's datagram is dropped; the media engine's arrives under its advertised address.
        other.send_to(b"stranger", from).await.unwrap();
        media.send_to(b"media", from).await.unwrap();
        let (n, src) = relay.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], src), (&b"media"[..], advertised));
        drop(relay);
        assert_eq!(gen.metrics.turn_allocations.get(), 0);
        assert!(gen.relays.is_empty(), "the relay's addresses go with it");
        // Full: refused.
        gen.metrics.turn_allocations.set(MAX_ALLOCATIONS);
        assert!(turn::relay::RelayAddressGenerator::allocate_conn(&gen, true, 0).await.is_err());
    }
}

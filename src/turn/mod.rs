//! The built-in TURN relay, for members whose network blocks UDP or allows only TCP (443).
//!
//! The protocol is the `turn` crate's (webrtc-rs). Around it, this module adds what a meeting
//! server needs:
//! - listeners for TURN over UDP, TCP and TLS (`stream`: the crate reads datagrams only, so TCP and
//!   TLS connections are unframed into one datagram-like connection per listener);
//! - short-lived credentials in the TURN REST style (`credentials`): the username is
//!   `<expiry>:<participant id>`, the password an HMAC of it; the server hands them out over the
//!   signaling socket, so no long-lived secret reaches a browser;
//! - a relay that is not open (`relay`): it relays only to this server's own media addresses. A
//!   CreatePermission or ChannelBind for any other peer is refused (403) before the crate sees it,
//!   and the relay sockets themselves send to, and accept from, media addresses only.

mod credentials;
mod relay;
mod stream;

pub use credentials::{Credentials, TurnSecret};

use crate::config::TurnConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The running relay: its addresses, and the credential issuer.
pub struct TurnHandle {
    /// Kept for its tasks' lifetime.
    _server: turn::server::Server,
    secret: TurnSecret,
    ttl_seconds: u64,
    urls: Vec<String>,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
}

impl std::fmt::Debug for TurnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnHandle").field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("TURN TLS certificate: {0}")]
    Certificate(String),
    #[error("TURN server: {0}")]
    Server(String),
}

impl TurnHandle {
    /// Credentials for one participant, valid for the configured time from `now_s` (Unix seconds).
    pub fn credentials(&self, participant_id: &str, now_s: u64) -> Credentials {
        let username = format!("{}:{participant_id}", now_s + self.ttl_seconds);
        let credential = self.secret.password(&username);
        Credentials { urls: self.urls.clone(), username, credential }
    }

    /// The key credentials are signed with (tests make expired or foreign ones with it).
    pub fn secret(&self) -> &TurnSecret {
        &self.secret
    }
}

/// Where a relay may send: each media address as advertised, with the local address the relay
/// actually sends to (the same machine: no hairpin through a NAT).
pub type MediaAddrs = Arc<HashMap<SocketAddr, SocketAddr>>;

fn media_addrs(addrs: &[(SocketAddr, SocketAddr)]) -> MediaAddrs {
    let mut m = HashMap::new();
    for &(advertised, local) in addrs {
        let mut target = local;
        if target.ip().is_unspecified() {
            target.set_ip(match target.ip() {
                IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        m.insert(advertised, target);
        m.insert(target, target);
    }
    Arc::new(m)
}

/// Starts the relay on `ip` (the listen address), telling clients `advertise`. `media` are the
/// SFU's (advertised, bound) UDP addresses: the only peers it relays to.
pub async fn start(
    config: &TurnConfig,
    ip: IpAddr,
    advertise: IpAddr,
    media: &[(SocketAddr, SocketAddr)],
    relays: crate::sfu::RelayAddrs,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<TurnHandle, TurnError> {
    let allowed = media_addrs(media);
    let guard = |c: Arc<dyn util::Conn + Send + Sync>| -> Arc<dyn util::Conn + Send + Sync> {
        Arc::new(relay::Guarded::new(c, allowed.clone(), metrics.clone()))
    };
    let secret = match &config.secret {
        Some(s) => TurnSecret::new(secrecy::ExposeSecret::expose_secret(s).as_bytes()),
        None => TurnSecret::random(),
    };
    let bind = |port| SocketAddr::new(ip, port);
    let udp_addr = bind(config.udp_port);
    let udp = tokio::net::UdpSocket::bind(udp_addr).await.map_err(|e| TurnError::Listen(udp_addr, e))?;
    let udp_local = udp.local_addr().map_err(|e| TurnError::Listen(udp_addr, e))?;
    let tcp_addr = bind(config.tcp_port);
    let tcp = tokio::net::TcpListener::bind(tcp_addr).await.map_err(|e| TurnError::Listen(tcp_addr, e))?;
    let tcp_local = tcp.local_addr().map_err(|e| TurnError::Listen(tcp_addr, e))?;
    let mut conns: Vec<Arc<dyn util::Conn + Send + Sync>> =
        vec![guard(Arc::new(udp)), guard(stream::listen(tcp, tcp_local, None, secret.clone()))];
    let mut tls_local = None;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let acceptor = stream::tls_acceptor(cert, key).map_err(TurnError::Certificate)?;
        let tls_addr = bind(config.tls_port);
        let l = tokio::net::TcpListener::bind(tls_addr).await.map_err(|e| TurnError::Listen(tls_addr, e))?;
        let local = l.local_addr().map_err(|e| TurnError::Listen(tls_addr, e))?;
        conns.push(guard(stream::listen(l, local, Some(acceptor), secret.clone())));
        tls_local = Some(local);
    }
    let conn_configs = conns
        .into_iter()
        .map(|conn| turn::server::config::ConnConfig {
            conn,
            relay_addr_generator: Box::new(relay::MediaOnly {
                bind: ip,
                advertise,
                allowed: allowed.clone(),
                metrics: metrics.clone(),
                relays: relays.clone(),
            }),
        })
        .collect();
    let server = turn::server::Server::new(turn::server::config::ServerConfig {
        conn_configs,
        realm: config.realm.clone(),
        auth_handler: Arc::new(secret.clone()),
        channel_bind_timeout: std::time::Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .map_err(|e| TurnError::Server(e.to_string()))?;
    let host = |port: u16| SocketAddr::new(advertise, port).to_string();
    let mut urls = vec![
        format!("turn:{}?transport=udp", host(udp_local.port())),
        format!("turn:{}?transport=tcp", host(tcp_local.port())),
    ];
    if let Some(t) = tls_local {
        let name = match &config.tls_host {
            Some(h) => format!("{h}:{}", t.port()),
            None => host(t.port()),
        };
        urls.push(format!("turns:{name}?transport=tcp"));
    }
    Ok(TurnHandle {
        _server: server,
        secret,
        ttl_seconds: config.credential_ttl_seconds,
        urls,
        udp: udp_local,
        tcp: tcp_local,
        tls: tls_local,
    })
}

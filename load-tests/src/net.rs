//! Client sockets: many loopback source addresses (so 10,000+ connections do not run out of
//! ephemeral ports), small WebSocket buffers, an abrupt close that sends RST.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// How clients reach the server.
pub struct Net {
    pub addr: SocketAddr,
    /// Number of loopback source addresses to spread connections over (127.0.0.1 ..= 127.0.0.N);
    /// 1 lets the kernel choose.
    pub source_ips: u32,
    next: AtomicUsize,
}

/// Why a connection did not open.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with an HTTP error (status, body).
    Http(u16, String),
    /// Socket or handshake failure.
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Http(s, b) => write!(f, "HTTP {s}: {b}"),
            ConnectError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl ConnectError {
    /// A short key for error tallies: `http_409_meeting_full`, `connect`, ...
    pub fn key(&self) -> String {
        match self {
            ConnectError::Http(s, b) => {
                let code = serde_json::from_str::<serde_json::Value>(b)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(String::from))
                    .unwrap_or_default();
                format!("http_{s}_{code}")
            }
            ConnectError::Other(e) => {
                let e = e.to_lowercase();
                if e.contains("refused") {
                    "connect_refused".into()
                } else if e.contains("address") && e.contains("use") {
                    "no_source_port".into()
                } else if e.contains("too many open files") {
                    "too_many_open_files".into()
                } else if e.contains("timed out") || e.contains("timeout") {
                    "connect_timeout".into()
                } else {
                    "connect_error".into()
                }
            }
        }
    }
}

impl Net {
    pub fn new(addr: SocketAddr, source_ips: u32) -> Net {
        Net { addr, source_ips: source_ips.max(1), next: AtomicUsize::new(0) }
    }

    /// A source-address count that leaves room in the ephemeral port range for `connections`.
    pub fn auto_source_ips(connections: usize) -> u32 {
        connections.div_ceil(20_000).max(1) as u32
    }

    fn config() -> WebSocketConfig {
        // Small buffers: the generator holds tens of thousands of sockets.
        WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_message_size(Some(1 << 20))
    }

    async fn tcp(&self) -> std::io::Result<TcpStream> {
        let sock = if self.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if self.source_ips > 1 && self.addr.ip().is_loopback() && self.addr.is_ipv4() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.source_ips as usize;
            let ip = Ipv4Addr::new(127, 0, ((i + 1) >> 8) as u8, ((i + 1) & 0xff) as u8);
            sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
        }
        let stream = sock.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens `ws://addr{path}` (path with query), within 30 s.
    pub async fn connect(&self, path: &str) -> Result<Ws, ConnectError> {
        let fut = async {
            let stream = self.tcp().await.map_err(|e| ConnectError::Other(e.to_string()))?;
            let url = format!("ws://{}{path}", self.addr);
            match tokio_tungstenite::client_async_with_config(url, stream, Some(Self::config())).await {
                Ok((ws, _)) => Ok(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let body =
                        resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                    Err(ConnectError::Http(resp.status().as_u16(), body))
                }
                Err(e) => Err(ConnectError::Other(e.to_string())),
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), fut).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Other("timed out".into())),
        }
    }
}

/// Drops a connection without a close frame, with RST (as a lost network would, and without
/// leaving the port in TIME_WAIT).
pub fn abort(ws: Ws) {
    let _ = ws.get_ref().set_zero_linger();
    drop(ws);
}

/// Raises this process's open-file limit as far as allowed; returns the soft limit in effect.
pub fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    // Root may raise the hard limit too; otherwise go as far as the hard limit.
    if rlimit::Resource::NOFILE.set(want, want.max(hard)).is_ok() {
        return want;
    }
    let _ = rlimit::Resource::NOFILE.set(hard, hard);
    rlimit::Resource::NOFILE.get().map(|(s, _)| s).unwrap_or(soft)
}

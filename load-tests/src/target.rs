//! What a scenario runs against.

use serde::Serialize;
use std::net::{SocketAddr, ToSocketAddrs};

/// Which server answers at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Haven: join tokens, `/v1/signal`, meetings over the HTTP API.
    Haven,
    /// The reference broadcast server: `/room/<id>`, no auth, relays every text frame.
    Reference,
}

/// A server to load: its address and, for Haven, a program's API key and token secret.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    pub addr: SocketAddr,
    /// The program id (`iss` of join tokens).
    pub program_id: String,
    /// The program's API key (Bearer for `POST /v1/meetings`).
    pub api_key: String,
    /// The program's HS256 secret.
    pub secret: String,
    /// The server's process id, when known, for `/proc` figures.
    pub server_pid: Option<u32>,
    /// How the server runs, for the report ("release binary pinned to core 0", ...).
    pub description: String,
}

impl Target {
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// `http://host:port`, `ws://host:port[/...]` or `host:port` to a socket address.
pub fn parse_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("ws://")).unwrap_or(url);
    if url.starts_with("https://") || url.starts_with("wss://") {
        anyhow::bail!("TLS targets are not supported; point --target at the plain HTTP listener");
    }
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("{hostport} does not resolve"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_to_addresses() {
        assert_eq!(super::parse_addr("http://127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(super::parse_addr("ws://127.0.0.1:9/v1/signal").unwrap().port(), 9);
        assert_eq!(super::parse_addr("127.0.0.1:7").unwrap().port(), 7);
        assert!(super::parse_addr("https://x:1").is_err());
    }
}

//! TURN over TCP and TLS (RFC 5766 §2.1, RFC 6062 not needed: the relay leg stays UDP).
//!
//! The `turn` crate reads datagrams from a `Conn`. A stream listener becomes one such `Conn`: each
//! accepted connection is split into messages (STUN: 20-byte header plus its length; ChannelData:
//! 4-byte header plus its length, padded to 4 bytes on a stream), which arrive as datagrams from
//! the connection's remote address; what the crate sends to that address is written back on the
//! connection (ChannelData padded as a stream requires).
//!
//! An allocation made over a stream ends with its connection (RFC 6062 §2.1 asks this of TCP
//! allocations; without it the relay socket would live on until its lifetime ran out). The crate
//! offers deletion only by username, and a browser uses one username for its UDP, TCP and TLS
//! allocations alike, so that would end the others too. Instead, when a connection ends, a
//! Refresh with lifetime 0 is passed to the crate as if that connection had sent it, signed with
//! the credential and nonce its client last used: it deletes exactly the allocation of that
//! connection's address. When that credential has expired or its nonce is stale the crate refuses
//! it, and the allocation ends at its lifetime as before.

use async_trait::async_trait;
use std::any::Any;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use tokio_rustls::rustls;
use util::Conn;

use super::TurnSecret;

/// Largest message (the crate reads into a 1500-byte buffer).
const MAX_MESSAGE: usize = 1500;
/// Messages from all connections waiting for the crate's read loop.
const INBOUND_QUEUE: usize = 4096;
/// Messages waiting to be written to one connection (beyond it, dropped like datagrams).
const CONN_QUEUE: usize = 256;
/// Open connections per listener.
const MAX_CONNS: usize = 4096;
/// A connection must complete TLS and send its first message within this time.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);

/// A TLS acceptor from a PEM certificate chain and key.
pub(super) fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What a client last authenticated with on a connection: username, realm, nonce.
type LastCredential = Option<(String, String, String)>;

/// The long-term credential in a request that carries one (Allocate, Refresh, CreatePermission,
/// ChannelBind with MESSAGE-INTEGRITY). Not verified here: the crate verifies the request, and
/// what is remembered only ever signs the release of this connection's own allocation.
fn credential_in(m: &[u8]) -> LastCredential {
    use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
    use stun::textattrs::TextAttribute;
    let typ = u16::from_be_bytes([*m.first()?, *m.get(1)?]);
    // Requests (class bits 0) of Allocate 0x003, Refresh 0x004, CreatePermission 0x008, ChannelBind 0x009.
    if !matches!(typ, 0x0003 | 0x0004 | 0x0008 | 0x0009) {
        return None;
    }
    let mut msg = stun::message::Message::new();
    msg.unmarshal_binary(m).ok()?;
    if !msg.contains(ATTR_MESSAGE_INTEGRITY) {
        return None;
    }
    let text = |a| TextAttribute::get_from_as(&msg, a).ok().map(|t| t.text);
    Some((text(ATTR_USERNAME)?, text(ATTR_REALM)?, text(ATTR_NONCE)?))
}

/// A Refresh with lifetime 0 (a release) signed with `credential`, if it is still ours and valid.
fn release_request(credential: &(String, String, String), secret: &TurnSecret) -> Option<Vec<u8>> {
    use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
    use stun::message::{Message, MessageType, Setter, CLASS_REQUEST, METHOD_REFRESH};
    use stun::textattrs::TextAttribute;
    let (username, realm, nonce) = credential;
    let key = secret.key_now(username, realm)?;
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(stun::agent::TransactionId::new()),
        Box::new(MessageType::new(METHOD_REFRESH, CLASS_REQUEST)),
        Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO)),
        Box::new(TextAttribute::new(ATTR_USERNAME, username.clone())),
        Box::new(TextAttribute::new(ATTR_REALM, realm.clone())),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce.clone())),
        Box::new(stun::integrity::MessageIntegrity(key)),
    ];
    m.build(&setters).ok()?;
    Some(m.raw)
}

/// All connections of one listener, as one datagram `Conn`.
struct StreamConn {
    local: SocketAddr,
    inbound: Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    writers: Arc<dashmap::DashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

/// Accepts connections on `listener` (TLS first with `tls`).
pub(super) fn listen(
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    secret: TurnSecret,
) -> Arc<dyn Conn + Send + Sync> {
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let writers = Arc::new(dashmap::DashMap::new());
    tokio::spawn(accept_loop(listener, tls, tx, writers.clone(), secret));
    Arc::new(StreamConn { local, inbound: Mutex::new(rx), writers })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    writers: Arc<dashmap::DashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    secret: TurnSecret,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, source)) = listener.accept().await else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNS {
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (inbound, writers, open, tls) = (inbound.clone(), writers.clone(), open.clone(), tls.clone());
        let secret = secret.clone();
        tokio::spawn(async move {
            let last = match tls {
                None => connection(stream, source, &inbound, &writers).await,
                Some(acceptor) => match tokio::time::timeout(FIRST_MESSAGE, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => connection(s, source, &inbound, &writers).await,
                    _ => None,
                },
            };
            writers.remove(&source);
            // The connection is gone: so is its allocation (see the module's comment).
            if let Some(release) = last.as_ref().and_then(|c| release_request(c, &secret)) {
                let _ = inbound.send((release, source)).await;
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one STUN or ChannelData message from a stream; `None` at its end or on anything else.
pub(super) async fn read_message(r: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await.ok()?;
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let (total, padded) = match head[0] >> 6 {
        // STUN: the length excludes the 20-byte header and is a multiple of 4.
        0 => (20 + len, 20 + len),
        // ChannelData (channel numbers 0x4000-0x7fff): padded to 4 bytes on streams.
        1 => (4 + len, 4 + len.div_ceil(4) * 4),
        _ => return None,
    };
    if total > MAX_MESSAGE {
        return None;
    }
    let mut m = vec![0u8; padded];
    m[..4].copy_from_slice(&head);
    r.read_exact(&mut m[4..]).await.ok()?;
    m.truncate(total);
    Some(m)
}

async fn connection<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
    source: SocketAddr,
    inbound: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
    writers: &dashmap::DashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
) -> LastCredential {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let Ok(Some(first)) = tokio::time::timeout(FIRST_MESSAGE, read_message(&mut rd)).await else { return None };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    writers.insert(source, tx);
    let writer = async move {
        while let Some(m) = rx.recv().await {
            if wr.write_all(&m).await.is_err() {
                return;
            }
        }
    };
    let mut last: LastCredential = None;
    let reader = async {
        let mut m = Some(first);
        while let Some(data) = m {
            if let Some(c) = credential_in(&data) {
                last = Some(c);
            }
            if inbound.send((data, source)).await.is_err() {
                return;
            }
            m = read_message(&mut rd).await;
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    last
}

#[async_trait]
impl Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> util::Result<()> {
        Err(util::Error::Other("not supported".into()))
    }
    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        let Some((m, from)) = self.inbound.lock().await.recv().await else {
            return Err(util::Error::ErrUseClosedNetworkConn);
        };
        let n = m.len().min(buf.len());
        buf[..n].copy_from_slice(&m[..n]);
        Ok((n, from))
    }
    async fn send(&self, _buf: &[u8]) -> util::Result<usize> {
        Err(util::Error::Other("not supported".into()))
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        let Some(tx) = self.writers.get(&target).map(|t| t.clone()) else {
            return Err(util::Error::Other("connection closed".into()));
        };
        let mut m = buf.to_vec();
        if m.first().is_some_and(|b| b >> 6 == 1) {
            m.resize(m.len().div_ceil(4) * 4, 0);
        }
        // A full queue drops the message, as a full socket buffer drops a datagram.
        let _ = tx.try_send(m);
        Ok(buf.len())
    }
    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.local)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stun_and_padded_channel_data_are_split_from_a_stream() {
        let mut stream: Vec<u8> = Vec::new();
        // A STUN message with 4 bytes of attributes.
        stream.extend_from_slice(&[0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42]);
        stream.extend_from_slice(&[9; 12]);
        stream.extend_from_slice(&[0, 0, 0, 0]);
        // ChannelData with 5 bytes of data, padded to 8.
        stream.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        // Neither: the stream is dropped.
        stream.extend_from_slice(&[0x80, 0, 0, 0]);
        let mut r = &stream[..];
        assert_eq!(read_message(&mut r).await.map(|m| m.len()), Some(24));
        assert_eq!(read_message(&mut r).await, Some(vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]));
        assert_eq!(read_message(&mut r).await, None);
    }
}

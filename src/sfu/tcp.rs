//! ICE over TCP (RFC 6544): one passive listener per engine, offered beside the UDP candidate for
//! networks that block UDP. Each connection carries RFC 4571 frames (a 16-bit length, then one
//! STUN, DTLS, RTP or RTCP packet); the engine treats a frame as it treats a datagram, with the
//! connection's remote address as the source. Connection tasks only frame and unframe: every
//! decision (which session, whether to accept) stays on the engine thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest frame accepted: media packets fit an MTU; anything larger is not ours.
const MAX_FRAME: usize = 2048;
/// Frames waiting to be written to one connection; beyond it they are dropped, as a full UDP
/// buffer would drop them (media is real-time; NACK or the next packet recovers).
const CONN_QUEUE: usize = 256;
/// Frames from all connections waiting for the engine.
const INBOUND_QUEUE: usize = 4096;
/// Open connections per engine.
const MAX_CONNS: usize = 4096;
/// A connection must send its first frame (an ICE check) within this time.
const FIRST_FRAME: Duration = Duration::from_secs(10);

/// What connection tasks tell the engine.
pub(super) enum TcpIn {
    Open { source: SocketAddr, tx: mpsc::Sender<Vec<u8>> },
    Frame { source: SocketAddr, data: Vec<u8> },
    Closed { source: SocketAddr },
}

/// The engine's side of ICE-TCP: writers by remote address, and which session each address is.
pub(super) struct TcpSide {
    /// The advertised passive candidate address (`None`: ICE-TCP is off).
    pub(super) addr: Option<SocketAddr>,
    rx: mpsc::Receiver<TcpIn>,
    conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// Sessions by remote address, learnt like the UDP demux learns them.
    sessions: HashMap<SocketAddr, usize>,
}

impl TcpSide {
    /// No listener: nothing ever arrives.
    pub(super) fn off() -> TcpSide {
        let (_, rx) = mpsc::channel(1);
        TcpSide { addr: None, rx, conns: HashMap::new(), sessions: HashMap::new() }
    }

    /// The next event from a connection task (pending forever when ICE-TCP is off).
    pub(super) async fn recv(&mut self) -> TcpIn {
        match self.rx.recv().await {
            Some(m) => m,
            None => std::future::pending().await,
        }
    }

    /// Records a new connection's writer, or forgets a closed one.
    pub(super) fn opened(&mut self, source: SocketAddr, tx: mpsc::Sender<Vec<u8>>) {
        self.conns.insert(source, tx);
    }

    pub(super) fn closed(&mut self, source: SocketAddr) {
        self.conns.remove(&source);
        self.sessions.remove(&source);
    }

    pub(super) fn session(&self, source: SocketAddr) -> Option<usize> {
        self.sessions.get(&source).copied()
    }

    pub(super) fn learn(&mut self, source: SocketAddr, idx: usize) {
        self.sessions.insert(source, idx);
    }

    pub(super) fn forget_session(&mut self, idx: usize) {
        self.sessions.retain(|_, i| *i != idx);
    }

    /// Frames `data` (RFC 4571) onto the connection from `to`, if it is still open.
    pub(super) fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let Some(tx) = self.conns.get(&to) else { return };
        let Ok(len) = u16::try_from(data.len()) else { return };
        let mut frame = Vec::with_capacity(2 + data.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        let _ = tx.try_send(frame);
    }

    /// Open connections (diagnostics).
    pub(super) fn connections(&self) -> usize {
        self.conns.len()
    }
}

/// The passive TCP host candidate for `addr`.
pub(super) fn passive_candidate(addr: SocketAddr) -> Option<str0m::Candidate> {
    str0m::Candidate::builder().tcp().host(addr).tcptype(str0m::net::TcpType::Passive).build().ok()
}

/// Starts accepting on `listener` (on the engine's runtime); `advertise` is the candidate
/// address browsers are given.
pub(super) fn listen(listener: TcpListener, advertise: SocketAddr) -> TcpSide {
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    tokio::spawn(accept_loop(listener, tx));
    TcpSide { addr: Some(advertise), rx, conns: HashMap::new(), sessions: HashMap::new() }
}

async fn accept_loop(listener: TcpListener, to_engine: mpsc::Sender<TcpIn>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, source)) = listener.accept().await else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNS {
            continue; // dropped: closes the connection
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (to_engine, open) = (to_engine.clone(), open.clone());
        tokio::spawn(async move {
            connection(stream, source, &to_engine).await;
            let _ = to_engine.send(TcpIn::Closed { source }).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one RFC 4571 frame; `None` at the end of the stream or on a frame that is not media.
async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let len = r.read_u16().await.ok()? as usize;
    if len == 0 || len > MAX_FRAME {
        return None;
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await.ok()?;
    Some(data)
}

async fn connection(stream: TcpStream, source: SocketAddr, to_engine: &mpsc::Sender<TcpIn>) {
    let (mut rd, mut wr) = stream.into_split();
    let Ok(Some(first)) = tokio::time::timeout(FIRST_FRAME, read_frame(&mut rd)).await else { return };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    if to_engine.send(TcpIn::Open { source, tx }).await.is_err() {
        return;
    }
    let writer = async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut frame = Some(first);
        while let Some(data) = frame {
            if to_engine.send(TcpIn::Frame { source, data }).await.is_err() {
                return;
            }
            frame = read_frame(&mut rd).await;
        }
    };
    // Either side ending ends the connection (the engine dropping the writer, or the peer).
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_pass_both_ways_and_oversized_frames_close_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut side = listen(listener, addr);
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[0, 3, 1, 2, 3, 0, 1, 9]).await.unwrap();
        let TcpIn::Open { source, tx } = side.recv().await else { panic!("open first") };
        side.opened(source, tx);
        assert!(matches!(side.recv().await, TcpIn::Frame { data, .. } if data == [1, 2, 3]));
        assert!(matches!(side.recv().await, TcpIn::Frame { data, .. } if data == [9]));
        side.send(source, &[7, 7]);
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [0, 2, 7, 7]);
        // A frame larger than any media packet: the connection is closed.
        c.write_all(&[0xff, 0xff]).await.unwrap();
        assert!(matches!(side.recv().await, TcpIn::Closed { source: s } if s == source));
    }
}

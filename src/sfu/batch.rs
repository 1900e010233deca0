//! Batched UDP sends: one `sendmmsg` moves every datagram an engine turn produced.
//!
//! One speaker's packet becomes one datagram per listener, to as many different addresses, so
//! GSO (one destination per call, as quinn-udp uses it) does not apply; `sendmmsg` takes a
//! different destination per message. Elsewhere than Linux, datagrams go one `send_to` at a time.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Datagrams sent per system call.
const BATCH: usize = 64;

/// Datagrams waiting for the end of the engine's turn.
#[derive(Default)]
pub(super) struct SendBatch {
    queue: Vec<(SocketAddr, Vec<u8>)>,
}

impl SendBatch {
    pub(super) fn push(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.queue.push((to, datagram));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends everything queued. A datagram the kernel cannot take now (full buffer) is dropped,
    /// as a router would: media is real-time, and the receiver's NACK or the next packet recovers.
    /// Returns (datagrams sent, system calls).
    pub(super) fn flush(&mut self, socket: &UdpSocket) -> (usize, usize) {
        let r = send_all(&self.queue, socket);
        self.queue.clear();
        r
    }
}

#[cfg(target_os = "linux")]
fn send_all(queue: &[(SocketAddr, Vec<u8>)], socket: &UdpSocket) -> (usize, usize) {
    use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    if queue.is_empty() {
        return (0, 0);
    }
    let (mut sent, mut calls) = (0, 0);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH.min(queue.len()), None);
    let mut at = 0;
    while at < queue.len() {
        let chunk = &queue[at..(at + BATCH).min(queue.len())];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk.iter().map(|(a, _)| Some(SockaddrStorage::from(*a))).collect();
        calls += 1;
        match sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [], MsgFlags::MSG_DONTWAIT) {
            Ok(results) => {
                let n = results.count().max(1);
                sent += n;
                at += n;
            }
            // EAGAIN (buffer full) or an error for the first datagram: skip it.
            Err(_) => at += 1,
        }
    }
    (sent.min(queue.len()), calls)
}

#[cfg(not(target_os = "linux"))]
fn send_all(queue: &[(SocketAddr, Vec<u8>)], socket: &UdpSocket) -> (usize, usize) {
    let sent = queue.iter().filter(|(to, data)| socket.try_send_to(data, *to).is_ok()).count();
    (sent, queue.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_call_sends_datagrams_to_many_destinations() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rxs: Vec<std::net::UdpSocket> =
            (0..100).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let mut b = SendBatch::default();
        for (i, r) in rxs.iter().enumerate() {
            b.push(r.local_addr().unwrap(), vec![i as u8; 100]);
        }
        let (sent, calls) = b.flush(&tx);
        assert_eq!(sent, 100);
        assert!(b.is_empty());
        if cfg!(target_os = "linux") {
            assert_eq!(calls, 2, "100 datagrams in batches of 64");
        }
        for (i, r) in rxs.iter().enumerate() {
            let mut buf = [0u8; 200];
            let (n, from) = r.recv_from(&mut buf).unwrap();
            assert_eq!((n, buf[0], from), (100, i as u8, tx.local_addr().unwrap()));
        }
    }
}

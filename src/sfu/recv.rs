//! Batched UDP receives: one `recvmmsg` takes every datagram already waiting (up to a batch).
//!
//! Under fan-out an engine receives far less than it sends (one packet per speaker per 20 ms, and
//! RTCP from each listener), but a busy engine still finds several datagrams waiting per wake-up;
//! one system call takes them all. The buffers are allocated once per engine. Elsewhere than
//! Linux, datagrams are read one `recv_from` at a time.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Datagrams taken per system call.
pub(super) const BATCH: usize = 32;
/// Larger than any datagram a WebRTC peer sends (MTU-sized, about 1,200 to 1,500 bytes).
const DATAGRAM: usize = 2048;

/// Reused receive buffers and what the last receive put in them.
pub(super) struct RecvBatch {
    bufs: Vec<u8>,
    got: Vec<(usize, SocketAddr)>,
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![0; BATCH * DATAGRAM],
            got: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }
}

impl RecvBatch {
    /// Reads what is waiting on `socket` without blocking: how many datagrams (0 when none).
    pub(super) fn recv(&mut self, socket: &UdpSocket) -> usize {
        self.got.clear();
        #[cfg(target_os = "linux")]
        recv_some(socket, &mut self.headers, &mut self.bufs, &mut self.got);
        #[cfg(not(target_os = "linux"))]
        recv_some(socket, &mut self.bufs, &mut self.got);
        self.got.len()
    }

    /// The `i`th datagram of the last receive, and where it came from (`None`: skip it).
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, from) = self.got.get(i)?;
        if len == 0 {
            return None;
        }
        let start = i * DATAGRAM;
        Some((&self.bufs[start..start + len.min(DATAGRAM)], from))
    }
}

#[cfg(target_os = "linux")]
fn recv_some(
    socket: &UdpSocket,
    headers: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    bufs: &mut [u8],
    got: &mut Vec<(usize, SocketAddr)>,
) {
    use nix::sys::socket::{recvmmsg, MsgFlags, SockaddrStorage};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let _ = socket.try_io(tokio::io::Interest::READABLE, || {
        let slices: Vec<[IoSliceMut<'_>; 1]> = bufs.chunks_mut(DATAGRAM).map(|c| [IoSliceMut::new(c)]).collect();
        let results = recvmmsg(socket.as_raw_fd(), headers, slices.iter(), MsgFlags::MSG_DONTWAIT, None)
            .map_err(std::io::Error::from)?;
        for r in results {
            let from = r.address.and_then(|a: SockaddrStorage| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            // A datagram longer than the buffer is cut (MSG_TRUNC): it is not WebRTC; skip it.
            if let Some(from) = from.filter(|_| !r.flags.contains(MsgFlags::MSG_TRUNC)) {
                got.push((r.bytes, from));
            } else {
                got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
            }
        }
        Ok(())
    });
}

#[cfg(not(target_os = "linux"))]
fn recv_some(socket: &UdpSocket, bufs: &mut [u8], got: &mut Vec<(usize, SocketAddr)>) {
    for chunk in bufs.chunks_mut(DATAGRAM) {
        match socket.try_recv_from(chunk) {
            Ok((n, from)) => got.push((n, from)),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_call_takes_every_waiting_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_addr().unwrap();
        let txs: Vec<std::net::UdpSocket> = (0..5).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (i, t) in txs.iter().enumerate() {
            t.send_to(&vec![i as u8; 100 + i], to).unwrap();
        }
        rx.readable().await.unwrap();
        let mut b = RecvBatch::default();
        let mut seen = Vec::new();
        // Loopback delivers at once, but readiness may come before the last one: read until 5.
        while seen.len() < 5 {
            let n = b.recv(&rx);
            for i in 0..n {
                let (d, from) = b.get(i).unwrap();
                seen.push((d.len(), d[0], from));
            }
            if n == 0 {
                rx.readable().await.unwrap();
            }
        }
        for (i, t) in txs.iter().enumerate() {
            assert!(seen.contains(&(100 + i, i as u8, t.local_addr().unwrap())));
        }
        assert_eq!(b.recv(&rx), 0, "nothing left");
    }
}

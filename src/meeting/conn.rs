//! What a room actor holds of a connection, and the frames it sends: a bounded queue, a way to cut
//! the connection off at once, close codes, and rendering an event once for every recipient.

use crate::protocol::{Event, LeaveReason};
use axum::extract::ws::Utf8Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A connection id, unique within the process.
pub type ConnId = u64;

/// A WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const SLOW_CONSUMER: CloseReason = CloseReason { code: 4008, reason: "slow_consumer" };
    pub const REPLACED: CloseReason = CloseReason { code: 4004, reason: "replaced" };
    pub const IDLE: CloseReason = CloseReason { code: 4009, reason: "idle_timeout" };
    pub const JOIN_TIMEOUT: CloseReason = CloseReason { code: 4010, reason: "join_timeout" };
    pub const SHUTDOWN: CloseReason = CloseReason { code: 1001, reason: "server_shutdown" };

    /// The close code for someone leaving the meeting for `reason`.
    pub fn for_leave(reason: LeaveReason) -> CloseReason {
        match reason {
            LeaveReason::Left | LeaveReason::ConnectionLost => CloseReason { code: 1000, reason: "left" },
            LeaveReason::Removed => CloseReason { code: 4000, reason: "removed" },
            LeaveReason::Banned => CloseReason { code: 4001, reason: "banned" },
            LeaveReason::Denied => CloseReason { code: 4002, reason: "denied" },
            LeaveReason::MeetingEnded => CloseReason { code: 4003, reason: "meeting_ended" },
            LeaveReason::ServerShutdown => CloseReason::SHUTDOWN,
        }
    }
}

/// What goes to a connection's writer, in order.
#[derive(Debug)]
pub enum Outbound {
    Frame(Utf8Bytes),
    Close(CloseReason),
}

/// A connection's outbound queue, bounded to `capacity` items.
///
/// Built on tokio's unbounded channel plus a counter rather than on its bounded channel: the
/// bounded channel's receiver gives each permit back under its semaphore's mutex, a lock per frame
/// on the fan-out path (per recipient per event). Here a send and a receive each cost one atomic
/// add. The bound is exact: a send that would pass it takes nothing and answers `Full`.
pub fn outbound_queue(capacity: usize) -> (OutboundTx, OutboundRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (OutboundTx { tx, queued: queued.clone(), capacity: capacity.max(1) }, OutboundRx { rx, queued })
}

/// The sending half of [`outbound_queue`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboundTx {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl OutboundTx {
    /// Queues `m`, or gives it back: `Full` at the bound, `Closed` when the writer is gone.
    pub fn try_send(&self, m: Outbound) -> Result<(), mpsc::error::TrySendError<Outbound>> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(mpsc::error::TrySendError::Full(m));
        }
        self.tx.send(m).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            mpsc::error::TrySendError::Closed(e.0)
        })
    }
}

/// The receiving half of [`outbound_queue`] (the connection's writer).
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl OutboundRx {
    pub fn try_recv(&mut self) -> Result<Outbound, mpsc::error::TryRecvError> {
        let m = self.rx.try_recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(m)
    }

    pub async fn recv(&mut self) -> Option<Outbound> {
        let m = self.rx.recv().await?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(m)
    }
}

/// The actor's grip on one connection: its bounded queue and a way to cut it off at once.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub tx: OutboundTx,
    /// Set to cut the connection off without queueing (used when the queue is full).
    pub kill: Arc<watch::Sender<Option<CloseReason>>>,
}

impl ConnHandle {
    /// Queues a frame; false when the queue is full or the connection gone.
    pub(super) fn try_frame(&self, text: String) -> Result<(), mpsc::error::TrySendError<Outbound>> {
        self.tx.try_send(Outbound::Frame(Utf8Bytes::from(text)))
    }

    /// Cuts the connection off now; true only for the call that cut it (so a cut is counted once).
    /// The writer sees the cut before its next frame and wherever it waits on the socket; a
    /// writer waiting for frames is woken by the close queued behind the cut (when the queue has
    /// room; when it is full the writer is not waiting for frames).
    pub fn cut(&self, reason: CloseReason) -> bool {
        let first = self.kill.send_if_modified(|k| {
            let first = k.is_none();
            if first {
                *k = Some(reason);
            }
            first
        });
        if first {
            let _ = self.tx.try_send(Outbound::Close(reason));
        }
        first
    }

    /// Closes after what is queued, or at once when the queue is full.
    pub fn close(&self, reason: CloseReason) {
        if self.tx.try_send(Outbound::Close(reason)).is_err() {
            self.kill.send_replace(Some(reason));
        }
    }
}

/// Renders a server frame: `{"seq":N,"id":...,` spliced in front of the event's own fields, so a
/// fan-out serialises the event once and only this small prefix per recipient.
pub fn render_frame(seq: u64, request_id: Option<&str>, body: &str) -> String {
    // A string always serialises.
    let id = request_id.map(|id| serde_json::to_string(id).unwrap_or_else(|_| "null".into()));
    // Exactly the frame's length: a frame whose capacity is its length becomes the queue's
    // `Bytes` without a second allocation (one allocation per recipient, not two).
    let digits = seq.checked_ilog10().map_or(1, |d| d as usize + 1);
    let len = "{\"seq\":".len() + digits + id.as_ref().map_or(0, |j| ",\"id\":".len() + j.len()) + body.len().max(2);
    let mut s = String::with_capacity(len);
    s.push_str("{\"seq\":");
    // Writing into a String cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{seq}"));
    if let Some(id) = id {
        s.push_str(",\"id\":");
        s.push_str(&id);
    }
    // Every event is a JSON object with at least its `type`, so the body starts with `{"`.
    s.push(',');
    s.push_str(body.get(1..).unwrap_or("}"));
    s
}

/// Serialises an event body. Events are plain data; serialisation cannot fail.
pub fn event_body(event: &Event) -> Arc<str> {
    Arc::from(
        serde_json::to_string(event)
            .unwrap_or_else(|_| "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"\"}".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbound_queue_holds_exactly_its_capacity_and_frees_a_place_per_frame_taken() {
        let (tx, mut rx) = outbound_queue(2);
        let frame = || Outbound::Frame(Utf8Bytes::from_static("{}"));
        assert!(tx.try_send(frame()).is_ok());
        assert!(tx.clone().try_send(frame()).is_ok());
        assert!(matches!(tx.try_send(frame()), Err(mpsc::error::TrySendError::Full(_))));
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(_))));
        assert!(tx.try_send(Outbound::Close(CloseReason::IDLE)).is_ok());
        assert!(matches!(tx.try_send(frame()), Err(mpsc::error::TrySendError::Full(_))));
        assert!(rx.try_recv().is_ok());
        assert!(matches!(rx.try_recv(), Ok(Outbound::Close(CloseReason::IDLE))));
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Empty)));
        drop(rx);
        assert!(matches!(tx.try_send(frame()), Err(mpsc::error::TrySendError::Closed(_))));
    }

    #[test]
    fn render_frame_splices_seq_and_id_into_the_event() {
        let body = event_body(&Event::Pong);
        let f = render_frame(7, Some("r\"1"), &body);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["id"], "r\"1");
        assert_eq!(v["type"], "pong");
        let f = render_frame(8, None, &event_body(&Event::ChatDeleted { message_id: 3 }));
        assert_eq!(f.len(), f.capacity(), "one allocation per frame: {f}");
        let m: crate::protocol::ServerMessage = serde_json::from_str(&f).unwrap();
        assert_eq!(m.seq, 8);
        for seq in [0, 9, 10, 99, 100, 123_456, u64::MAX] {
            for id in [None, Some("r-1"), Some("q\"\\")] {
                let f = render_frame(seq, id, &body);
                assert_eq!(f.len(), f.capacity(), "{f}");
            }
        }
        assert_eq!(m.event, Event::ChatDeleted { message_id: 3 });
    }
}

//! One WebSocket connection: a reader that turns frames into typed commands (enforcing size and
//! rate limits) and a writer that drains the bounded outbound queue.
//!
//! Frames the connection answers itself (`pong`, errors about a frame that never reached the
//! meeting, `resumed`) carry `seq` 0: they belong to the connection, not to the participant's
//! event stream, and are not replayed on resume.

use super::guard::UnjoinedPermit;
use crate::app::AppState;
use crate::meeting::actor::{error_event, event_body, render_frame, resume_token_meeting, unavailable};
use crate::meeting::{ActorMsg, CloseReason, ConnHandle, JoinFailure, Outbound, RoomHandle};
use crate::protocol::{ClientMessage, Command, ErrorCode, Event, ParticipantId, ProtocolError, Rejected, Role};
use crate::room::participant::TokenBucket;
use crate::room::MemberKey;
use crate::store::MeetingRow;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the upgrade request proved.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A verified join token for this member, meeting and role.
    Join { meeting: Box<MeetingRow>, member: MemberKey, role: Role },
    /// A resume token for a live meeting (the room verifies it).
    Resume { meeting: String },
    /// A verified join token for an ended meeting: only `certificate_request`.
    Certificate { meeting: String, member: MemberKey },
}

impl Credential {
    fn meeting_id(&self) -> &str {
        match self {
            Credential::Join { meeting, .. } => &meeting.id,
            Credential::Resume { meeting } | Credential::Certificate { meeting, .. } => meeting,
        }
    }
}

/// Close reasons the connection itself gives (the room's are in [`CloseReason`]).
pub const FLOOD: CloseReason = CloseReason { code: 1008, reason: "flood" };
pub const TOO_BIG: CloseReason = CloseReason { code: 1009, reason: "message_too_large" };
pub const PROTOCOL_ERROR: CloseReason = CloseReason { code: 1002, reason: "protocol_error" };
pub const INVALID_UTF8: CloseReason = CloseReason { code: 1007, reason: "invalid_utf8" };
/// The client closed: the writer flushes the echo tungstenite queued (RFC 6455 §5.5.1).
const PEER_CLOSED: CloseReason = CloseReason { code: 1000, reason: "" };
/// The TCP connection is gone: nothing to send.
const GONE: CloseReason = CloseReason { code: 0, reason: "" };

/// How the reader ended, when the writer must act on it at once.
fn read_error_reason(e: axum::Error) -> CloseReason {
    match e.into_inner().downcast::<tungstenite::Error>().map(|b| *b) {
        Ok(tungstenite::Error::Capacity(_)) => TOO_BIG,
        Ok(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => GONE,
        Ok(tungstenite::Error::Protocol(_)) => PROTOCOL_ERROR,
        Ok(tungstenite::Error::Utf8(_)) => INVALID_UTF8,
        _ => GONE,
    }
}

/// Runs a connection until it closes. `permit` holds one of the address's unjoined slots until
/// the connection joins.
pub async fn run(socket: WebSocket, app: AppState, cred: Credential, permit: Option<UnjoinedPermit>) {
    app.metrics.connections.inc();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = crate::meeting::outbound_queue(app.config.limits.outbound_queue);
    let (kill_tx, kill_rx) = watch::channel(None);
    let conn = ConnHandle { id: app.next_conn_id(), tx, kill: Arc::new(kill_tx) };
    let writer_done = CancellationToken::new();
    let batch = app.config.limits.ws_write_batch_frames.max(1);
    let writer = tokio::spawn(write_loop(sink, rx, kill_rx, writer_done.clone(), batch));
    let limits = &app.config.limits;
    let mut reader = Reader {
        bucket: TokenBucket::full(limits.messages_per_second.saturating_mul(2).max(1), 0),
        clock: Instant::now(),
        app: app.clone(),
        cred,
        conn: conn.clone(),
        joined: None,
        permit,
        limited: false,
        last_refused: None,
        window_start: Instant::now(),
        refused_in_window: 0,
    };
    let ended = reader.read_loop(&mut stream, &writer_done).await;
    if let Some((participant_id, handle)) = reader.joined.take() {
        let _ = handle.tx.send(ActorMsg::ConnectionClosed { conn_id: conn.id, participant_id }).await;
    }
    drop(reader);
    // The client closed or broke the protocol: the writer answers at once and the slot is
    // freed, rather than waiting for the room to let go of the queue.
    if let Some(reason) = ended {
        conn.cut(reason);
    }
    // The writer ends when the actor lets go of the queue, or after its close frame; if the
    // peer is gone it must not linger.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer).await.is_err() {
        abort.abort();
    }
    if ended.is_none() {
        // We closed: read (and drop) what the client still sends until its close arrives, briefly,
        // so unread input does not turn our close frame into a TCP reset it never sees.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    conn.kill.send_replace(Some(CloseReason::IDLE));
    app.metrics.connections.dec();
}

struct Reader {
    app: AppState,
    cred: Credential,
    conn: ConnHandle,
    bucket: TokenBucket,
    clock: Instant,
    joined: Option<(ParticipantId, RoomHandle)>,
    /// One of the address's unjoined slots, released on join.
    permit: Option<UnjoinedPermit>,
    /// A `rate_limited` reply was sent and no frame has been accepted after a pause since.
    limited: bool,
    last_refused: Option<Instant>,
    /// Frames refused by the rate limit in the current minute (a flood past `flood_frames`).
    window_start: Instant,
    refused_in_window: u32,
}

impl Reader {
    /// Reads until the connection ends; returns the reason the writer must act on at once (the
    /// client's close, an oversize frame, a protocol violation, a vanished peer).
    async fn read_loop(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        writer_done: &CancellationToken,
    ) -> Option<CloseReason> {
        let limits = &self.app.config.limits;
        let idle = Duration::from_secs(limits.idle_timeout_seconds.max(1));
        let join_deadline = Instant::now() + Duration::from_secs(limits.join_timeout_seconds.max(1));
        let mut last_frame = Instant::now();
        let shutdown = self.app.shutdown.clone();
        loop {
            let joined = self.joined.is_some();
            let deadline = if joined { last_frame + idle } else { join_deadline };
            let next = tokio::select! {
                biased;
                _ = writer_done.cancelled() => return None,
                // Joined connections are closed by their room at shutdown, after their last events.
                _ = shutdown.cancelled(), if !joined => {
                    self.conn.close(CloseReason::SHUTDOWN);
                    return None;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.conn.close(if joined { CloseReason::IDLE } else { CloseReason::JOIN_TIMEOUT });
                    return None;
                }
                m = stream.next() => m,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                // A frame over the hard limit (1009), a protocol violation, or a reset.
                Some(Err(e)) => return Some(read_error_reason(e)),
                None => return Some(GONE),
            };
            last_frame = Instant::now();
            match msg {
                Message::Text(text) => {
                    if self.on_text(text).await.is_break() {
                        return None;
                    }
                }
                Message::Binary(_) => self.direct_error(
                    ProtocolError::new(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not part of the protocol; send JSON text",
                    ),
                    None,
                ),
                Message::Close(_) => return Some(PEER_CLOSED),
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }

    /// Sends a connection-level frame (seq 0); a full queue means the client is not reading.
    fn direct(&self, event: &Event, request_id: Option<&str>) {
        let frame = render_frame(0, request_id, &event_body(event));
        if let Err(mpsc::error::TrySendError::Full(_)) = self.conn.tx.try_send(Outbound::Frame(Utf8Bytes::from(frame)))
        {
            // Counted once per connection cut, however many frames then fail to queue.
            if self.conn.cut(CloseReason::SLOW_CONSUMER) {
                self.app.metrics.slow_client_disconnects.inc();
            }
        }
    }

    /// The rate limit: the first refused frame of a burst is answered with `rate_limited`, the
    /// rest of the burst are dropped unanswered (so the replies cannot fill the client's own
    /// queue), and more than `flood_frames` refused in a minute close the connection (1008
    /// `flood`). Returns false when the frame must be dropped.
    fn within_rate(&mut self) -> std::ops::ControlFlow<(), bool> {
        use std::ops::ControlFlow;
        let limits = &self.app.config.limits;
        let now = Instant::now();
        let ms = now.duration_since(self.clock).as_millis() as u64;
        let per_token_ms = (1000 / u64::from(limits.messages_per_second.max(1))).max(1);
        if self.bucket.take(limits.messages_per_second.saturating_mul(2).max(1), per_token_ms, ms) {
            // A frame accepted after a pause of a second ends the burst: the next refusal is answered.
            if self.last_refused.is_some_and(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                self.limited = false;
            }
            return ControlFlow::Continue(true);
        }
        self.last_refused = Some(now);
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.refused_in_window = 0;
        }
        self.refused_in_window = self.refused_in_window.saturating_add(1);
        if self.refused_in_window > limits.flood_frames {
            tracing::debug!(conn = self.conn.id, "flood: closing");
            self.conn.close(FLOOD);
            return ControlFlow::Break(());
        }
        if !self.limited {
            self.limited = true;
            let msg = format!(
                "too many messages: at most {} a second (bursts of {}); the rest of this burst is dropped",
                limits.messages_per_second,
                limits.messages_per_second.saturating_mul(2)
            );
            self.direct_error(ProtocolError::new(ErrorCode::RateLimited, msg), None);
        }
        ControlFlow::Continue(false)
    }

    fn direct_error(&self, e: ProtocolError, request_id: Option<&str>) {
        self.app.metrics.error(e.code.as_str());
        self.direct(&error_event(e), request_id);
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow;
        self.app.metrics.messages_in.inc();
        match self.within_rate() {
            ControlFlow::Break(()) => return ControlFlow::Break(()),
            ControlFlow::Continue(false) => return ControlFlow::Continue(()),
            ControlFlow::Continue(true) => {}
        }
        // SDP grows with every track in a meeting, so media negotiation has its own, larger
        // limit (the frame cap bounds it); every other message keeps the small one. The frame is
        // parsed first (the frame cap bounds that work) so the reply names the limit that
        // applied and echoes the request id.
        let limits = &self.app.config.limits;
        let parsed = ClientMessage::parse(text.as_str());
        let (media, id) = match &parsed {
            Ok(m) => (matches!(m.command, Command::MediaOffer { .. } | Command::MediaAnswer { .. }), m.id.as_deref()),
            Err(r) => (matches!(r.command_type, Some("media_offer" | "media_answer")), r.id.as_deref()),
        };
        let limit = if media { limits.max_sdp_bytes.max(limits.max_message_bytes) } else { limits.max_message_bytes };
        if text.len() > limit {
            let what = if media { "a media_offer or media_answer" } else { "a message" };
            let e = ProtocolError::new(ErrorCode::MessageTooLarge, format!("{what} can be at most {limit} bytes"));
            self.direct_error(e, id);
            return ControlFlow::Continue(());
        }
        let msg = match parsed {
            Ok(m) => m,
            Err(Rejected { error, id, .. }) => {
                self.direct_error(error, id.as_deref());
                return ControlFlow::Continue(());
            }
        };
        let rid: Option<Arc<str>> = msg.id.map(Arc::from);
        match (&self.joined, msg.command) {
            (_, Command::Ping) => self.direct(&Event::Pong, rid.as_deref()),
            (None, Command::CertificateRequest) => self.certificate(rid).await,
            (None, _) if matches!(self.cred, Credential::Certificate { .. }) => {
                let e = ProtocolError::new(
                    ErrorCode::MeetingEnded,
                    "the meeting has ended; only certificate_request is possible",
                );
                self.direct_error(e, rid.as_deref())
            }
            (None, Command::Join { display_name }) => self.join(display_name, rid).await,
            (None, Command::Resume { resume_token, last_seq }) => self.resume(resume_token, last_seq, rid).await,
            (None, _) => self.direct_error(
                ProtocolError::new(ErrorCode::NotJoined, "send `join` (or `resume`) first"),
                rid.as_deref(),
            ),
            (Some(_), Command::Join { .. } | Command::Resume { .. }) => self.direct_error(
                ProtocolError::new(ErrorCode::AlreadyJoined, "this connection has already joined"),
                rid.as_deref(),
            ),
            (Some((from, handle)), command) => {
                let msg = ActorMsg::Command { conn_id: self.conn.id, from: *from, command, request_id: rid };
                if handle.tx.send(msg).await.is_err() {
                    // The meeting stopped (ended or restarting); the client reconnects.
                    self.direct_error(unavailable(), None);
                    self.conn.close(CloseReason::SHUTDOWN);
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// One's own certificate, from the final attendance record.
    async fn certificate(&mut self, rid: Option<Arc<str>>) {
        let Credential::Certificate { meeting, member } = &self.cred else {
            let e = ProtocolError::new(
                ErrorCode::CertificateUnavailable,
                "certificates are available after the meeting ends",
            );
            return self.direct_error(e, rid.as_deref());
        };
        let unavailable = |m: String| ProtocolError::new(ErrorCode::CertificateUnavailable, m);
        let result = match self.app.store.result_for(meeting, &member.program, &member.member_ref).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return self.direct_error(
                    unavailable("there is no attendance record for you in this meeting".into()),
                    rid.as_deref(),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read attendance");
                return self.direct_error(ProtocolError::new(ErrorCode::Internal, "please try again"), rid.as_deref());
            }
        };
        match crate::api::attendance::issue(&self.app, &result, "signal").await {
            Ok(c) => self.direct(
                &Event::Certificate {
                    certificate: c.certificate,
                    minutes_present: c.claims.minutes_present,
                    credited: true,
                },
                rid.as_deref(),
            ),
            Err(e) => self.direct_error(unavailable(e.message), rid.as_deref()),
        }
    }

    async fn join(&mut self, display_name: Option<String>, rid: Option<Arc<str>>) {
        let Credential::Join { meeting, member, role } = &self.cred else {
            let e = ProtocolError::new(
                ErrorCode::NotJoined,
                "this connection was opened with a resume token; send `resume`",
            );
            return self.direct_error(e, rid.as_deref());
        };
        for _ in 0..3 {
            let handle = self.app.rooms.get_or_spawn(meeting);
            let (reply, rx) = oneshot::channel();
            let msg = ActorMsg::Join {
                conn: self.conn.clone(),
                member: member.clone(),
                role: *role,
                display_name: display_name.clone(),
                request_id: rid.clone(),
                reply,
            };
            if handle.tx.send(msg).await.is_err() {
                continue;
            }
            match rx.await {
                Ok(Ok(pid)) => {
                    self.joined = Some((pid, handle));
                    self.permit = None;
                    return;
                }
                Ok(Err(JoinFailure::Refused)) => return,
                Ok(Err(JoinFailure::Moved)) => return self.direct_error(unavailable(), rid.as_deref()),
                Ok(Err(JoinFailure::Retry)) | Err(_) => continue,
            }
        }
        self.direct_error(unavailable(), rid.as_deref());
    }

    async fn resume(&mut self, resume_token: String, last_seq: u64, rid: Option<Arc<str>>) {
        let invalid =
            || ProtocolError::new(ErrorCode::InvalidResumeToken, "that resume token is not valid here; join again");
        if resume_token_meeting(&resume_token).as_deref() != Some(self.cred.meeting_id()) {
            return self.direct_error(invalid(), rid.as_deref());
        }
        // Cluster mode: a meeting that is not (or no longer) here has moved; the client tries again
        // and its next connection reaches the owner. On one node it is simply over.
        let gone = || if self.app.cluster.is_some() { unavailable() } else { invalid() };
        let Some(handle) = self.app.rooms.get(self.cred.meeting_id()) else {
            return self.direct_error(gone(), rid.as_deref());
        };
        let (reply, rx) = oneshot::channel();
        let msg = ActorMsg::Resume { conn: self.conn.clone(), resume_token, last_seq, request_id: rid.clone(), reply };
        if handle.tx.send(msg).await.is_err() {
            return self.direct_error(invalid(), rid.as_deref());
        }
        match rx.await {
            Ok(Ok(pid)) => {
                self.joined = Some((pid, handle));
                self.permit = None;
            }
            Ok(Err(JoinFailure::Refused)) => {}
            Ok(Err(JoinFailure::Moved)) => self.direct_error(unavailable(), rid.as_deref()),
            Ok(Err(JoinFailure::Retry)) | Err(_) => self.direct_error(gone(), rid.as_deref()),
        }
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: crate::meeting::OutboundRx,
    kill: watch::Receiver<Option<CloseReason>>,
    done: CancellationToken,
    batch: usize,
) {
    async fn close(sink: &mut SplitSink<WebSocket, Message>, r: CloseReason) {
        if r == GONE {
            return;
        }
        if r == PEER_CLOSED {
            // tungstenite refuses to send after the peer's close but queued the echo: flush it.
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
            return;
        }
        let frame = CloseFrame { code: r.code, reason: Utf8Bytes::from_static(r.reason) };
        // Best effort: a client that is not reading may never take it.
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
    }
    // One future watches for the kill signal for the whole connection (not one per frame), on a
    // clone of the receiver, so the hot path below can look at the original without waiting.
    // The hot path (a frame is queued, the socket takes it) registers no waker and polls no
    // kill future: it only reads the watch's version. The kill future is polled only where the
    // writer waits on a full socket (a slow consumer's cut must reach it there); a writer
    // waiting for frames is woken by the close a cut queues.
    let mut close_with: Option<CloseReason> = None;
    let mut kill_wait = kill.clone();
    let cut = |kill: &watch::Receiver<Option<CloseReason>>| kill.has_changed().unwrap_or(true);
    {
        let killed = kill_wait.changed();
        tokio::pin!(killed);
        loop {
            let item = match rx.try_recv() {
                Ok(_) if cut(&kill) => break,
                Ok(m) => Some(m),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                // Waiting for frames: a cut queues a close behind it (`ConnHandle::cut`), so
                // the queue alone wakes this writer.
                Err(mpsc::error::TryRecvError::Empty) => rx.recv().await,
            };
            let mut next = match item {
                None => break,
                Some(Outbound::Close(r)) => {
                    close_with = Some(r);
                    break;
                }
                Some(Outbound::Frame(text)) => Some(text),
            };
            // Everything already queued goes out with one flush: one write for the frames one
            // room input caused, instead of one per frame. The write buffer
            // (`ws_write_buffer_bytes`) flushes on its own when a batch outgrows it.
            let mut fed = 0;
            let mut failed = false;
            while let Some(text) = next.take() {
                // A future that holds no frame, so it can be dropped while the socket is full.
                let ready = match std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)).now_or_never() {
                    Some(r) => r,
                    None => tokio::select! {
                        biased;
                        _ = &mut killed => { failed = true; break }
                        r = std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)) => r,
                    },
                };
                if ready.is_err() || sink.start_send_unpin(Message::Text(text)).is_err() {
                    failed = true;
                    break;
                }
                fed += 1;
                if fed >= batch {
                    break;
                }
                match rx.try_recv() {
                    Ok(Outbound::Frame(t)) => next = Some(t),
                    Ok(Outbound::Close(r)) => {
                        close_with = Some(r);
                        break;
                    }
                    Err(_) => {}
                }
            }
            if failed {
                break;
            }
            let flushed = match sink.flush().now_or_never() {
                Some(r) => r,
                None => tokio::select! {
                    biased;
                    _ = &mut killed => break,
                    r = sink.flush() => r,
                },
            };
            if flushed.is_err() || close_with.is_some() {
                break;
            }
        }
    }
    if close_with.is_none() {
        // Cut off (slow consumer, reader gone): the reason, if any, is in the watch.
        close_with = *kill.borrow();
    }
    if let Some(r) = close_with {
        close(&mut sink, r).await;
    }
    done.cancel();
}

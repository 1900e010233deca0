//! A client that never reads is cut off; the rest of its meeting keeps receiving.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;
use tokio::net::TcpSocket;

/// A server whose queues fill fast: small outbound queues, big chats, no rate limits.
async fn slow_app() -> TestApp {
    spawn_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.messages_per_second = 100_000;
        c.limits.chat_max_chars = 12_000;
        c.limits.chat_burst = 1_000_000;
        c.limits.chat_refill_ms = 1;
    })
    .await
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The slow client: a tiny receive buffer, joins, then never reads again. Returns its socket and
/// participant id (as the facilitator saw it join).
async fn join_slow_client(app: &TestApp, fac: &mut Client) -> (RawWs, String) {
    use futures_util::SinkExt;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!("ws://{}/v1/signal?token={}", app.addr, app.token(ALPHA, "open", "slow", Member));
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let join = json!({"type": "join", "display_name": "Slow"}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(join.into())).await.unwrap();
    let joined =
        fac.recv_until(|v| v["type"] == "participant_joined" && v["participant"]["display_name"] == "Slow").await;
    (ws, joined["participant"]["participant_id"].as_str().unwrap().to_string())
}

/// Sends large chats until the facilitator sees the slow client disconnected (kernel socket
/// buffers on loopback hold a few megabytes before the server's queue fills); `reader`, when
/// given, keeps up meanwhile. Whether the cut came.
async fn chat_until_cut(fac: &mut Client, slow_pid: &str, mut reader: Option<&mut Client>) -> bool {
    let text = "x".repeat(12_000);
    for _ in 0..2000 {
        let (_, before) = fac.request(json!({"type": "chat", "text": text})).await;
        if before.iter().any(|v| {
            v["type"] == "participant_updated"
                && v["participant"]["participant_id"] == slow_pid
                && v["participant"]["connected"] == false
        }) {
            return true;
        }
        if let Some(r) = reader.as_deref_mut() {
            r.recv_type("chat").await;
        }
    }
    false
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_while_the_meeting_goes_on() {
    let app = slow_app().await;
    let (mut fac, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut reader, _) = app.join(ALPHA, "open", "reader", Member, "Reader").await;

    let (slow_ws, slow_pid) = join_slow_client(&app, &mut fac).await;

    // Send large chat messages until the server reports the slow client disconnected (kernel
    // socket buffers on loopback hold a few megabytes before the server's queue fills).
    let cut = chat_until_cut(&mut fac, &slow_pid, Some(&mut reader)).await;
    assert!(cut, "the slow client was never cut off");
    assert!(app.metrics().slow_client_disconnects.get() >= 1);
    // The meeting goes on for those who read.
    let (reply, _) = fac.request(json!({"type": "chat", "text": "still here"})).await;
    assert_eq!(reply["type"], "chat");
    reader.recv_until(|v| v["type"] == "chat" && v["text"] == "still here").await;
    drop(slow_ws);
}

#[tokio::test]
async fn a_cut_connection_is_counted_once_however_many_replies_then_fail_to_queue() {
    let app = slow_app().await;
    let metrics = app.metrics();
    let (mut fac, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut slow_ws, slow_pid) = join_slow_client(&app, &mut fac).await;
    let cut = chat_until_cut(&mut fac, &slow_pid, None).await;
    assert!(cut, "the slow client was never cut off");
    assert_eq!(metrics.slow_client_disconnects.get(), 1);
    // The cut client keeps sending: each ping's pong finds the queue full.
    let before = metrics.messages_in.get();
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    for _ in 0..100 {
        if slow_ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.is_err() {
            break;
        }
    }
    // Wait until the server has read them (or dropped the connection).
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.messages_in.get() < before + 100 && metrics.connections.get() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "the pings were never read");
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.slow_client_disconnects.get(), 1, "one cut, counted once");
}

//! A client that never reads is cut off; the rest of its meeting keeps receiving.

use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::json;
use tokio::net::TcpSocket;

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_while_the_meeting_goes_on() {
    let app = spawn_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.messages_per_second = 100_000;
        c.limits.chat_max_chars = 12_000;
        c.limits.chat_burst = 1_000_000;
        c.limits.chat_refill_ms = 1;
    })
    .await;
    let (mut fac, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let (mut reader, _) = app.join(ALPHA, "open", "reader", Member, "Reader").await;

    // The slow client: a tiny receive buffer, joins, then never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!("ws://{}/v1/signal?token={}", app.addr, app.token(ALPHA, "open", "slow", Member));
    let (mut slow_ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    use futures_util::SinkExt;
    slow_ws
        .send(tokio_tungstenite::tungstenite::Message::Text(
            json!({"type": "join", "display_name": "Slow"}).to_string().into(),
        ))
        .await
        .unwrap();
    let joined =
        fac.recv_until(|v| v["type"] == "participant_joined" && v["participant"]["display_name"] == "Slow").await;
    let slow_pid = joined["participant"]["participant_id"].as_str().unwrap().to_string();

    // Send large chat messages until the server reports the slow client disconnected (kernel
    // socket buffers on loopback hold a few megabytes before the server's queue fills).
    let text = "x".repeat(12_000);
    let mut cut = false;
    for _ in 0..2000 {
        let (_, before) = fac.request(json!({"type": "chat", "text": text})).await;
        if before.iter().any(|v| {
            v["type"] == "participant_updated"
                && v["participant"]["participant_id"] == slow_pid.as_str()
                && v["participant"]["connected"] == false
        }) {
            cut = true;
            break;
        }
        // The reading member keeps up.
        reader.recv_type("chat").await;
    }
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
    let app = spawn_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.messages_per_second = 100_000;
        c.limits.chat_max_chars = 12_000;
        c.limits.chat_burst = 1_000_000;
        c.limits.chat_refill_ms = 1;
    })
    .await;
    let metrics = app.metrics();
    let (mut fac, _) = app.join(ALPHA, "open", "fac", Facilitator, "Facil").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!("ws://{}/v1/signal?token={}", app.addr, app.token(ALPHA, "open", "slow", Member));
    let (mut slow_ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    slow_ws.send(Message::Text(json!({"type": "join", "display_name": "Slow"}).to_string().into())).await.unwrap();
    let joined =
        fac.recv_until(|v| v["type"] == "participant_joined" && v["participant"]["display_name"] == "Slow").await;
    let slow_pid = joined["participant"]["participant_id"].as_str().unwrap().to_string();
    let text = "x".repeat(12_000);
    let mut cut = false;
    for _ in 0..2000 {
        let (_, before) = fac.request(json!({"type": "chat", "text": text})).await;
        if before.iter().any(|v| {
            v["type"] == "participant_updated"
                && v["participant"]["participant_id"] == slow_pid.as_str()
                && v["participant"]["connected"] == false
        }) {
            cut = true;
            break;
        }
    }
    assert!(cut, "the slow client was never cut off");
    assert_eq!(metrics.slow_client_disconnects.get(), 1);
    // The cut client keeps sending: each ping's pong finds the queue full.
    let before = metrics.messages_in.get();
    for _ in 0..100 {
        if slow_ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.is_err() {
            break;
        }
    }
    // Wait until the server has read them (or dropped the connection).
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.messages_in.get() < before + 100 && metrics.connections.get() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "the pings were never read");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(metrics.slow_client_disconnects.get(), 1, "one cut, counted once");
}

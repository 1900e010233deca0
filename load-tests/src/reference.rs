//! The reference: the simplest correct WebSocket broadcast server. No auth, no rules. A client
//! connects to `/room/<id>`; every text frame it sends is relayed to the other clients in that
//! room. It is what Haven's fan-out is compared with.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// The line the reference server prints when it listens.
pub const BANNER: &str = "Reference server running at";

type Room = HashMap<u64, mpsc::UnboundedSender<Message>>;
type Rooms = Arc<Mutex<HashMap<String, Room>>>;

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let rooms: Rooms = Arc::default();
    let mut next_id = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        tokio::spawn(connection(stream, next_id, rooms.clone()));
    }
}

// tungstenite fixes the handshake callback's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
async fn connection(stream: tokio::net::TcpStream, id: u64, rooms: Rooms) {
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let room = path.strip_prefix("/room/").unwrap_or("").to_string();
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    rooms.lock().unwrap().entry(room.clone()).or_default().insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(m)) = source.next().await {
        match m {
            Message::Text(t) => {
                let rooms = rooms.lock().unwrap();
                if let Some(members) = rooms.get(&room) {
                    for (other, tx) in members {
                        if *other != id {
                            let _ = tx.send(Message::Text(t.clone()));
                        }
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    {
        let mut rooms = rooms.lock().unwrap();
        if let Some(members) = rooms.get_mut(&room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(&room);
            }
        }
    }
    writer.abort();
}

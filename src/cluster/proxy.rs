//! Passing a signaling socket on to the node that owns its meeting.
//!
//! The node a client reached opens a WebSocket to the owner with the client's own token (the
//! owner authorises it again, with every check the upgrade makes), the nodes' shared credential
//! and the client's address (so per-address limits hold on the owner), and only then accepts the
//! client's upgrade: a refusal by the owner reaches the client as the same HTTP status and body.
//! Then frames go both ways unchanged, close codes included. When the owner goes away without a
//! close (it died), the client is closed with 1001 `server_shutdown`, which tells it to resume:
//! its resume reaches whichever node owns the meeting then.

use crate::metrics::Metrics;
use axum::extract::ws::{self, WebSocket};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::{self as tg, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The headers one node sends another.
pub const NODE_HEADER: &str = "x-haven-node";
pub const CLIENT_HEADER: &str = "x-haven-client";
/// "Start the meeting here": the sender placed it on this node.
pub const PLACE_HEADER: &str = "x-haven-place";

/// An open socket to the owner.
pub type Upstream = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What to ask the owner for.
pub struct Forward<'a> {
    pub owner_url: &'a str,
    pub token: &'a str,
    pub certificate: bool,
    pub client: IpAddr,
    pub place: bool,
    pub credential: &'a str,
    pub max_frame_bytes: usize,
    pub write_buffer_bytes: usize,
}

fn ws_url(http: &str) -> String {
    let base = http.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    }
}

/// Opens the socket to the owner; a refusal comes back as the response to give the client.
pub async fn connect(f: Forward<'_>) -> Result<Upstream, Response> {
    let mut url = format!("{}/v1/signal", ws_url(f.owner_url));
    if f.certificate {
        url.push_str("?certificate=1");
    }
    let unavailable = || {
        crate::api::error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the meeting is moving to another server; try again in a moment",
        )
        .into_response()
    };
    let Ok(mut req) = url.into_client_request() else { return Err(unavailable()) };
    let headers = req.headers_mut();
    // The token in a header, not the URL, so it never reaches an access log on the way.
    let (Ok(auth), Ok(node), Ok(client)) =
        (format!("Bearer {}", f.token).parse(), f.credential.parse(), f.client.to_string().parse())
    else {
        return Err(unavailable());
    };
    headers.insert(axum::http::header::AUTHORIZATION, auth);
    headers.insert(NODE_HEADER, node);
    headers.insert(CLIENT_HEADER, client);
    if f.place {
        headers.insert(PLACE_HEADER, axum::http::HeaderValue::from_static("1"));
    }
    let config = tg::protocol::WebSocketConfig::default()
        .max_message_size(Some(f.max_frame_bytes))
        .max_frame_size(Some(f.max_frame_bytes))
        .write_buffer_size(f.write_buffer_bytes)
        .max_write_buffer_size(f.write_buffer_bytes.max(f.max_frame_bytes) * 2);
    let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tg::Error::Http(resp))) => {
            // The owner's refusal, as it gave it.
            let (parts, body) = resp.into_parts();
            let mut r = Response::new(axum::body::Body::from(body.unwrap_or_default()));
            *r.status_mut() = parts.status;
            r.headers_mut()
                .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
            Err(r)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot reach the meeting's owner");
            Err(unavailable())
        }
        Err(_) => {
            tracing::warn!("the meeting's owner does not answer");
            Err(unavailable())
        }
    }
}

fn to_upstream(m: ws::Message) -> tg::Message {
    match m {
        ws::Message::Text(t) => tg::Message::Text(t.as_str().into()),
        ws::Message::Binary(b) => tg::Message::Binary(b),
        ws::Message::Ping(b) => tg::Message::Ping(b),
        ws::Message::Pong(b) => tg::Message::Pong(b),
        ws::Message::Close(c) => tg::Message::Close(
            c.map(|c| tg::protocol::CloseFrame { code: c.code.into(), reason: c.reason.as_str().into() }),
        ),
    }
}

fn to_client(m: tg::Message) -> Option<ws::Message> {
    Some(match m {
        tg::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        tg::Message::Binary(b) => ws::Message::Binary(b),
        tg::Message::Ping(b) => ws::Message::Ping(b),
        tg::Message::Pong(b) => ws::Message::Pong(b),
        tg::Message::Close(c) => {
            ws::Message::Close(c.map(|c| ws::CloseFrame { code: c.code.into(), reason: c.reason.as_str().into() }))
        }
        tg::Message::Frame(_) => return None,
    })
}

/// Moves frames both ways until either side closes.
pub async fn pipe(client: WebSocket, upstream: Upstream, metrics: Arc<Metrics>) {
    metrics.cluster_proxied_connections.inc();
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let up = async {
        while let Some(Ok(m)) = c_rx.next().await {
            let close = matches!(m, ws::Message::Close(_));
            if u_tx.send(to_upstream(m)).await.is_err() || close {
                break;
            }
        }
        let _ = u_tx.close().await;
    };
    let down = async {
        let mut closed = false;
        while let Some(Ok(m)) = u_rx.next().await {
            let close = matches!(m, tg::Message::Close(_));
            if let Some(m) = to_client(m) {
                if c_tx.send(m).await.is_err() {
                    return;
                }
            }
            if close {
                closed = true;
                break;
            }
        }
        if !closed {
            // The owner went away without a word (it died): the client resumes, and its resume
            // reaches whoever owns the meeting next.
            let _ = c_tx
                .send(ws::Message::Close(Some(ws::CloseFrame {
                    code: crate::meeting::CloseReason::SHUTDOWN.code,
                    reason: crate::meeting::CloseReason::SHUTDOWN.reason.into(),
                })))
                .await;
        }
        let _ = c_tx.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    metrics.cluster_proxied_connections.dec();
}

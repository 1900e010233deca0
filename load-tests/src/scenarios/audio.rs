//! `audio`: one speaker and L listeners; forwarded packets per second, loss, and the server's CPU
//! seconds per million forwarded packets.
//!
//! The media clients are str0m peers (sans-IO, so a thousand of them fit in one process), each
//! with its own UDP socket, negotiated over Haven's signaling socket exactly as a browser is:
//! `media_offer`, the server's `media_answer`, then the server's renegotiation `media_offer`s.
//! The speaker is a facilitator (heard without the floor) that unmutes and sends a 20 ms Opus-sized
//! frame stream; listeners are receive-only.

use super::{create_meetings, join_haven, run_id, Joined};
use crate::net::Net;
use crate::procfs;
use crate::target::Target;
use crate::token::Minter;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct AudioParams {
    pub listeners: usize,
    /// The measured window, after everyone receives.
    pub duration: Duration,
    /// Listeners joining at once.
    pub concurrency: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct AudioReport {
    pub listeners: usize,
    pub listeners_receiving: usize,
    pub window_seconds: f64,
    pub packets_sent: u64,
    /// Counted by the server (`haven_media_packets_forwarded_total`) in the window.
    pub packets_forwarded: u64,
    pub forwarded_per_second: f64,
    /// Counted by the listeners in the window.
    pub packets_received: u64,
    /// 1 - received / (sent x receiving listeners).
    pub loss: f64,
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_seconds_per_million_forwarded: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub errors: Vec<String>,
}

struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
}

async fn send_json(ws: &mut crate::net::Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

/// One media client: str0m over its own UDP socket, signaling on its Haven socket.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    joined: Joined,
    pending: Option<SdpPendingOffer>,
}

impl Peer {
    async fn start(joined: Joined, dir: Direction) -> anyhow::Result<(Peer, Option<Mid>)> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = change.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        let mut peer = Peer { rtc, socket, local, joined, pending: Some(pending) };
        send_json(&mut peer.joined.ws, json!({"type": "media_offer", "sdp": offer.to_sdp_string()})).await?;
        Ok((peer, (dir == Direction::SendOnly).then_some(mid)))
    }

    async fn signal(&mut self, v: &Value) -> anyhow::Result<()> {
        match v["type"].as_str() {
            Some("media_answer") => {
                if let Some(p) = self.pending.take() {
                    let a = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())?;
                    self.rtc.sdp_api().accept_answer(p, a)?;
                }
            }
            Some("media_offer") => {
                let o = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())?;
                let a = self.rtc.sdp_api().accept_offer(o)?;
                send_json(&mut self.joined.ws, json!({"type": "media_answer", "sdp": a.to_sdp_string()})).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs until `stop`: UDP, timeouts, signaling; the speaker also sends a frame every 20 ms.
    async fn run(mut self, speak: Option<Mid>, counters: Arc<Counters>) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 2048];
        let mut next_frame = tokio::time::Instant::now();
        let mut frame: u64 = 0;
        let payload: Arc<[u8]> = Arc::from(vec![0xfcu8; 80]);
        while !counters.stop.load(Ordering::Relaxed) {
            let timeout = loop {
                match self.rtc.poll_output()? {
                    Output::Transmit(t) => {
                        let _ = self.socket.try_send_to(&t.contents, t.destination);
                    }
                    Output::Timeout(t) => break t,
                    Output::Event(Event::MediaData(_)) => {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                    }
                    Output::Event(_) => {}
                }
            };
            let wake = tokio::time::Instant::from_std(timeout).min(if speak.is_some() {
                next_frame
            } else {
                tokio::time::Instant::now() + Duration::from_millis(200)
            });
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, source) = r?;
                    if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                        self.rtc.handle_input(input)?;
                    }
                }
                m = self.joined.ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        self.signal(&v).await?;
                    }
                    Some(Ok(_)) => {}
                    _ => anyhow::bail!("signaling closed"),
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                    if let Some(mid) = speak {
                        if tokio::time::Instant::now() >= next_frame {
                            next_frame += Duration::from_millis(20);
                            if let Some(w) = self.rtc.writer(mid) {
                                let pt = w.payload_params().next().map(|p| p.pt());
                                if let Some(pt) = pt {
                                    let t = MediaTime::new(frame * 960, Frequency::FORTY_EIGHT_KHZ);
                                    if w.write(pt, Instant::now(), t, payload.clone()).is_ok() {
                                        counters.sent.fetch_add(1, Ordering::Relaxed);
                                        frame += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn forwarded(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("haven_media_packets_forwarded_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Runs the scenario against a Haven target.
pub async fn run(target: &Target, params: &AudioParams) -> anyhow::Result<AudioReport> {
    let meeting = format!("audio-{}", run_id());
    create_meetings(target, std::slice::from_ref(&meeting), params.listeners + 1).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let net = Arc::new(Net::new(target.addr, 1));
    let counters =
        Arc::new(Counters { received: AtomicU64::new(0), sent: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let mut errors = Vec::new();

    // The speaker: a facilitator who unmutes.
    let mut speaker = join_haven(&net, &minter.mint(&meeting, "speaker", "facilitator", 3600)?)
        .await
        .map_err(|e| anyhow::anyhow!("speaker join: {e}"))?;
    send_json(&mut speaker.ws, json!({"type": "set_muted", "muted": false})).await?;
    let (peer, mid) = Peer::start(speaker, Direction::SendOnly).await?;
    let c = counters.clone();
    let mut tasks = vec![tokio::spawn(async move { peer.run(mid, c).await })];

    // Listeners, a batch at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(params.concurrency.max(1)));
    let mut joins = Vec::new();
    for i in 0..params.listeners {
        let (net, sem, token) =
            (net.clone(), sem.clone(), minter.mint(&meeting, &format!("listener-{i}"), "member", 3600)?);
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let j = join_haven(&net, &token).await.map_err(|e| anyhow::anyhow!("join: {e}"))?;
            Peer::start(j, Direction::RecvOnly).await
        }));
    }
    let mut listeners = 0;
    for j in joins {
        match j.await? {
            Ok((peer, _)) => {
                listeners += 1;
                let c = counters.clone();
                tasks.push(tokio::spawn(async move { peer.run(None, c).await }));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }

    // Wait until media flows to (nearly) everyone: received grows by listeners x 25 packets.
    let warm = async {
        let start = counters.received.load(Ordering::Relaxed);
        while counters.received.load(Ordering::Relaxed) < start + listeners as u64 * 25 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), warm).await.is_err() {
        errors.push("media did not reach every listener within 120 s".into());
    }

    let http = reqwest::Client::new();
    let metrics = || async { http.get(target.http_url("/metrics")).send().await?.text().await };
    let cpu0 = target.server_pid.and_then(procfs::sample);
    let fwd0 = forwarded(&metrics().await?);
    let (sent0, recv0, t0) =
        (counters.sent.load(Ordering::Relaxed), counters.received.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(params.duration).await;
    let cpu1 = target.server_pid.and_then(procfs::sample);
    let fwd1 = forwarded(&metrics().await?);
    let (sent1, recv1, window) =
        (counters.sent.load(Ordering::Relaxed), counters.received.load(Ordering::Relaxed), t0.elapsed());
    counters.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }

    let packets_forwarded = fwd1.saturating_sub(fwd0);
    let packets_sent = sent1 - sent0;
    let packets_received = recv1 - recv0;
    let expected = packets_sent * listeners as u64;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b.cpu_seconds - a.cpu_seconds);
    Ok(AudioReport {
        listeners: params.listeners,
        listeners_receiving: listeners,
        window_seconds: window.as_secs_f64(),
        packets_sent,
        packets_forwarded,
        forwarded_per_second: packets_forwarded as f64 / window.as_secs_f64(),
        packets_received,
        loss: if expected > 0 { 1.0 - packets_received as f64 / expected as f64 } else { 0.0 },
        server_cpu_seconds: cpu,
        server_cpu_seconds_per_million_forwarded: cpu
            .filter(|_| packets_forwarded > 0)
            .map(|c| c / (packets_forwarded as f64 / 1_000_000.0)),
        server_rss_kib: cpu1.map(|s| s.rss_kib),
        errors,
    })
}

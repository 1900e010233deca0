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
    /// Packets the speaker sends back to back every 20 ms (1: a voice; more: packets that arrive
    /// together, as a video frame's do, or several voices at once).
    pub burst: usize,
    /// Meetings, each with its own speaker; the listeners are spread over them (a server with
    /// several engines places each meeting on the least loaded one).
    pub meetings: usize,
    /// Listeners per meeting that also publish a microphone track and never send on it (a
    /// member's muted microphone): each listener's session holds that many more outgoing streams.
    pub publishing: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct AudioReport {
    pub listeners: usize,
    pub listeners_receiving: usize,
    /// Listeners that received at least one packet in the window.
    pub listeners_heard: usize,
    /// The fewest packets one listener received in the window.
    pub min_received_per_listener: u64,
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
    /// Packets the listeners received per second of server CPU: the figure compared across
    /// servers (Haven, Janus), since it needs no server counter.
    pub received_per_server_core_second: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub errors: Vec<String>,
    /// The same run against a reference SFU (`--reference janus`), or why it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Box<AudioReport>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_skipped: Option<String>,
    /// Haven ÷ reference, received packets per server core-second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haven_over_reference: Option<f64>,
}

pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) stop: AtomicBool,
}

async fn send_json(ws: &mut crate::net::Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

/// One media client: str0m over its own UDP socket, signaling on its Haven socket (none for
/// Janus, which never renegotiates once set up).
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    joined: Option<Joined>,
    pub(crate) pending: Option<SdpPendingOffer>,
    /// The direction of the client's own m-line (a fresh session after `media_restart` offers
    /// the same).
    dir: Direction,
}

impl Peer {
    /// A client with no media yet, on `ip` (Janus offers to subscribers; it never uses loopback).
    pub(crate) async fn bare(ip: std::net::IpAddr) -> anyhow::Result<Peer> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        Ok(Peer { rtc, socket, local, joined: None, pending: None, dir: Direction::RecvOnly })
    }

    /// An offer with one audio m-line in direction `dir`, kept pending.
    pub(crate) fn offer(&mut self, dir: Direction) -> anyhow::Result<(String, Mid)> {
        let mut change = self.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = change.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        self.pending = Some(pending);
        Ok((offer.to_sdp_string(), mid))
    }

    async fn start(joined: Joined, dir: Direction) -> anyhow::Result<(Peer, Option<Mid>)> {
        let mut peer = Peer::bare(std::net::Ipv4Addr::LOCALHOST.into()).await?;
        peer.dir = dir;
        let (offer, mid) = peer.offer(dir)?;
        let mut joined = joined;
        send_json(&mut joined.ws, json!({"type": "media_offer", "sdp": offer})).await?;
        peer.joined = Some(joined);
        Ok((peer, (dir == Direction::SendOnly).then_some(mid)))
    }

    /// Handles one SDP frame. `media_restart` (the server gave up on a renegotiation, e.g. an
    /// answer that came too late while a thousand listeners joined) starts a fresh session, as a
    /// browser does: a new socket and `Rtc`, a new offer; returns its m-line.
    async fn signal(&mut self, v: &Value) -> anyhow::Result<Option<Mid>> {
        match v["type"].as_str() {
            Some("media_restart") => {
                let fresh = Peer::bare(self.local.ip()).await?;
                (self.rtc, self.socket, self.local, self.pending) = (fresh.rtc, fresh.socket, fresh.local, None);
                let (offer, mid) = self.offer(self.dir)?;
                if let Some(j) = self.joined.as_mut() {
                    send_json(&mut j.ws, json!({"type": "media_offer", "sdp": offer})).await?;
                }
                return Ok(Some(mid));
            }
            Some("media_answer") => {
                if let Some(p) = self.pending.take() {
                    let a = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())?;
                    self.rtc.sdp_api().accept_answer(p, a)?;
                }
            }
            Some("media_offer") => {
                let o = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())?;
                let a = self.rtc.sdp_api().accept_offer(o)?;
                if let Some(j) = self.joined.as_mut() {
                    send_json(&mut j.ws, json!({"type": "media_answer", "sdp": a.to_sdp_string()})).await?;
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Runs until `stop`: UDP, timeouts, signaling; the speaker also sends a frame every 20 ms.
    /// `mine` counts what this peer receives.
    pub(crate) async fn run(
        mut self,
        mut speak: Option<Mid>,
        burst: usize,
        counters: Arc<Counters>,
        mine: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 2048];
        let mut next_frame = tokio::time::Instant::now();
        // Once DTLS is up, a listener counts RTP datagrams without decrypting them: SRTP for tens
        // of thousands of packets a second would make the generator, not the server, the limit.
        let mut connected = false;
        let count_raw = speak.is_none();
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
                        mine.fetch_add(1, Ordering::Relaxed);
                    }
                    Output::Event(Event::Connected) => connected = true,
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
                    if count_raw && connected && is_rtp(&buf[..n]) {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        mine.fetch_add(1, Ordering::Relaxed);
                    } else if let Ok(contents) = buf[..n].try_into() {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                        self.rtc.handle_input(input)?;
                    }
                }
                m = next_signal(&mut self.joined) => match m {
                    // Only SDP matters here: the rest (a thousand `participant_joined` while
                    // everyone joins) is skipped without parsing, so the generator keeps up.
                    Some(Ok(Message::Text(t))) if t.contains("\"type\":\"media_") => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        if let Some(mid) = self.signal(&v).await? {
                            connected = false;
                            speak = speak.map(|_| mid);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => anyhow::bail!("signaling closed"),
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                    if let Some(mid) = speak {
                        if tokio::time::Instant::now() >= next_frame {
                            next_frame += Duration::from_millis(20);
                            for _ in 0..burst.max(1) {
                                let Some(w) = self.rtc.writer(mid) else { break };
                                let Some(pt) = w.payload_params().next().map(|p| p.pt()) else { break };
                                let t = MediaTime::new(frame * 960, Frequency::FORTY_EIGHT_KHZ);
                                if w.write(pt, Instant::now(), t, payload.clone()).is_err() {
                                    break;
                                }
                                counters.sent.fetch_add(1, Ordering::Relaxed);
                                frame += 1;
                                // Each packet goes out now, back to back with the others.
                                self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                                while let Output::Transmit(t) = self.rtc.poll_output()? {
                                    let _ = self.socket.try_send_to(&t.contents, t.destination);
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

/// The next signaling frame; never, for a client without a signaling socket.
async fn next_signal(j: &mut Option<Joined>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match j {
        Some(j) => j.ws.next().await,
        None => std::future::pending().await,
    }
}

/// RTP, not RTCP (RFC 5761: RTCP packet types 192..=223 in the second byte).
fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1])
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
    let run = run_id();
    let meetings: Vec<String> = (0..params.meetings.max(1)).map(|i| format!("audio-{run}-{i}")).collect();
    create_meetings(target, &meetings, params.listeners + 1).await?;
    let minter = Minter::new(&target.program_id, &target.secret);
    let net = Arc::new(Net::new(target.addr, 1));
    let counters = new_counters();
    let mut errors = Vec::new();

    // A speaker in each meeting: a facilitator who unmutes.
    let mut tasks = Vec::new();
    for meeting in &meetings {
        let mut speaker = join_haven(&net, &minter.mint(meeting, "speaker", "facilitator", 3600)?)
            .await
            .map_err(|e| anyhow::anyhow!("speaker join: {e}"))?;
        send_json(&mut speaker.ws, json!({"type": "set_muted", "muted": false})).await?;
        let (peer, mid) = Peer::start(speaker, Direction::SendOnly).await?;
        let (c, burst) = (counters.clone(), params.burst);
        tasks.push(tokio::spawn(async move { peer.run(mid, burst, c, Arc::new(AtomicU64::new(0))).await }));
    }

    // Listeners, a batch at a time. Each starts reading its socket as soon as it has joined:
    // a listener that waited for all the others would let its queue of their arrivals fill up
    // until the server cut it off as a slow client.
    let sem = Arc::new(tokio::sync::Semaphore::new(params.concurrency.max(1)));
    let mut joins = Vec::new();
    for i in 0..params.listeners {
        let (net, sem, token, c) = (
            net.clone(),
            sem.clone(),
            minter.mint(&meetings[i % meetings.len()], &format!("listener-{i}"), "member", 3600)?,
            counters.clone(),
        );
        let publishing = i / meetings.len() < params.publishing;
        joins.push(tokio::spawn(async move {
            let permit = sem.acquire().await;
            let j = join_haven(&net, &token).await.map_err(|e| anyhow::anyhow!("join: {e}"))?;
            // A silent publisher offers a send track and never writes to it; it hears the
            // speaker on the tracks the server adds, like any listener.
            let dir = if publishing { Direction::SendOnly } else { Direction::RecvOnly };
            let (peer, _) = Peer::start(j, dir).await?;
            drop(permit);
            let mine = Arc::new(AtomicU64::new(0));
            let m = mine.clone();
            anyhow::Ok((mine, tokio::spawn(async move { peer.run(None, 1, c, m).await })))
        }));
    }
    let mut listeners = 0;
    let mut per_listener: Vec<Arc<AtomicU64>> = Vec::new();
    for j in joins {
        match j.await? {
            Ok((mine, task)) => {
                listeners += 1;
                per_listener.push(mine);
                tasks.push(task);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }

    let http = reqwest::Client::new();
    let url = target.http_url("/metrics");
    let running = Running { tasks, per_listener, listeners, counters, errors };
    measure(running, params, target.server_pid, || async {
        Ok(Some(forwarded(&http.get(url.clone()).send().await?.text().await?)))
    })
    .await
}

/// A started run: the speaker's and listeners' tasks and what they count.
pub(crate) struct Running {
    pub(crate) tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub(crate) per_listener: Vec<Arc<AtomicU64>>,
    pub(crate) listeners: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) errors: Vec<String>,
}

pub(crate) fn new_counters() -> Arc<Counters> {
    Arc::new(Counters { received: AtomicU64::new(0), sent: AtomicU64::new(0), stop: AtomicBool::new(false) })
}

/// Waits for media to reach the listeners, then measures one window. `server_forwarded` reads the
/// server's own count of forwarded packets, where it has one.
pub(crate) async fn measure<F, Fut>(
    run: Running,
    params: &AudioParams,
    server_pid: Option<u32>,
    server_forwarded: F,
) -> anyhow::Result<AudioReport>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<u64>>>,
{
    let Running { tasks, per_listener, listeners, counters, mut errors } = run;
    // Wait until media flows to everyone: received grows by listeners x 25 packets and every
    // listener has had some (a listener still negotiating would read as loss).
    let warm = async {
        let start = counters.received.load(Ordering::Relaxed);
        let before: Vec<u64> = per_listener.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        while counters.received.load(Ordering::Relaxed) < start + listeners as u64 * 25
            || per_listener.iter().zip(&before).any(|(c, b)| c.load(Ordering::Relaxed) == *b)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), warm).await.is_err() {
        errors.push("media did not reach every listener within 120 s".into());
    }

    let cpu0 = server_pid.and_then(procfs::sample);
    let fwd0 = server_forwarded().await?;
    let (sent0, recv0, t0) =
        (counters.sent.load(Ordering::Relaxed), counters.received.load(Ordering::Relaxed), Instant::now());
    let each0: Vec<u64> = per_listener.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    tokio::time::sleep(params.duration).await;
    let cpu1 = server_pid.and_then(procfs::sample);
    let fwd1 = server_forwarded().await?;
    let (sent1, recv1, window) =
        (counters.sent.load(Ordering::Relaxed), counters.received.load(Ordering::Relaxed), t0.elapsed());
    let each: Vec<u64> =
        per_listener.iter().zip(&each0).map(|(c, before)| c.load(Ordering::Relaxed) - before).collect();
    counters.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }

    let packets_sent = sent1 - sent0;
    let packets_received = recv1 - recv0;
    // Without a server counter (Janus), what the listeners received is what was forwarded.
    let packets_forwarded = match (fwd0, fwd1) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => packets_received,
    };
    // Each listener hears its own meeting's speaker: a share of what all speakers sent.
    let expected = packets_sent * listeners as u64 / params.meetings.max(1) as u64;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b.cpu_seconds - a.cpu_seconds);
    Ok(AudioReport {
        listeners: params.listeners,
        listeners_receiving: listeners,
        listeners_heard: each.iter().filter(|&&n| n > 0).count(),
        min_received_per_listener: each.iter().copied().min().unwrap_or(0),
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
        received_per_server_core_second: cpu.filter(|&c| c > 0.0).map(|c| packets_received as f64 / c),
        server_rss_kib: cpu1.map(|s| s.rss_kib),
        errors,
        reference: None,
        reference_skipped: None,
        haven_over_reference: None,
    })
}

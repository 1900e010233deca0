//! The media plane, tested across two implementations: the clients are webrtc-rs peers connected
//! over loopback to the server's str0m SFU. Every check compares packet counters, which the
//! client tasks publish through `watch` channels, so the tests wait for counts, never for time.

use crate::support::*;
use haven::auth::join_token::TokenRole::{self, Facilitator, Member, Observer};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

/// Packets received, by (sender's participant id, kind).
type Counts = HashMap<(String, &'static str), u64>;
/// The live (not rejected) tracks the server's latest offer holds: (origin participant id, kind).
type Offered = HashSet<(String, &'static str)>;
type Jumps = HashMap<(String, &'static str), u16>;
/// The SSRC each received track arrives with, by (sender's participant id, kind).
type Ssrcs = Arc<std::sync::Mutex<HashMap<(String, &'static str), u32>>>;

/// A participant with a WebSocket and a webrtc-rs peer connection that sends fake Opus (and
/// optionally VP8) RTP continuously. Answers the server's renegotiation offers, and on
/// `media_restart` starts a fresh peer connection with a new offer, as the protocol asks.
pub(crate) struct MediaPeer {
    pub(crate) pid: String,
    to_ws: mpsc::Sender<Value>,
    events: mpsc::Receiver<Value>,
    counts: watch::Receiver<Counts>,
    jumps: watch::Receiver<Jumps>,
    offered: watch::Receiver<Offered>,
    restarts: watch::Receiver<u64>,
    /// Keyframe requests (PLI) the server sent for this peer's camera.
    plis: watch::Receiver<u64>,
    /// The server's answers to this client's ICE restarts.
    pub(crate) ice_restarts: watch::Receiver<Vec<String>>,
    sent: watch::Receiver<u64>,
    /// The server's answer to the first offer.
    pub(crate) answer_sdp: String,
    /// The next answer to a server offer is sent corrupted (a client whose answer is refused).
    corrupt_next_answer: Arc<AtomicBool>,
    /// The next server offer is left unanswered (a client busy with its own offer: glare).
    pub(crate) hold_next_offer: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A rewrite of the SDP a test client receives.
pub(crate) type SdpRewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How a test peer reaches the server (issue 14's tests): ICE servers and policy, and a rewrite
/// of every SDP the server sends (to leave only the candidate a test allows).
#[derive(Clone, Default)]
pub(crate) struct Net {
    pub(crate) ice_servers: Vec<webrtc::ice_transport::ice_server::RTCIceServer>,
    pub(crate) relay_only: bool,
    pub(crate) rewrite: Option<SdpRewrite>,
    /// Use the TURN credentials of the server's `ice_servers` event, at this URL instead of the
    /// given ones (a test's transport shim).
    pub(crate) turn_via: Option<String>,
}

impl Net {
    fn rewrite(&self, sdp: &str) -> String {
        match &self.rewrite {
            Some(f) => f(sdp),
            None => sdp.to_string(),
        }
    }
}

pub(crate) async fn new_pc() -> Arc<RTCPeerConnection> {
    new_pc_with(&Net::default()).await
}

pub(crate) async fn new_pc_with(net: &Net) -> Arc<RTCPeerConnection> {
    let mut m = MediaEngine::default();
    m.register_default_codecs().unwrap();
    // As browsers do: the mid extension lets the receiver map each incoming stream to its m-line.
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        for uri in ["urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:ssrc-audio-level"] {
            let cap = webrtc::rtp_transceiver::rtp_codec::RTCRtpHeaderExtensionCapability { uri: uri.to_owned() };
            m.register_header_extension(cap, kind, None).unwrap();
        }
    }
    let registry = register_default_interceptors(Registry::new(), &mut m).unwrap();
    let mut s = SettingEngine::default();
    s.set_include_loopback_candidate(true);
    s.set_network_types(vec![NetworkType::Udp4]);
    s.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    s.set_ice_multicast_dns_mode(webrtc::ice::mdns::MulticastDnsMode::Disabled);
    let api = APIBuilder::new().with_media_engine(m).with_interceptor_registry(registry).with_setting_engine(s).build();
    let mut config = RTCConfiguration { ice_servers: net.ice_servers.clone(), ..Default::default() };
    if net.relay_only {
        config.ice_transport_policy =
            webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy::Relay;
    }
    Arc::new(api.new_peer_connection(config).await.unwrap())
}

/// The live sendonly tracks of a server offer, by the stream id (the origin's participant id).
fn offered_tracks(sdp: &str) -> Offered {
    let mut out = Offered::new();
    for section in sdp.split("\nm=").skip(1) {
        let kind = if section.starts_with("video") { "video" } else { "audio" };
        // Only what the server sends (the client's own sections carry msids too).
        if section.split(' ').nth(1) == Some("0") || !section.contains("a=sendonly") {
            continue;
        }
        for l in section.lines() {
            if let Some(msid) = l.trim().strip_prefix("a=msid:") {
                out.insert((msid.split(' ').next().unwrap_or_default().to_string(), kind));
            }
        }
    }
    out
}

/// What a client's peer connection needs: its tracks and where to count what it receives.
#[derive(Clone)]
struct Local {
    audio: Arc<TrackLocalStaticRTP>,
    video: Option<Arc<TrackLocalStaticRTP>>,
    counts: Arc<watch::Sender<Counts>>,
    /// Largest step between consecutive RTP sequence numbers received, by origin and kind.
    jumps: Arc<watch::Sender<Jumps>>,
    ssrcs: Ssrcs,
    plis: Arc<watch::Sender<u64>>,
    net: Net,
}

impl Local {
    /// A fresh peer connection with the tracks, and its offer (all loopback candidates gathered).
    async fn offer(&self) -> (Arc<RTCPeerConnection>, String) {
        let pc = new_pc_with(&self.net).await;
        pc.add_track(self.audio.clone()).await.unwrap();
        if let Some(v) = &self.video {
            let sender = pc.add_track(v.clone()).await.unwrap();
            // The camera's RTCP from the server: count keyframe requests.
            let plis = self.plis.clone();
            tokio::spawn(async move {
                use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let n = packets.iter().filter(|p| p.as_any().is::<PictureLossIndication>()).count();
                    if n > 0 {
                        plis.send_modify(|c| *c += n as u64);
                    }
                }
            });
        }
        let counts_tx = self.counts.clone();
        let jumps_tx = self.jumps.clone();
        let ssrcs = self.ssrcs.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let (counts_tx, jumps_tx) = (counts_tx.clone(), jumps_tx.clone());
            let kind = if track.kind() == RTPCodecType::Video { "video" } else { "audio" };
            ssrcs.lock().unwrap().insert((track.stream_id(), kind), track.ssrc());
            // webrtc-rs awaits this future before announcing the next track: read elsewhere.
            tokio::spawn(async move {
                let origin = track.stream_id();
                let mut last: Option<u16> = None;
                while let Ok((pkt, _)) = track.read_rtp().await {
                    let seq = pkt.header.sequence_number;
                    if let Some(l) = last {
                        let step = seq.wrapping_sub(l);
                        jumps_tx.send_modify(|j| {
                            let e = j.entry((origin.clone(), kind)).or_default();
                            *e = (*e).max(step);
                        });
                    }
                    last = Some(seq);
                    counts_tx.send_modify(|c| *c.entry((origin.clone(), kind)).or_default() += 1);
                }
            });
            Box::pin(async {})
        }));
        let offer = pc.create_offer(None).await.unwrap();
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        let sdp = pc.local_description().await.unwrap().sdp;
        (pc, sdp)
    }
}

async fn set_answer(pc: &RTCPeerConnection, answer: &Value, net: &Net) {
    let sdp = net.rewrite(answer["sdp"].as_str().unwrap());
    pc.set_remote_description(RTCSessionDescription::answer(sdp).unwrap()).await.unwrap();
}

/// A client-side ICE restart (`restartIce()`): a new offer with fresh ICE credentials from the same
/// peer connection; returns once the server's answer is applied.
async fn ice_restart(pc: &RTCPeerConnection, ws: &mut Client, net: &Net) -> Value {
    let opts =
        webrtc::peer_connection::offer_answer_options::RTCOfferOptions { ice_restart: true, ..Default::default() };
    let offer = pc.create_offer(Some(opts)).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    let sdp = pc.local_description().await.unwrap().sdp;
    ws.send(json!({"type": "media_offer", "sdp": sdp})).await;
    let answer = ws.recv_until(|v| v["type"] == "media_answer" || v["type"] == "error").await;
    assert_eq!(answer["type"], "media_answer", "ICE restart refused: {answer}");
    set_answer(pc, &answer, net).await;
    answer
}

impl MediaPeer {
    /// Joins `meeting`, then starts media. With `video`, also sends a VP8 track.
    pub(crate) async fn join(app: &TestApp, meeting: &str, member: &str, role: TokenRole, video: bool) -> MediaPeer {
        Self::join_with(app, meeting, member, role, video, Net::default()).await
    }

    /// `join` over the network `net` describes.
    pub(crate) async fn join_with(
        app: &TestApp,
        meeting: &str,
        member: &str,
        role: TokenRole,
        video: bool,
        mut net: Net,
    ) -> MediaPeer {
        let (mut ws, first) = app.join(ALPHA, meeting, member, role, member).await;
        if let Some(url) = net.turn_via.clone() {
            let servers = ws.ice_servers.clone().expect("ice_servers after welcome");
            let s = &servers["ice_servers"][0];
            net.ice_servers = vec![webrtc::ice_transport::ice_server::RTCIceServer {
                urls: vec![url],
                username: s["username"].as_str().unwrap().into(),
                credential: s["credential"].as_str().unwrap().into(),
            }];
        }
        let pid = first["participant_id"].as_str().unwrap().to_string();
        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48000,
                channels: 2,
                ..Default::default()
            },
            "audio".into(),
            pid.clone(),
        ));
        let vtrack = video.then(|| {
            Arc::new(TrackLocalStaticRTP::new(
                RTCRtpCodecCapability { mime_type: MIME_TYPE_VP8.into(), clock_rate: 90000, ..Default::default() },
                "video".into(),
                pid.clone(),
            ))
        });
        let (counts_tx, counts) = watch::channel(Counts::new());
        let (jumps_tx, jumps) = watch::channel(Jumps::new());
        let (plis_tx, plis) = watch::channel(0u64);
        let local = Local {
            audio: audio.clone(),
            video: vtrack.clone(),
            counts: Arc::new(counts_tx),
            jumps: Arc::new(jumps_tx),
            ssrcs: Ssrcs::default(),
            plis: Arc::new(plis_tx),
            net: net.clone(),
        };
        // Offer with all candidates gathered (loopback), then answer.
        let (mut pc, sdp) = local.offer().await;
        ws.send(json!({"type": "media_offer", "sdp": sdp})).await;
        let answer = ws.recv_type("media_answer").await;
        let answer_sdp = answer["sdp"].as_str().unwrap().to_string();
        set_answer(&pc, &answer, &net).await;

        // The socket task: answers renegotiation offers, restarts on request, passes other
        // events on, sends commands.
        let (to_ws, mut from_test) = mpsc::channel::<Value>(64);
        let (events_tx, events) = mpsc::channel::<Value>(4096);
        let (offered_tx, offered) = watch::channel(Offered::new());
        let (restarts_tx, restarts) = watch::channel(0u64);
        let (ice_restarts_tx, ice_restarts) = watch::channel(Vec::<String>::new());
        let corrupt_next_answer = Arc::new(AtomicBool::new(false));
        let corrupt = corrupt_next_answer.clone();
        let hold_next_offer = Arc::new(AtomicBool::new(false));
        let hold = hold_next_offer.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = from_test.recv() => match cmd {
                        Some(v) if v["type"] == "test_keyframe_request" => {
                            // A keyframe request (PLI) for the camera track received from `from`.
                            use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
                            let key = (v["from"].as_str().unwrap_or_default().to_string(), "video");
                            let ssrc = local.ssrcs.lock().unwrap().get(&key).copied();
                            let media_ssrc = ssrc.expect("a camera track from that participant");
                            pc.write_rtcp(&[Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc })]).await.unwrap();
                        }
                        Some(v) if v["type"] == "test_ice_restart" => {
                            let answer = ice_restart(&pc, &mut ws, &net).await;
                            let sdp = answer["sdp"].as_str().unwrap_or_default().to_string();
                            ice_restarts_tx.send_modify(|a| a.push(sdp));
                        }
                        Some(v) => ws.send(v).await,
                        None => return,
                    },
                    v = ws.next_frame() => {
                        let Some(v) = v else { return };
                        if v["type"] == "media_offer" && hold.swap(false, Ordering::Relaxed) {
                            // Left unanswered: the test's ICE restart crosses it.
                            let _ = events_tx.try_send(json!({"type": "held_offer"}));
                        } else if v["type"] == "media_offer" {
                            let sdp = &net.rewrite(v["sdp"].as_str().unwrap());
                            offered_tx.send_replace(offered_tracks(sdp));
                            let offer = RTCSessionDescription::offer(sdp.into()).unwrap();
                            pc.set_remote_description(offer).await.unwrap();
                            let answer = pc.create_answer(None).await.unwrap();
                            pc.set_local_description(answer).await.unwrap();
                            let mut sdp = pc.local_description().await.unwrap().sdp;
                            if corrupt.swap(false, Ordering::Relaxed) {
                                sdp = "v=0\r\nthis is not an answer\r\n".into();
                            }
                            ws.send(json!({"type": "media_answer", "sdp": sdp})).await;
                        } else if v["type"] == "media_restart" {
                            // A fresh peer connection and a fresh offer: the server starts over.
                            let _ = pc.close().await;
                            let (new_pc, sdp) = local.offer().await;
                            pc = new_pc;
                            offered_tx.send_replace(Offered::new());
                            ws.send(json!({"type": "media_offer", "sdp": sdp})).await;
                            let answer = ws.recv_until(|v| v["type"] == "media_answer" || v["type"] == "error").await;
                            assert_eq!(answer["type"], "media_answer", "restart refused: {answer}");
                            set_answer(&pc, &answer, &net).await;
                            restarts_tx.send_modify(|n| *n += 1);
                        } else if events_tx.try_send(v).is_err() {
                            // The test is not reading events; drop them.
                        }
                    }
                }
            }
        });

        // The sending task: fake Opus every 20 ms (and a VP8 frame every 33 ms), always,
        // whatever the server's rules say: enforcement is the server's job.
        let (sent_tx, sent) = watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let seq = AtomicU64::new(0);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let pkt = webrtc::rtp::packet::Packet {
                    header: webrtc::rtp::header::Header {
                        version: 2,
                        marker: true,
                        sequence_number: n as u16,
                        timestamp: (n * 960) as u32,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from_static(&[0xfc, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04, 0x05]),
                };
                if audio.write_rtp(&pkt).await.is_ok() {
                    sent_tx.send_modify(|s| *s += 1);
                }
                if let Some(v) = &vtrack {
                    let frame = webrtc::rtp::packet::Packet {
                        header: webrtc::rtp::header::Header {
                            version: 2,
                            marker: true,
                            sequence_number: n as u16,
                            timestamp: (n * 3000) as u32,
                            ..Default::default()
                        },
                        // VP8 payload descriptor (start of partition), then a keyframe header.
                        payload: bytes::Bytes::from_static(&[
                            0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00, 0x00, 0x00,
                        ]),
                    };
                    let _ = v.write_rtp(&frame).await;
                }
            }
        });
        MediaPeer {
            pid,
            to_ws,
            events,
            counts,
            jumps,
            offered,
            restarts,
            plis,
            ice_restarts,
            sent,
            answer_sdp,
            corrupt_next_answer,
            hold_next_offer,
            stop,
        }
    }

    /// Waits until the server's latest offer satisfies `pred` (tracks this peer is given).
    async fn wait_offered(&mut self, what: &str, pred: impl Fn(&Offered) -> bool) {
        let r = tokio::time::timeout(Duration::from_secs(20), self.offered.wait_for(|o| pred(o))).await;
        let ok = matches!(r, Ok(Ok(_)));
        drop(r);
        assert!(ok, "never offered: {what}; offered {:?}", self.offered.borrow());
    }

    fn is_offered(&self, from: &str, kind: &'static str) -> bool {
        self.offered.borrow().contains(&(from.to_string(), kind))
    }

    /// A round trip through the media engine: a bad ICE candidate is answered with an error on
    /// the same ordered path as offers, so every offer the engine made before it has arrived.
    async fn media_barrier(&mut self) {
        self.send(json!({"type": "ice_candidate", "candidate": "not a candidate"})).await;
        let e = self.event("error").await;
        assert_eq!(e["code"], "invalid_media", "{e}");
    }

    pub(crate) async fn send(&self, v: Value) {
        self.to_ws.send(v).await.unwrap();
    }

    /// Waits for the next event of type `ty`.
    pub(crate) async fn event(&mut self, ty: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let v = self.events.recv().await.expect("socket task alive");
                if v["type"] == ty {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {ty} event"))
    }

    /// The next event, whatever it is.
    pub(crate) async fn next_event(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.events.recv()).await.expect("an event").expect("socket task alive")
    }

    /// Waits for the reply to a request with this id.
    async fn event_with_id(&mut self, id: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let v = self.events.recv().await.expect("socket task alive");
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no reply to {id}"))
    }

    /// The largest step between consecutive sequence numbers received from `from` (1: no gap).
    pub(crate) fn largest_jump(&self, from: &str, kind: &'static str) -> Option<u16> {
        self.jumps.borrow().get(&(from.to_string(), kind)).copied()
    }

    pub(crate) fn received(&self, from: &str, kind: &'static str) -> u64 {
        self.counts.borrow().get(&(from.to_string(), kind)).copied().unwrap_or(0)
    }

    /// Waits until at least `n` packets of `kind` from `from` have arrived.
    pub(crate) async fn wait_received(&mut self, from: &str, kind: &'static str, n: u64) {
        let key = (from.to_string(), kind);
        tokio::time::timeout(Duration::from_secs(20), self.counts.wait_for(|c| c.get(&key).copied().unwrap_or(0) >= n))
            .await
            .unwrap_or_else(|_| panic!("{kind} from {from} never reached {n} packets"))
            .unwrap();
    }

    /// Asks the server for a keyframe of the camera received from `from` (an RTCP PLI, as a
    /// browser sends when it cannot decode).
    async fn request_keyframe(&self, from: &str) {
        self.send(json!({"type": "test_keyframe_request", "from": from})).await;
    }

    /// Waits until the server has sent at least `n` keyframe requests for this peer's camera.
    async fn wait_keyframe_requests(&mut self, n: u64) {
        let r = tokio::time::timeout(WAIT, self.plis.wait_for(|c| *c >= n)).await;
        let ok = matches!(r, Ok(Ok(_)));
        drop(r);
        assert!(ok, "the camera got {} keyframe requests, not {n}", *self.plis.borrow());
    }

    /// Waits until this peer has sent `n` more packets.
    pub(crate) async fn wait_sent(&mut self, n: u64) {
        let target = *self.sent.borrow() + n;
        tokio::time::timeout(Duration::from_secs(20), self.sent.wait_for(|s| *s >= target)).await.unwrap().unwrap();
    }
}

/// After the rule changed: let the sender send `n` packets (anything in flight lands), then check
/// that `listener` gets nothing more from `sender` while `sender` sends `n` more.
pub(crate) async fn assert_not_forwarded(sender: &mut MediaPeer, listener: &MediaPeer, kind: &'static str) {
    sender.wait_sent(25).await;
    let before = listener.received(&sender.pid, kind);
    sender.wait_sent(50).await;
    assert_eq!(listener.received(&sender.pid, kind), before, "{kind} from {} still forwarded", sender.pid);
}

#[tokio::test]
async fn audio_reaches_everyone_and_a_facilitator_mute_stops_it_at_the_server() {
    let app = spawn_app().await;
    let mut f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "open", "speaker", Member, false).await;
    let mut b = MediaPeer::join(&app, "open", "listener-b", Member, false).await;
    let mut c = MediaPeer::join(&app, "open", "listener-c", Member, false).await;
    // Muted on arrival: nothing of a's is forwarded though a's client sends all along.
    assert_not_forwarded(&mut a, &b, "audio").await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    b.wait_received(&a.pid, "audio", 20).await;
    c.wait_received(&a.pid, "audio", 20).await;
    f.wait_received(&a.pid, "audio", 20).await;

    // The facilitator mutes a: subscribers stop receiving while a keeps sending.
    f.send(json!({"type": "mute", "participant_id": a.pid})).await;
    a.event("participant_updated").await;
    assert_not_forwarded(&mut a, &b, "audio").await;
    assert_not_forwarded(&mut a, &c, "audio").await;
    assert!(app.metrics().media_packets_dropped.get() > 0);
    // a's own attempt to unmute is refused; the floor lifts the lock, a unmutes, audio flows.
    f.send(json!({"type": "give_floor", "participant_id": a.pid})).await;
    a.event("floor_changed").await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    let before = b.received(&a.pid, "audio");
    b.wait_received(&a.pid, "audio", before + 20).await;
}

#[tokio::test]
async fn subscriber_sequence_numbers_stay_contiguous_when_a_speaker_is_muted_then_given_the_floor() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "open", "speaker", Member, false).await;
    let mut b = MediaPeer::join(&app, "open", "listener", Member, false).await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    b.wait_received(&a.pid, "audio", 20).await;
    // Muted by the facilitator: the server drops a's packets while a's client keeps numbering.
    f.send(json!({"type": "mute", "participant_id": a.pid})).await;
    a.event("participant_updated").await;
    assert_not_forwarded(&mut a, &b, "audio").await;
    f.send(json!({"type": "give_floor", "participant_id": a.pid})).await;
    a.event("floor_changed").await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    let before = b.received(&a.pid, "audio");
    b.wait_received(&a.pid, "audio", before + 20).await;
    // a's client sent 75+ packets b never got; b's stream still counts up by one.
    let jump = b.jumps.borrow().get(&(a.pid.clone(), "audio")).copied();
    assert_eq!(jump, Some(1), "the subscriber's sequence numbers have a gap");
}

#[tokio::test]
async fn in_floor_control_only_the_floor_holder_is_heard() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "fc", "title": "FC", "settings": {"waiting_room": false, "floor_control": true}}),
    )
    .await;
    let f = MediaPeer::join(&app, "fc", "fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "fc", "a", Member, false).await;
    let b = MediaPeer::join(&app, "fc", "b", Member, false).await;
    a.send(json!({"type": "set_muted", "muted": false})).await;
    let refused = a.event("error").await;
    assert_eq!(refused["code"], "floor_required");
    assert_not_forwarded(&mut a, &b, "audio").await;
    // The facilitator is heard.
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut b = b;
    b.wait_received(&f.pid, "audio", 10).await;
    // With the floor, a is heard.
    f.send(json!({"type": "give_floor", "participant_id": a.pid})).await;
    a.event("floor_changed").await;
    a.send(json!({"type": "set_muted", "muted": false, "id": "unmute"})).await;
    let reply = a.event_with_id("unmute").await;
    assert_eq!(reply["type"], "participant_updated", "{reply}");
    b.wait_received(&a.pid, "audio", 20).await;
}

#[tokio::test]
async fn observers_and_the_waiting_room_publish_to_nobody() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "lobby", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut waiting = MediaPeer::join(&app, "lobby", "waiting", Member, false).await;
    let mut obs = MediaPeer::join(&app, "lobby", "obs", Observer, false).await;
    f.send(json!({"type": "admit", "participant_id": obs.pid})).await;
    obs.event("welcome").await;
    let mut m = MediaPeer::join(&app, "lobby", "member", Member, false).await;
    f.send(json!({"type": "admit", "participant_id": m.pid})).await;
    m.event("welcome").await;
    // The admitted member hears the facilitator; the one still waiting hears nothing.
    m.wait_received(&f.pid, "audio", 20).await;
    assert_eq!(waiting.received(&f.pid, "audio"), 0, "the waiting room hears nothing");
    // Observers and waiting members send all along; it reaches no one.
    assert_not_forwarded(&mut obs, &m, "audio").await;
    assert_not_forwarded(&mut waiting, &m, "audio").await;
    assert_eq!(m.received(&obs.pid, "audio") + f.received(&obs.pid, "audio"), 0);
    assert_eq!(m.received(&waiting.pid, "audio") + f.received(&waiting.pid, "audio"), 0);
    assert_eq!(waiting.received(&f.pid, "audio"), 0);
    let _ = waiting.wait_sent(1).await;
}

#[tokio::test]
async fn members_video_reaches_facilitators_only() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "cam", "title": "Cam check", "settings": {"waiting_room": false, "video": "members_to_facilitators"}}),
    )
    .await;
    let mut f = MediaPeer::join(&app, "cam", "fac", Facilitator, true).await;
    let mut a = MediaPeer::join(&app, "cam", "a", Member, true).await;
    let mut b = MediaPeer::join(&app, "cam", "b", Member, false).await;
    // Positive controls: b's video path works (the facilitator's camera reaches b), and a's
    // camera reaches the facilitator.
    b.wait_received(&f.pid, "video", 10).await;
    f.wait_received(&a.pid, "video", 10).await;
    // b is given a's audio track but no track for a's camera, and no packet of it.
    b.wait_offered("a's audio", |o| o.contains(&(a.pid.clone(), "audio"))).await;
    assert!(!b.is_offered(&a.pid, "video"), "no member is offered another member's camera");
    assert_not_forwarded(&mut a, &b, "video").await;
    assert_eq!(b.received(&a.pid, "video"), 0, "no member sees another member's camera");
}

#[tokio::test]
async fn a_subscribers_keyframe_request_reaches_the_publisher() {
    let app = spawn_app().await;
    app.create_meeting(ALPHA_KEY, json!({"id": "kf", "title": "Keyframes", "settings": {"waiting_room": false}})).await;
    let mut f = MediaPeer::join(&app, "kf", "fac", Facilitator, true).await;
    let mut a = MediaPeer::join(&app, "kf", "a", Member, false).await;
    a.wait_received(&f.pid, "video", 10).await;
    assert_eq!(*f.plis.borrow(), 0, "no keyframe request before a subscriber asks");
    // The subscriber's PLI names the server's outgoing stream; the publisher gets one for its own.
    a.request_keyframe(&f.pid).await;
    f.wait_keyframe_requests(1).await;
}

#[tokio::test]
async fn a_waiting_member_is_offered_no_tracks_and_nobody_is_offered_theirs() {
    let app = spawn_app().await;
    let mut f = MediaPeer::join(&app, "lobby", "fac", Facilitator, true).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut m = MediaPeer::join(&app, "lobby", "member", Member, false).await;
    f.send(json!({"type": "admit", "participant_id": m.pid})).await;
    m.event("welcome").await;
    // Positive control: admitted, tracks flow both ways in SDP.
    m.wait_offered("the facilitator's tracks", |o| o.len() == 2).await;
    f.wait_offered("the member's audio", |o| o.len() == 1).await;

    // A modified client offers media from the waiting room.
    let mut w = MediaPeer::join(&app, "lobby", "waiting", Member, true).await;
    assert_eq!(w.answer_sdp.matches("\nm=").count(), 2, "the answer holds only the waiting member's own m-lines");
    assert!(!w.answer_sdp.contains(&f.pid) && !w.answer_sdp.contains(&m.pid), "{}", w.answer_sdp);
    w.media_barrier().await;
    f.media_barrier().await;
    m.media_barrier().await;
    assert!(w.offered.borrow().is_empty(), "the waiting member learns nobody: {:?}", w.offered.borrow());
    assert!(!f.is_offered(&w.pid, "audio") && !f.is_offered(&w.pid, "video"));
    assert!(!m.is_offered(&w.pid, "audio") && !m.is_offered(&w.pid, "video"));

    // Admitted: now the tracks are negotiated, both ways.
    f.send(json!({"type": "admit", "participant_id": w.pid})).await;
    w.wait_offered("the others' tracks", |o| o.contains(&(f.pid.clone(), "audio"))).await;
    f.wait_offered("the admitted member's audio", |o| o.contains(&(w.pid.clone(), "audio"))).await;
    w.wait_received(&f.pid, "audio", 10).await;
}

#[tokio::test]
async fn a_refused_answer_restarts_the_session_and_newcomers_are_heard() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut a = MediaPeer::join(&app, "open", "listener", Member, false).await;
    a.wait_received(&f.pid, "audio", 5).await;
    // a's answer to the next renegotiation (for b's track) is refused.
    a.corrupt_next_answer.store(true, Ordering::Relaxed);
    let b = MediaPeer::join(&app, "open", "newcomer", Member, false).await;
    b.send(json!({"type": "set_muted", "muted": false})).await;
    let refused = a.event("error").await;
    assert_eq!(refused["code"], "invalid_media", "{refused}");
    // The server asks for a fresh session; the client restarts and hears the newcomer.
    tokio::time::timeout(WAIT, a.restarts.wait_for(|n| *n >= 1)).await.expect("media_restart").unwrap();
    a.wait_received(&b.pid, "audio", 20).await;
    assert!(app.metrics().media_restarts.get() >= 1);
}

#[tokio::test]
async fn the_server_candidate_is_in_every_bundled_section() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, true).await;
    let sections: Vec<&str> = f.answer_sdp.split("\nm=").skip(1).collect();
    assert_eq!(sections.len(), 2, "audio and video: {}", f.answer_sdp);
    for s in sections {
        assert!(s.contains("a=candidate:"), "a bundled section without the candidate: {s}");
    }
}

/// Issue 10: a subscriber's session must not grow with every person who ever joined.
#[tokio::test]
async fn a_long_lived_participant_hears_a_newcomer_after_100_join_leave_cycles() {
    let app = spawn_app().await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "churn", "title": "Churn", "settings": {"waiting_room": false, "video": "everyone"}}),
    )
    .await;
    let mut f = MediaPeer::join(&app, "churn", "fac", Facilitator, true).await;
    for i in 0..100 {
        let m = MediaPeer::join(&app, "churn", &format!("visitor-{i}"), Member, true).await;
        f.wait_offered("the visitor's camera and microphone", |o| {
            o.contains(&(m.pid.clone(), "audio")) && o.contains(&(m.pid.clone(), "video"))
        })
        .await;
        m.send(json!({"type": "leave"})).await;
        let pid = m.pid.clone();
        drop(m);
        f.wait_offered("the visitor gone", |o| !o.iter().any(|(p, _)| *p == pid)).await;
    }
    // The server restarted the session rather than let its SDP grow past what it can negotiate.
    assert!(*f.restarts.borrow() >= 1);
    let newcomer = MediaPeer::join(&app, "churn", "newcomer", Member, true).await;
    newcomer.send(json!({"type": "set_muted", "muted": false})).await;
    f.wait_received(&newcomer.pid, "audio", 20).await;
    f.wait_received(&newcomer.pid, "video", 5).await;
}

#[tokio::test]
async fn leaving_releases_media_state() {
    let app = spawn_app().await;
    let sfu = app.server.as_ref().unwrap().app.sfu.clone().unwrap();
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    // A first visitor, so the facilitator's track is established; then the baseline.
    let mut first = MediaPeer::join(&app, "open", "first", Member, false).await;
    first.wait_received(&f.pid, "audio", 5).await;
    let baseline = sfu.stats().await.unwrap();
    for i in 0..8 {
        let mut m = MediaPeer::join(&app, "open", &format!("cycle-{i}"), Member, false).await;
        m.wait_received(&f.pid, "audio", 5).await;
        m.send(json!({"type": "leave"})).await;
        drop(m);
        // Wait until the engine has let go of the leaver.
        let released = async {
            loop {
                let s = sfu.stats().await.unwrap();
                if s.peers == baseline.peers && s.rules == baseline.rules && s.tracks_out == baseline.tracks_out {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(WAIT, released).await.expect("media state released after leave");
    }
    let after = sfu.stats().await.unwrap();
    assert_eq!(
        (after.peers, after.rules, after.meetings, after.tracks_in),
        (baseline.peers, baseline.rules, baseline.meetings, baseline.tracks_in)
    );
    assert!(after.tracks_out <= baseline.tracks_out + 1, "outgoing tracks do not pile up: {after:?} vs {baseline:?}");
    assert!(after.addresses <= baseline.addresses + 1, "{after:?}");
}

/// The port in the server's host candidate: which engine a session is on.
fn candidate_port(sdp: &str) -> String {
    let line = sdp.lines().find(|l| l.starts_with("a=candidate:")).expect("a candidate");
    line.split(' ').nth(5).unwrap_or_default().to_string()
}

#[tokio::test]
async fn meetings_spread_over_engines_and_never_hear_each_other() {
    let app = spawn_with(|c| c.media.engines = 2).await;
    assert_eq!(app.server.as_ref().unwrap().app.sfu.as_ref().unwrap().engines(), 2);
    for id in ["east", "west"] {
        app.create_meeting(ALPHA_KEY, json!({"id": id, "title": id, "settings": {"waiting_room": false}})).await;
    }
    let fe = MediaPeer::join(&app, "east", "fac-e", Facilitator, false).await;
    let fw = MediaPeer::join(&app, "west", "fac-w", Facilitator, false).await;
    // The second meeting went to the other (less loaded) engine: another socket.
    assert_ne!(candidate_port(&fe.answer_sdp), candidate_port(&fw.answer_sdp), "both meetings on one engine");
    fe.send(json!({"type": "set_muted", "muted": false})).await;
    fw.send(json!({"type": "set_muted", "muted": false})).await;
    let mut le = MediaPeer::join(&app, "east", "listener-e", Member, false).await;
    let mut lw = MediaPeer::join(&app, "west", "listener-w", Member, false).await;
    assert_eq!(candidate_port(&le.answer_sdp), candidate_port(&fe.answer_sdp), "a meeting stays on its engine");
    // Each hears their own meeting's facilitator (positive control)...
    le.wait_received(&fe.pid, "audio", 20).await;
    lw.wait_received(&fw.pid, "audio", 20).await;
    // ...and nothing of the other meeting, not even a track.
    le.wait_received(&fe.pid, "audio", le.received(&fe.pid, "audio") + 25).await;
    assert_eq!(le.received(&fw.pid, "audio"), 0);
    assert_eq!(lw.received(&fe.pid, "audio"), 0);
    assert!(!le.is_offered(&fw.pid, "audio") && !lw.is_offered(&fe.pid, "audio"));
    let text = app.metrics().render();
    assert!(text.contains("haven_media_engine_meetings{engine=\"0\"} 1"), "{text}");
    assert!(text.contains("haven_media_engine_meetings{engine=\"1\"} 1"), "{text}");
}

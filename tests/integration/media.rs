//! The media plane, tested across two implementations: the clients are webrtc-rs peers connected
//! over loopback to the server's str0m SFU. Every check compares packet counters, which the
//! client tasks publish through `watch` channels, so the tests wait for counts, never for time.

use crate::support::*;
use haven::auth::join_token::TokenRole::{self, Facilitator, Member, Observer};
use serde_json::{json, Value};
use std::collections::HashMap;
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

/// A participant with a WebSocket and a webrtc-rs peer connection that sends fake Opus (and
/// optionally VP8) RTP continuously.
pub(crate) struct MediaPeer {
    pub(crate) pid: String,
    to_ws: mpsc::Sender<Value>,
    events: mpsc::Receiver<Value>,
    counts: watch::Receiver<Counts>,
    sent: watch::Receiver<u64>,
    _pc: Arc<RTCPeerConnection>,
    stop: Arc<AtomicBool>,
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn new_pc() -> Arc<RTCPeerConnection> {
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
    Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.unwrap())
}

impl MediaPeer {
    /// Joins `meeting`, then starts media. With `video`, also sends a VP8 track.
    pub(crate) async fn join(app: &TestApp, meeting: &str, member: &str, role: TokenRole, video: bool) -> MediaPeer {
        let (mut ws, first) = app.join(ALPHA, meeting, member, role, member).await;
        let pid = first["participant_id"].as_str().unwrap().to_string();
        let pc = new_pc().await;
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
        pc.add_track(audio.clone()).await.unwrap();
        let vtrack = if video {
            let v = Arc::new(TrackLocalStaticRTP::new(
                RTCRtpCodecCapability { mime_type: MIME_TYPE_VP8.into(), clock_rate: 90000, ..Default::default() },
                "video".into(),
                pid.clone(),
            ));
            pc.add_track(v.clone()).await.unwrap();
            Some(v)
        } else {
            None
        };
        let (counts_tx, counts) = watch::channel(Counts::new());
        let counts_tx = Arc::new(counts_tx);
        pc.on_track(Box::new(move |track, _, _| {
            let counts_tx = counts_tx.clone();
            // webrtc-rs awaits this future before announcing the next track: read elsewhere.
            tokio::spawn(async move {
                let kind = if track.kind() == RTPCodecType::Video { "video" } else { "audio" };
                let origin = track.stream_id();
                while track.read_rtp().await.is_ok() {
                    counts_tx.send_modify(|c| *c.entry((origin.clone(), kind)).or_default() += 1);
                }
            });
            Box::pin(async {})
        }));
        // Offer with all candidates gathered (loopback), then answer.
        let offer = pc.create_offer(None).await.unwrap();
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        let sdp = pc.local_description().await.unwrap().sdp;
        ws.send(json!({"type": "media_offer", "sdp": sdp})).await;
        let answer = ws.recv_type("media_answer").await;
        pc.set_remote_description(RTCSessionDescription::answer(answer["sdp"].as_str().unwrap().into()).unwrap())
            .await
            .unwrap();

        // The socket task: answers renegotiation offers, passes other events on, sends commands.
        let (to_ws, mut from_test) = mpsc::channel::<Value>(64);
        let (events_tx, events) = mpsc::channel::<Value>(4096);
        let pc2 = pc.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = from_test.recv() => match cmd {
                        Some(v) => ws.send(v).await,
                        None => return,
                    },
                    v = ws.next_frame() => {
                        let Some(v) = v else { return };
                        if v["type"] == "media_offer" {
                            let offer = RTCSessionDescription::offer(v["sdp"].as_str().unwrap().into()).unwrap();
                            pc2.set_remote_description(offer).await.unwrap();
                            let answer = pc2.create_answer(None).await.unwrap();
                            pc2.set_local_description(answer).await.unwrap();
                            let sdp = pc2.local_description().await.unwrap().sdp;
                            ws.send(json!({"type": "media_answer", "sdp": sdp})).await;
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
        MediaPeer { pid, to_ws, events, counts, sent, _pc: pc, stop }
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
    let mut f = MediaPeer::join(&app, "cam", "fac", Facilitator, false).await;
    let mut a = MediaPeer::join(&app, "cam", "a", Member, true).await;
    let b = MediaPeer::join(&app, "cam", "b", Member, false).await;
    f.wait_received(&a.pid, "video", 10).await;
    assert_not_forwarded(&mut a, &b, "video").await;
    assert_eq!(b.received(&a.pid, "video"), 0, "no member sees another member's camera");
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

//! Issue 14: media that reaches every member. ICE over TCP, the built-in TURN relay over TCP and
//! TLS (and its refusals), ICE restart, and connection quality.
//!
//! The clients are webrtc-rs peers (`media::MediaPeer`). webrtc-rs's ICE agent speaks UDP only: it
//! neither opens active ICE-TCP connections nor reaches TURN servers over TCP or TLS. So each test
//! that needs a stream puts a small transport shim on the client's side, as the browser's own
//! socket layer would be: the client talks UDP to the shim on loopback, and the shim carries each
//! datagram over one TCP (or TLS) connection to the server, framed as the protocol requires
//! (RFC 4571 for ICE-TCP, RFC 5766 §11 for TURN). Everything the server sees is a real TCP or TLS
//! connection; the client's view of the server is rewritten so that no UDP path exists.

use crate::media::{MediaPeer, Net};
use crate::support::*;
use haven::auth::join_token::TokenRole::{Facilitator, Member};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// How datagrams are framed on the stream.
#[derive(Clone, Copy)]
enum Framing {
    /// ICE-TCP: a 16-bit length before each packet.
    Rfc4571,
    /// TURN over TCP/TLS: STUN and ChannelData are self-delimiting; ChannelData padded to 4 bytes.
    Turn,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type Connect = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, Box<dyn Stream>> + Send + Sync>;

/// A UDP-to-stream shim: each UDP client address gets its own stream to the server.
struct Shim {
    udp: SocketAddr,
    /// Bytes carried over streams, both ways.
    carried: Arc<AtomicU64>,
    /// The tasks that hold each stream's halves: aborting them closes the streams.
    streams: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

async fn read_framed(r: &mut (impl AsyncRead + Unpin), framing: Framing) -> Option<Vec<u8>> {
    match framing {
        Framing::Rfc4571 => {
            let len = r.read_u16().await.ok()? as usize;
            let mut d = vec![0u8; len];
            r.read_exact(&mut d).await.ok()?;
            Some(d)
        }
        Framing::Turn => {
            let mut head = [0u8; 4];
            r.read_exact(&mut head).await.ok()?;
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let (body, keep) = if head[0] < 0x40 { (16 + len, 16 + len) } else { (len.div_ceil(4) * 4, len) };
            let mut d = vec![0u8; 4 + body];
            d[..4].copy_from_slice(&head);
            r.read_exact(&mut d[4..]).await.ok()?;
            d.truncate(4 + keep);
            Some(d)
        }
    }
}

fn frame(d: &[u8], framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Rfc4571 => {
            let mut f = (d.len() as u16).to_be_bytes().to_vec();
            f.extend_from_slice(d);
            f
        }
        Framing::Turn => {
            let mut f = d.to_vec();
            if d.first().is_some_and(|b| (0x40..0x80).contains(b)) {
                f.resize(f.len().div_ceil(4) * 4, 0);
            }
            f
        }
    }
}

impl Shim {
    async fn start(connect: Connect, framing: Framing) -> Shim {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let udp = socket.local_addr().unwrap();
        let carried = Arc::new(AtomicU64::new(0));
        let c2 = carried.clone();
        let streams_held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = streams_held.clone();
        tokio::spawn(async move {
            let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
                let tx = match streams.get(&from) {
                    Some(tx) => tx.clone(),
                    None => {
                        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
                        streams.insert(from, tx.clone());
                        let stream = connect().await;
                        let (mut rd, mut wr) = tokio::io::split(stream);
                        let (socket, carried) = (socket.clone(), c2.clone());
                        let reader = tokio::spawn(async move {
                            while let Some(d) = read_framed(&mut rd, framing).await {
                                carried.fetch_add(d.len() as u64, Ordering::Relaxed);
                                let _ = socket.send_to(&d, from).await;
                            }
                        });
                        let carried = c2.clone();
                        let writer = tokio::spawn(async move {
                            while let Some(d) = rx.recv().await {
                                carried.fetch_add(d.len() as u64, Ordering::Relaxed);
                                if wr.write_all(&frame(&d, framing)).await.is_err() {
                                    return;
                                }
                            }
                        });
                        held.lock().unwrap().extend([reader, writer]);
                        tx
                    }
                };
                let _ = tx.send(buf[..n].to_vec()).await;
            }
        });
        Shim { udp, carried, streams: streams_held }
    }

    /// Closes every stream the shim opened (as a browser's tab closing would).
    fn close_streams(&self) {
        for t in self.streams.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

fn tcp_to(addr: SocketAddr) -> Connect {
    Arc::new(move || {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(s) as Box<dyn Stream>
        })
    })
}

fn tls_to(addr: SocketAddr, cert_der: Vec<u8>) -> Connect {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(cert_der)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Arc::new(move || {
        let connector = connector.clone();
        Box::pin(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            Box::new(connector.connect(name, s).await.expect("TLS to the TURN server")) as Box<dyn Stream>
        })
    })
}

/// The server's SDP as a client that may only use `candidate` sees it: every server candidate
/// replaced by one UDP candidate at the shim.
fn only_candidate(shim: SocketAddr) -> crate::media::SdpRewrite {
    Arc::new(move |sdp: &str| {
        let mut out = String::new();
        for l in sdp.lines() {
            if l.starts_with("a=candidate:") {
                if l.contains(" tcp ") {
                    out.push_str(&format!("a=candidate:1 1 udp 2130706431 {} {} typ host\r\n", shim.ip(), shim.port()));
                }
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out
    })
}

/// A self-signed certificate for `localhost`, written beside the test's data; (cert, key, DER).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("turn-cert.pem"), dir.join("turn-key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

/// A server with TURN over TLS, its certificate made for the test.
async fn spawn_with_tls() -> (TestApp, Vec<u8>, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(certs.path());
    let app = spawn_with(|c| {
        c.turn.tls_cert = Some(cert);
        c.turn.tls_key = Some(key);
        c.turn.tls_host = Some("localhost".into());
    })
    .await;
    (app, der, certs)
}

fn turn(app: &TestApp) -> Arc<haven::turn::TurnHandle> {
    app.server.as_ref().unwrap().app.turn.clone().expect("TURN runs by default")
}

/// Allocates a relay through `server` (a shim or the UDP port) with these credentials.
async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<turn::client::Client, String> {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    Ok(client)
}

/// Waits (10 s at most) until `haven_media_transports{transport}` reads `want`: sessions are
/// classified from their stats, about once a second.
async fn transports_reach(app: &TestApp, transport: &'static str, want: i64) -> bool {
    let g = app.metrics().media_transports.get_or_create(&haven::metrics::TransportLabel { transport }).clone();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while g.get() != want {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The relay accepts the server's own credentials and refuses a wrong or an expired one.
async fn assert_credentials_checked(app: &TestApp, server: SocketAddr) {
    let t = turn(app);
    let good = t.credentials("p-test", unix_now());
    let c = allocate(server, &good.username, &good.credential).await.unwrap();
    c.allocate().await.expect("the server's own credential is accepted");
    c.close().await.unwrap();
    let c = allocate(server, &good.username, "not-the-password").await.unwrap();
    assert!(c.allocate().await.is_err(), "a wrong password is refused");
    c.close().await.unwrap();
    let expired = format!("{}:p-test", unix_now() - 1);
    let c = allocate(server, &expired, &t.secret().password(&expired)).await.unwrap();
    assert!(c.allocate().await.is_err(), "an expired credential is refused, even correctly signed");
    c.close().await.unwrap();
    let foreign = haven::turn::TurnSecret::new(b"another server");
    let c = allocate(server, &good.username, &foreign.password(&good.username)).await.unwrap();
    assert!(c.allocate().await.is_err(), "a credential signed with another key is refused");
    c.close().await.unwrap();
}

/// A facilitator on plain UDP and `m` on `net`: audio flows both ways.
async fn assert_audio_both_ways(app: &TestApp, net: Net) -> (MediaPeer, MediaPeer) {
    let mut f = MediaPeer::join(app, "open", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut m = MediaPeer::join_with(app, "open", "far-away", Member, false, net).await;
    m.send(json!({"type": "set_muted", "muted": false})).await;
    m.wait_received(&f.pid, "audio", 20).await;
    f.wait_received(&m.pid, "audio", 20).await;
    (f, m)
}

#[tokio::test]
async fn ice_tcp_only_client_hears_and_is_heard_through_ice_tcp() {
    let app = spawn_app().await;
    let sfu = app.server.as_ref().unwrap().app.sfu.clone().unwrap();
    let tcp = sfu.tcp_addrs()[0];
    let shim = Shim::start(tcp_to(tcp), Framing::Rfc4571).await;
    let net = Net { rewrite: Some(only_candidate(shim.udp)), ..Default::default() };
    let (f, m) = assert_audio_both_ways(&app, net).await;
    // The server offered its passive TCP candidate beside UDP, UDP preferred.
    let tcp_line = m.answer_sdp.lines().find(|l| l.contains(" tcp ")).expect("a TCP candidate");
    assert!(tcp_line.contains("tcptype passive"), "{tcp_line}");
    let prio = |l: &str| l.split(' ').nth(3).unwrap().parse::<u32>().unwrap();
    let udp_line = m.answer_sdp.lines().find(|l| l.starts_with("a=candidate:") && l.contains(" udp ")).unwrap();
    assert!(prio(udp_line) > prio(tcp_line), "UDP preferred when both work");
    // The media went over the TCP connection.
    assert_eq!(sfu.stats().await.unwrap().tcp_connections, 1);
    assert!(transports_reach(&app, "tcp", 1).await, "counted as ICE-TCP in /metrics");
    assert!(shim.carried.load(Ordering::Relaxed) > 0);
    drop((f, m));
}

#[tokio::test]
async fn relay_only_client_through_turn_over_tcp_hears_and_is_heard() {
    let app = spawn_app().await;
    let shim = Shim::start(tcp_to(turn(&app).tcp), Framing::Turn).await;
    let net =
        Net { relay_only: true, turn_via: Some(format!("turn:{}?transport=udp", shim.udp)), ..Default::default() };
    let (_f, _m) = assert_audio_both_ways(&app, net).await;
    assert_eq!(app.metrics().turn_allocations.get(), 1, "the relay carries the session");
    assert!(transports_reach(&app, "relay", 1).await, "counted as relayed in /metrics, not as udp");
    assert!(transports_reach(&app, "udp", 1).await, "the other participant over plain UDP");
    assert!(shim.carried.load(Ordering::Relaxed) > 0);
    assert_credentials_checked(&app, shim.udp).await;
}

/// A relay allocated over TCP ends when its connection closes, not at the end of its lifetime;
/// the same participant's UDP allocation (same credential, as a browser gathers over every
/// transport) stays.
#[tokio::test]
async fn a_relay_allocated_over_tcp_ends_with_its_connection_and_no_other() {
    let app = spawn_app().await;
    let t = turn(&app);
    let cred = t.credentials("p-tcp", unix_now());
    let media = app.server.as_ref().unwrap().app.sfu.clone().unwrap().addrs()[0];
    let over_udp = allocate(t.udp, &cred.username, &cred.credential).await.unwrap();
    let udp_relay = over_udp.allocate().await.expect("allocated over UDP");
    let shim = Shim::start(tcp_to(t.tcp), Framing::Turn).await;
    let over_tcp = allocate(shim.udp, &cred.username, &cred.credential).await.unwrap();
    let _tcp_relay = over_tcp.allocate().await.expect("allocated over TCP");
    assert_eq!(app.metrics().turn_allocations.get(), 2);
    shim.close_streams();
    // Waits for the release (the allocation's lifetime would be 10 minutes).
    let released = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while app.metrics().turn_allocations.get() != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "the TCP allocation ends with its connection");
    // The one left is the UDP allocation: a permission needs it (437 without one).
    use util::Conn;
    udp_relay.send_to(b"hello", media).await.expect("the UDP allocation stays");
    assert_eq!(app.metrics().turn_allocations.get(), 1);
}

#[tokio::test]
async fn relay_only_client_through_turn_over_tls_hears_and_is_heard() {
    let (app, der, _certs) = spawn_with_tls().await;
    let t = turn(&app);
    let tls = t.tls.expect("TURN over TLS with a certificate");
    let servers = t.credentials("x", unix_now()).urls;
    assert!(servers.iter().any(|u| u == &format!("turns:localhost:{}?transport=tcp", tls.port())), "{servers:?}");
    let shim = Shim::start(tls_to(tls, der), Framing::Turn).await;
    let net =
        Net { relay_only: true, turn_via: Some(format!("turn:{}?transport=udp", shim.udp)), ..Default::default() };
    let (_f, _m) = assert_audio_both_ways(&app, net).await;
    assert_eq!(app.metrics().turn_allocations.get(), 1);
    assert_credentials_checked(&app, shim.udp).await;
}

#[tokio::test]
async fn each_participant_is_given_short_lived_turn_credentials_on_join() {
    let app = spawn_app().await;
    let (c, _) = app.join(ALPHA, "open", "m1", Member, "M1").await;
    let v = c.ice_servers.clone().expect("ice_servers straight after welcome");
    let s = &v["ice_servers"][0];
    let user = s["username"].as_str().unwrap();
    let (expiry, pid) = user.split_once(':').unwrap();
    assert_eq!(Some(pid), c.pid.as_deref(), "the credential names this participant only");
    let ttl = expiry.parse::<u64>().unwrap() - unix_now();
    assert!(ttl <= 4 * 3600 && ttl > 3 * 3600, "valid for the configured hours: {ttl}");
    let urls: Vec<&str> = s["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert!(urls.iter().any(|u| u.starts_with("turn:") && u.ends_with("transport=udp")), "{urls:?}");
    assert!(urls.iter().any(|u| u.starts_with("turn:") && u.ends_with("transport=tcp")), "{urls:?}");
    // The credential works at the relay (UDP here).
    let t = turn(&app);
    let client = allocate(t.udp, user, s["credential"].as_str().unwrap()).await.unwrap();
    client.allocate().await.expect("the handed-out credential is accepted");
}

#[tokio::test]
async fn turn_refuses_to_relay_to_an_address_that_is_not_the_media_server() {
    let app = spawn_app().await;
    let t = turn(&app);
    let sfu = app.server.as_ref().unwrap().app.sfu.clone().unwrap();
    let media = sfu.addrs()[0];
    let good = t.credentials("p-test", unix_now());
    let client = allocate(t.udp, &good.username, &good.credential).await.unwrap();
    let relay = client.allocate().await.unwrap();
    use util::Conn;
    // Elsewhere on the same host, and elsewhere on the internet: refused (403 to the permission).
    let bystander = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let e = relay.send_to(b"hello", bystander.local_addr().unwrap()).await.expect_err("not an open relay");
    assert!(e.to_string().contains("403") || e.to_string().to_lowercase().contains("forbidden"), "{e}");
    let far: SocketAddr = "198.51.100.7:9".parse().unwrap();
    assert!(relay.send_to(b"hello", far).await.is_err());
    assert_eq!(app.metrics().turn_refused_peers.get(), 2);
    // Positive control: the server's own media address is allowed.
    relay.send_to(b"hello", media).await.expect("the media server is reachable through the relay");
}

#[tokio::test]
async fn ice_restart_keeps_the_session_its_tracks_and_participant_id() {
    let app = spawn_app().await;
    let sfu = app.server.as_ref().unwrap().app.sfu.clone().unwrap();
    let mut f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut m = MediaPeer::join(&app, "open", "commuter", Member, false).await;
    m.send(json!({"type": "set_muted", "muted": false})).await;
    m.wait_received(&f.pid, "audio", 20).await;
    f.wait_received(&m.pid, "audio", 20).await;
    let before = sfu.stats().await.unwrap();
    let ufrag = |sdp: &str| sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().trim().to_string();
    let first_ufrag = ufrag(&m.answer_sdp);

    // The network changed: the client restarts ICE on its peer connection.
    m.send(json!({"type": "test_ice_restart"})).await;
    let answers =
        tokio::time::timeout(WAIT, m.ice_restarts.wait_for(|a| !a.is_empty())).await.unwrap().unwrap().clone();
    assert_ne!(ufrag(&answers[0]), first_ufrag, "fresh server ICE credentials");
    // Still the same participant, hearing and heard.
    let heard = m.received(&f.pid, "audio");
    m.wait_received(&f.pid, "audio", heard + 20).await;
    let sent = f.received(&m.pid, "audio");
    f.wait_received(&m.pid, "audio", sent + 20).await;
    let after = sfu.stats().await.unwrap();
    assert_eq!((after.peers, after.tracks_in, after.tracks_out), (before.peers, before.tracks_in, before.tracks_out));
    assert_eq!(app.metrics().media_ice_restarts.get(), 1);
    assert_eq!(app.metrics().media_restarts.get(), 0, "no fresh session was needed");
    assert!(f.ice_restarts.borrow().is_empty());
}

/// Every event `p` receives up to a media round trip (see `media::MediaPeer::media_barrier`).
async fn events_until_barrier(p: &mut MediaPeer) -> Vec<Value> {
    p.send(json!({"type": "ice_candidate", "candidate": "not a candidate"})).await;
    let mut seen = Vec::new();
    loop {
        let v = p.next_event().await;
        if v["type"] == "error" && v["code"] == "invalid_media" {
            return seen;
        }
        seen.push(v);
    }
}

#[tokio::test]
async fn connection_quality_reaches_facilitators_and_never_another_member() {
    let app = spawn_app().await;
    let mut f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    // The facilitator speaks: members send receiver reports, so their figures (RTT) come in.
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut a = MediaPeer::join(&app, "open", "a", Member, false).await;
    let mut b = MediaPeer::join(&app, "open", "b", Member, false).await;
    // The facilitator sees b connect, and then news of a (both members present by then).
    loop {
        let q = f.event("media_quality").await;
        if q["participant_id"] == b.pid.as_str() && q["state"] == "connected" {
            break;
        }
    }
    loop {
        let q = f.event("media_quality").await;
        if q["participant_id"] == a.pid.as_str() {
            break;
        }
    }
    // Each member saw their own connection and none of the other's (b's connection and a's news
    // reached the facilitator while both were in the meeting).
    for me in [&mut a, &mut b] {
        let seen = events_until_barrier(me).await;
        let quality: Vec<&Value> = seen.iter().filter(|v| v["type"] == "media_quality").collect();
        assert!(quality.iter().any(|q| q["participant_id"] == me.pid.as_str()), "own state: {seen:?}");
        assert!(quality.iter().all(|q| q["participant_id"] == me.pid.as_str()), "another's figures: {quality:?}");
    }
    let text = app.metrics().render();
    assert!(text.contains("haven_media_connections{state=\"connected\"} 3"), "{text}");
    assert!(!text.contains(&a.pid) && !text.contains(&b.pid), "metrics are counts, never a person");
}

#[tokio::test]
async fn an_ice_restart_crossing_a_server_offer_wins_and_the_offer_is_made_again() {
    let app = spawn_app().await;
    let f = MediaPeer::join(&app, "open", "fac", Facilitator, false).await;
    f.send(json!({"type": "set_muted", "muted": false})).await;
    let mut m = MediaPeer::join(&app, "open", "commuter", Member, false).await;
    m.wait_received(&f.pid, "audio", 10).await;
    // A newcomer's track is offered to m, and m's client has not answered when it restarts ICE.
    m.hold_next_offer.store(true, std::sync::atomic::Ordering::Relaxed);
    let newcomer = MediaPeer::join(&app, "open", "newcomer", Member, false).await;
    newcomer.send(json!({"type": "set_muted", "muted": false})).await;
    m.event("held_offer").await;
    m.send(json!({"type": "test_ice_restart"})).await;
    tokio::time::timeout(WAIT, m.ice_restarts.wait_for(|a| !a.is_empty())).await.unwrap().unwrap();
    // The server dropped its offer for the client's, then offered the newcomer again: m hears them.
    m.wait_received(&newcomer.pid, "audio", 20).await;
    let heard = m.received(&f.pid, "audio");
    m.wait_received(&f.pid, "audio", heard + 10).await;
    assert_eq!(app.metrics().media_restarts.get(), 0, "no fresh session was needed");
}

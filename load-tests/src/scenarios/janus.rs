//! `audio --reference janus`: the same speaker and listeners against Janus's VideoRoom, for a
//! side-by-side figure (packets the listeners receive per second of server CPU).
//!
//! The harness writes a Janus configuration (HTTP transport and the VideoRoom plugin only, one
//! room, ICE on loopback) to a temp dir and starts `janus` pinned like Haven. Signaling is Janus's
//! REST API: one session per client; the speaker publishes with `joinandconfigure` and a str0m
//! offer; each listener subscribes, answers Janus's offer, and `start`s.

use super::audio::{measure, new_counters, AudioParams, AudioReport, Peer, Running};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;
use tokio::process::{Child, Command};

const ROOM: u64 = 4242;
const PUBLISHER: u64 = 1;

/// Where Janus's plugins and transports are (Debian's `janus` package).
fn janus_lib_dir() -> Option<PathBuf> {
    ["/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus", "/usr/lib/janus", "/usr/local/lib/janus"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("plugins").join("libjanus_videoroom.so").exists())
}

/// The `janus` binary, if installed.
pub fn janus_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("janus")).find(|p| p.exists())
}

/// Why the reference cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if janus_bin().is_none() {
        return Some("janus is not installed (Debian/Ubuntu: apt-get install janus); reference skipped".into());
    }
    if janus_lib_dir().is_none() {
        return Some("janus's VideoRoom plugin was not found; reference skipped".into());
    }
    None
}

/// This machine's own non-loopback IPv4 address: Janus leaves loopback out of ICE, so Janus and
/// its clients meet there (still local: the kernel routes it like loopback). No packet is sent.
pub fn local_ip() -> anyhow::Result<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.connect("192.0.2.1:9").or_else(|_| s.connect("10.255.255.255:9"))?;
    let ip = s.local_addr()?.ip();
    anyhow::ensure!(!ip.is_loopback() && !ip.is_unspecified(), "no non-loopback address for janus");
    Ok(ip)
}

fn write_config(dir: &Path, lib: &Path, http_port: u16, ip: std::net::IpAddr) -> anyhow::Result<PathBuf> {
    let lib = lib.display();
    let conf = dir.display();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"general: {{
    configs_folder = "{conf}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 2
    session_timeout = 0
}}
media: {{
    rtp_port_range = "40000-60000"
}}
nat: {{
    ice_enforce_list = "{ip}"
    full_trickle = false
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}}
transports: {{
    disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}}
events: {{
    broadcast = false
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
"#
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n    json = \"compact\"\n    base_path = \"/janus\"\n    http = true\n    port = {http_port}\n    ip = \"127.0.0.1\"\n    https = false\n}}\nadmin: {{\n    admin_http = false\n}}\n"
        ),
    )?;
    std::fs::write(
        dir.join("janus.plugin.videoroom.jcfg"),
        format!(
            "general: {{\n}}\nroom-{ROOM}: {{\n    description = \"haven-load\"\n    publishers = 1\n    audiocodec = \"opus\"\n    bitrate = 0\n    notify_joining = false\n}}\n"
        ),
    )?;
    Ok(dir.join("janus.jcfg"))
}

/// A started Janus: its REST base URL and process.
pub struct Janus {
    pub base: String,
    /// Where Janus's ICE candidates are, and so its clients' sockets.
    pub ip: std::net::IpAddr,
    pub child: Child,
    pub pid: Option<u32>,
    _dir: tempfile::TempDir,
}

/// Starts Janus pinned to `pin` with a generated configuration; waits until its API answers.
pub async fn start(pin: Option<usize>) -> anyhow::Result<Janus> {
    let bin = janus_bin().context("janus not installed")?;
    let lib = janus_lib_dir().context("janus plugins not found")?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let ip = local_ip()?;
    let cfg = write_config(dir.path(), &lib, port, ip)?;
    let mut cmd = match pin {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg("-C").arg(&cfg).arg("-F").arg(dir.path()).arg("--disable-colors");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(dir.path().join("janus.log"))?))
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("janus.err"))?))
        .kill_on_drop(true);
    let child = cmd.spawn().context("cannot start janus")?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}/janus");
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            if let Ok(r) = http.get(format!("{base}/info")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready).await.context("janus did not answer within 30 s")?;
    Ok(Janus { base, ip, child, pid, _dir: dir })
}

/// One Janus session with one VideoRoom handle.
struct Session {
    http: reqwest::Client,
    url: String,
}

fn tx() -> String {
    format!("t{}", rand::random::<u64>())
}

impl Session {
    async fn new(http: &reqwest::Client, base: &str) -> anyhow::Result<Session> {
        let r: Value =
            http.post(base).json(&json!({"janus": "create", "transaction": tx()})).send().await?.json().await?;
        let sid = r["data"]["id"].as_u64().with_context(|| format!("create: {r}"))?;
        let surl = format!("{base}/{sid}");
        let r: Value = http
            .post(&surl)
            .json(&json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": tx()}))
            .send()
            .await?
            .json()
            .await?;
        let hid = r["data"]["id"].as_u64().with_context(|| format!("attach: {r}"))?;
        Ok(Session { http: http.clone(), url: format!("{surl}/{hid}") })
    }

    async fn message(&self, body: Value, jsep: Option<Value>) -> anyhow::Result<()> {
        let mut m = json!({"janus": "message", "transaction": tx(), "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let r: Value = self.http.post(&self.url).json(&m).send().await?.json().await?;
        anyhow::ensure!(r["janus"] == "ack" || r["janus"] == "success", "janus refused: {r}");
        Ok(())
    }

    /// Long-polls the session until an event carries a JSEP.
    async fn jsep(&self) -> anyhow::Result<Value> {
        let session = self.url.rsplit_once('/').map(|(s, _)| s.to_string()).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let r: Value = self.http.get(format!("{session}?maxev=5")).send().await?.json().await?;
            let events = if r.is_array() { r.as_array().cloned().unwrap_or_default() } else { vec![r] };
            for e in events {
                if e["plugindata"]["data"]["error"].is_string() {
                    anyhow::bail!("janus: {e}");
                }
                if e["jsep"].is_object() {
                    return Ok(e["jsep"].clone());
                }
            }
        }
        anyhow::bail!("no JSEP from janus within 30 s")
    }
}

/// The audio scenario against Janus.
pub async fn run(janus: &Janus, params: &AudioParams) -> anyhow::Result<AudioReport> {
    let http = reqwest::Client::new();
    let counters = new_counters();
    let mut errors = Vec::new();

    // The speaker publishes.
    let s = Session::new(&http, &janus.base).await?;
    let mut speaker = Peer::bare(janus.ip).await?;
    let (offer, mid) = speaker.offer(Direction::SendOnly)?;
    s.message(
        json!({"request": "joinandconfigure", "room": ROOM, "ptype": "publisher", "id": PUBLISHER, "audio": true}),
        Some(json!({"type": "offer", "sdp": offer})),
    )
    .await?;
    let answer = s.jsep().await?;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap_or_default())?;
    let pending = speaker.pending.take().context("no pending offer")?;
    speaker.rtc.sdp_api().accept_answer(pending, answer)?;
    let (c, burst) = (counters.clone(), params.burst);
    let mut tasks =
        vec![tokio::spawn(async move { speaker.run(Some(mid), burst, c, Arc::new(AtomicU64::new(0))).await })];

    // Listeners subscribe.
    let sem = Arc::new(tokio::sync::Semaphore::new(params.concurrency.max(1)));
    let mut joins = Vec::new();
    for _ in 0..params.listeners {
        let (http, base, sem, ip) = (http.clone(), janus.base.clone(), sem.clone(), janus.ip);
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let s = Session::new(&http, &base).await?;
            // The feed exists once the speaker's connection is up: retry until then.
            let mut tries = 0;
            let offer = loop {
                let join =
                    json!({"request": "join", "room": ROOM, "ptype": "subscriber", "streams": [{"feed": PUBLISHER}]});
                s.message(join, None).await?;
                match s.jsep().await {
                    Ok(o) => break o,
                    Err(e) if tries < 100 && e.to_string().contains("No such feed") => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let mut peer = Peer::bare(ip).await?;
            let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap_or_default())?;
            let answer = peer.rtc.sdp_api().accept_offer(offer)?;
            s.message(json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer.to_sdp_string()})))
                .await?;
            anyhow::Ok(peer)
        }));
    }
    let mut listeners = 0;
    let mut per_listener = Vec::new();
    for j in joins {
        match j.await? {
            Ok(peer) => {
                listeners += 1;
                let (c, mine) = (counters.clone(), Arc::new(AtomicU64::new(0)));
                per_listener.push(mine.clone());
                tasks.push(tokio::spawn(async move { peer.run(None, 1, c, mine).await }));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let running = Running { tasks, per_listener, listeners, counters, errors };
    measure(running, params, janus.pid, || async { Ok(None) }).await
}

//! The test harness: an in-process server on port 0 with known programs, and a WebSocket client.

use futures_util::{SinkExt, StreamExt};
use haven::auth::join_token::{self, JoinClaims, TokenRole};
use haven::config::{Config, ProgramConfig, TokenAlg};
use haven::Server;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Program ids chosen to be distinctive, so a privacy scan cannot match them by accident.
pub const ALPHA: &str = "prog-alpha-7f3a";
pub const BETA: &str = "prog-beta-91c2";
pub const ED: &str = "prog-ed-55d1";
pub const RS: &str = "prog-rs-2b8e";
pub const ALPHA_SECRET: &str = "alpha-secret-0123456789abcdef0123456789abcdef";
pub const BETA_SECRET: &str = "beta-secret-0123456789abcdef0123456789abcdef";
pub const ALPHA_KEY: &str = "hk_test_alpha_key";
pub const BETA_KEY: &str = "hk_test_beta_key";
pub const ED_KEY: &str = "hk_test_ed_key";
pub const RS_KEY: &str = "hk_test_rs_key";

/// The server's key of `program`'s meeting `id` (what the journal, the ledger and rooms use).
pub fn key(program: &str, id: &str) -> String {
    haven::store::meeting_key(program, id)
}

/// How a partner program names one of alpha's meetings shared with it.
pub fn alphas(id: &str) -> String {
    format!("{ALPHA}/{id}")
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn program(id: &str, alg: TokenAlg, key: String, api_key: &str) -> ProgramConfig {
    ProgramConfig {
        id: id.into(),
        name: format!("{id} name"),
        token_alg: alg,
        token_key: key.into(),
        api_key_sha256: haven::auth::hash_api_key(api_key),
        default_credit_policy: None,
        facilitation_earns_credit: true,
        crisis_resources: Vec::new(),
    }
}

/// A server under test. Dropping it leaves the task running until the runtime ends (each test has its own runtime).
pub struct TestApp {
    pub addr: SocketAddr,
    pub server: Option<Server>,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts a server with the four test programs; `tweak` adjusts the configuration first.
pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.path().to_path_buf(), ..Default::default() };
    config.programs = vec![
        program(ALPHA, TokenAlg::HS256, ALPHA_SECRET.into(), ALPHA_KEY),
        program(BETA, TokenAlg::HS256, BETA_SECRET.into(), BETA_KEY),
        program(ED, TokenAlg::EdDSA, fixture("ed25519_public.pem"), ED_KEY),
        program(RS, TokenAlg::RS256, fixture("rsa_public.pem"), RS_KEY),
    ];
    tweak(&mut config);
    let server = Server::start(config).await.expect("server starts");
    let app = TestApp { addr: server.addr, server: Some(server), _dir: dir, http: reqwest::Client::new() };
    // Meetings every test can use: `open` (no waiting room) and `lobby` (waiting room), both
    // alpha's; `shared` is alpha's and shared with beta.
    app.create_meeting(ALPHA_KEY, json!({"id": "open", "title": "Open group", "settings": {"waiting_room": false}}))
        .await;
    app.create_meeting(ALPHA_KEY, json!({"id": "lobby", "title": "Lobby group"})).await;
    app.create_meeting(
        ALPHA_KEY,
        json!({"id": "shared", "title": "Shared group", "shared_with": [BETA], "settings": {"waiting_room": false}}),
    )
    .await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET a JSON document, with an API key when given.
    pub async fn get_json(&self, path: &str, key: Option<&str>) -> Value {
        let mut req = self.http.get(self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// GET a text document (CSV), with an API key when given.
    pub async fn get_text(&self, path: &str, key: Option<&str>) -> String {
        let mut req = self.http.get(self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap().text().await.unwrap()
    }

    /// POST JSON and read the JSON answer.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        self.http.post(self.url(path)).json(&body).send().await.unwrap().json().await.unwrap()
    }

    pub async fn create_meeting(&self, key: &str, body: Value) -> Value {
        let r = self.http.post(self.url("/v1/meetings")).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "create meeting {body}");
        r.json().await.unwrap()
    }

    /// A token for `member` of `program` (alpha or beta) in `meeting`.
    pub fn token(&self, program: &str, meeting: &str, member: &str, role: TokenRole) -> String {
        let claims = join_token::claims_for(program, meeting, member, role, 3600);
        sign_hs(program, &claims)
    }

    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(self.addr, token).await.unwrap_or_else(|(s, b)| panic!("connect refused: {s} {b}"))
    }

    /// Connects and joins; returns the client and its `welcome` (or `waiting`).
    pub async fn join(
        &self,
        program: &str,
        meeting: &str,
        member: &str,
        role: TokenRole,
        name: &str,
    ) -> (Client, Value) {
        let mut c = self.connect(&self.token(program, meeting, member, role)).await;
        c.send(json!({"type": "join", "display_name": name})).await;
        let first = c.recv().await;
        assert!(first["type"] == "welcome" || first["type"] == "waiting", "join answered with {first}");
        c.pid = first["participant_id"].as_str().map(String::from);
        if self.server.as_ref().is_some_and(|s| s.app.turn.is_some()) {
            // Straight after: the relay credentials (issue 14).
            let servers = c.recv().await;
            assert_eq!(servers["type"], "ice_servers", "{servers}");
            c.ice_servers = Some(servers);
        }
        (c, first)
    }

    /// Waits until every record journalled so far is in the database.
    pub async fn flush_store(&self) {
        self.server.as_ref().unwrap().app.flush_store().await;
    }

    pub fn metrics(&self) -> std::sync::Arc<haven::metrics::Metrics> {
        self.server.as_ref().unwrap().app.metrics.clone()
    }
}

pub fn sign_hs(program: &str, claims: &JoinClaims) -> String {
    let secret = if program == BETA { BETA_SECRET } else { ALPHA_SECRET };
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A WebSocket client that keeps every frame it received (for privacy scans).
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub pid: Option<String>,
    pub seen: Vec<String>,
    pub last_seq: u64,
    next_id: u64,
    /// The `ice_servers` event that followed the join (see `TestApp::join`).
    pub ice_servers: Option<Value>,
}

/// How long a test waits for an expected frame before failing (a guard, not a pause).
pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects to `/v1/signal?token=`; on an HTTP refusal returns the status and JSON body.
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Client, (u16, Value)> {
        let url = format!("ws://{addr}/v1/signal?token={token}");
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => Ok(Client { ws, pid: None, seen: Vec::new(), last_seq: 0, next_id: 0, ice_servers: None }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next text frame as JSON; panics on close or after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame");
            match m {
                Some(Ok(Message::Text(t))) => {
                    self.seen.push(t.to_string());
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(s) = v["seq"].as_u64() {
                        if s > 0 {
                            assert!(s > self.last_seq, "seq must increase: {s} after {}", self.last_seq);
                            self.last_seq = s;
                        }
                    }
                    return v;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, however long it takes; `None` when the connection closes.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).ok(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Frames until one of type `ty` (returned); the skipped ones are kept in `seen`.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Frames until one matching `pred`.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let v = self.recv().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Sends a command with a fresh id and returns every frame up to and including its reply
    /// (the first frame echoing the id). Because the room answers in order, the frames before it
    /// are everything the room sent this client before handling the command: a barrier.
    pub async fn request(&mut self, mut cmd: Value) -> (Value, Vec<Value>) {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        cmd["id"] = json!(id);
        self.send(cmd).await;
        let mut before = Vec::new();
        loop {
            let v = self.recv().await;
            if v["id"] == id.as_str() {
                return (v, before);
            }
            before.push(v);
        }
    }

    /// Sends a command and expects an error with `code` as its reply.
    pub async fn expect_error(&mut self, cmd: Value, code: &str) -> Value {
        let (reply, _) = self.request(cmd).await;
        assert_eq!(reply["type"], "error", "expected error {code}, got {reply}");
        assert_eq!(reply["code"], code, "{reply}");
        reply
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for close") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(t))) => self.seen.push(t.to_string()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// The configuration file for the real binary: program alpha, plus extra `[section]` lines.
pub fn binary_config(sections: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[[programs]]\nid = \"{ALPHA}\"\nname = \"Alpha\"\ntoken_alg = \"HS256\"\ntoken_key = \"{ALPHA_SECRET}\"\napi_key_sha256 = \"{}\"\n",
        haven::auth::hash_api_key(ALPHA_KEY)
    );
    for (section, lines) in sections {
        text.push_str(&format!("\n[{section}]\n{lines}\n"));
    }
    text
}

/// The real `haven` binary, started on port 0; killed with SIGKILL when dropped.
pub struct BinaryServer {
    pub addr: SocketAddr,
    child: std::process::Child,
    /// What the server logged (stderr), when captured.
    logs: Option<tokio::sync::watch::Receiver<String>>,
}

impl BinaryServer {
    pub fn start(dir: &std::path::Path, config: &std::path::Path, env: &[(&str, &str)]) -> BinaryServer {
        Self::start_with_logs(dir, config, env, None)
    }

    /// Starts the binary with `RUST_LOG` at `log_level` (default `warn`); its stderr is kept.
    pub fn start_with_logs(
        dir: &std::path::Path,
        config: &std::path::Path,
        env: &[(&str, &str)],
        log_level: Option<&str>,
    ) -> BinaryServer {
        use std::io::{BufRead, BufReader, Read};
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_haven"));
        cmd.args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", log_level.unwrap_or("warn"))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the haven binary starts");
        let logs = child.stderr.take().map(|mut err| {
            let (tx, rx) = tokio::sync::watch::channel(String::new());
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = err.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    tx.send_modify(|l| l.push_str(&String::from_utf8_lossy(&chunk[..n])));
                }
            });
            rx
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                let logs = logs.as_ref().map(|l| l.borrow().clone()).unwrap_or_default();
                panic!("the server did not start:\n{logs}");
            };
            if let Some(rest) = line.strip_prefix("Haven is running at http://") {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        BinaryServer { addr, child, logs }
    }

    /// GET `path` with program alpha's API key, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let url = format!("http://{}{path}", self.addr);
        reqwest::Client::new().get(url).bearer_auth(ALPHA_KEY).send().await.unwrap().json().await.unwrap()
    }

    /// POST `path` with a JSON body (alpha's key), as JSON.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let url = format!("http://{}{path}", self.addr);
        reqwest::Client::new().post(url).bearer_auth(ALPHA_KEY).json(&body).send().await.unwrap().json().await.unwrap()
    }

    /// Polls GET `path` (alpha's key) until `pred` holds, and returns what satisfied it. The
    /// timeout is a guard against a hang, not a pause.
    pub async fn wait_json(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            loop {
                let v = self.get_json(path).await;
                if pred(&v) {
                    return v;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait).await.unwrap_or_else(|_| panic!("{path} never got there"))
    }

    /// Creates one of alpha's meetings.
    pub async fn create_meeting(&self, body: Value) {
        let url = format!("http://{}/v1/meetings", self.addr);
        let r = reqwest::Client::new().post(url).bearer_auth(ALPHA_KEY).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "create meeting {body}");
    }

    /// Connects a member of alpha to `meeting` and joins; returns the client after its welcome.
    pub async fn join(&self, meeting: &str, member: &str) -> Client {
        let claims = join_token::claims_for(ALPHA, meeting, member, TokenRole::Member, 600);
        let mut c = Client::connect(self.addr, &sign_hs(ALPHA, &claims)).await.unwrap();
        c.send(json!({"type": "join"})).await;
        assert_eq!(c.recv().await["type"], "welcome");
        c
    }

    /// The process id (for signals other than SIGKILL).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal with `kill` (`-TERM`, `-STOP`, `-CONT`, ...).
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Waits until the captured logs satisfy `pred` (woken by each chunk the server writes), and
    /// returns them. The timeout is a guard against a hang, not a pause.
    pub async fn wait_logs(&self, pred: impl Fn(&str) -> bool) -> String {
        let mut rx = self.logs.clone().expect("the server's stderr is captured");
        let r = tokio::time::timeout(WAIT, rx.wait_for(|l| pred(l))).await.map(|r| r.map(|l| l.clone()));
        match r {
            Ok(Ok(logs)) => logs,
            _ => panic!("the logs never got there: {}", self.logs()),
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.as_ref().map(|l| l.borrow().clone()).unwrap_or_default()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sample's value in a Prometheus text exposition (`series` with its labels, e.g.
/// `haven_errors_total{code="x"}`); 0 when the series is not there yet.
pub fn metric_value(exposition: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    exposition.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A program as the store keeps it, for tests that write to a store directly: named `id`, an
/// HS256 key, an API-key hash of its own (`id` padded with zeros).
pub fn program_row(id: &str) -> haven::store::ProgramRow {
    haven::store::ProgramRow {
        id: id.into(),
        name: id.into(),
        token_alg: "HS256".into(),
        token_key: "k".repeat(32),
        api_key_sha256: format!("{id:0<64}"),
    }
}

/// A meeting as the store keeps it, for tests that write to a store directly: `program`'s meeting
/// `id` (keyed by the bare id, as meetings made before ids were per program are), titled `id`,
/// 20 seats, default settings, shared with nobody, created at 1, nothing else set.
pub fn meeting_row(program: &str, id: &str) -> haven::store::MeetingRow {
    haven::store::MeetingRow {
        id: id.into(),
        local_id: id.into(),
        program_id: program.into(),
        title: id.into(),
        scheduled_start: None,
        scheduled_end: None,
        capacity: 20,
        settings: Default::default(),
        shared_with: Vec::new(),
        partner_facilitators: false,
        created_at: 1,
        ended_at: None,
        credit_policy: None,
        format_id: None,
        format: None,
        series_id: None,
        occurrence_key: None,
    }
}

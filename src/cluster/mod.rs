//! Cluster mode: several nodes, one service, on Redis (live state) and PostgreSQL (everything
//! durable). No consensus of our own: Redis decides who owns a meeting, PostgreSQL refuses what
//! an owner that lost a meeting still writes.
//!
//! - **Leases.** A meeting lives on one node at a time: the node holding `lease:{meeting}` (value
//!   `{token}:{node}`, expiring after `lease_seconds`, renewed every third of that). The token
//!   comes from `INCR fence:{meeting}` when a node takes the lease, so every owner has a larger
//!   one than the last: the fencing token. Taking a lease is one script: free, or held by a node
//!   whose liveness key (`node:{id}`, renewed every two seconds, gone six seconds after its node
//!   stops) has expired.
//! - **Fencing.** The new owner raises the meeting's row in `meeting_fences` (PostgreSQL) to its
//!   token before its actor starts; every journal record carries its writer's token and the
//!   database sets aside records with an older one. Snapshots are written by a script that checks
//!   the lease first. An owner that was paused (`SIGSTOP`) and wakes up after a takeover can
//!   therefore change nothing durable; its renewal finds the lease gone and stops its actors.
//! - **Snapshots.** After every input that changed a room, its actor hands a snapshot
//!   (`room::snapshot`, sealed with a key derived from the cluster secret: it names members) to
//!   one writer task per node, which keeps only the latest per meeting and writes them fenced.
//! - **Placement.** Each node publishes its load (participants, meetings) under `node:{id}`; a
//!   meeting that starts goes to the least loaded live node that is not draining.
//! - **Routing.** A signaling socket may reach any node; one for a meeting owned elsewhere is
//!   passed on to the owner (`signal::proxy`).

pub mod proxy;

use crate::metrics::Metrics;
use crate::room::snapshot::{self, RoomSnapshot};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a node publishes its load and liveness.
const NODE_BEAT: Duration = Duration::from_secs(2);
/// How long a node's liveness key outlives its last beat.
const NODE_TTL_MS: u64 = 6_000;
/// How long a snapshot is kept after its last write (a meeting nobody came back to).
const SNAPSHOT_TTL_MS: u64 = 6 * 3600 * 1000;

/// Why the cluster could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Config(String),
}

/// A node's published state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
    pub participants: u64,
    pub meetings: u64,
    pub draining: bool,
}

/// Who owns a meeting, as far as Redis says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This node (with its fencing token).
    Here { token: i64 },
    /// Another live node, reachable at `url`.
    Elsewhere { node: String, url: String },
}

/// A lease this node holds.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub token: i64,
    /// When this node took it.
    pub since: std::time::Instant,
    /// When the previous owner was last known alive (Unix ms), if this lease was taken over
    /// from a node that died: the start of everyone's gap.
    pub gap_start: Option<i64>,
}

/// A snapshot waiting for the writer.
struct Pending {
    token: i64,
    version: u64,
    sealed: Vec<u8>,
}

/// A snapshot as read back, with when the node that wrote it was last known alive.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: RoomSnapshot,
    pub writer_last_seen: Option<i64>,
}

/// Keys derived from the cluster secret, one per use.
struct Keys {
    snapshot: ChaCha20Poly1305,
    internal: String,
    resume: [u8; 32],
}

fn derive(secret: &str, label: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    m.update(label.as_bytes());
    m.finalize().into_bytes().into()
}

/// How long an actor lets room changes gather before it takes one snapshot of them. A snapshot
/// serialises and seals the whole room, so taking one per input (a hand raise, a mute) would cost
/// O(room) per input; this bounds it to 20 per second per meeting. A node that dies loses at most
/// this much more than the writer's own latency; the ledger (journal) is not affected.
pub const SNAPSHOT_DEBOUNCE_MS: u64 = 50;

/// The cluster as one node sees it.
pub struct Cluster {
    pub node: String,
    pub url: String,
    prefix: String,
    lease_ms: u64,
    redis: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    held: DashMap<String, Held>,
    /// The latest snapshot of each meeting not yet written: (token, sealed bytes).
    pending: Mutex<HashMap<String, Pending>>,
    wake_writer: Notify,
    /// Snapshots taken from `pending` and not yet written.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Meetings whose state changed and whose snapshot is not taken yet (the actor takes it at
    /// most every [`SNAPSHOT_DEBOUNCE_MS`]).
    due: std::sync::atomic::AtomicUsize,
    draining: AtomicBool,
    redis_ok: AtomicBool,
    /// Meetings this node placed lately, and on which node (see [`Cluster::place`]).
    recent_placements: Mutex<std::collections::VecDeque<(std::time::Instant, String)>>,
    /// Requests to other nodes (a join-check for a meeting another node runs): short timeouts,
    /// no redirects.
    pub http: reqwest::Client,
    metrics: Arc<Metrics>,
    acquire: Script,
    renew: Script,
    write_snapshot: Script,
    release: Script,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).field("url", &self.url).finish_non_exhaustive()
    }
}

// KEYS: lease, fence. ARGV: node, node-key prefix, lease ms.
// Returns {token, owner, previous owner or ""}; token 0 when another live node holds it.
const ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
local prev = ''
if cur then
  local tok, owner = string.match(cur, '^(%d+):(.*)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {tonumber(tok), owner, ''}
  end
  if redis.call('EXISTS', ARGV[2] .. owner) == 1 then
    return {0, owner, ''}
  end
  prev = owner
end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], t .. ':' .. ARGV[1], 'PX', ARGV[3])
return {t, ARGV[1], prev}
"#;

// KEYS: leases. ARGV: lease ms, then one expected value per lease. Returns the 1-based indices lost.
const RENEW: &str = r#"
local lost = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i + 1] then
    redis.call('PEXPIRE', k, ARGV[1])
  else
    table.insert(lost, i)
  end
end
return lost
"#;

// KEYS: lease, snapshot, snapshot version. ARGV: expected lease value, bytes, ttl ms, version.
// Returns 1 when written, 2 when a later version of the same owner is there already (a write that
// overtook this one: nothing to do), 0 when the lease is not this owner's.
const WRITE_SNAPSHOT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local tok = string.match(ARGV[1], '^(%d+):')
local cur = redis.call('GET', KEYS[3])
if cur then
  local ctok, cver = string.match(cur, '^(%d+):(%d+)$')
  if ctok == tok and tonumber(cver) >= tonumber(ARGV[4]) then
    return 2
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[3], tok .. ':' .. ARGV[4], 'PX', ARGV[3])
return 1
"#;

// KEYS: lease, snapshot, snapshot version. ARGV: expected lease value, "1" to delete the snapshot too.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] == '1' then redis.call('DEL', KEYS[2], KEYS[3]) end
  return 1
end
return 0
"#;

impl Cluster {
    /// Connects to Redis and derives the keys. `node_url` is where other nodes reach this one.
    pub async fn connect(
        config: &crate::config::Config,
        node_url: String,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        use secrecy::ExposeSecret;
        let url = config.redis_url.as_deref().unwrap_or_default();
        let secret = config
            .cluster
            .secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .ok_or_else(|| ClusterError::Config("cluster.secret is required".into()))?;
        let client = redis::Client::open(url)?;
        let redis = ConnectionManager::new(client.clone()).await?;
        let node = config.cluster.node_id.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 6]>()));
        let keys = Keys {
            snapshot: ChaCha20Poly1305::new(&Key::from(derive(&secret, "haven snapshot v1"))),
            internal: hex::encode(derive(&secret, "haven node v1")),
            resume: derive(&secret, "haven resume v1"),
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClusterError::Config(format!("HTTP client: {e}")))?;
        let cluster = Arc::new(Cluster {
            http,
            node,
            url: node_url,
            prefix: format!("{}:", config.cluster.name),
            lease_ms: config.cluster.lease_seconds.max(2) * 1000,
            redis,
            client,
            keys,
            held: DashMap::new(),
            pending: Mutex::new(HashMap::new()),
            wake_writer: Notify::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            due: std::sync::atomic::AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            redis_ok: AtomicBool::new(true),
            recent_placements: Mutex::new(std::collections::VecDeque::new()),
            metrics,
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            write_snapshot: Script::new(WRITE_SNAPSHOT),
            release: Script::new(RELEASE),
        });
        Ok(cluster)
    }

    /// The prefix of every key of this cluster in Redis.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn con(&self) -> ConnectionManager {
        self.redis.clone()
    }

    fn lease_value(&self, token: i64) -> String {
        format!("{token}:{}", self.node)
    }

    /// The resume-token key every node shares.
    pub fn resume_key(&self) -> [u8; 32] {
        self.keys.resume
    }

    /// Whether a request carries the nodes' shared credential (constant time).
    pub fn is_node(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        presented.as_bytes().ct_eq(self.keys.internal.as_bytes()).into()
    }

    /// The credential a node presents to another.
    pub fn node_credential(&self) -> &str {
        &self.keys.internal
    }

    /// Whether Redis answered the last time it was asked.
    pub fn redis_ok(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed)
    }

    /// A round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let mut c = self.con();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Whether this node is draining (takes no new meetings).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The lease this node holds for the meeting, if any.
    pub fn held(&self, meeting: &str) -> Option<Held> {
        self.held.get(meeting).map(|h| *h)
    }

    /// Snapshots taken but not yet in Redis (`/readyz`; tests wait for 0).
    pub fn unwritten_snapshots(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
            + self.in_flight.load(Ordering::Relaxed)
            + self.due.load(Ordering::Relaxed)
    }

    /// An actor's state changed; it will take a snapshot within [`SNAPSHOT_DEBOUNCE_MS`].
    pub fn snapshot_due(&self) {
        self.due.fetch_add(1, Ordering::Relaxed);
    }

    /// The snapshot an actor said was due is taken (handed to [`Cluster::put_snapshot`]) or no
    /// longer needed (the actor stopped or the meeting moved).
    pub fn snapshot_settled(&self) {
        self.due.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many leases this node holds.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    // ---- nodes ----

    /// Publishes this node's load and liveness.
    pub async fn beat(&self, participants: u64, meetings: u64) -> Result<(), ClusterError> {
        let info = NodeInfo {
            id: self.node.clone(),
            url: self.url.clone(),
            participants,
            meetings,
            draining: self.is_draining(),
        };
        let body = serde_json::to_string(&info).unwrap_or_default();
        let now = chrono::Utc::now().timestamp_millis();
        let mut c = self.con();
        let _: () = redis::pipe()
            .set_options(
                self.key("node", &self.node),
                body,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(NODE_TTL_MS)),
            )
            .sadd(format!("{}nodes", self.prefix), &self.node)
            .set_options(
                self.key("seen", &self.node),
                now,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::EX(86_400)),
            )
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Every live node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut c = self.con();
        let ids: Vec<String> = c.smembers(format!("{}nodes", self.prefix)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("node", id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        let mut out = Vec::new();
        for (id, v) in ids.iter().zip(values) {
            match v.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()) {
                Some(n) => out.push(n),
                None => {
                    // Gone: its key expired. Forget it (a node that comes back adds itself again).
                    let _: Result<(), _> = c.srem(format!("{}nodes", self.prefix), id).await;
                }
            }
        }
        Ok(out)
    }

    /// The node a new meeting should start on: the least loaded live node that is not draining
    /// (participants, then meetings, then id, so every node picks the same one).
    ///
    /// A node's published load is up to a beat old, so this node also counts the meetings it
    /// placed on each node since (one participant each, the one joining): otherwise a burst of
    /// new meetings all goes to the node that was least loaded at the last beat.
    pub async fn place(&self) -> Result<NodeInfo, ClusterError> {
        let nodes = self.nodes().await?;
        let mut recent = self.recent_placements.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        while recent.front().is_some_and(|(at, _)| now.duration_since(*at) > NODE_BEAT * 2) {
            recent.pop_front();
        }
        let load = |n: &NodeInfo| n.participants + recent.iter().filter(|(_, id)| *id == n.id).count() as u64;
        let best = nodes
            .into_iter()
            .filter(|n| !n.draining)
            .min_by(|a, b| (load(a), a.meetings, &a.id).cmp(&(load(b), b.meetings, &b.id)))
            .ok_or_else(|| ClusterError::Config("no live node takes new meetings".into()))?;
        recent.push_back((now, best.id.clone()));
        Ok(best)
    }

    async fn node_url(&self, node: &str) -> Result<Option<String>, ClusterError> {
        let mut c = self.con();
        let v: Option<String> = c.get(self.key("node", node)).await?;
        Ok(v.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()).map(|n| n.url))
    }

    // ---- leases ----

    /// Who owns the meeting now, taking it when nobody live does and `take` allows (`take` is
    /// false when the meeting should start on another node).
    pub async fn owner(
        &self,
        meeting: &str,
        store: &crate::store::Store,
        take: bool,
    ) -> Result<Option<Owner>, ClusterError> {
        if let Some(h) = self.held(meeting) {
            return Ok(Some(Owner::Here { token: h.token }));
        }
        let mut c = self.con();
        let cur: Option<String> = c.get(self.key("lease", meeting)).await?;
        if let Some(cur) = cur {
            if let Some((_, owner)) = cur.split_once(':') {
                if owner != self.node {
                    if let Some(url) = self.node_url(owner).await? {
                        return Ok(Some(Owner::Elsewhere { node: owner.to_string(), url }));
                    }
                }
            }
        }
        if !take || self.is_draining() {
            return Ok(None);
        }
        self.acquire(meeting, store).await
    }

    /// Takes the meeting's lease if it is free or its holder is dead; raises the fence in the
    /// database before anything is written under it.
    async fn acquire(&self, meeting: &str, store: &crate::store::Store) -> Result<Option<Owner>, ClusterError> {
        let mut c = self.con();
        let (token, owner, prev): (i64, String, String) = self
            .acquire
            .key(self.key("lease", meeting))
            .key(self.key("fence", meeting))
            .arg(&self.node)
            .arg(format!("{}node:", self.prefix))
            .arg(self.lease_ms)
            .invoke_async(&mut c)
            .await?;
        if token == 0 {
            return Ok(self.node_url(&owner).await?.map(|url| Owner::Elsewhere { node: owner, url }));
        }
        // Redis may have lost its counters (restarted without persistence): the database's fence
        // is the floor, and the counter is moved past it before the lease is used.
        let current = store.claim_fence(meeting, token).await?;
        let token = if current > token {
            let _: () = c.set(self.key("fence", meeting), current).await?;
            let _: () = c.del(self.key("lease", meeting)).await?;
            return Box::pin(self.acquire(meeting, store)).await;
        } else {
            token
        };
        let gap_start = if prev.is_empty() {
            None
        } else {
            let seen: Option<i64> = c.get(self.key("seen", &prev)).await?;
            seen
        };
        self.held.insert(meeting.to_string(), Held { token, since: std::time::Instant::now(), gap_start });
        self.metrics.cluster_owned_meetings.set(self.held.len() as i64);
        tracing::info!(meeting = %meeting, token, took_over = !prev.is_empty(), "took the meeting's lease");
        Ok(Some(Owner::Here { token }))
    }

    /// Renews every lease this node holds; returns the meetings whose lease another node took.
    pub async fn renew(&self) -> Result<Vec<String>, ClusterError> {
        let held: Vec<(String, i64)> = self.held.iter().map(|e| (e.key().clone(), e.value().token)).collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut lost = Vec::new();
        for chunk in held.chunks(500) {
            let mut inv = self.renew.prepare_invoke();
            for (m, _) in chunk {
                inv.key(self.key("lease", m));
            }
            inv.arg(self.lease_ms);
            for (_, t) in chunk {
                inv.arg(self.lease_value(*t));
            }
            let mut c = self.con();
            let idx: Vec<usize> = inv.invoke_async(&mut c).await?;
            for i in idx {
                if let Some((m, t)) = chunk.get(i.wrapping_sub(1)) {
                    // Only if it is still the lease we tried to renew (not one taken again since).
                    if self.held.remove_if(m, |_, h| h.token == *t).is_some() {
                        lost.push(m.clone());
                    }
                }
            }
        }
        self.metrics.cluster_lease_renewals.inc();
        self.metrics.cluster_leases_lost.inc_by(lost.len() as u64);
        self.metrics.cluster_owned_meetings.set(self.held.len() as i64);
        Ok(lost)
    }

    /// Gives the lease up (the meeting ended, emptied, or moves on); `forget` deletes its snapshot.
    pub async fn release(&self, meeting: &str, token: i64, forget: bool) {
        self.held.remove_if(meeting, |_, h| h.token == token);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(meeting);
        self.metrics.cluster_owned_meetings.set(self.held.len() as i64);
        let mut c = self.con();
        let r: Result<i64, _> = self
            .release
            .key(self.key("lease", meeting))
            .key(self.key("snap", meeting))
            .key(self.key("snapv", meeting))
            .arg(self.lease_value(token))
            .arg(if forget { "1" } else { "0" })
            .invoke_async(&mut c)
            .await;
        if let Err(e) = r {
            tracing::warn!(meeting = %meeting, error = %e, "could not release a lease; it expires by itself");
        }
    }

    /// Forgets a lease without asking Redis (it was found taken).
    pub fn forget(&self, meeting: &str) {
        self.held.remove(meeting);
        self.metrics.cluster_owned_meetings.set(self.held.len() as i64);
    }

    // ---- snapshots ----

    fn seal(&self, meeting: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .keys
            .snapshot
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: meeting.as_bytes() })
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    fn open(&self, meeting: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.keys.snapshot.decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: meeting.as_bytes() }).ok()
    }

    /// Queues the room's latest state for the writer (only the latest per meeting is kept).
    /// `version` grows with every snapshot of one owner: a write that is overtaken by a later one
    /// (the writer's, or a hand-over's) never lands after it.
    pub fn put_snapshot(&self, meeting: &str, token: i64, version: u64, snap: &RoomSnapshot) {
        self.metrics.cluster_snapshots_taken.inc();
        let sealed = self.seal(meeting, &self.payload(snap));
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(meeting.to_string(), Pending { token, version, sealed });
        self.wake_writer.notify_one();
    }

    /// Writes a snapshot now (a hand-over waits for it). False when the lease is no longer ours.
    pub async fn write_snapshot_now(&self, meeting: &str, token: i64, version: u64, snap: &RoomSnapshot) -> bool {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(meeting);
        let sealed = self.seal(meeting, &self.payload(snap));
        matches!(self.write_sealed(meeting, token, version, &sealed).await, Ok(true))
    }

    /// The writer's node id, a newline, the snapshot.
    fn payload(&self, snap: &RoomSnapshot) -> Vec<u8> {
        let mut out = self.node.as_bytes().to_vec();
        out.push(b'\n');
        out.extend_from_slice(&snapshot::encode(snap));
        out
    }

    /// Writes under the lease; true when this snapshot (or a later one of the same owner) is in.
    async fn write_sealed(&self, meeting: &str, token: i64, version: u64, sealed: &[u8]) -> Result<bool, ClusterError> {
        let mut c = self.con();
        let n: i64 = self
            .write_snapshot
            .key(self.key("lease", meeting))
            .key(self.key("snap", meeting))
            .key(self.key("snapv", meeting))
            .arg(self.lease_value(token))
            .arg(sealed)
            .arg(SNAPSHOT_TTL_MS)
            .arg(version)
            .invoke_async(&mut c)
            .await?;
        if n == 1 {
            self.metrics.cluster_snapshots_written.inc();
        }
        Ok(n != 0)
    }

    /// The meeting's last snapshot, if any (and readable).
    pub async fn load_snapshot(&self, meeting: &str) -> Result<Option<Loaded>, ClusterError> {
        let mut c = self.con();
        let v: Option<Vec<u8>> = c.get(self.key("snap", meeting)).await?;
        let Some(v) = v else { return Ok(None) };
        let plain = self.open(meeting, &v);
        let split = plain.as_deref().and_then(|p| {
            let i = p.iter().position(|b| *b == b'\n')?;
            Some((String::from_utf8_lossy(&p[..i]).into_owned(), snapshot::decode(&p[i + 1..])))
        });
        match split {
            Some((writer, Ok(s))) => {
                let writer_last_seen: Option<i64> = c.get(self.key("seen", &writer)).await?;
                Ok(Some(Loaded { snapshot: s, writer_last_seen }))
            }
            Some((_, Err(e))) => {
                tracing::error!(meeting = %meeting, error = %e, "a room snapshot cannot be read; the meeting starts afresh");
                Ok(None)
            }
            None => {
                tracing::error!(meeting = %meeting, "a room snapshot does not open with this cluster's secret; the meeting starts afresh");
                Ok(None)
            }
        }
    }

    /// The snapshot writer: writes the latest snapshot of each meeting, fenced by its lease.
    /// Retries while Redis is away; a snapshot whose lease is gone is dropped.
    pub async fn run_writer(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            let batch: Vec<(String, Pending)> = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                self.in_flight.store(p.len(), Ordering::Relaxed);
                p.drain().collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake_writer.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let mut failed = false;
            for (meeting, p) in batch {
                match self.write_sealed(&meeting, p.token, p.version, &p.sealed).await {
                    Ok(true) => {}
                    Ok(false) => tracing::debug!(meeting = %meeting, "snapshot not written: the lease moved on"),
                    Err(e) => {
                        if self.redis_ok.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "cannot write room snapshots to Redis; retrying");
                        }
                        // Keep it unless a newer one came meanwhile.
                        self.pending.lock().unwrap_or_else(|e| e.into_inner()).entry(meeting).or_insert(p);
                        failed = true;
                    }
                }
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            if failed {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    fn channel(&self, node: &str) -> String {
        format!("{}inbox:{node}", self.prefix)
    }

    /// A meeting was deleted through this node while another owns it: its owner ends it for
    /// everyone. A dead owner hears nothing, and nobody can start the meeting again (it is
    /// deleted in the database), so nothing is lost.
    pub async fn tell_owner_to_end(&self, meeting: &str) {
        let mut c = self.con();
        let cur: Result<Option<String>, _> = c.get(self.key("lease", meeting)).await;
        let Ok(Some(cur)) = cur else { return };
        let Some((_, owner)) = cur.split_once(':') else { return };
        let r: Result<i64, _> = c.publish(self.channel(owner), format!("end {meeting}")).await;
        if let Err(e) = r {
            tracing::warn!(meeting = %meeting, error = %e, "could not tell the meeting's owner it was deleted");
        }
    }

    /// Listens to this node's inbox (meetings deleted through other nodes) until the server stops.
    pub async fn run_inbox(self: Arc<Self>, app: crate::app::AppState) {
        use futures_util::StreamExt;
        let mut backoff = Duration::from_millis(100);
        loop {
            let sub = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.channel(&self.node)).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut pubsub = tokio::select! {
                _ = app.shutdown.cancelled() => return,
                r = sub => match r {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster inbox: cannot subscribe; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            };
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            loop {
                let msg = tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    m = messages.next() => m,
                };
                let Some(msg) = msg else { break };
                let Ok(text) = msg.get_payload::<String>() else { continue };
                if let Some(meeting) = text.strip_prefix("end ") {
                    if let Some(h) = app.rooms.get(meeting) {
                        let _ = h.tx.send(crate::meeting::ActorMsg::End).await;
                    }
                }
            }
        }
    }

    /// Marks the node as draining (placement skips it) and publishes that at once.
    pub async fn start_draining(&self, participants: u64, meetings: u64) {
        self.draining.store(true, Ordering::Relaxed);
        if let Err(e) = self.beat(participants, meetings).await {
            tracing::warn!(error = %e, "could not tell the cluster this node is draining");
        }
    }

    /// Leaves the cluster at once (its meetings are handed over already).
    pub async fn leave(&self) {
        let mut c = self.con();
        let _: Result<(), _> = redis::pipe()
            .del(self.key("node", &self.node))
            .srem(format!("{}nodes", self.prefix), &self.node)
            .query_async(&mut c)
            .await;
    }

    /// The renewal period.
    pub fn renew_every(&self) -> Duration {
        Duration::from_millis(self.lease_ms / 3)
    }

    pub(crate) fn mark_redis(&self, ok: bool) {
        let was = self.redis_ok.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::warn!("Redis answers again");
            } else {
                tracing::warn!("Redis does not answer: leases cannot be renewed; meetings go on here");
            }
        }
    }
}

/// The node's cluster duties: beat (load), renew leases and stop meetings whose lease was lost.
pub async fn run_node(app: crate::app::AppState, cluster: Arc<Cluster>) {
    let mut beat = tokio::time::interval(NODE_BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval(cluster.renew_every());
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = beat.tick() => {
                let participants = app.metrics.participants.get().max(0) as u64;
                let meetings = app.rooms.len() as u64;
                let r = cluster.beat(participants, meetings).await;
                cluster.mark_redis(r.is_ok());
            }
            _ = renew.tick() => {
                // A lease taken for a connection that never reached its meeting goes back.
                let idle: Vec<(String, i64)> = cluster
                    .held
                    .iter()
                    .filter(|e| e.value().since.elapsed() > Duration::from_secs(30) && app.rooms.get(e.key()).is_none())
                    .map(|e| (e.key().clone(), e.value().token))
                    .collect();
                for (m, token) in idle {
                    cluster.release(&m, token, false).await;
                }
                match cluster.renew().await {
                    Ok(lost) => {
                        cluster.mark_redis(true);
                        for m in lost {
                            tracing::warn!(meeting = %m, "another node took this meeting over; its connections move there");
                            if let Some(h) = app.rooms.get(&m) {
                                let _ = h.tx.try_send(crate::meeting::ActorMsg::LeaseLost);
                            }
                        }
                    }
                    Err(_) => cluster.mark_redis(false),
                }
            }
        }
    }
}

//! Cluster mode: node processes of the real binary on loopback, one Redis (a key prefix of their
//! own per test) and one fresh PostgreSQL database per test.

use crate::store::fresh_postgres;
use crate::support::*;
use haven::auth::join_token::{self, TokenRole};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "cluster-test-secret-0123456789abcdefghij";

pub fn redis_url() -> String {
    std::env::var("HAVEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A test of several processes fails rather than hangs when something never happens (each step
/// waits with its own shorter guard; this one bounds the whole).
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(240), test).await.expect("the cluster test did not finish in 4 minutes")
}

/// Nodes of one cluster; a killed node's slot is `None`.
struct Nodes {
    nodes: Vec<Option<BinaryServer>>,
    _dirs: Vec<tempfile::TempDir>,
    _config_dir: tempfile::TempDir,
    config: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Nodes {
    async fn start(n: usize) -> Nodes {
        let pg = fresh_postgres().await;
        let name = format!("haven-test-{}", hex::encode(rand::random::<[u8; 6]>()));
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("haven.toml");
        std::fs::write(&config, binary_config(&[("media", "enabled = false"), ("limits", "heartbeat_seconds = 1")]))
            .unwrap();
        let env = vec![
            ("HAVEN_DATABASE_URL".to_string(), pg),
            ("HAVEN_REDIS_URL".to_string(), redis_url()),
            ("HAVEN_CLUSTER__SECRET".to_string(), SECRET.to_string()),
            ("HAVEN_CLUSTER__NAME".to_string(), name),
        ];
        let mut nodes = Nodes { nodes: Vec::new(), _dirs: Vec::new(), _config_dir: config_dir, config, env };
        for i in 0..n {
            nodes.add(i);
        }
        nodes
    }

    fn add(&mut self, i: usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let id = format!("node{i}");
        env.push(("HAVEN_CLUSTER__NODE_ID", &id));
        let server = BinaryServer::start_with_logs(dir.path(), &self.config, &env, Some("info"));
        self._dirs.push(dir);
        self.nodes.push(Some(server));
    }

    fn node(&self, i: usize) -> &BinaryServer {
        self.nodes[i].as_ref().expect("a live node")
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.node(i).addr
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// The node holding the lease of the one live meeting.
    async fn owner(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut owners = Vec::new();
            for i in self.live() {
                let r = self.node(i).get_json("/readyz").await;
                if r["cluster"]["owned_meetings"].as_u64().unwrap_or(0) > 0 {
                    owners.push(i);
                }
            }
            if owners.len() == 1 {
                return owners[0];
            }
            assert!(Instant::now() < deadline, "no single owner: {owners:?}");
            tokio::task::yield_now().await;
        }
    }

    /// Waits until the owner has written every snapshot it took (so a kill loses no decision).
    async fn snapshots_written(&self, owner: usize) {
        self.node(owner).wait_json("/readyz", |r| r["cluster"]["unwritten_snapshots"] == 0).await;
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill();
        }
    }

    fn signal(&self, i: usize, sig: &str) {
        self.node(i).signal(sig);
        let pid = self.node(i).pid();
        if sig == "-STOP" {
            // A signal is delivered as each thread next runs: wait until every thread is stopped,
            // so nothing the test sends from now on is handled before the process continues.
            let stopped = || {
                std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().all(|t| {
                    let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                    stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T'))
                })
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stopped() {
                assert!(Instant::now() < deadline, "node {i} never stopped on SIGSTOP");
                std::thread::yield_now();
            }
        }
    }
}

/// One participant as a test holds it: the client, and what it needs to come back.
struct Person {
    client: Client,
    pid: String,
    resume_token: String,
    member: &'static str,
}

async fn person(addr: SocketAddr, meeting: &str, member: &'static str, role: TokenRole, name: &str) -> (Person, Value) {
    let claims = join_token::claims_for(ALPHA, meeting, member, role, 600);
    let mut client = Client::connect(addr, &sign_hs(ALPHA, &claims)).await.unwrap_or_else(|e| panic!("{e:?}"));
    client.send(json!({"type": "join", "display_name": name})).await;
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let pid = welcome["participant_id"].as_str().unwrap().to_string();
    let resume_token = welcome["resume_token"].as_str().unwrap().to_string();
    (Person { client, pid, resume_token, member }, welcome)
}

impl Person {
    /// Frames until one of type `ty`; keeps the resume token current.
    async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.client.recv().await;
            if let Some(t) = v["resume_token"].as_str() {
                self.resume_token = t.to_string();
            }
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Comes back through `nodes` (tried in turn) until one takes the resume; returns the fresh
    /// snapshot (`welcome`) the new owner sends and how long it took.
    async fn come_back(&mut self, nodes: &[SocketAddr], deadline: Instant) -> Value {
        let last_seq = self.client.last_seq;
        loop {
            for addr in nodes {
                match Client::connect(*addr, &self.resume_token).await {
                    Ok(mut c) => {
                        c.send(json!({"type": "resume", "resume_token": self.resume_token, "last_seq": last_seq}))
                            .await;
                        let first = c.recv().await;
                        if first["type"] == "resumed" {
                            assert_eq!(first["participant_id"], self.pid.as_str(), "the same participant id");
                            self.resume_token = first["resume_token"].as_str().unwrap().to_string();
                            self.client = c;
                            let welcome = self.recv_type("welcome").await;
                            return welcome;
                        }
                        assert_eq!(
                            first["code"], "unavailable",
                            "a resume is refused only while the meeting moves: {first}"
                        );
                    }
                    Err((status, body)) => {
                        assert_eq!(status, 503, "{body}");
                    }
                }
            }
            assert!(Instant::now() < deadline, "{} was not back in time", self.member);
            // Polling a meeting that is moving: a short pause between attempts, bounded by the deadline.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Joins as soon as the meeting can be reached through `addr` (it may be moving between nodes).
async fn join_when_ready(
    addr: SocketAddr,
    meeting: &str,
    member: &str,
    name: &str,
    within: Duration,
) -> (Client, Value) {
    let deadline = Instant::now() + within;
    let claims = join_token::claims_for(ALPHA, meeting, member, TokenRole::Member, 600);
    loop {
        match Client::connect(addr, &sign_hs(ALPHA, &claims)).await {
            Ok(mut c) => {
                c.send(json!({"type": "join", "display_name": name})).await;
                let w = c.recv().await;
                if w["type"] == "welcome" {
                    return (c, w);
                }
                assert_eq!(w["code"], "unavailable", "{w}");
            }
            Err((status, body)) => assert_eq!(status, 503, "{body}"),
        }
        assert!(Instant::now() < deadline, "the meeting never became reachable through {addr}");
        // Polling a meeting that is moving: a short pause between attempts, bounded by the deadline.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|q| q["participant_id"].as_str().unwrap().to_string()).collect()
}

fn participant<'a>(welcome: &'a Value, pid: &str) -> &'a Value {
    welcome["participants"].as_array().unwrap().iter().find(|p| p["participant_id"] == pid).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_different_nodes_meet_in_one_meeting_and_any_node_runs_the_api() {
    bounded(async {
        let nodes = Nodes::start(3).await;
        nodes
            .node(0)
            .create_meeting(json!({"id": "group", "title": "Tuesday", "settings": {"waiting_room": false}}))
            .await;
        let (mut f, _) = person(nodes.addr(0), "group", "fac", TokenRole::Facilitator, "Facil").await;
        let (mut a, _) = person(nodes.addr(1), "group", "a", TokenRole::Member, "Ana").await;
        let (mut b, wb) = person(nodes.addr(2), "group", "b", TokenRole::Member, "Ben").await;
        assert_eq!(wb["participants"].as_array().unwrap().len(), 3, "one meeting whichever node: {wb}");
        a.client.request(json!({"type": "raise_hand"})).await;
        // Ben's own queue update answers his request (it echoes the request id).
        let (reply, _) = b.client.request(json!({"type": "raise_hand"})).await;
        let order = vec![a.pid.clone(), b.pid.clone()];
        assert_eq!(ids(&reply["queue"]), order, "{reply}");
        for p in [&mut f, &mut a] {
            let q = p
                .client
                .recv_until(|v| v["type"] == "queue_updated" && v["queue"].as_array().unwrap().len() == 2)
                .await;
            assert_eq!(ids(&q["queue"]), order, "one order for everyone");
        }
        let owner = nodes.owner().await;
        assert!(nodes.node(owner).logs().contains(&format!("node=node{owner} ")), "log lines name their node");
        // The API on every node lists it; a node that does not own it deletes it, and the owner ends it.
        for i in 0..3 {
            let list = nodes.node(i).get_json("/v1/meetings").await;
            assert!(list.as_array().unwrap().iter().any(|m| m["id"] == "group"), "node {i}: {list}");
        }
        let other = (owner + 1) % 3;
        let r = reqwest::Client::new()
            .delete(format!("http://{}/v1/meetings/group", nodes.addr(other)))
            .bearer_auth(ALPHA_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        for p in [&mut f, &mut a, &mut b] {
            p.client.recv_type("meeting_ended").await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_s_meeting_continues_on_another_node_with_every_decision() {
    bounded(async {
        let mut nodes = Nodes::start(3).await;
        nodes
            .node(0)
            .create_meeting(json!({"id": "circle", "title": "Circle",
                "settings": {"waiting_room": false, "floor_control": true},
                "credit_policy": {"min_minutes": 0, "max_gap_seconds": 60}}))
            .await;
        // People reach different nodes; the meeting lives on one of them.
        let (mut f, _) = person(nodes.addr(0), "circle", "fac", TokenRole::Facilitator, "Facil").await;
        let mut people = Vec::new();
        for (i, (m, name)) in
            [("a", "Ana"), ("b", "Ben"), ("c", "Cai"), ("d", "Dee"), ("m", "Mo")].into_iter().enumerate()
        {
            people.push(person(nodes.addr(i % 3), "circle", m, TokenRole::Member, name).await.0);
        }
        let (mut x, _) = person(nodes.addr(1), "circle", "x", TokenRole::Member, "Xan").await;
        let pid = |people: &[Person], m: &str| people.iter().find(|p| p.member == m).unwrap().pid.clone();
        let (a, b, c, d, m) =
            (pid(&people, "a"), pid(&people, "b"), pid(&people, "c"), pid(&people, "d"), pid(&people, "m"));
        f.client.request(json!({"type": "give_floor", "participant_id": a})).await;
        for who in ["b", "c", "d"] {
            let p = people.iter_mut().find(|p| p.member == who).unwrap();
            p.client.request(json!({"type": "raise_hand"})).await;
        }
        f.client.request(json!({"type": "mute", "participant_id": m})).await;
        f.client.request(json!({"type": "ban", "participant_id": x.pid})).await;
        x.client.closed().await;
        let owner = nodes.owner().await;
        nodes.snapshots_written(owner).await;

        nodes.kill(owner);
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(15);
        let live: Vec<SocketAddr> = nodes.live().into_iter().map(|i| nodes.addr(i)).collect();
        let mut everyone: Vec<&mut Person> = people.iter_mut().collect();
        everyone.push(&mut f);
        let mut back = Vec::new();
        for p in everyone.iter_mut() {
            let welcome = p.come_back(&live, deadline).await;
            back.push(killed.elapsed());
            assert_eq!(welcome["floor"]["participant_id"], a.as_str(), "the floor: {welcome}");
            assert_eq!(ids(&welcome["queue"]), vec![b.clone(), c.clone(), d.clone()], "the queue order");
            let muted = participant(&welcome, &m);
            assert_eq!((muted["muted"].as_bool(), muted["can_unmute"].as_bool()), (Some(true), Some(false)));
            assert_eq!(welcome["participants"].as_array().unwrap().len(), 6, "every seat kept: {welcome}");
        }
        eprintln!("everyone back after {:?} (slowest)", back.iter().max());
        // The muted member is still muted and cannot unmute.
        let mo = people.iter_mut().find(|p| p.member == "m").unwrap();
        let e = mo.client.expect_error(json!({"type": "set_muted", "muted": false}), "mute_locked").await;
        assert_eq!(e["type"], "error");
        // The banned member is still refused, through any node.
        let claims = join_token::claims_for(ALPHA, "circle", "x", TokenRole::Member, 600);
        for addr in &live {
            match Client::connect(*addr, &sign_hs(ALPHA, &claims)).await {
                Err((status, body)) => assert_eq!((status, body["code"].as_str()), (403, Some("banned"))),
                Ok(_) => panic!("a banned member was let in after the takeover"),
            }
        }
        // The meeting ends; attendance shows each member once, the outage bridged.
        f.client.request(json!({"type": "end_meeting"})).await;
        let any = nodes.node(nodes.live()[0]);
        let rows = any
            .wait_json("/v1/attendance", |v| {
                v.as_array().is_some_and(|r| r.len() >= 7 && r.iter().all(|row| row["final"] == true))
            })
            .await;
        let rows = rows.as_array().unwrap();
        for member in ["fac", "a", "b", "c", "d", "m"] {
            let mine: Vec<&Value> = rows.iter().filter(|r| r["member_ref"] == member).collect();
            assert_eq!(mine.len(), 1, "{member} once: {rows:?}");
            assert_eq!(mine[0]["interruptions"], 0, "{member}: the outage is within the gap tolerance: {}", mine[0]);
            assert_eq!(mine[0]["credited"], true, "{member}: {}", mine[0]);
        }
        // Certificate keys live in the shared database: a rotation reaches every node, and a
        // certificate one node signs with the new key verifies on the other.
        let pg = nodes.env.iter().find(|(k, _)| k == "HAVEN_DATABASE_URL").unwrap().1.clone();
        let store = haven::store::Store::connect(&pg).await.unwrap();
        let key = haven::attendance::certificate::generate_key(chrono::Utc::now().timestamp_millis());
        store.rotate_key(&key).await.unwrap();
        let (first, second) = (nodes.live()[0], nodes.live()[1]);
        for i in [first, second] {
            nodes
                .node(i)
                .wait_json("/.well-known/jwks.json", |v| {
                    v["keys"].as_array().is_some_and(|k| k.iter().any(|k| k["kid"] == key.kid))
                })
                .await;
        }
        let id = rows.iter().find(|r| r["member_ref"] == "a").unwrap()["attendance_id"].as_str().unwrap().to_string();
        let cert = nodes.node(first).get_json(&format!("/v1/attendance/{id}/certificate")).await;
        let cert = cert["certificate"].as_str().unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(cert).unwrap().kid.as_deref(),
            Some(key.kid.as_str()),
            "signed with the new key"
        );
        let v = nodes.node(second).post_json("/v1/certificates/verify", json!({"certificate": cert})).await;
        assert_eq!(v["valid"], true, "{v}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_its_meetings_on_with_every_seat() {
    bounded(async {
        // Both meetings start on node 0 while it is the only node; then two more join the cluster.
        let mut nodes = Nodes::start(1).await;
        for id in ["one", "two"] {
            nodes.node(0).create_meeting(json!({"id": id, "title": id, "settings": {"waiting_room": false}})).await;
        }
        let mut people = Vec::new();
        for (meeting, member) in [("one", "p1"), ("one", "p2"), ("two", "q1"), ("two", "q2")] {
            let (mut p, _) = person(nodes.addr(0), meeting, member, TokenRole::Member, member).await;
            p.client.request(json!({"type": "raise_hand"})).await;
            people.push((meeting, p));
        }
        let r = nodes.node(0).get_json("/readyz").await;
        assert_eq!(r["cluster"]["owned_meetings"], 2, "{r}");
        nodes.add(1);
        nodes.add(2);
        let drained = 0;
        nodes.signal(drained, "-TERM");
        let live: Vec<SocketAddr> = (0..3).filter(|i| *i != drained).map(|i| nodes.addr(i)).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        for (meeting, p) in people.iter_mut() {
            // Told to go (1001) once the meeting is handed on, as a client is; coming back before
            // that could resume on the draining node itself and be moved on a second time.
            assert_eq!(p.client.closed().await, Some(1001), "{} is told the server is going away", p.member);
            let welcome = p.come_back(&live, deadline).await;
            assert_eq!(welcome["meeting"]["id"], *meeting);
            assert_eq!(welcome["participants"].as_array().unwrap().len(), 2, "seats kept: {welcome}");
            assert_eq!(welcome["queue"].as_array().unwrap().len(), 2, "hands kept: {welcome}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_writes_nothing_after_another_node_took_over() {
    bounded(async {
        let nodes = Nodes::start(2).await;
        nodes.node(0).create_meeting(json!({"id": "paused", "title": "P", "settings": {"waiting_room": false}})).await;
        let (mut f, _) = person(nodes.addr(0), "paused", "fac", TokenRole::Facilitator, "Facil").await;
        let (a, _) = person(nodes.addr(0), "paused", "a", TokenRole::Member, "Ana").await;
        let owner = nodes.owner().await;
        assert_eq!(owner, 0, "the first node took the meeting (it was the only one asked)");
        nodes.snapshots_written(owner).await;
        nodes.signal(0, "-STOP");
        // While node 0 is frozen its facilitator mutes Ana; the command waits in the socket.
        f.client.send(json!({"type": "mute", "participant_id": a.pid, "id": "late"})).await;
        // A newcomer through node 1: once node 0 counts as dead, node 1 takes the meeting over.
        let (_b, welcome) = join_when_ready(nodes.addr(1), "paused", "b", "Ben", Duration::from_secs(20)).await;
        assert_eq!(welcome["participants"].as_array().unwrap().len(), 3, "the seats carried over: {welcome}");
        assert_eq!(participant(&welcome, &a.pid)["can_unmute"], true, "not locked by the late mute: {welcome}");
        // Node 0 wakes up: whatever it does now must not reach the meeting's record.
        nodes.signal(0, "-CONT");
        assert_eq!(f.client.closed().await, Some(1001), "the old owner moves its people on");
        nodes
            .node(0)
            .wait_json("/readyz", |r| r["cluster"]["owned_meetings"] == 0 && r["journal"]["records"] == 0)
            .await;
        let fenced = counter(nodes.addr(0), "haven_journal_records_fenced_total").await;
        // The room on the new owner never heard of the late mute, and neither did the audit log.
        let audit = nodes.node(1).get_json("/v1/meetings/paused/audit").await;
        let late_mutes: Vec<&Value> = audit.as_array().unwrap().iter().filter(|e| e["action"] == "mute").collect();
        assert!(late_mutes.is_empty(), "a write by the old owner reached the database (fenced {fenced}): {audit}");
        // The snapshot in Redis is node 1's, not the old owner's: with node 1 gone too, node 0 carries
        // the meeting on from it, and Ana is as node 1 left her.
        let mut nodes = nodes;
        nodes.snapshots_written(1).await;
        nodes.kill(1);
        let (_c, w) = join_when_ready(nodes.addr(0), "paused", "c", "Cai", Duration::from_secs(20)).await;
        assert!(w["participants"].as_array().unwrap().iter().any(|p| p["display_name"] == "Ben"), "{w}");
        assert_eq!(participant(&w, &a.pid)["can_unmute"], true, "room state written by the old owner: {w}");
        eprintln!("fenced on the old owner: {fenced}");
    })
    .await
}

/// Two nodes' views of the cluster, in-process, on one Redis prefix and one PostgreSQL database.
async fn two_clusters(
) -> (std::sync::Arc<haven::cluster::Cluster>, std::sync::Arc<haven::cluster::Cluster>, haven::store::Store) {
    let store = haven::store::Store::connect(&fresh_postgres().await).await.unwrap();
    let mut config = haven::config::Config { redis_url: Some(redis_url()), ..Default::default() };
    config.cluster.secret = Some(SECRET.to_string().into());
    config.cluster.name = format!("haven-test-{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut make = |id: &str| {
        config.cluster.node_id = Some(id.into());
        config.clone()
    };
    let (cx, cy) = (make("x"), make("y"));
    let metrics = std::sync::Arc::new(haven::metrics::Metrics::new());
    let x = haven::cluster::Cluster::connect(&cx, "http://127.0.0.1:1".into(), metrics.clone()).await.unwrap();
    let y = haven::cluster::Cluster::connect(&cy, "http://127.0.0.1:2".into(), metrics).await.unwrap();
    (x, y, store)
}

#[tokio::test]
async fn an_owner_that_lost_its_lease_can_neither_snapshot_nor_record() {
    bounded(async {
        use haven::cluster::Owner;
        use haven::journal::{Entry, Record};
        let (x, y, store) = two_clusters().await;
        let program =
            haven::store::ProgramRow { name: "Alpha".into(), api_key_sha256: "ab".repeat(32), ..program_row(ALPHA) };
        store.upsert_program(&program, 1).await.unwrap();
        let meeting = haven::store::MeetingRow { title: "M".into(), ..meeting_row(ALPHA, "m") };
        store.create_meeting(&meeting).await.unwrap();
        x.beat(0, 0).await.unwrap();
        y.beat(0, 0).await.unwrap();
        let Some(Owner::Here { token: tx }) = x.owner("m", &store, true).await.unwrap() else {
            panic!("x takes the lease")
        };
        // While x's node is alive, y is sent to it and cannot take the meeting.
        assert!(matches!(y.owner("m", &store, true).await.unwrap(), Some(Owner::Elsewhere { .. })));
        let mut room = haven::room::Room::new("m".into(), "M".into(), Default::default(), Default::default(), []);
        let mut out = Vec::new();
        let fac = haven::protocol::ParticipantId::from_random(1);
        room.handle(
            haven::room::Input::Join {
                participant_id: fac,
                member: haven::room::MemberKey { program: ALPHA.into(), member_ref: "f".into() },
                role: haven::protocol::Role::Facilitator,
                display_name: Some("Facil".into()),
                resume_token: "t".into(),
                random: 1,
            },
            1,
            &mut out,
        )
        .unwrap();
        assert!(x.write_snapshot_now("m", tx, 2, &room.to_snapshot(2)).await, "the owner writes");
        // A write the owner's later one overtook (the writer's, landing after a hand-over's) is dropped.
        let older = haven::room::Room::new("m".into(), "Older".into(), Default::default(), Default::default(), []);
        assert!(x.write_snapshot_now("m", tx, 1, &older.to_snapshot(1)).await);
        assert_eq!(x.load_snapshot("m").await.unwrap().unwrap().snapshot.title, "M", "the later snapshot stays");
        // x's node stops beating (a paused process): its liveness key is removed here at once rather
        // than waiting six seconds for it to expire.
        let mut redis = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let prefix = x.prefix().to_string();
        let _: () = redis::AsyncCommands::del(&mut redis, format!("{prefix}node:x")).await.unwrap();
        let Some(Owner::Here { token: ty }) = y.owner("m", &store, true).await.unwrap() else { panic!("y takes over") };
        assert!(ty > tx, "a larger fencing token: {ty} > {tx}");
        assert!(y.held("m").unwrap().gap_start.is_some(), "the takeover knows when x was last alive");
        // x, still believing it owns the meeting, writes: Redis refuses the snapshot...
        let empty =
            haven::room::Room::new("m".into(), "Changed by x".into(), Default::default(), Default::default(), []);
        assert!(!x.write_snapshot_now("m", tx, 9, &empty.to_snapshot(3)).await, "a stale owner's snapshot is refused");
        let loaded = y.load_snapshot("m").await.unwrap().unwrap();
        assert_eq!(loaded.snapshot.title, "M");
        assert_eq!(loaded.snapshot.seats.len(), 1);
        // ...and PostgreSQL sets its records aside, while the new owner's are stored.
        let audit = |lsn: u64, fence: i64, action: &str| Entry {
            lsn,
            rec: Record::Audit(haven::journal::AuditRecord {
                meeting: "m".into(),
                at: 5,
                actor: fac.to_string(),
                actor_name: "Facil".into(),
                action: action.into(),
                target: None,
                target_name: None,
                detail: None,
            }),
            fence: Some(fence),
        };
        let fenced = store.apply_journal("jx", &[audit(1, tx, "lock")]).await.unwrap();
        assert_eq!(fenced, 1);
        let fenced = store.apply_journal("jy", &[audit(1, ty, "unlock")]).await.unwrap();
        assert_eq!(fenced, 0);
        let log = store.audit_log("m").await.unwrap();
        assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["unlock"]);
        // Nor can x end the meeting for y.
        assert!(!store.fence_holds("m", Some(tx)).await.unwrap());
        assert!(store.fence_holds("m", Some(ty)).await.unwrap());
        // x's renewal finds the lease gone.
        assert_eq!(x.renew().await.unwrap(), vec!["m".to_string()]);
    })
    .await
}

/// Series links (issue 15) in a cluster: every node sends a series link to the node that owns
/// the open occurrence, so members joining through different nodes meet in one meeting, and a
/// facilitator's segment change reaches them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_link_joins_the_open_occurrence_through_any_node() {
    bounded(async {
        let nodes = Nodes::start(2).await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{}/v1/formats", nodes.addr(0)))
            .bearer_auth(ALPHA_KEY)
            .json(&crate::formats::group_format("tuesday"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let soon = (chrono::Utc::now() + chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M:00").to_string();
        let r = http
            .post(format!("http://{}/v1/series", nodes.addr(1)))
            .bearer_auth(ALPHA_KEY)
            .json(
                &json!({"id": "weekly", "title": "Weekly", "time_zone": "UTC", "dtstart": soon, "rrule": "FREQ=WEEKLY",
                "duration_minutes": 60, "format": "tuesday", "settings": {"waiting_room": false}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let (mut f, wf) = person(nodes.addr(0), "series:weekly", "fac", TokenRole::Facilitator, "Facil").await;
        let (mut a, wa) = person(nodes.addr(1), "series:weekly", "a", TokenRole::Member, "Ana").await;
        assert_eq!(wa["meeting"]["id"], wf["meeting"]["id"], "one occurrence whichever node");
        assert_eq!(wa["participants"].as_array().unwrap().len(), 2, "{wa}");
        assert_eq!(wa["agenda"]["current"]["title"], "Open discussion");
        f.client.request(json!({"type": "next_segment"})).await;
        let changed = a.recv_type("segment_changed").await;
        assert_eq!(changed["segment"]["title"], "Readings");
    })
    .await
}

/// Placement goes by the load each node publishes every two seconds; meetings placed faster than
/// that (the hour when every group starts) must still spread over the nodes rather than all go
/// to the one that was least loaded at the last beat.
#[tokio::test]
async fn a_burst_of_new_meetings_is_spread_over_the_nodes() {
    bounded(async {
        let mut config = haven::config::Config { redis_url: Some(redis_url()), ..Default::default() };
        config.cluster.secret = Some(SECRET.to_string().into());
        config.cluster.name = format!("haven-test-{}", hex::encode(rand::random::<[u8; 6]>()));
        let metrics = std::sync::Arc::new(haven::metrics::Metrics::new());
        let mut nodes = Vec::new();
        for (i, id) in ["x", "y", "z"].into_iter().enumerate() {
            config.cluster.node_id = Some(id.into());
            let c = haven::cluster::Cluster::connect(&config, format!("http://127.0.0.1:{}", i + 1), metrics.clone())
                .await
                .unwrap();
            c.beat(0, 0).await.unwrap();
            nodes.push(c);
        }
        // Six meetings start through node x before anyone's next beat.
        let mut placed = std::collections::BTreeMap::new();
        for _ in 0..6 {
            *placed.entry(nodes[0].place().await.unwrap().id).or_insert(0) += 1;
        }
        let expected: std::collections::BTreeMap<String, i32> =
            [("x", 2), ("y", 2), ("z", 2)].map(|(n, c)| (n.to_string(), c)).into();
        assert_eq!(placed, expected, "two each");
    })
    .await
}

/// A counter from a node's `/metrics`.
async fn counter(addr: SocketAddr, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    metric_value(&text, name)
}

/// A snapshot serialises and seals the whole room: a burst of inputs is gathered into a few
/// snapshots (one per `SNAPSHOT_DEBOUNCE_MS`), not one per input, and the last state is the one
/// written (a new owner restores it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_room_changes_is_snapshotted_together_not_once_per_change() {
    bounded(async {
        let mut nodes = Nodes::start(2).await;
        nodes
            .node(0)
            .create_meeting(json!({"id": "burst", "title": "Burst", "settings": {"waiting_room": false}}))
            .await;
        let (mut ana, _) = person(nodes.addr(0), "burst", "a", TokenRole::Member, "Ana").await;
        let owner = nodes.owner().await;
        nodes.snapshots_written(owner).await;
        let taken = |addr| counter(addr, "haven_cluster_snapshots_taken_total");
        let before = taken(nodes.addr(owner)).await;
        assert!(before >= 1, "the join was snapshotted");
        // 31 hand changes back to back (within the connection's burst allowance), ending raised:
        // each one changes the room.
        const N: usize = 31;
        for i in 0..N {
            let ty = if i % 2 == 0 { "raise_hand" } else { "lower_hand" };
            ana.client.send(json!({"type": ty, "id": format!("h{i}")})).await;
        }
        loop {
            let v = ana.recv_type("queue_updated").await;
            if v["id"] == format!("h{}", N - 1) {
                break;
            }
        }
        nodes.snapshots_written(owner).await;
        let taken = taken(nodes.addr(owner)).await - before;
        // One per change would be 31; gathered, one per 50 ms while the burst lasts: a handful
        // even on a busy machine.
        assert!((1..=N as u64 / 3).contains(&taken), "{taken} snapshots taken for {N} changes");
        // The last change is in the snapshot: the other node restores Ana with her hand up.
        nodes.kill(owner);
        let live: Vec<SocketAddr> = nodes.live().into_iter().map(|i| nodes.addr(i)).collect();
        let welcome = ana.come_back(&live, Instant::now() + Duration::from_secs(30)).await;
        assert_eq!(ids(&welcome["queue"]), vec![ana.pid.clone()], "the last state: {welcome}");
    })
    .await
}

/// The join-check through a node that does not own the live meeting answers as the owner's room
/// would: only the room knows it is locked and whose resume token is current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_check_through_any_node_answers_as_the_live_room_does() {
    bounded(async {
        let nodes = Nodes::start(2).await;
        nodes
            .node(0)
            .create_meeting(json!({"id": "lockme", "title": "Lock me", "settings": {"waiting_room": false}}))
            .await;
        let (mut f, _) = person(nodes.addr(0), "lockme", "fac", TokenRole::Facilitator, "Facil").await;
        let owner = nodes.owner().await;
        let other = 1 - owner;
        f.client.request(json!({"type": "lock"})).await;
        let check = |addr: SocketAddr, token: String| async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/v1/join-check"))
                .json(&json!({"token": token}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        };
        let member = sign_hs(ALPHA, &join_token::claims_for(ALPHA, "lockme", "newcomer", TokenRole::Member, 600));
        for addr in [nodes.addr(owner), nodes.addr(other)] {
            let r = check(addr, member.clone()).await;
            assert_eq!((r["joinable"].as_bool(), r["code"].as_str()), (Some(false), Some("meeting_locked")), "{r}");
            assert_eq!(r["meeting_title"], "Lock me");
            // The facilitator's current resume token is good, whichever node is asked.
            let r = check(addr, f.resume_token.clone()).await;
            assert_eq!(r["joinable"], true, "{r}");
        }
    })
    .await
}

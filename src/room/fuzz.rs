//! Fuzzing the room core on stable: byte strings (seeds from `fuzz/corpus/room/`, then
//! proptest-mutated and random ones, fixed seed, fixed budget; `HAVEN_FUZZ_CASES` raises it)
//! decoded into inputs from random roles (joins with any name, every command with any target and
//! values, forged and genuine resumes, drops, timers, end), checking the invariants of
//! `check_invariants` after every step, and that an error changes nothing and emits nothing.

use super::*;
use crate::protocol::VideoPolicy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Reads the input bytes as a stream of choices; exhausted input reads as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn text(&mut self) -> String {
        let len = self.u8() % 40;
        let pool = ["a", "Z", " ", "é", "Ѕ", "\u{200b}", "@", ".", "0", "\u{202e}", "😀", "\n", "ß", "-"];
        (0..len).map(|_| pool[self.u8() as usize % pool.len()]).collect()
    }
    fn empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn any_command(b: &mut Bytes, pid: ParticipantId) -> Command {
    let kind = b.u8();
    let n = b.u32();
    let text = b.text();
    match kind % 42 {
        k @ 0..=35 => match (k, command(k, pid, n)) {
            (7, _) => Command::Chat { text },
            (8, _) => Command::SupportRequest { text: Some(text) },
            (17, _) => Command::Rename { participant_id: pid, display_name: text },
            (11, _) => Command::Deny { participant_id: pid, message: Some(text) },
            (_, c) => c,
        },
        36 => Command::UpdateSettings {
            waiting_room: Some(n & 1 == 0),
            floor_control: Some(n & 2 == 0),
            share_seconds: Some(n % 5000),
            share_warning_seconds: Some((n >> 8) % 5000),
            share_end: None,
            video: Some(
                [VideoPolicy::Everyone, VideoPolicy::FacilitatorsOnly, VideoPolicy::MembersToFacilitators]
                    [n as usize % 3],
            ),
            hands: (n & 4 == 0).then_some(n & 8 == 0),
        },
        37 => Command::ExtendShare { seconds: Some(n) },
        38 => Command::MoveHand { participant_id: pid, position: n },
        // Side rooms and breakout groups (issue 17).
        39 if n & 1 == 1 => command(38 + ((n >> 1) % 8) as u8, pid, n >> 4),
        40 => Command::NextSegment,
        41 => Command::PreviousSegment,
        _ => Command::DeleteChat { message_id: u64::from(n) },
    }
}

/// Runs one byte string through a room; `Err` names the first broken property.
fn run_bytes(data: &[u8]) -> Result<usize, TestCaseError> {
    let mut b = Bytes(data);
    let waiting_room = b.u8() & 1 == 1;
    let second = b.u8();
    let settings = MeetingSettings { waiting_room, floor_control: second & 1 == 1, ..Default::default() };
    let mut h = H::new(settings);
    // Some rooms run a format (issue 15), so segment changes meet every other command.
    if second & 2 == 2 {
        h.run(Input::StartFormat(std::sync::Arc::new(super::format_tests::prop_format())))
            .map_err(|e| TestCaseError::fail(format!("a format did not start: {e}")))?;
    }
    h.join("f0", Role::Facilitator);
    let roles = [Role::Facilitator, Role::CoFacilitator, Role::Member, Role::Observer];
    let mut steps = 0;
    while !b.empty() && steps < 400 {
        steps += 1;
        let ids: Vec<ParticipantId> = h.room.participants().iter().map(|p| p.id).collect();
        let pick = |b: &mut Bytes| {
            let i = b.u8();
            // Now and then someone who is not (or no longer) in the room.
            if i % 16 == 15 || ids.is_empty() {
                ParticipantId::from_random(u64::from(i) * 104_729)
            } else {
                ids[i as usize % ids.len()]
            }
        };
        match b.u8() % 16 {
            0 | 1 => {
                let member = format!("m{}", b.u8() % 12);
                let role = roles[b.u8() as usize % 4];
                let name = match b.u8() % 3 {
                    0 => None,
                    1 => Some(member.clone()),
                    _ => Some(b.text()),
                };
                let _ = h.join_as(&member, role, name.as_deref());
            }
            2 => {
                let who = pick(&mut b);
                let _ = h.run(Input::Disconnected { participant_id: who });
            }
            3 => {
                let who = pick(&mut b);
                let token = match (b.u8() % 3, h.room.get(who)) {
                    (0, Some(p)) => p.resume_token.clone(),
                    (1, Some(p)) => format!("{}x", p.resume_token),
                    _ => b.text(),
                };
                let genuine = h.room.get(who).is_some_and(|p| p.resume_token == token);
                let r = h.run(Input::Resume { resume_token: token, new_resume_token: format!("r{}", h.now) });
                if !genuine {
                    prop_assert!(r.is_err(), "only the current token resumes");
                }
            }
            4 => {
                h.advance(u64::from(b.u32() % 400_000));
            }
            5 if b.u8() == 0 => {
                let _ = h.run(if b.u8() & 1 == 0 { Input::End } else { Input::Shutdown });
            }
            _ => {
                let from = pick(&mut b);
                let target = pick(&mut b);
                let cmd = any_command(&mut b, target);
                let before = format!("{:?}", h.room);
                let actor = h.room.get(from).cloned();
                let fac_only = cmd.is_facilitator_only();
                let result = h.cmd(from, cmd);
                if result.is_err() {
                    prop_assert_eq!(&before, &format!("{:?}", h.room), "an error leaves the room unchanged");
                    prop_assert!(h.out.is_empty(), "an error has no effects");
                }
                if fac_only && !actor.as_ref().is_some_and(|p| p.admitted && p.role.is_facilitator()) {
                    prop_assert!(result.is_err(), "only facilitators use facilitator commands");
                }
            }
        }
        check_invariants(&h.room);
        super::side_tests::check_locations(&h.room);
        if h.room.rules_in_force().is_some() {
            super::format_tests::assert_settings_follow(&h.room);
        }
    }
    Ok(steps)
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/room");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    seeds.sort();
    assert!(seeds.len() >= 5, "the seed corpus is in {}", dir.display());
    seeds
}

#[test]
fn room_fuzz_keeps_the_invariants_for_inputs_from_random_roles() {
    let cases = std::env::var("HAVEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000u32);
    let started = std::time::Instant::now();
    let seeds = corpus();
    let mut steps = 0usize;
    for s in &seeds {
        steps += run_bytes(s).unwrap_or_else(|e| panic!("seed: {e}"));
    }
    let n = seeds.len();
    let mutated =
        (0..n, proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..32)).prop_map(move |(i, edits)| {
            let mut v = seeds[i].clone();
            for (at, byte, kind) in edits {
                let at = at % (v.len() + 1);
                match kind {
                    0 if at < v.len() => v[at] = byte,
                    1 => v.insert(at, byte),
                    _ if at < v.len() => {
                        v.remove(at);
                    }
                    _ => v.push(byte),
                }
            }
            v
        });
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let total = std::cell::Cell::new(steps);
    let mut runner = TestRunner::new_with_rng(config.clone(), TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]));
    runner.run(&mutated, |v| run_bytes(&v).map(|s| total.set(total.get() + s))).unwrap();
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]));
    let random = proptest::collection::vec(any::<u8>(), 0..2048);
    runner.run(&random, |v| run_bytes(&v).map(|s| total.set(total.get() + s))).unwrap();
    eprintln!("room fuzz: {} inputs, {} steps in {:?}", 2 * cases as usize + n, total.get(), started.elapsed());
}

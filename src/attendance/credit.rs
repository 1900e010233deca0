//! Credit computation, pure: presence records in, a result with its reason out.
//!
//! Per member and meeting, presence is the union of the intervals of all their seats (a reconnect
//! or a second device never counts twice). Gaps no longer than the policy's `max_gap_seconds` are
//! bridged (a network blip is not an interruption); longer gaps are interruptions and are not
//! presence. Records are sorted by a total key first (seat, time, then their place in the ledger),
//! so the order they are read in never changes the result, and records of one seat in the same
//! millisecond (a drop and a resume, a join and a leave) keep the order they happened in.

use serde::{Deserialize, Serialize};

/// What a presence record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Admitted,
    Resumed,
    Disconnected,
    Left,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Admitted => "admitted",
            Kind::Resumed => "resumed",
            Kind::Disconnected => "disconnected",
            Kind::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "admitted" => Some(Kind::Admitted),
            "resumed" => Some(Kind::Resumed),
            "disconnected" => Some(Kind::Disconnected),
            "left" => Some(Kind::Left),
            _ => None,
        }
    }

    fn opens(self) -> bool {
        matches!(self, Kind::Admitted | Kind::Resumed)
    }
}

/// One ledger record of one seat (participant id) of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seat: String,
    pub kind: Kind,
    /// Unix milliseconds.
    pub at: i64,
    /// The record's place in the ledger (its row id): one seat's records are written in the order
    /// they happened, so this breaks ties between records of the same millisecond.
    pub order: i64,
}

/// How a program decides credit. Stored with each result, so a result can always be explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicy {
    /// Minimum minutes present, if this rule applies.
    #[serde(default)]
    pub min_minutes: Option<u32>,
    /// Minimum percentage of the scheduled duration present (needs a scheduled start and end).
    #[serde(default)]
    pub min_share_percent: Option<u8>,
    /// Longest gap (seconds) that still counts as continuous presence.
    #[serde(default = "default_gap")]
    pub max_gap_seconds: u32,
}

fn default_gap() -> u32 {
    120
}

impl Default for CreditPolicy {
    /// Three quarters of the scheduled time; a 2-minute gap still counts as continuous.
    fn default() -> Self {
        CreditPolicy { min_minutes: None, min_share_percent: Some(75), max_gap_seconds: default_gap() }
    }
}

impl CreditPolicy {
    /// The default for a meeting without a schedule: 45 minutes present. A share of the
    /// scheduled time cannot be measured without a schedule; 45 minutes is three quarters of the
    /// usual one-hour peer-support meeting, so both defaults ask for the same presence.
    pub fn unscheduled_default() -> CreditPolicy {
        CreditPolicy { min_minutes: Some(45), min_share_percent: None, max_gap_seconds: default_gap() }
    }

    /// The policy in effect for a meeting: its own, or the default for its kind.
    pub fn effective(own: Option<&CreditPolicy>, scheduled: bool) -> CreditPolicy {
        match own {
            Some(p) => p.clone(),
            None if scheduled => CreditPolicy::default(),
            None => CreditPolicy::unscheduled_default(),
        }
    }

    /// Whether a meeting can ever satisfy this policy: a share needs a scheduled start and end.
    pub fn satisfiable(&self, scheduled: bool) -> Result<(), String> {
        if self.min_share_percent.is_some() && !scheduled {
            return Err("min_share_percent needs scheduled_start and scheduled_end; \
                        set a schedule or use min_minutes"
                .into());
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.min_share_percent.is_some_and(|p| p > 100) {
            return Err("min_share_percent must be at most 100".into());
        }
        if self.min_minutes.is_none() && self.min_share_percent.is_none() {
            return Err("a credit policy needs min_minutes or min_share_percent".into());
        }
        Ok(())
    }
}

/// The outcome for one member in one meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Present time after bridging short gaps, in whole seconds.
    pub seconds_present: i64,
    pub first_admitted: Option<i64>,
    pub last_left: Option<i64>,
    /// Gaps longer than the policy allows.
    pub interruptions: u32,
    /// The presence intervals after bridging, Unix milliseconds.
    pub intervals: Vec<(i64, i64)>,
    pub credited: bool,
    /// The rule that decided, in words.
    pub rule: String,
}

/// The intervals of one seat's records, open ones closed at `open_end`.
fn seat_intervals(records: &[&Record], open_end: i64, out: &mut Vec<(i64, i64)>) {
    let mut open: Option<i64> = None;
    for r in records {
        match (r.kind.opens(), open) {
            (true, None) => open = Some(r.at),
            (false, Some(start)) => {
                out.push((start, r.at.max(start)));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        out.push((start, open_end.max(start)));
    }
}

/// Merges overlapping or touching intervals; the result is sorted and disjoint.
pub fn union(mut intervals: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    intervals.retain(|(s, e)| e > s);
    intervals.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
    for (s, e) in intervals {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Computes presence and credit. `open_end` closes intervals still open (the meeting's last
/// heartbeat: a crash never credits time nobody saw); `scheduled` is the meeting's window.
pub fn compute(records: &[Record], open_end: i64, policy: &CreditPolicy, scheduled: Option<(i64, i64)>) -> Outcome {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.seat, a.at, a.order, a.kind).cmp(&(&b.seat, b.at, b.order, b.kind)));
    let mut raw = Vec::new();
    for seat in sorted.chunk_by(|a, b| a.seat == b.seat) {
        seat_intervals(seat, open_end, &mut raw);
    }
    let merged = union(raw);
    let gap_ms = i64::from(policy.max_gap_seconds) * 1000;
    let mut bridged: Vec<(i64, i64)> = Vec::with_capacity(merged.len());
    let mut interruptions = 0;
    for (s, e) in merged {
        match bridged.last_mut() {
            Some(last) if s - last.1 <= gap_ms => last.1 = e,
            Some(_) => {
                interruptions += 1;
                bridged.push((s, e));
            }
            None => bridged.push((s, e)),
        }
    }
    let present_ms: i64 = bridged.iter().map(|(s, e)| e - s).sum();
    let seconds_present = present_ms / 1000;
    let first_admitted = bridged.first().map(|i| i.0);
    let last_left = bridged.last().map(|i| i.1);

    let mut checks: Vec<(bool, String)> = Vec::new();
    if let Some(min) = policy.min_minutes {
        let ok = seconds_present >= i64::from(min) * 60;
        checks.push((ok, format!("present {} of {} minutes required", seconds_present / 60, min)));
    }
    if let Some(pct) = policy.min_share_percent {
        match scheduled.filter(|(s, e)| e > s) {
            Some((s, e)) => {
                let within: i64 = bridged.iter().map(|&(a, b)| (b.min(e) - a.max(s)).max(0)).sum();
                let ok = within * 100 >= i64::from(pct) * (e - s);
                let share = within * 100 / (e - s);
                checks.push((ok, format!("present {share}% of the scheduled time, {pct}% required")));
            }
            None if policy.min_minutes.is_none() => {
                checks.push((false, "the share rule needs a scheduled start and end, and the meeting has none".into()))
            }
            None => {}
        }
    }
    let credited = !checks.is_empty() && checks.iter().all(|(ok, _)| *ok);
    let rule = checks
        .iter()
        .map(|(ok, text)| format!("{}: {text}", if *ok { "met" } else { "not met" }))
        .collect::<Vec<_>>()
        .join("; ");
    Outcome { seconds_present, first_admitted, last_left, interruptions, intervals: bridged, credited, rule }
}

/// Applies the role a member held: observers earn no credit, and facilitators only where their
/// program says facilitation does. Presence figures stay as they are.
pub fn apply_role(mut o: Outcome, role: Option<&str>, facilitation_earns_credit: bool) -> Outcome {
    let refusal = match role {
        Some("observer") => "not met: observers do not earn credit",
        Some("facilitator" | "co_facilitator") if !facilitation_earns_credit => {
            "not met: facilitation does not earn credit in this program"
        }
        _ => return o,
    };
    o.credited = false;
    o.rule = if o.rule.is_empty() { refusal.to_string() } else { format!("{}; {refusal}", o.rule) };
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(seat: &str, kind: Kind, at_s: i64) -> Record {
        Record { seat: seat.into(), kind, at: at_s * 1000, order: 0 }
    }

    /// Records in ledger order, times in milliseconds.
    fn ledger(records: &[(Kind, i64)]) -> Vec<Record> {
        records.iter().zip(1..).map(|(&(kind, at), order)| Record { seat: "a".into(), kind, at, order }).collect()
    }

    #[test]
    fn a_drop_and_a_resume_in_the_same_millisecond_keep_the_seat_present() {
        let r = ledger(&[(Kind::Admitted, 0), (Kind::Disconnected, 1000), (Kind::Resumed, 1000), (Kind::Left, 5000)]);
        let o = compute(&r, 0, &minutes(0), None);
        assert_eq!(o.seconds_present, 5);
        assert_eq!(o.intervals, vec![(0, 5000)]);
    }

    #[test]
    fn a_join_and_a_leave_in_the_same_millisecond_count_nothing() {
        let r = ledger(&[(Kind::Admitted, 1000), (Kind::Left, 1000)]);
        // Were the leave sorted first, the seat would stay open until the last heartbeat.
        let o = compute(&r, 600_000, &minutes(0), None);
        assert_eq!(o.seconds_present, 0);
    }

    fn minutes(m: u32) -> CreditPolicy {
        CreditPolicy { min_minutes: Some(m), min_share_percent: None, max_gap_seconds: 60 }
    }

    #[test]
    fn two_devices_never_count_twice() {
        let r = vec![
            rec("a", Kind::Admitted, 0),
            rec("b", Kind::Admitted, 600),
            rec("a", Kind::Left, 1800),
            rec("b", Kind::Left, 1200),
        ];
        let o = compute(&r, 0, &minutes(30), None);
        assert_eq!(o.seconds_present, 1800);
        assert!(o.credited);
    }

    #[test]
    fn gaps_within_tolerance_are_bridged_and_longer_ones_interrupt() {
        let r = vec![
            rec("a", Kind::Admitted, 0),
            rec("a", Kind::Disconnected, 600),
            rec("a", Kind::Resumed, 650), // 50 s blip: bridged
            rec("a", Kind::Left, 1200),
            rec("b", Kind::Admitted, 1500), // 300 s gap: an interruption
            rec("b", Kind::Left, 1800),
        ];
        let o = compute(&r, 0, &minutes(10), None);
        assert_eq!(o.interruptions, 1);
        assert_eq!(o.intervals, vec![(0, 1_200_000), (1_500_000, 1_800_000)]);
        assert_eq!(o.seconds_present, 1500);
        assert_eq!(o.first_admitted, Some(0));
        assert_eq!(o.last_left, Some(1_800_000));
    }

    #[test]
    fn open_intervals_close_at_the_last_heartbeat() {
        let r = vec![rec("a", Kind::Admitted, 100)];
        let o = compute(&r, 700_000, &minutes(10), None);
        assert_eq!(o.seconds_present, 600);
        assert!(o.credited);
    }

    #[test]
    fn thresholds_hold_at_their_boundaries() {
        let r = |end: i64| vec![rec("a", Kind::Admitted, 0), rec("a", Kind::Left, end)];
        assert!(compute(&r(45 * 60), 0, &minutes(45), None).credited);
        assert!(!compute(&r(45 * 60 - 1), 0, &minutes(45), None).credited);
        let share = CreditPolicy { min_minutes: None, min_share_percent: Some(75), max_gap_seconds: 0 };
        let window = Some((0, 3_600_000));
        assert!(compute(&r(2700), 0, &share, window).credited);
        let o = compute(&r(2699), 0, &share, window);
        assert!(!o.credited);
        assert!(o.rule.contains("not met"), "{}", o.rule);
        // Time outside the schedule does not count toward the share.
        let early = vec![rec("a", Kind::Admitted, -3600), rec("a", Kind::Left, 1800)];
        assert!(!compute(&early, 0, &share, window).credited);
    }

    #[test]
    fn the_rule_explains_the_verdict() {
        let r = vec![rec("a", Kind::Admitted, 0), rec("a", Kind::Left, 3000)];
        let p = CreditPolicy { min_minutes: Some(45), min_share_percent: Some(90), max_gap_seconds: 60 };
        let o = compute(&r, 0, &p, Some((0, 3_600_000)));
        assert!(!o.credited);
        assert_eq!(
            o.rule,
            "met: present 50 of 45 minutes required; not met: present 83% of the scheduled time, 90% required"
        );
        let none = CreditPolicy { min_minutes: None, min_share_percent: Some(75), max_gap_seconds: 60 };
        assert!(!compute(&r, 0, &none, None).credited);
    }

    #[test]
    fn unscheduled_meetings_default_to_minutes_and_share_needs_a_schedule() {
        assert_eq!(CreditPolicy::effective(None, true), CreditPolicy::default());
        let unscheduled = CreditPolicy::effective(None, false);
        assert_eq!(unscheduled.min_minutes, Some(45));
        assert_eq!(unscheduled.min_share_percent, None);
        assert!(unscheduled.satisfiable(false).is_ok());
        assert!(CreditPolicy::default().satisfiable(false).is_err());
        assert!(CreditPolicy::default().satisfiable(true).is_ok());
        let r = vec![rec("a", Kind::Admitted, 0), rec("a", Kind::Left, 45 * 60)];
        assert!(compute(&r, 0, &unscheduled, None).credited);
    }

    #[test]
    fn observers_never_and_facilitators_only_by_program_choice_earn_credit() {
        let r = vec![rec("a", Kind::Admitted, 0), rec("a", Kind::Left, 3600)];
        let o = compute(&r, 0, &minutes(10), None);
        assert!(o.credited);
        assert!(apply_role(o.clone(), Some("member"), false).credited);
        assert!(apply_role(o.clone(), Some("facilitator"), true).credited);
        assert!(apply_role(o.clone(), None, false).credited, "records older than roles keep their verdict");
        let f = apply_role(o.clone(), Some("facilitator"), false);
        assert!(!f.credited);
        assert!(f.rule.ends_with("facilitation does not earn credit in this program"), "{}", f.rule);
        assert_eq!(f.seconds_present, o.seconds_present);
        assert!(!apply_role(o, Some("observer"), true).credited);
    }

    fn measure(v: &[(i64, i64)]) -> i64 {
        v.iter().map(|(s, e)| e - s).sum()
    }

    proptest! {
        #[test]
        fn union_measure_equals_measure_of_union(raw in proptest::collection::vec((0i64..200, 0i64..50), 0..30)) {
            let intervals: Vec<(i64, i64)> = raw.iter().map(|&(s, len)| (s, s + len)).collect();
            let u = union(intervals.clone());
            // The union is disjoint and sorted.
            for w in u.windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
            // Its measure is the number of unit cells covered by any interval.
            let mut covered = [false; 260];
            for (s, e) in &intervals {
                for c in *s..*e {
                    covered[c as usize] = true;
                }
            }
            prop_assert_eq!(measure(&u), covered.iter().filter(|&&c| c).count() as i64);
        }

        #[test]
        fn reordering_records_never_changes_the_result(
            // Few distinct times, so records of one seat often share a millisecond.
            raw in proptest::collection::vec((0u8..3, 0u8..4, 0i64..50), 0..40),
            seed in any::<u64>(),
            gap in 0u32..300,
        ) {
            let kinds = [Kind::Admitted, Kind::Resumed, Kind::Disconnected, Kind::Left];
            // Each record has its own place in the ledger, as rows do.
            let records: Vec<Record> = raw
                .iter()
                .zip(0..)
                .map(|(&(seat, k, at), order)| Record { seat: format!("s{seat}"), kind: kinds[k as usize], at: at * 100_000, order })
                .collect();
            let mut shuffled = records.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let policy = CreditPolicy { min_minutes: Some(10), min_share_percent: Some(50), max_gap_seconds: gap };
            let window = Some((0, 3_000_000));
            prop_assert_eq!(compute(&records, 5_000_000, &policy, window), compute(&shuffled, 5_000_000, &policy, window));
        }

        #[test]
        fn presence_never_exceeds_the_span_and_bridging_only_adds(
            raw in proptest::collection::vec((0u8..3, 0u8..4, 0i64..5000), 0..40),
            gap in 0u32..300,
        ) {
            let kinds = [Kind::Admitted, Kind::Resumed, Kind::Disconnected, Kind::Left];
            let records: Vec<Record> =
                raw.iter().zip(0..).map(|(&(seat, k, at), order)| Record { seat: format!("s{seat}"), kind: kinds[k as usize], at: at * 1000, order }).collect();
            let strict = compute(&records, 5_000_000, &CreditPolicy { min_minutes: Some(1), min_share_percent: None, max_gap_seconds: 0 }, None);
            let loose = compute(&records, 5_000_000, &CreditPolicy { min_minutes: Some(1), min_share_percent: None, max_gap_seconds: gap }, None);
            prop_assert!(loose.seconds_present >= strict.seconds_present);
            prop_assert!(loose.interruptions <= strict.interruptions);
            if let (Some(f), Some(l)) = (strict.first_admitted, strict.last_left) {
                prop_assert!(strict.seconds_present * 1000 <= l - f);
            }
        }
    }
}

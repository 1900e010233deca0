//! The aftercare report: per member, attendance over a window, the last time they came, their
//! current streak of weeks with a meeting, and who has not been seen for a while (for outreach).
//!
//! Computed from the ledger (admissions, observers excluded) and final results (credit), and only
//! ever for one program's own members: other programs' members in a shared meeting are never read.

use super::rfc3339;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

const DAY_MS: i64 = 86_400_000;

/// One member's attendance of one meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attended {
    pub meeting_id: String,
    pub member_ref: String,
    /// Their first admission, Unix milliseconds.
    pub at: i64,
    /// The final result's verdict; `None` while the meeting has not ended.
    pub credited: Option<bool>,
}

/// What to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Unix milliseconds, inclusive.
    pub since: i64,
    /// Unix milliseconds, exclusive; also "now" for the streak and the not-seen list.
    pub until: i64,
    /// Members whose last attendance is at least this many days before `until` are listed in
    /// `not_seen`.
    pub not_seen_days: u32,
}

/// One member's engagement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberEngagement {
    /// The program's own reference for the member.
    pub member_ref: String,
    /// Meetings attended (admitted, in any role but observer) within the window.
    pub meetings_attended: u32,
    /// Of those, meetings whose final result credited them.
    pub meetings_credited: u32,
    /// Their last attendance (RFC 3339), up to the end of the window.
    pub last_attended: Option<String>,
    /// Whole days from the last attendance to the end of the window.
    pub days_since_last_attended: Option<i64>,
    /// Consecutive weeks (Monday to Sunday, UTC) with at least one meeting, up to the week the
    /// window ends in (or the week before, when that week has none yet).
    pub current_streak_weeks: u32,
    /// Not seen for `not_seen_days` or more.
    pub not_seen: bool,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngagementReport {
    pub since: String,
    pub until: String,
    pub not_seen_days: u32,
    /// Every member the program has seen before the end of the window, by reference.
    pub members: Vec<MemberEngagement>,
    /// Members not seen for `not_seen_days` or more, longest unseen first: whom to reach out to.
    pub not_seen: Vec<String>,
}

/// The week (Monday-based, UTC) a moment falls in, counted from the epoch.
fn week(ms: i64) -> i64 {
    // 1970-01-01 was a Thursday: shift so that weeks start on Mondays.
    (ms.div_euclid(DAY_MS) + 3).div_euclid(7)
}

/// Computes the report from a program's attendances (any order).
pub fn compute(attended: &[Attended], w: Window) -> EngagementReport {
    #[derive(Default)]
    struct Acc {
        attended: u32,
        credited: u32,
        last: Option<i64>,
        weeks: BTreeSet<i64>,
    }
    let mut by_member: BTreeMap<&str, Acc> = BTreeMap::new();
    for a in attended.iter().filter(|a| a.at < w.until) {
        let acc = by_member.entry(a.member_ref.as_str()).or_default();
        acc.last = Some(acc.last.map_or(a.at, |l| l.max(a.at)));
        acc.weeks.insert(week(a.at));
        if a.at >= w.since {
            acc.attended += 1;
            if a.credited == Some(true) {
                acc.credited += 1;
            }
        }
    }
    let this_week = week(w.until - 1);
    let threshold = i64::from(w.not_seen_days) * DAY_MS;
    let mut members = Vec::with_capacity(by_member.len());
    let mut not_seen: Vec<(i64, String)> = Vec::new();
    for (member, acc) in by_member {
        let mut from = if acc.weeks.contains(&this_week) { this_week } else { this_week - 1 };
        let mut streak = 0;
        while acc.weeks.contains(&from) {
            streak += 1;
            from -= 1;
        }
        let unseen = acc.last.is_some_and(|l| w.until - l >= threshold);
        if let (true, Some(l)) = (unseen, acc.last) {
            not_seen.push((l, member.to_string()));
        }
        members.push(MemberEngagement {
            member_ref: member.to_string(),
            meetings_attended: acc.attended,
            meetings_credited: acc.credited,
            last_attended: acc.last.map(rfc3339),
            days_since_last_attended: acc.last.map(|l| (w.until - l).div_euclid(DAY_MS)),
            current_streak_weeks: streak,
            not_seen: unseen,
        });
    }
    not_seen.sort();
    EngagementReport {
        since: rfc3339(w.since),
        until: rfc3339(w.until),
        not_seen_days: w.not_seen_days,
        members,
        not_seen: not_seen.into_iter().map(|(_, m)| m).collect(),
    }
}

/// A program's report, from the store.
pub async fn report(store: &Store, program: &str, w: Window) -> Result<EngagementReport, StoreError> {
    let attended = store.attended(program, w.since, w.until).await?;
    Ok(compute(&attended, w))
}

/// The report as CSV (RFC 4180, header row), one row per member.
pub fn to_csv(r: &EngagementReport) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "member_ref",
        "meetings_attended",
        "meetings_credited",
        "last_attended",
        "days_since_last_attended",
        "current_streak_weeks",
        "not_seen",
    ])?;
    for m in &r.members {
        w.write_record([
            m.member_ref.as_str(),
            &m.meetings_attended.to_string(),
            &m.meetings_credited.to_string(),
            m.last_attended.as_deref().unwrap_or(""),
            &m.days_since_last_attended.map(|d| d.to_string()).unwrap_or_default(),
            &m.current_streak_weeks.to_string(),
            if m.not_seen { "true" } else { "false" },
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i64 {
        super::super::parse_time(s, false).unwrap()
    }

    fn att(member: &str, meeting: &str, at: &str, credited: Option<bool>) -> Attended {
        Attended { meeting_id: meeting.into(), member_ref: member.into(), at: day(at) + 18 * 3_600_000, credited }
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(week(day("2026-11-30")), week(day("2026-12-06") + DAY_MS - 1), "Monday to Sunday");
        assert_eq!(week(day("2026-11-29")) + 1, week(day("2026-11-30")), "Sunday, then Monday");
    }

    #[test]
    fn streaks_count_consecutive_weeks_up_to_this_or_last_week() {
        // The report ends Wednesday 2026-12-02 (exclusive).
        let w = Window { since: day("2026-11-01"), until: day("2026-12-02"), not_seen_days: 14 };
        let rows = [
            // Weeks of Nov 9, 16, 23 and this week: 4.
            att("a", "m1", "2026-11-10", Some(true)),
            att("a", "m2", "2026-11-17", Some(false)),
            att("a", "m3", "2026-11-19", Some(true)),
            att("a", "m4", "2026-11-24", Some(true)),
            att("a", "m5", "2026-12-01", None),
            // Nothing this week yet, but the last two weeks: 2.
            att("b", "m3", "2026-11-19", Some(true)),
            att("b", "m4", "2026-11-24", Some(true)),
            // A gap: the week of Nov 16 only, not last week: 0; not seen for 15 days.
            att("c", "m2", "2026-11-17", Some(true)),
            // Before the window only: counted for nothing but the not-seen list.
            att("d", "m0", "2026-10-01", Some(true)),
            // After the window: ignored.
            att("e", "m9", "2026-12-03", Some(true)),
        ];
        let r = compute(&rows, w);
        let get = |m: &str| r.members.iter().find(|x| x.member_ref == m).unwrap().clone();
        assert_eq!(get("a").current_streak_weeks, 4);
        assert_eq!((get("a").meetings_attended, get("a").meetings_credited), (5, 3));
        assert_eq!(get("b").current_streak_weeks, 2);
        assert_eq!(get("c").current_streak_weeks, 0);
        assert_eq!(get("c").days_since_last_attended, Some(14));
        assert_eq!(get("d").meetings_attended, 0);
        assert!(r.members.iter().all(|m| m.member_ref != "e"));
        assert_eq!(r.not_seen, vec!["d".to_string(), "c".to_string()], "longest unseen first");
        assert!(get("c").not_seen && !get("b").not_seen);
        let csv = to_csv(&r).unwrap();
        assert!(csv.starts_with("member_ref,meetings_attended,meetings_credited,last_attended"));
        assert!(csv.contains("\na,5,3,2026-12-01T18:00:00.000Z,0,4,false\n"), "{csv}");
    }
}

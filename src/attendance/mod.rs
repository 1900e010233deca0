//! Attendance for program credit: the ledger's records become results, exports and certificates.
//!
//! The room emits presence effects; the actor hands them to the store writer, which commits them
//! in batches (the ledger is append-only). A meeting's heartbeat bounds what a crash can lose: an
//! interval still open is closed at the last moment the meeting was known alive. When a meeting
//! ends, each member's result is computed once and stored with the policy that decided it.

pub mod certificate;
pub mod credit;
pub mod engagement;

use crate::store::{MeetingRow, ResultRow, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use credit::{CreditPolicy, Outcome};
use serde::{Deserialize, Serialize};

/// A result as stored at the meeting's end: the outcome, the policy and the meeting as they were.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredResult {
    pub meeting_title: String,
    pub scheduled_start: Option<i64>,
    pub scheduled_end: Option<i64>,
    pub policy: CreditPolicy,
    pub outcome: Outcome,
    /// The role the member was admitted with; absent in results stored before roles were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One row of an attendance export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AttendanceRow {
    /// Present once the meeting has ended and the result is final; certificates use it.
    pub attendance_id: Option<String>,
    /// False while the meeting is still open (the figures can still change).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The meeting's id as the program names it: its own id, or `<owner>/<id>` for a meeting
    /// another program shared with it.
    pub meeting_id: String,
    pub meeting_title: String,
    /// The program's own reference for the member.
    pub member_ref: String,
    /// `facilitator`, `co_facilitator`, `member` or `observer`: the role the member was admitted
    /// with (the highest, if they joined more than once); null for records older than roles.
    pub role: Option<String>,
    pub scheduled_start: Option<String>,
    pub scheduled_end: Option<String>,
    pub first_admitted: Option<String>,
    pub last_left: Option<String>,
    pub minutes_present: i64,
    pub seconds_present: i64,
    pub interruptions: u32,
    pub credited: bool,
    /// The rule that decided the verdict.
    pub rule: String,
    pub policy: CreditPolicy,
    /// Presence intervals, RFC 3339 pairs.
    pub intervals: Vec<[String; 2]>,
    /// The series the meeting is an occurrence of, if any (the id its program gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<String>,
    /// Which occurrence: its start as local time in the series' zone, with the offset
    /// (`2026-11-03T19:00:00-06:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<String>,
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// One meeting, as the program names it (its own id, or `<owner>/<id>` for a shared one).
    pub meeting: Option<String>,
    pub member: Option<String>,
    /// Every occurrence of this series.
    pub series: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: i64,
    /// Unix milliseconds, exclusive.
    pub to: i64,
}

/// RFC 3339 in UTC with milliseconds: presence is recorded to the millisecond, and a verifier can
/// recompute a verdict from the intervals exactly.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn scheduled(m: &MeetingRow) -> Option<(i64, i64)> {
    m.scheduled_start.zip(m.scheduled_end)
}

/// The credit policy in effect for a meeting (its own, or the default for scheduled or
/// unscheduled meetings).
pub fn policy_of(m: &MeetingRow) -> CreditPolicy {
    CreditPolicy::effective(m.credit_policy.as_ref(), scheduled(m).is_some())
}

/// A role's wire name (as in the protocol), for the ledger and exports.
pub fn role_name(r: crate::protocol::Role) -> &'static str {
    use crate::protocol::Role;
    match r {
        Role::Facilitator => "facilitator",
        Role::CoFacilitator => "co_facilitator",
        Role::Member => "member",
        Role::Observer => "observer",
    }
}

/// The highest of the roles a member was admitted with.
fn highest_role(roles: Vec<String>) -> Option<String> {
    const ORDER: [&str; 4] = ["facilitator", "co_facilitator", "member", "observer"];
    roles.into_iter().min_by_key(|r| ORDER.iter().position(|o| o == r).unwrap_or(ORDER.len()))
}

/// Computes a member's result in a meeting from the ledger: presence, role, verdict.
async fn compute_result(
    store: &Store,
    meeting: &MeetingRow,
    program: &str,
    member: &str,
) -> Result<StoredResult, StoreError> {
    let records = store.presence_of(&meeting.id, program, member).await?;
    let open_end = store.last_alive(&meeting.id).await?.unwrap_or(0);
    let policy = policy_of(meeting);
    let role = highest_role(store.admitted_roles(&meeting.id, program, member).await?);
    let outcome = credit::compute(&records, open_end, &policy, scheduled(meeting));
    let outcome = credit::apply_role(outcome, role.as_deref(), store.facilitation_credit(program).await?);
    Ok(StoredResult {
        meeting_title: meeting.title.clone(),
        scheduled_start: meeting.scheduled_start,
        scheduled_end: meeting.scheduled_end,
        policy,
        outcome,
        role,
    })
}

fn row(id: Option<String>, meeting_id: &str, member: &str, r: StoredResult) -> AttendanceRow {
    let o = r.outcome;
    AttendanceRow {
        is_final: id.is_some(),
        attendance_id: id,
        meeting_id: meeting_id.to_string(),
        meeting_title: r.meeting_title,
        member_ref: member.to_string(),
        role: r.role,
        scheduled_start: r.scheduled_start.map(rfc3339),
        scheduled_end: r.scheduled_end.map(rfc3339),
        first_admitted: o.first_admitted.map(rfc3339),
        last_left: o.last_left.map(rfc3339),
        minutes_present: o.seconds_present / 60,
        seconds_present: o.seconds_present,
        interruptions: o.interruptions,
        credited: o.credited,
        rule: o.rule,
        policy: r.policy,
        intervals: o.intervals.iter().map(|&(s, e)| [rfc3339(s), rfc3339(e)]).collect(),
        series_id: None,
        occurrence: None,
    }
}

/// A program's attendance: final results where the meeting has ended, live figures otherwise.
/// Only the program's own members, whoever else was in the meeting.
pub async fn export(store: &Store, program: &str, f: &Filter) -> Result<Vec<AttendanceRow>, StoreError> {
    // The meeting as the program names it (its own id, or `<owner>/<id>` for a shared one), to its
    // key; deleted meetings too, since their attendance stays.
    let key = match f.meeting.as_deref() {
        Some(name) => match store.resolve_meeting_name(program, name).await? {
            Some((m, _)) => Some(m.id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    // The series as the program names it, to its key: another program's is as one nobody has.
    let series_key = match f.series.as_deref() {
        Some(id) => match store.program_series(program, id).await? {
            Some(s) => Some(s.id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let pairs = store
        .attendance_pairs(program, key.as_deref(), f.member.as_deref(), series_key.as_deref(), f.from, f.to)
        .await?;
    let mut out = Vec::with_capacity(pairs.len());
    let mut meeting: Option<MeetingRow> = None;
    // The series of the rows' meetings (pairs come ordered by meeting, so each is read once).
    let mut series: std::collections::HashMap<String, Option<crate::store::SeriesRow>> = Default::default();
    for (meeting_id, member) in pairs {
        if meeting.as_ref().map(|m| m.id.as_str()) != Some(meeting_id.as_str()) {
            meeting = store.meeting_any(&meeting_id).await?;
        }
        // Rows name the meeting as this program does, never by its key.
        let name = meeting.as_ref().map(|m| m.id_for(program)).unwrap_or_else(|| meeting_id.clone());
        let mut r = if let Some(stored) = store.result_for(&meeting_id, program, &member).await? {
            let mut r: StoredResult =
                serde_json::from_str(&stored.result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // A result stored before roles were kept keeps its verdict; the ledger may still know the role.
            if r.role.is_none() {
                r.role = highest_role(store.admitted_roles(&meeting_id, program, &member).await?);
            }
            row(Some(stored.id), &name, &member, r)
        } else {
            let Some(m) = meeting.as_ref() else { continue };
            let r = compute_result(store, m, program, &member).await?;
            row(None, &name, &member, r)
        };
        if let Some((sid, start)) = meeting.as_ref().and_then(|m| m.series_id.clone().zip(m.scheduled_start)) {
            if !series.contains_key(&sid) {
                let s = store.series_by_key(&sid).await?;
                series.insert(sid.clone(), s);
            }
            if let Some(s) = series.get(&sid).and_then(|s| s.as_ref()) {
                r.occurrence = s.spec.local_label(start);
                // As the program names the series, never by its key.
                r.series_id = Some(s.local_id.clone());
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Computes every member's final result for an ended meeting and stores them with the meeting's
/// end, in one transaction with their webhook events (see `Store::finalize_meeting`). Idempotent:
/// a result once stored is never rewritten (even if the policy changes later), and a replay
/// reports nothing twice.
pub async fn finalize(store: &Store, meeting_id: &str, now: i64) -> Result<usize, StoreError> {
    let Some(m) = store.meeting_any(meeting_id).await? else {
        store.end_meeting(meeting_id, now).await?;
        return Ok(0);
    };
    let members = store.meeting_members(meeting_id).await?;
    let mut results = Vec::with_capacity(members.len());
    for (program, member) in &members {
        let r = compute_result(store, &m, program, member).await?;
        let result = serde_json::to_string(&r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = format!("att_{}", hex::encode(rand::random::<[u8; 12]>()));
        let export_row = row(Some(id.clone()), &m.id_for(program), member, r);
        let stored = ResultRow {
            id,
            meeting_id: meeting_id.to_string(),
            program_id: program.clone(),
            member_ref: member.clone(),
            computed_at: now,
            result,
        };
        results.push((stored, export_row));
    }
    store.finalize_meeting(&m, now, &results).await?;
    Ok(members.len())
}

/// The export as CSV (RFC 4180, header row). Intervals are `start/end` pairs joined by `;`; the
/// role is the last column (empty for records older than roles).
pub fn to_csv(rows: &[AttendanceRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "attendance_id",
        "final",
        "meeting_id",
        "meeting_title",
        "member_ref",
        "scheduled_start",
        "scheduled_end",
        "first_admitted",
        "last_left",
        "minutes_present",
        "seconds_present",
        "interruptions",
        "credited",
        "rule",
        "intervals",
        // Last, so the columns consumers already read keep their positions.
        "role",
        "series_id",
        "occurrence",
    ])?;
    for r in rows {
        let intervals = r.intervals.iter().map(|[s, e]| format!("{s}/{e}")).collect::<Vec<_>>().join(";");
        w.write_record([
            r.attendance_id.as_deref().unwrap_or(""),
            if r.is_final { "true" } else { "false" },
            &r.meeting_id,
            &r.meeting_title,
            &r.member_ref,
            r.scheduled_start.as_deref().unwrap_or(""),
            r.scheduled_end.as_deref().unwrap_or(""),
            r.first_admitted.as_deref().unwrap_or(""),
            r.last_left.as_deref().unwrap_or(""),
            &r.minutes_present.to_string(),
            &r.seconds_present.to_string(),
            &r.interruptions.to_string(),
            if r.credited { "true" } else { "false" },
            &r.rule,
            &intervals,
            r.role.as_deref().unwrap_or(""),
            r.series_id.as_deref().unwrap_or(""),
            r.occurrence.as_deref().unwrap_or(""),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses a date (`2026-11-26`, UTC midnight) or an RFC 3339 time into Unix milliseconds.
/// `end_of_day` makes a bare date mean the end of that day (for an inclusive `to`).
pub fn parse_time(s: &str, end_of_day: bool) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let d = if end_of_day { d.succ_opt()? } else { d };
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_by_rfc_4180() {
        let r = AttendanceRow {
            attendance_id: Some("att_1".into()),
            is_final: true,
            meeting_id: "m1".into(),
            meeting_title: "Tuesday, \"evening\" group".into(),
            member_ref: "ref-1".into(),
            role: Some("facilitator".into()),
            scheduled_start: None,
            scheduled_end: None,
            first_admitted: Some(rfc3339(0)),
            last_left: Some(rfc3339(60_000)),
            minutes_present: 1,
            seconds_present: 60,
            interruptions: 0,
            credited: true,
            rule: "met: present 1 of 1 minutes required".into(),
            policy: CreditPolicy::default(),
            intervals: vec![[rfc3339(0), rfc3339(60_000)]],
            series_id: None,
            occurrence: None,
        };
        let text = to_csv(&[r]).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("attendance_id,final,meeting_id,meeting_title"));
        let line = lines.next().unwrap();
        assert!(line.ends_with(",facilitator,,"), "{line}");
        assert!(line.contains("\"Tuesday, \"\"evening\"\" group\""), "{line}");
        assert!(line.contains("1970-01-01T00:00:00.000Z/1970-01-01T00:01:00.000Z"));
    }

    #[test]
    fn the_highest_admitted_role_counts() {
        let roles = |r: &[&str]| highest_role(r.iter().map(|s| s.to_string()).collect());
        assert_eq!(roles(&["member", "facilitator"]).as_deref(), Some("facilitator"));
        assert_eq!(roles(&["observer", "member"]).as_deref(), Some("member"));
        assert_eq!(roles(&["co_facilitator", "member"]).as_deref(), Some("co_facilitator"));
        assert_eq!(roles(&[]), None);
    }

    #[test]
    fn dates_parse_inclusively() {
        assert_eq!(parse_time("1970-01-02", false), Some(86_400_000));
        assert_eq!(parse_time("1970-01-01", true), Some(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", true), Some(1000));
        assert_eq!(parse_time("yesterday", false), None);
    }
}

//! Recurring series: the rule (RFC 5545 RRULE in an IANA time zone) and the schedule it makes.
//!
//! Pure: no database, no clock. The recurrence is computed by the `rrule` crate in the series'
//! own time zone (chrono-tz), so "Tuesdays 19:00 America/Chicago" stays at 19:00 local across
//! daylight-saving changes; the schedule is stored in UTC (Unix ms). The API (`api::series`)
//! turns occurrences into meetings ahead of time; the join edge (`signal`) finds the open one.

use crate::attendance::credit::CreditPolicy;
use crate::protocol::MeetingSettings;
use chrono::{NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

/// A series' definition, as stored (JSON) and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    /// IANA time zone the rule is read in, e.g. `America/Chicago`.
    pub time_zone: String,
    /// The first occurrence's local start, e.g. `2026-12-01T19:00:00` (no offset: it is local).
    #[schema(value_type = String)]
    pub dtstart: NaiveDateTime,
    /// The recurrence rule without its `RRULE:` prefix, e.g. `FREQ=WEEKLY;BYDAY=TU`.
    /// Frequencies finer than daily are refused.
    pub rrule: String,
    /// Length of each occurrence.
    pub duration_minutes: u32,
    /// The format each occurrence runs (a format of the program's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_id: Option<String>,
    /// Participants at most per occurrence (default from the server's limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<MeetingSettings>,
    /// How attendance earns credit in each occurrence (default: as for a scheduled meeting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_policy: Option<CreditPolicy>,
}

/// Longest occurrence, in minutes (twelve hours).
pub const MAX_DURATION_MINUTES: u32 = 720;
/// Most occurrences one computation returns (a daily rule over a year is 366).
pub const MAX_OCCURRENCES: usize = 400;

/// One occurrence: start and end in Unix milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub start: i64,
    pub end: i64,
}

impl SeriesSpec {
    /// The series' time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, String> {
        self.time_zone.parse::<chrono_tz::Tz>().map_err(|_| format!("time_zone: unknown zone `{}`", self.time_zone))
    }

    /// Checks the rule, zone and length; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.tz()?;
        if self.duration_minutes == 0 || self.duration_minutes > MAX_DURATION_MINUTES {
            return Err(format!("duration_minutes: 1 to {MAX_DURATION_MINUTES}"));
        }
        self.rule_set()?;
        if let Some(s) = &self.settings {
            s.validate().map_err(|m| format!("settings: {m}"))?;
        }
        if let Some(p) = &self.credit_policy {
            p.validate().map_err(|m| format!("credit_policy: {m}"))?;
        }
        Ok(())
    }

    fn rule_set(&self) -> Result<rrule::RRuleSet, String> {
        let tz = self.tz()?;
        let rule = self.rrule.trim();
        let rule = rule.strip_prefix("RRULE:").unwrap_or(rule);
        // Only the characters an RRULE value uses: no line breaks (nothing else can be smuggled
        // into the text the parser reads), no lower case (the parser is strict anyway).
        if rule.is_empty()
            || rule.len() > 500
            || !rule.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b",;=+-".contains(&b))
        {
            return Err("rrule: an RFC 5545 rule such as FREQ=WEEKLY;BYDAY=TU".into());
        }
        let freq = rule.split(';').find_map(|p| p.strip_prefix("FREQ=")).unwrap_or("");
        if !["DAILY", "WEEKLY", "MONTHLY", "YEARLY"].contains(&freq) {
            return Err("rrule: FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY".into());
        }
        let text = format!("DTSTART;TZID={}:{}\nRRULE:{rule}", tz.name(), self.dtstart.format("%Y%m%dT%H%M%S"));
        text.parse::<rrule::RRuleSet>().map_err(|e| format!("rrule: {e}"))
    }

    /// The occurrences that have not ended by `from` and start before `until` (Unix ms), at most
    /// [`MAX_OCCURRENCES`], in order.
    pub fn occurrences(&self, from: i64, until: i64) -> Result<Vec<Occurrence>, String> {
        let set = self.rule_set()?;
        let length = i64::from(self.duration_minutes) * 60_000;
        let mut out = Vec::new();
        // Limited: a rule that matches nothing (30 February) ends the iteration after the
        // crate's loop bound instead of spinning for ever.
        for dt in set.limit().into_iter() {
            let start = dt.timestamp_millis();
            if start >= until || out.len() >= MAX_OCCURRENCES {
                break;
            }
            if start + length > from {
                out.push(Occurrence { start, end: start + length });
            }
        }
        Ok(out)
    }

    /// An occurrence's start as local time in the series' zone, RFC 3339 with its offset
    /// (`2026-11-03T19:00:00-06:00`): what exports show to say which occurrence.
    pub fn local_label(&self, start_ms: i64) -> Option<String> {
        let tz = self.tz().ok()?;
        let utc = chrono::DateTime::from_timestamp_millis(start_ms)?;
        Some(tz.from_utc_datetime(&utc.naive_utc()).to_rfc3339())
    }
}

/// The key that names an occurrence within its series: the generation of the schedule and the
/// start the rule gave it (an occurrence moved by hand keeps its key).
pub fn occurrence_key(generation: i64, start: i64) -> String {
    format!("{generation}:{start}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};

    fn tuesdays(dtstart: &str) -> SeriesSpec {
        SeriesSpec {
            time_zone: "America/Chicago".into(),
            dtstart: dtstart.parse().unwrap(),
            rrule: "FREQ=WEEKLY;BYDAY=TU".into(),
            duration_minutes: 60,
            format_id: None,
            capacity: None,
            settings: None,
            credit_policy: None,
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn weekly_occurrences_across_a_dst_change_keep_their_local_time() {
        // US daylight saving ends on 1 November 2026: 19:00 CDT is 00:00 UTC, 19:00 CST is 01:00 UTC.
        let s = tuesdays("2026-10-20T19:00:00");
        let occ = s.occurrences(ms("2026-10-01T00:00:00Z"), ms("2026-11-20T00:00:00Z")).unwrap();
        assert_eq!(occ.len(), 5, "{occ:?}");
        let tz = s.tz().unwrap();
        for o in &occ {
            let local = tz.from_utc_datetime(&chrono::DateTime::from_timestamp_millis(o.start).unwrap().naive_utc());
            assert_eq!((local.weekday(), local.hour(), local.minute()), (chrono::Weekday::Tue, 19, 0), "{local}");
            assert_eq!(o.end - o.start, 3_600_000);
        }
        assert_eq!(occ[1].start, ms("2026-10-28T00:00:00Z"), "before the change: UTC-5");
        assert_eq!(occ[2].start, ms("2026-11-04T01:00:00Z"), "after the change: UTC-6");
        assert_eq!(s.local_label(occ[2].start).as_deref(), Some("2026-11-03T19:00:00-06:00"));
        // Spring forward too (14 March 2027): 19:00 CST is 01:00 UTC, 19:00 CDT 00:00 UTC.
        let occ = s.occurrences(ms("2027-03-01T00:00:00Z"), ms("2027-03-20T00:00:00Z")).unwrap();
        assert_eq!(
            occ.iter().map(|o| o.start).collect::<Vec<_>>(),
            vec![ms("2027-03-03T01:00:00Z"), ms("2027-03-10T01:00:00Z"), ms("2027-03-17T00:00:00Z")]
        );
    }

    #[test]
    fn the_window_keeps_an_occurrence_that_has_not_ended() {
        let s = tuesdays("2026-12-01T19:00:00");
        let start = ms("2026-12-02T01:00:00Z");
        let occ = s.occurrences(start + 30 * 60_000, start + 7 * 86_400_000).unwrap();
        assert_eq!(occ[0].start, start, "the running occurrence is still in the window");
        assert_eq!(occ.len(), 1);
    }

    #[test]
    fn a_rule_that_matches_nothing_ends_with_no_occurrences() {
        let mut s = tuesdays("2026-12-01T19:00:00");
        s.rrule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30".into();
        // The crate accepts the rule; the iteration must still end.
        assert!(s.validate().is_ok());
        assert_eq!(s.occurrences(0, i64::MAX).unwrap(), vec![]);
    }

    #[test]
    fn bad_rules_and_zones_are_refused_with_the_field_named() {
        let mut s = tuesdays("2026-12-01T19:00:00");
        assert!(s.validate().is_ok());
        s.rrule = "FREQ=MINUTELY".into();
        assert!(s.validate().unwrap_err().starts_with("rrule"));
        s.rrule = "FREQ=WEEKLY\nRDATE:20261202T000000".into();
        assert!(s.validate().unwrap_err().starts_with("rrule"));
        s.rrule = "FREQ=WEEKLY;BYDAY=XX".into();
        assert!(s.validate().unwrap_err().starts_with("rrule"));
        let mut s = tuesdays("2026-12-01T19:00:00");
        s.time_zone = "Mars/Olympus".into();
        assert!(s.validate().unwrap_err().starts_with("time_zone"));
        let mut s = tuesdays("2026-12-01T19:00:00");
        s.duration_minutes = 0;
        assert!(s.validate().unwrap_err().starts_with("duration_minutes"));
    }
}

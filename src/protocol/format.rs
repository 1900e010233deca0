//! Meeting formats: an ordered list of segments, each with the rules that hold during it.
//!
//! A program defines a format over the API (`/v1/formats`); a meeting created with it copies the
//! format as it is then, so a later edit never changes a meeting already planned. The room core
//! (`room::format`) applies a segment's rules when the facilitator moves to it.

use super::messages::ShareEnd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who may unmute during a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhoMayUnmute {
    /// Facilitators only (readings, psycho-education). A member speaks only when a facilitator
    /// gives them the floor.
    Facilitators,
    /// Facilitators and whoever holds the floor (the queue, a go-around).
    FloorHolder,
    /// Every member present.
    #[default]
    Anyone,
}

/// Who takes part in a segment's go-around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GoAroundWho {
    /// Members present when the segment starts, in order of arrival.
    Members,
    /// Members, then co-facilitators and facilitators.
    Everyone,
}

/// The rules that hold during a segment. Absent fields take the defaults shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentRules {
    /// Who may unmute (default `anyone`).
    pub unmute: WhoMayUnmute,
    /// Whether members may raise a hand (default true).
    pub hands: bool,
    /// Length of a share in seconds; `null` for untimed shares (default).
    pub share_seconds: Option<u32>,
    /// Seconds before a share's end that its warning is sent (default 30).
    pub share_warning_seconds: u32,
    /// Whether the end of a share takes the floor back (default `soft`).
    #[schema(value_type = String)]
    pub share_end: ShareEnd,
    /// A go-around that starts with the segment, and who is in it (default none).
    pub go_around: Option<GoAroundWho>,
    /// Whether chat is on (default true).
    pub chat: bool,
}

impl Default for SegmentRules {
    fn default() -> Self {
        SegmentRules {
            unmute: WhoMayUnmute::Anyone,
            hands: true,
            share_seconds: None,
            share_warning_seconds: 30,
            share_end: ShareEnd::Soft,
            go_around: None,
            chat: true,
        }
    }
}

/// One part of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// What the agenda calls it ("Readings", "Check-in round"); 1 to 100 characters.
    pub title: String,
    /// Planned length; the facilitator is warned before it is up. Absent: open-ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_minutes: Option<u32>,
    #[serde(default)]
    pub rules: SegmentRules,
    /// Move on to the next segment by itself when the planned length is up (default false: the
    /// facilitator moves on).
    #[serde(default)]
    pub auto_advance: bool,
}

/// A format: the segments of a meeting, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    /// 1 to 30 segments.
    pub segments: Vec<Segment>,
    /// How long before a segment's planned end the facilitators are warned (default 120 s).
    #[serde(default = "default_segment_warning")]
    pub segment_warning_seconds: u32,
}

fn default_segment_warning() -> u32 {
    120
}

/// Most segments a format may have.
pub const MAX_SEGMENTS: usize = 30;
/// Longest planned segment, in minutes (ten hours).
pub const MAX_SEGMENT_MINUTES: u32 = 600;

impl SegmentRules {
    /// Checks the ranges a program could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.share_seconds {
            if s == 0 || s > super::MAX_SHARE_SECONDS {
                return Err(format!("share_seconds must be between 1 and {}", super::MAX_SHARE_SECONDS));
            }
            if self.share_warning_seconds >= s {
                return Err("share_warning_seconds must be shorter than share_seconds".into());
            }
        }
        Ok(())
    }
}

impl FormatSpec {
    /// Checks a format as a program sent it; the message names the segment at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return Err(format!("segments: 1 to {MAX_SEGMENTS}"));
        }
        if self.segment_warning_seconds > 3600 {
            return Err("segment_warning_seconds: at most 3600".into());
        }
        for (i, s) in self.segments.iter().enumerate() {
            let n = s.title.trim().chars().count();
            if n == 0 || n > 100 || s.title.chars().any(char::is_control) {
                return Err(format!("segments[{i}].title: 1 to 100 characters, no control characters"));
            }
            if let Some(m) = s.planned_minutes {
                if m == 0 || m > MAX_SEGMENT_MINUTES {
                    return Err(format!("segments[{i}].planned_minutes: 1 to {MAX_SEGMENT_MINUTES}"));
                }
            }
            if s.auto_advance && s.planned_minutes.is_none() {
                return Err(format!("segments[{i}].auto_advance needs planned_minutes"));
            }
            s.rules.validate().map_err(|m| format!("segments[{i}].rules: {m}"))?;
        }
        Ok(())
    }

    /// The planned length of the whole format, in minutes (segments without one count nothing).
    pub fn planned_minutes(&self) -> u32 {
        self.segments.iter().filter_map(|s| s.planned_minutes).sum()
    }
}

/// One line of the agenda as participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgendaItem {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_minutes: Option<u32>,
}

/// The current segment: what `segment_changed` carries and `welcome` includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentView {
    /// Position in the agenda, from 0.
    pub index: u32,
    pub title: String,
    /// The segment's rules as it starts (facilitators may override them within it; the
    /// meeting's settings in `meeting_updated` show what is in force).
    pub rules: SegmentRules,
    /// When it started (Unix ms).
    pub started_at: u64,
    /// When it is planned to end (Unix ms); `null` when open-ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_end: Option<u64>,
    /// Whether it moves on by itself at `planned_end`.
    pub auto_advance: bool,
}

/// The meeting's agenda: every segment and the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgendaView {
    pub segments: Vec<AgendaItem>,
    pub current: SegmentView,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(title: &str) -> Segment {
        Segment { title: title.into(), planned_minutes: Some(10), rules: SegmentRules::default(), auto_advance: false }
    }

    #[test]
    fn formats_are_validated_with_the_segment_named() {
        let ok = FormatSpec { segments: vec![seg("Welcome"), seg("Sharing")], segment_warning_seconds: 120 };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.segments[1].title = " ".into();
        assert!(bad.validate().unwrap_err().starts_with("segments[1].title"));
        let mut bad = ok.clone();
        bad.segments[0].planned_minutes = None;
        bad.segments[0].auto_advance = true;
        assert!(bad.validate().unwrap_err().contains("auto_advance"));
        let mut bad = ok.clone();
        bad.segments[1].rules.share_seconds = Some(20);
        assert!(bad.validate().unwrap_err().starts_with("segments[1].rules"));
        assert!(FormatSpec { segments: vec![], segment_warning_seconds: 0 }.validate().is_err());
    }

    #[test]
    fn the_built_in_examples_in_the_documentation_are_valid_formats_of_60_and_90_minutes() {
        let doc = include_str!("../../docs/formats.md");
        let mut minutes = Vec::new();
        for block in doc.split("```json\n").skip(1) {
            let json = block.split("\n```").next().unwrap_or_default();
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            let obj = v.as_object_mut().unwrap();
            assert!(obj.remove("id").is_some() && obj.remove("name").is_some(), "{json}");
            let spec: FormatSpec = serde_json::from_value(v).unwrap();
            spec.validate().unwrap();
            minutes.push(spec.planned_minutes());
        }
        assert_eq!(minutes, vec![60, 90]);
    }

    #[test]
    fn absent_rules_take_the_defaults_and_unknown_fields_are_refused() {
        let s: Segment = serde_json::from_str(r#"{"title":"Open sharing"}"#).unwrap();
        assert_eq!(s.rules, SegmentRules::default());
        let r: SegmentRules = serde_json::from_str(r#"{"unmute":"facilitators","hands":false}"#).unwrap();
        assert_eq!((r.unmute, r.hands, r.chat), (WhoMayUnmute::Facilitators, false, true));
        assert!(serde_json::from_str::<SegmentRules>(r#"{"unmte":"anyone"}"#).is_err());
    }
}

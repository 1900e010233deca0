//! The active speaker of each meeting, from the audio-level header extension.

use crate::protocol::ParticipantId;
use std::time::{Duration, Instant};

/// Audio at least this loud (dBov, closer to 0 is louder) counts as speaking.
const SPEAKING_DBOV: i8 = -50;
/// Active-speaker changes are announced at most this often per meeting.
const SPEAKER_WINDOW: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct Speakers {
    window_start: Option<Instant>,
    loudest: Option<(ParticipantId, i8)>,
    current: Option<ParticipantId>,
}

impl Speakers {
    /// A forwarded audio packet with this level (audio-level extension, `-dBov`).
    pub(super) fn heard(&mut self, origin: ParticipantId, level: i8) {
        if level >= SPEAKING_DBOV && self.loudest.is_none_or(|(_, l)| level > l) {
            self.loudest = Some((origin, level));
        }
    }

    /// The origin's audio is dropped by the room's rule (muted, no floor): they are not speaking,
    /// whatever their level. Returns the change to announce.
    pub(super) fn silenced(&mut self, origin: ParticipantId) -> Option<Option<ParticipantId>> {
        if self.loudest.is_some_and(|(p, _)| p == origin) {
            self.loudest = None;
        }
        if self.current == Some(origin) {
            self.current = None;
            return Some(None);
        }
        None
    }

    /// At most once per window: the loudest of the window, if that is a change.
    pub(super) fn tick(&mut self, now: Instant) -> Option<Option<ParticipantId>> {
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) < SPEAKER_WINDOW {
            return None;
        }
        let speaker = self.loudest.take().map(|(pid, _)| pid);
        self.window_start = Some(now);
        if speaker != self.current {
            self.current = speaker;
            return Some(speaker);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speaker_muted_by_rule_stops_being_the_active_speaker_at_once() {
        let (a, b) = (ParticipantId::from_random(1), ParticipantId::from_random(2));
        let mut s = Speakers::default();
        let t0 = Instant::now();
        assert_eq!(s.tick(t0), None);
        s.heard(a, -20);
        assert_eq!(s.tick(t0 + SPEAKER_WINDOW), Some(Some(a)), "positive control: a is announced");
        // a is muted: the next dropped packet clears the mark, without waiting for someone else.
        assert_eq!(s.silenced(a), Some(None));
        assert_eq!(s.silenced(a), None, "announced once");
        // Someone else silenced changes nothing.
        s.heard(b, -10);
        assert_eq!(s.silenced(a), None);
        assert_eq!(s.tick(t0 + SPEAKER_WINDOW * 2), Some(Some(b)));
        // A level heard within the window, then muted: not announced at the window's end.
        s.heard(a, -5);
        assert_eq!(s.silenced(a), None);
        assert_eq!(s.tick(t0 + SPEAKER_WINDOW * 3), Some(None));
    }
}

//! When each session next needs `handle_timeout`: one heap entry per session at most, however
//! often its deadline moves.
//!
//! A session's deadline moves after almost every packet it sends (str0m asks to be woken again
//! soon after each send), so pushing every new deadline would fill the heap with stale entries at
//! the packet rate of every subscriber. Instead each session has at most one live entry, for the
//! earliest deadline it asked for; a later deadline only updates the session's slot, and when the
//! earlier entry comes due it is put back at the later time without waking the session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// When the session wants its next timeout.
    wanted: Option<Instant>,
    /// The time of its live heap entry (other entries for it are stale).
    queued: Option<Instant>,
}

/// Deadlines of the sessions of one engine, by session slot.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    slots: Vec<Slot>,
}

impl Timers {
    fn slot(&mut self, idx: usize) -> &mut Slot {
        if idx >= self.slots.len() {
            self.slots.resize(idx + 1, Slot::default());
        }
        &mut self.slots[idx]
    }

    /// Session `idx` wants `handle_timeout` at `at` (replacing what it wanted before).
    pub(super) fn set(&mut self, idx: usize, at: Instant) {
        let slot = self.slot(idx);
        slot.wanted = Some(at);
        if slot.queued.is_none_or(|q| at < q) {
            slot.queued = Some(at);
            self.heap.push(Reverse((at, idx)));
        }
    }

    /// Forgets a session (its slot may be reused by another).
    pub(super) fn clear(&mut self, idx: usize) {
        if let Some(s) = self.slots.get_mut(idx) {
            *s = Slot::default();
        }
    }

    fn live(&self, at: Instant, idx: usize) -> bool {
        self.slots.get(idx).is_some_and(|s| s.queued == Some(at))
    }

    /// The earliest live deadline.
    pub(super) fn next(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, idx))) = self.heap.peek() {
            if self.live(at, idx) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// A session whose deadline has come by `now`, if any. A session whose deadline moved later
    /// since its entry was queued is queued again at that time instead.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((at, idx))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if !self.live(at, idx) {
                continue;
            }
            let slot = self.slot(idx);
            slot.queued = None;
            match slot.wanted {
                Some(w) if w > now => {
                    slot.queued = Some(w);
                    self.heap.push(Reverse((w, idx)));
                }
                _ => {
                    slot.wanted = None;
                    return Some(idx);
                }
            }
        }
        None
    }

    /// Heap entries, live or stale (tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_deadline_that_keeps_moving_later_costs_one_entry() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(3, ms(t0, 10));
        for i in 11..1000 {
            t.set(3, ms(t0, i));
        }
        assert_eq!(t.entries(), 1, "later deadlines only update the slot");
        assert_eq!(t.next(), Some(ms(t0, 10)));
        // The entry comes due but the session wants 999: queued again, not returned.
        assert_eq!(t.pop_due(ms(t0, 500)), None);
        assert_eq!(t.next(), Some(ms(t0, 999)));
        assert_eq!(t.pop_due(ms(t0, 999)), Some(3));
        assert_eq!(t.next(), None);
    }

    #[test]
    fn an_earlier_deadline_wins_and_sessions_come_due_in_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(0, ms(t0, 50));
        t.set(1, ms(t0, 30));
        t.set(0, ms(t0, 20));
        assert_eq!(t.next(), Some(ms(t0, 20)));
        assert_eq!(t.pop_due(ms(t0, 25)), Some(0));
        // Session 0's stale entry at 50 is skipped; session 1 comes due at 30.
        assert_eq!(t.pop_due(ms(t0, 60)), Some(1));
        assert_eq!(t.pop_due(ms(t0, 60)), None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_cleared_slot_never_comes_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(7, ms(t0, 10));
        t.clear(7);
        assert_eq!(t.next(), None);
        assert_eq!(t.pop_due(ms(t0, 100)), None);
        // Reused by a new session: only its own deadline counts.
        t.set(7, ms(t0, 40));
        assert_eq!(t.pop_due(ms(t0, 30)), None);
        assert_eq!(t.pop_due(ms(t0, 40)), Some(7));
    }
}

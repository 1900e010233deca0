//! SFU-to-actor delivery: bounded channels, never a dropped event, never a blocked engine.
//!
//! Renegotiation offers and answers are state: a dropped offer leaves a subscriber without the
//! new tracks. The engine must not wait on a slow actor either (every meeting shares its thread),
//! so an event that does not fit in the actor's channel waits in that meeting's backlog, in order,
//! and the engine retries on its next turn.

use super::SfuEvent;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

struct Meeting {
    tx: mpsc::Sender<SfuEvent>,
    backlog: VecDeque<SfuEvent>,
}

/// Per-meeting senders and backlogs.
#[derive(Default)]
pub(super) struct Outbox {
    meetings: HashMap<Arc<str>, Meeting>,
    /// Meetings with a backlog, so a retry visits only them.
    waiting: Vec<Arc<str>>,
}

impl Outbox {
    /// The actor's channel for `meeting` (each offer brings it; the newest wins).
    pub(super) fn register(&mut self, meeting: &Arc<str>, tx: mpsc::Sender<SfuEvent>) {
        match self.meetings.get_mut(meeting) {
            Some(m) if m.tx.same_channel(&tx) => {}
            Some(m) => m.tx = tx,
            None => {
                self.meetings.insert(meeting.clone(), Meeting { tx, backlog: VecDeque::new() });
            }
        }
    }

    /// Sends now if the channel has room and nothing is queued before it; otherwise queues.
    pub(super) fn send(&mut self, meeting: &Arc<str>, event: SfuEvent) {
        let Some(m) = self.meetings.get_mut(meeting) else { return };
        if m.backlog.is_empty() {
            match m.tx.try_send(event) {
                // Closed: the actor is gone, nobody is left to tell.
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(e)) => {
                    m.backlog.push_back(e);
                    self.waiting.push(meeting.clone());
                }
            }
        } else {
            m.backlog.push_back(event);
        }
    }

    /// Whether some meeting has events waiting (the engine then retries soon).
    pub(super) fn has_backlog(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Moves what fits from the backlogs into the channels, in order.
    pub(super) fn flush(&mut self) {
        let meetings = &mut self.meetings;
        self.waiting.retain(|id| {
            let Some(m) = meetings.get_mut(id) else { return false };
            while let Some(e) = m.backlog.pop_front() {
                match m.tx.try_send(e) {
                    Ok(()) => {}
                    Err(TrySendError::Full(e)) => {
                        m.backlog.push_front(e);
                        return true;
                    }
                    Err(TrySendError::Closed(_)) => {
                        m.backlog.clear();
                        return false;
                    }
                }
            }
            false
        });
    }

    /// The meeting has no media left: forget its channel once its backlog is delivered.
    pub(super) fn release(&mut self, meeting: &Arc<str>) {
        if self.meetings.get(meeting).is_some_and(|m| m.backlog.is_empty()) {
            self.meetings.remove(meeting);
        }
    }

    /// Queued events in all backlogs (diagnostics).
    pub(super) fn backlog_len(&self) -> usize {
        self.meetings.values().map(|m| m.backlog.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, ParticipantId};

    fn offer(n: usize) -> SfuEvent {
        SfuEvent::Media {
            participant_id: ParticipantId::from_random(1),
            event: Box::new(Event::MediaOffer { sdp: format!("offer {n}") }),
            request_id: None,
        }
    }

    #[test]
    fn events_beyond_a_full_actor_channel_are_delivered_later_in_order() {
        let (tx, mut rx) = mpsc::channel(2);
        let meeting: Arc<str> = Arc::from("m");
        let mut out = Outbox::default();
        out.register(&meeting, tx);
        for n in 0..10 {
            out.send(&meeting, offer(n));
        }
        assert!(out.has_backlog());
        let mut got = Vec::new();
        while got.len() < 10 {
            while let Ok(SfuEvent::Media { event, .. }) = rx.try_recv() {
                if let Event::MediaOffer { sdp } = *event {
                    got.push(sdp);
                }
            }
            out.flush();
        }
        let want: Vec<String> = (0..10).map(|n| format!("offer {n}")).collect();
        assert_eq!(got, want, "every renegotiation offer arrives, in order");
        assert!(!out.has_backlog());
        assert_eq!(out.backlog_len(), 0);
    }
}

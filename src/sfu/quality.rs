//! Connection quality (reach): each session's ICE state, loss and round-trip time, from str0m's
//! ICE events and its periodic peer statistics (RTCP receiver reports, STUN consent checks).
//!
//! The engine reports a session when its state changes, and while connected when its figures
//! moved enough to matter to a facilitator ("can't hear the meeting", "audio may lag"); figures
//! that wobble around a value are not re-sent. Counts by state and transport go to `/metrics`.

use crate::metrics::Metrics;
use crate::protocol::MediaState;
use std::time::{Duration, Instant};
use str0m::net::Protocol;
use str0m::IceConnectionState;

/// How often str0m summarises a session's statistics.
pub(super) const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// A session that has not connected after this long has no audio path.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Changes smaller than these are not reported again.
const LOSS_STEP: f32 = 2.0;
const RTT_STEP_MS: u32 = 50;

/// A report for the room: (state, loss percent, round-trip milliseconds).
pub(super) type Report = (MediaState, Option<f32>, Option<u32>);

pub(super) struct Quality {
    state: MediaState,
    since: Instant,
    loss: Option<f32>,
    rtt_ms: Option<u32>,
    transport: Option<&'static str>,
    /// What was last reported.
    sent: Option<Report>,
}

fn state_label(s: MediaState) -> &'static str {
    match s {
        MediaState::Checking => "checking",
        MediaState::Connected => "connected",
        MediaState::Failed => "failed",
    }
}

/// `relay`: through this server's TURN relay (over UDP, TCP or TLS to the client); else the
/// selected pair's own protocol (`udp`, or `tcp` for ICE-TCP).
fn transport_label(p: Protocol, relayed: bool) -> &'static str {
    match p {
        _ if relayed => "relay",
        Protocol::Udp => "udp",
        _ => "tcp",
    }
}

impl Quality {
    /// A new session: checking, counted.
    pub(super) fn new(now: Instant, metrics: &Metrics) -> Quality {
        metrics.media_connection_state(state_label(MediaState::Checking)).inc();
        Quality { state: MediaState::Checking, since: now, loss: None, rtt_ms: None, transport: None, sent: None }
    }

    fn set_state(&mut self, s: MediaState, now: Instant, metrics: &Metrics) {
        if s != self.state {
            metrics.media_connection_state(state_label(self.state)).dec();
            metrics.media_connection_state(state_label(s)).inc();
            self.state = s;
            self.since = now;
        }
    }

    fn set_transport(&mut self, t: Option<&'static str>, metrics: &Metrics) {
        if t != self.transport {
            if let Some(old) = self.transport {
                metrics.media_transport(old).dec();
            }
            if let Some(new) = t {
                metrics.media_transport(new).inc();
            }
            self.transport = t;
        }
    }

    /// The session is gone: uncounted.
    pub(super) fn release(&mut self, metrics: &Metrics) {
        metrics.media_connection_state(state_label(self.state)).dec();
        self.set_transport(None, metrics);
    }

    pub(super) fn ice(&mut self, s: IceConnectionState, now: Instant, metrics: &Metrics) -> Option<Report> {
        let state = match s {
            IceConnectionState::New | IceConnectionState::Checking => MediaState::Checking,
            IceConnectionState::Connected | IceConnectionState::Completed => MediaState::Connected,
            IceConnectionState::Disconnected => MediaState::Failed,
        };
        self.set_state(state, now, metrics);
        self.report()
    }

    pub(super) fn stats(&mut self, s: &str0m::stats::PeerStats, relayed: bool, metrics: &Metrics) -> Option<Report> {
        // Loss both ways: what the participant lost of ours (their receiver reports) and what we
        // lost of theirs; either makes the meeting hard to follow.
        let loss = match (s.egress_loss_fraction, s.ingress_loss_fraction) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0).max(b.unwrap_or(0.0)).clamp(0.0, 1.0) * 100.0),
        };
        if loss.is_some() {
            self.loss = loss;
        }
        let rtt = s.rtt.or(s.selected_candidate_pair.as_ref().and_then(|p| p.current_round_trip_time));
        if let Some(r) = rtt {
            self.rtt_ms = Some(u32::try_from(r.as_millis()).unwrap_or(u32::MAX));
        }
        self.set_transport(s.selected_candidate_pair.as_ref().map(|p| transport_label(p.protocol, relayed)), metrics);
        self.report()
    }

    /// A session still checking after [`CONNECT_TIMEOUT`] has failed.
    pub(super) fn sweep(&mut self, now: Instant, metrics: &Metrics) -> Option<Report> {
        if self.state == MediaState::Checking && now.duration_since(self.since) >= CONNECT_TIMEOUT {
            self.set_state(MediaState::Failed, now, metrics);
            return self.report();
        }
        None
    }

    /// The current figures, if they differ enough from what was last reported.
    fn report(&mut self) -> Option<Report> {
        let now: Report = (self.state, self.loss.map(|l| (l * 10.0).round() / 10.0), self.rtt_ms);
        let changed = match self.sent {
            None => true,
            Some((state, loss, rtt)) => {
                state != now.0
                    || (now.0 == MediaState::Connected
                        && (differs(loss, now.1, |a, b| (a - b).abs() >= LOSS_STEP)
                            || differs(rtt, now.2, |a, b| a.abs_diff(b) >= RTT_STEP_MS)))
            }
        };
        if !changed {
            return None;
        }
        self.sent = Some(now);
        Some(now)
    }
}

fn differs<T: Copy>(a: Option<T>, b: Option<T>, far: impl Fn(T, T) -> bool) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => far(a, b),
        (None, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_reported_on_change_and_figures_only_when_they_move() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let mut q = Quality::new(t0, &m);
        assert_eq!(m.media_connection_state("checking").get(), 1);
        assert_eq!(q.ice(IceConnectionState::Checking, t0, &m), Some((MediaState::Checking, None, None)));
        assert_eq!(q.ice(IceConnectionState::Checking, t0, &m), None, "no change, no report");
        assert_eq!(q.ice(IceConnectionState::Connected, t0, &m).map(|r| r.0), Some(MediaState::Connected));
        assert_eq!((m.media_connection_state("checking").get(), m.media_connection_state("connected").get()), (0, 1));
        q.loss = Some(1.0);
        assert!(q.report().is_some(), "first figure");
        q.loss = Some(1.5);
        assert_eq!(q.report(), None, "a wobble is not news");
        q.loss = Some(8.0);
        assert_eq!(q.report(), Some((MediaState::Connected, Some(8.0), None)));
        assert_eq!(q.ice(IceConnectionState::Disconnected, t0, &m).map(|r| r.0), Some(MediaState::Failed));
        q.release(&m);
        assert_eq!(m.media_connection_state("failed").get(), 0);
    }

    #[test]
    fn a_session_that_never_connects_fails_after_the_timeout() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let mut q = Quality::new(t0, &m);
        assert_eq!(q.sweep(t0 + CONNECT_TIMEOUT / 2, &m), None);
        assert_eq!(q.sweep(t0 + CONNECT_TIMEOUT, &m).map(|r| r.0), Some(MediaState::Failed));
        assert_eq!(m.media_connection_state("failed").get(), 1);
    }
}

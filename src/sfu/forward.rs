//! One subscriber's copy of one publisher's stream in RTP mode: sequence numbers and timestamps
//! rewritten so the subscriber sees one continuous stream, whatever the rules did upstream.
//!
//! str0m's RTP mode hands the engine each incoming packet as it is (`Event::RtpPacket`) and sends
//! what the engine writes (`StreamTx::write_rtp`) without depacketising or repacketising. The
//! publisher's numbering cannot be passed through as is: while a rule drops a stream (mute, floor),
//! the publisher keeps counting, and a subscriber would see a jump of hundreds of sequence numbers
//! when the speaker is heard again, which jitter buffers and NACK logic read as massive loss. So each
//! outgoing stream keeps an offset; after a gap by rule (the publisher's track `epoch` moved) or at
//! the start, the offset is chosen so the next packet follows the last one sent.

use std::time::Instant;
use str0m::media::Pt;

/// Per (subscriber, origin track) state.
#[derive(Debug)]
pub(super) struct OutStream {
    pub mid: str0m::media::Mid,
    /// Publisher's payload type to the subscriber's, learnt on first use.
    pub pts: Vec<(Pt, Pt)>,
    /// The publisher track's epoch this offset was computed for.
    epoch: Option<u32>,
    seq_offset: u64,
    ts_offset: u32,
    last_seq: Option<u64>,
    last_ts: u32,
    last_at: Option<Instant>,
}

impl OutStream {
    pub(super) fn new(mid: str0m::media::Mid) -> OutStream {
        OutStream {
            mid,
            pts: Vec::new(),
            epoch: None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: None,
            last_ts: 0,
            last_at: None,
        }
    }

    /// The next packet continues right after the last one sent (the subscriber or the publisher
    /// moved to another room of the meeting, so packets were skipped for this subscriber).
    pub(super) fn resync(&mut self) {
        self.epoch = None;
    }

    /// The subscriber's (extended sequence number, RTP timestamp) for an incoming packet.
    /// `epoch` changes whenever the publisher's stream was interrupted by a rule; `clock` is the
    /// codec's clock rate, to carry the timestamp across the silence in real time.
    pub(super) fn map(&mut self, epoch: u32, seq: u64, ts: u32, clock: u32, now: Instant) -> (u64, u32) {
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            match (self.last_seq, self.last_at) {
                (Some(last), Some(at)) => {
                    // Continue right after the last packet sent, the timestamp advanced by the
                    // time that passed (at least one tick, so it never repeats).
                    self.seq_offset = (last + 1).wrapping_sub(seq);
                    let elapsed = now.saturating_duration_since(at).as_secs_f64();
                    let ticks = ((elapsed * clock as f64) as u32).max(1);
                    self.ts_offset = self.last_ts.wrapping_add(ticks).wrapping_sub(ts);
                }
                _ => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if self.last_seq.is_none_or(|l| out_seq > l) {
            self.last_seq = Some(out_seq);
            self.last_ts = out_ts;
            self.last_at = Some(now);
        }
        (out_seq, out_ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbering_continues_across_a_gap_by_rule() {
        let mut o = OutStream::new(str0m::media::Mid::from("1"));
        let t0 = Instant::now();
        // First packets pass through as they are.
        assert_eq!(o.map(0, 1000, 48_000, 48_000, t0), (1000, 48_000));
        assert_eq!(o.map(0, 1001, 48_960, 48_000, t0 + Duration::from_millis(20)), (1001, 48_960));
        // Muted for 10 s: the publisher went on counting (500 packets), the epoch moved.
        let back = t0 + Duration::from_millis(10_020);
        let (s, ts) = o.map(1, 1501, 48_960 + 500 * 960, 48_000, back);
        assert_eq!(s, 1002, "no gap in the subscriber's sequence numbers");
        // The timestamp moved by the real time that passed (10 s at 48 kHz).
        assert_eq!(ts, 48_960 + 480_000);
        assert_eq!(o.map(1, 1502, 48_960 + 501 * 960, 48_000, back), (1003, 48_960 + 480_960));
        // A genuine loss upstream (1503 missing) stays a gap, for the receiver to NACK.
        assert_eq!(o.map(1, 1504, 48_960 + 503 * 960, 48_000, back).0, 1005);
        // The subscriber was in another room for 100 packets: after a resync, no gap either.
        o.resync();
        let later = back + Duration::from_millis(2_000);
        assert_eq!(o.map(1, 1604, 48_960 + 603 * 960, 48_000, later).0, 1006);
    }
}

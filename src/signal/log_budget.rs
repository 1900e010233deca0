//! A budget for warnings the server cannot attribute to an operator's action: a client that
//! sends malformed media (str0m warns per bad packet or SDP line) must not fill the log. Each
//! target gets a few warnings per window; the rest are dropped until the window turns over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Warnings (and below) from these targets are budgeted; errors always pass.
pub const BUDGETED_TARGETS: &[&str] = &["str0m", "dimpl", "sctp_proto"];
/// The TURN relay's libraries log client addresses and usernames (participant ids) on a client's
/// say-so, errors included: never written (promise 1); `/metrics` counts what matters.
pub const SILENT_TARGETS: &[&str] = &["turn", "stun", "webrtc_util"];
/// Warnings let through per window.
pub const PER_WINDOW: u64 = 20;
/// Window length, seconds.
pub const WINDOW_SECONDS: u64 = 60;

/// A window start and a count, packed in one atomic so checking costs no lock.
#[derive(Debug, Default)]
pub struct Budget(AtomicU64);

impl Budget {
    pub const fn new() -> Self {
        Budget(AtomicU64::new(0))
    }

    /// Whether one more line may go out at `now_s` (seconds).
    pub fn allow(&self, now_s: u64) -> bool {
        let window = now_s / WINDOW_SECONDS;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (w, n) = (cur >> 16, cur & 0xffff);
            let next = if w != window {
                (window << 16) | 1
            } else if n < PER_WINDOW {
                cur + 1
            } else {
                return false;
            };
            match self.0.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

static BUDGET: Budget = Budget::new();

/// Whether `target` is one of [`SILENT_TARGETS`] or a module of one.
fn silent(target: &str) -> bool {
    SILENT_TARGETS.iter().any(|t| target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

/// The filter for the process's log: `false` drops a budgeted target's warning past its budget.
pub fn allow(meta: &tracing::Metadata<'_>) -> bool {
    if silent(meta.target()) {
        return false;
    }
    if *meta.level() == tracing::Level::ERROR || !meta.is_event() {
        return true;
    }
    if !BUDGETED_TARGETS.iter().any(|t| meta.target().starts_with(t)) {
        return true;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    BUDGET.allow(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_libraries_are_never_logged() {
        assert!(silent("turn::server::request"));
        assert!(silent("turn"));
        assert!(silent("stun::message"));
        assert!(silent("webrtc_util::conn"));
        assert!(!silent("turnstile"));
        assert!(!silent("haven::turn"), "our own module logs what it chooses to");
        assert!(!silent("str0m::ice"));
    }

    #[test]
    fn a_flood_of_dependency_warnings_is_cut_to_the_budget_per_window() {
        let b = Budget::new();
        let passed = (0..1_050).filter(|_| b.allow(600)).count();
        assert_eq!(passed as u64, PER_WINDOW);
        // The next window has a fresh budget.
        assert!(b.allow(600 + WINDOW_SECONDS));
    }
}

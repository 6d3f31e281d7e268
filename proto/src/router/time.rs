//! Deadline arithmetic that never overflows: an `Instant` plus a configured duration
//! saturates instead of panicking, whatever the configuration says.

use std::time::{Duration, Instant};

/// `now + d`, saturating far in the future instead of overflowing.
pub(super) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// An instant well before `t` (so a link marked for closing counts as expired).
pub(super) fn far_past(t: Instant) -> Instant {
    t.checked_sub(Duration::from_secs(86_400)).unwrap_or(t)
}

//! Sessions (C5): live until idle too long or too old, whichever comes first.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle_timeout: Duration::minutes(30), absolute_timeout: Duration::hours(12) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    IdleExpired,
    AbsoluteExpired,
}

impl SessionPolicy {
    pub fn state(&self, created_at: OffsetDateTime, last_seen_at: OffsetDateTime, now: OffsetDateTime) -> SessionState {
        if now >= created_at + self.absolute_timeout {
            SessionState::AbsoluteExpired
        } else if now >= last_seen_at + self.idle_timeout {
            SessionState::IdleExpired
        } else {
            SessionState::Live
        }
    }

    /// Writing `last_seen_at` on every request would make each read a write; a minute's
    /// precision is plenty for an idle timeout counted in minutes.
    pub fn needs_touch(&self, last_seen_at: OffsetDateTime, now: OffsetDateTime) -> bool {
        now - last_seen_at >= Duration::minutes(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn idle_and_absolute_timeouts() {
        let p = SessionPolicy::default();
        let t0 = datetime!(2026-11-23 09:00 UTC);
        assert_eq!(p.state(t0, t0, t0 + Duration::minutes(29)), SessionState::Live);
        assert_eq!(p.state(t0, t0, t0 + Duration::minutes(30)), SessionState::IdleExpired);
        let seen = t0 + Duration::hours(11) + Duration::minutes(50);
        assert_eq!(p.state(t0, seen, t0 + Duration::hours(11) + Duration::minutes(59)), SessionState::Live);
        assert_eq!(p.state(t0, seen, t0 + Duration::hours(12)), SessionState::AbsoluteExpired);
        assert!(!p.needs_touch(t0, t0 + Duration::seconds(59)));
        assert!(p.needs_touch(t0, t0 + Duration::seconds(60)));
    }
}

//! Throttling of failed attempts. The counting happens atomically in the store (so it holds across
//! nodes); this is the rule it counts by and the answer it leads to.

use time::{Duration, OffsetDateTime};

/// `max_failures` failures within `window` lock the key for `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

impl ThrottlePolicy {
    /// Per account: a handful of guesses, then a pause long enough to make guessing useless.
    pub const PER_ACCOUNT: Self = Self { max_failures: 5, window: Duration::minutes(15), lockout: Duration::minutes(15) };
    /// Per client address: room for an office behind one NAT, not for credential stuffing.
    pub const PER_CLIENT: Self = Self { max_failures: 50, window: Duration::minutes(15), lockout: Duration::minutes(15) };
}

/// What a throttle key looks like in the store. The kinds keep flows apart.
pub fn account_key(flow: &str, user_id: i64) -> String {
    format!("{flow}:user:{user_id}")
}

pub fn client_key(flow: &str, client: &str) -> String {
    format!("{flow}:client:{client}")
}

/// Seconds a client must wait, when `locked_until` is still ahead of `now`. Rounded up so a client
/// that waits exactly `Retry-After` seconds is let in.
pub fn retry_after(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<u64> {
    let until = locked_until?;
    if until <= now {
        return None;
    }
    let secs = (until - now).whole_seconds().max(1);
    Some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_counts_down_to_nothing() {
        let now = datetime!(2026-11-23 10:00 UTC);
        assert_eq!(retry_after(None, now), None);
        assert_eq!(retry_after(Some(now), now), None);
        assert_eq!(retry_after(Some(now + Duration::minutes(15)), now), Some(900));
        assert_eq!(retry_after(Some(now + Duration::milliseconds(10)), now), Some(1));
    }
}

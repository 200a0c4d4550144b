//! Rate limits as token buckets, with the time passed in: how many new connections an IP may
//! open, how many publishes a connection may make.

/// A token bucket: holds up to `burst` tokens and refills at `per_sec` tokens a second; each
/// allowed event takes one.
///
/// The zero value of [`RateLimit`] (`per_sec == 0`) means "no limit": every event is allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated_ms: u64,
}

/// A rate: `per_sec` events a second on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained events per second; 0 turns the limit off.
    pub per_sec: u32,
    /// Events allowed at once after a quiet spell (at least 1 when the limit is on).
    pub burst: u32,
}

// === impl RateLimit ===

impl RateLimit {
    /// Whether the limit is off.
    pub const fn is_off(self) -> bool {
        self.per_sec == 0
    }
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket for `limit` at `now_ms`.
    pub fn new(limit: RateLimit, now_ms: u64) -> Self {
        Self { tokens: f64::from(limit.burst.max(1)), updated_ms: now_ms }
    }

    /// Takes a token at `now_ms` if one is there; false means the event goes over the limit.
    /// A clock that goes backwards refills nothing.
    pub fn try_take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        if limit.is_off() {
            return true;
        }
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        self.updated_ms = self.updated_ms.max(now_ms);
        let burst = f64::from(limit.burst.max(1));
        self.tokens = (self.tokens + elapsed as f64 * f64::from(limit.per_sec) / 1000.0).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ms` (an idle key that can be forgotten).
    pub fn is_full(&self, limit: RateLimit, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.updated_ms) as f64 * f64::from(limit.per_sec) / 1000.0;
        self.tokens + refill >= f64::from(limit.burst.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = RateLimit { per_sec: 10, burst: 3 };
        let mut bucket = TokenBucket::new(limit, 1000);
        assert!((0..3).all(|_| bucket.try_take(limit, 1000)), "the burst");
        assert!(!bucket.try_take(limit, 1000), "over the burst");
        assert!(!bucket.try_take(limit, 1050), "half a token back");
        assert!(bucket.try_take(limit, 1100), "one token back after 100 ms");
        assert!(!bucket.try_take(limit, 1100));
        assert!(bucket.is_full(limit, 10_000) && !bucket.is_full(limit, 1100));
        // Over a long quiet spell the bucket refills only to its burst.
        assert_eq!((0..10).filter(|_| bucket.try_take(limit, 60_000)).count(), 3);
    }

    #[test]
    fn the_zero_limit_allows_everything_and_time_going_back_refills_nothing() {
        let off = RateLimit::default();
        let mut bucket = TokenBucket::new(off, 0);
        assert!((0..10_000).all(|_| bucket.try_take(off, 0)));
        let limit = RateLimit { per_sec: 1, burst: 1 };
        let mut bucket = TokenBucket::new(limit, 5000);
        assert!(bucket.try_take(limit, 5000));
        assert!(!bucket.try_take(limit, 1000), "earlier clock");
        assert!(!bucket.try_take(limit, 5500));
        assert!(bucket.try_take(limit, 6000));
    }
}

//! The server's wall clock: every age in the server (history windows, forgotten positions,
//! token expiry, rate buckets, idle connections) is read from [`now_ms`].
//!
//! It is the system clock, shifted by however far tokio's clock stands from the real one. In a
//! running server the two agree and the shift is zero. Under a test runtime whose clock is
//! paused (`tokio::time::pause`), the shift is what the test advanced minus the real time that
//! passed, so the server's ages move with `tokio::time::advance` and a test of a day-long
//! window takes no time at all.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it), moved with tokio's clock
/// when that is paused (see the [module docs](self)).
pub fn now_ms() -> u64 {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    // Read tokio's clock first: when it runs, it is the real one read earlier, and the
    // difference is below a millisecond.
    let tokio_now = tokio::time::Instant::now().into_std();
    let real_now = Instant::now();
    let wall = if tokio_now > real_now {
        wall.saturating_add((tokio_now - real_now).as_millis())
    } else {
        wall.saturating_sub((real_now - tokio_now).as_millis())
    };
    u64::try_from(wall).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::now_ms;

    /// Two readings round to whole milliseconds twice: the wall clock and the shift.
    const ROUNDING_MS: u64 = 2;

    #[tokio::test]
    async fn a_running_clock_reads_the_system_clock() {
        let system = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let (before, now, after) = (system(), now_ms(), system());
        assert!(before <= now + ROUNDING_MS && now <= after, "{before} <= {now} <= {after}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_only_when_advanced() {
        let start = now_ms();
        std::thread::sleep(Duration::from_millis(30));
        assert!(now_ms() <= start + ROUNDING_MS, "real time does not move a paused clock");
        tokio::time::advance(Duration::from_secs(86_400)).await;
        let moved = now_ms().abs_diff(start + 86_400_000);
        assert!(moved <= ROUNDING_MS, "a day and {moved} ms");
    }
}

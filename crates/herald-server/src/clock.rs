//! The server's wall clock: every age in the server (history windows, forgotten positions,
//! token expiry, rate buckets, idle connections) is read from [`now_ms`].
//!
//! In a server it is the system clock, read once per call. In this crate's tests it is the
//! system clock shifted by however far tokio's clock stands from the real one: under a runtime
//! whose clock is paused (`tokio::time::pause`) the shift is what the test advanced minus the
//! real time that passed, so the server's ages move with `tokio::time::advance`, and a test of
//! a day-long window takes no time at all (see `engine::paused_time`). With a running clock
//! the shift is zero. The shift costs two more clock reads a call, which the server does not
//! pay: `now_ms` runs several times per long poll (`bench/instructions.sh poll` counted about
//! 4 % more instructions per delivery).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
#[cfg(not(test))]
pub fn now_ms() -> u64 {
    u64::try_from(system_ms()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it), moved with tokio's clock
/// when that is paused (see the [module docs](self)).
#[cfg(test)]
pub fn now_ms() -> u64 {
    use std::time::Instant;
    // Read tokio's clock first: when it runs, it is the real one read earlier, and the
    // difference is below a millisecond.
    let tokio_now = tokio::time::Instant::now().into_std();
    let real_now = Instant::now();
    let wall = system_ms();
    let wall = if tokio_now > real_now {
        wall.saturating_add((tokio_now - real_now).as_millis())
    } else {
        wall.saturating_sub((real_now - tokio_now).as_millis())
    };
    u64::try_from(wall).unwrap_or(u64::MAX)
}

fn system_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
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

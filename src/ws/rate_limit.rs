//! Per-connection rate limit on client frames: a token bucket (sustained rate plus a
//! burst), and a count of refused frames that closes a client that keeps flooding.

use std::time::{Duration, Instant};

/// How long refused frames are counted before the count starts again.
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// What to do with a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Answer `rate_limited` and drop it.
    Refuse,
    /// The client keeps flooding: close with 1008.
    Disconnect,
}

/// A token bucket with a flood detector.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    refused: u32,
    refused_since: Instant,
    max_refused: u32,
}

impl RateLimiter {
    /// `per_sec` frames per second sustained, `burst` at once, and at most
    /// `max_refused` refused frames within 10 s before disconnecting.
    pub fn new(per_sec: u32, burst: u32, max_refused: u32, now: Instant) -> Self {
        RateLimiter {
            per_sec: per_sec as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
            refused: 0,
            refused_since: now,
            max_refused,
        }
    }

    /// Judges one frame arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.refused_since) > FLOOD_WINDOW {
            self.refused = 0;
            self.refused_since = now;
        }
        self.refused += 1;
        if self.refused > self.max_refused {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_disconnect() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(50, 100, 100, t0);
        for _ in 0..100 {
            assert_eq!(limiter.check(t0), Verdict::Allow);
        }
        for _ in 0..100 {
            assert_eq!(limiter.check(t0), Verdict::Refuse);
        }
        assert_eq!(limiter.check(t0), Verdict::Disconnect);
    }

    #[test]
    fn refills_at_the_sustained_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(50, 100, 100, t0);
        for _ in 0..100 {
            limiter.check(t0);
        }
        assert_eq!(limiter.check(t0), Verdict::Refuse);
        let later = t0 + Duration::from_millis(100);
        for _ in 0..5 {
            assert_eq!(limiter.check(later), Verdict::Allow);
        }
        assert_eq!(limiter.check(later), Verdict::Refuse);
    }
}

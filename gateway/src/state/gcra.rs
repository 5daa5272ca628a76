//! GCRA (the generic cell rate algorithm): a request rate with a burst, kept as one number per
//! key, the *theoretical arrival time* (TAT) of the next request if the client called exactly
//! at its rate.
//!
//! With an emission interval `T` (one request every `T`) and a burst `B`, a request at `now` is
//! admitted when `max(TAT, now) + T - now <= B * T`, and then `TAT` becomes `max(TAT, now) + T`.
//! So an idle client may send `B` requests at once, then one per `T`; a refused request does
//! not move `TAT`. Unlike a fixed window there is no edge where `2 B` requests pass in a short
//! time, and unlike a token bucket there is nothing to refill: one read and one write.
//!
//! [`decide`] is the rule; the in-process store applies it under its lock, and Redis runs the
//! same rule in [`SCRIPT`], atomically, with Redis's own clock (`TIME`), so that replicas whose
//! clocks differ share one truth.

use std::time::Duration;

/// A rate: one request per `emission_interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub emission_interval: Duration,
    pub burst: u32,
}

impl Gcra {
    /// `per_second` requests per second (positive and finite, checked by the configuration),
    /// with `burst`.
    pub fn per_second(per_second: f64, burst: u32) -> Gcra {
        let micros = (1_000_000.0 / per_second).round();
        let micros = if micros.is_finite() && micros >= 1.0 {
            micros as u64
        } else {
            1
        };
        Gcra {
            emission_interval: Duration::from_micros(micros),
            burst: burst.max(1),
        }
    }

    fn interval_micros(&self) -> u64 {
        u64::try_from(self.emission_interval.as_micros())
            .unwrap_or(u64::MAX / 4)
            .max(1)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraDecision {
    pub allowed: bool,
    /// Requests that could still be sent at once after this one.
    pub remaining: u32,
    /// When refused: how long until one request would be admitted (zero when allowed).
    pub retry_after: Duration,
    /// How long until the client is back to its full burst.
    pub reset_after: Duration,
}

/// The rule, on microseconds: returns the decision and the new TAT to store (`None` when the
/// request is refused and nothing changes). `tat` is the stored value, if any.
pub fn decide(tat: Option<u64>, now: u64, rate: Gcra) -> (GcraDecision, Option<u64>) {
    let t = rate.interval_micros();
    let window = t.saturating_mul(u64::from(rate.burst.max(1)));
    let start = tat.unwrap_or(now).max(now);
    let new_tat = start.saturating_add(t);
    let ahead = new_tat - now;
    if ahead > window {
        let decision = GcraDecision {
            allowed: false,
            remaining: 0,
            retry_after: Duration::from_micros(ahead - window),
            reset_after: Duration::from_micros(start - now),
        };
        return (decision, None);
    }
    let decision = GcraDecision {
        allowed: true,
        remaining: u32::try_from((window - ahead) / t).unwrap_or(u32::MAX),
        retry_after: Duration::ZERO,
        reset_after: Duration::from_micros(ahead),
    };
    (decision, Some(new_tat))
}

/// [`decide`] in Redis: `KEYS[1]` holds the TAT (microseconds of Redis's clock), `ARGV[1]` is
/// the emission interval and `ARGV[2]` the burst. Returns `{allowed, remaining, retry_after,
/// reset_after}` (microseconds). The key expires when the client is back to its full burst,
/// so an idle client leaves nothing behind. Numbers stay below 2^53 (microseconds since 1970
/// are about 2^51), so Lua's doubles are exact.
pub const SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local t = tonumber(ARGV[1])
local window = t * tonumber(ARGV[2])
local stored = tonumber(redis.call('GET', KEYS[1]))
local start = now
if stored and stored > now then start = stored end
local new_tat = start + t
local ahead = new_tat - now
if ahead > window then
  return {0, 0, ahead - window, start - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil(ahead / 1000)))
return {1, math.floor((window - ahead) / t), 0, ahead}
";

/// [`SCRIPT`], loaded once (the client sends `EVALSHA`, and the text only when Redis does not
/// know it yet).
pub static REDIS_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(SCRIPT));

/// The script's call for `key` (already prefixed) at `rate`.
pub fn invocation(key: String, rate: Gcra) -> redis::ScriptInvocation<'static> {
    let mut invocation = REDIS_SCRIPT.key(key);
    invocation
        .arg(rate.interval_micros())
        .arg(rate.burst.max(1));
    invocation
}

/// Turns the script's reply into a decision.
pub fn from_reply(reply: &[i64]) -> Option<GcraDecision> {
    let [allowed, remaining, retry_after, reset_after] = reply else {
        return None;
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Some(GcraDecision {
        allowed: *allowed == 1,
        remaining: u32::try_from(*remaining).unwrap_or(0),
        retry_after: micros(*retry_after),
        reset_after: micros(*reset_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn burst_then_one_per_interval() {
        let rate = Gcra {
            emission_interval: Duration::from_millis(100),
            burst: 3,
        };
        let mut tat = None;
        let now = 1_000_000 * MS;
        for remaining in [2, 1, 0] {
            let (d, next) = decide(tat, now, rate);
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            tat = next;
        }
        let (refused, unchanged) = decide(tat, now, rate);
        assert!(!refused.allowed);
        assert_eq!(unchanged, None);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset_after, Duration::from_millis(300));
        // One interval later exactly one more passes.
        let (d, next) = decide(tat, now + 100 * MS, rate);
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 0);
        let (d, _) = decide(next, now + 100 * MS, rate);
        assert!(!d.allowed);
        // Idle long enough: the full burst again.
        let (d, _) = decide(next, now + 10_000 * MS, rate);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn per_second_is_its_interval() {
        assert_eq!(
            Gcra::per_second(4.0, 2).emission_interval,
            Duration::from_millis(250)
        );
        assert_eq!(
            Gcra::per_second(0.5, 1).emission_interval,
            Duration::from_secs(2)
        );
        assert_eq!(Gcra::per_second(1.0, 0).burst, 1);
    }

    #[test]
    fn a_malformed_reply_is_no_decision() {
        assert_eq!(from_reply(&[1, 2]), None);
        let d = from_reply(&[0, 0, 5_000, 9_000]).expect("four numbers");
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(5));
    }
}

//! Per-key exponential back-off, as client-go's `flowcontrol.Backoff` that kubelet uses for
//! crash loops and image pulls: 10 s doubling to a 5 min cap, forgotten after twice the cap
//! without an update (so a container that ran 10 min starts from 10 s again).
//!
//! Times are passed in rather than read from a clock, so the rules are pure and tested with
//! plain values; the pod worker passes `SystemTime::now()` and sleeps with tokio time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// kubelet's initial container and image back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// kubelet's `MaxContainerBackOff` (and image back-off cap).
pub const MAX: Duration = Duration::from_secs(300);

/// The volume manager's first retry of a failed mount (kubelet's exponentialbackoff
/// `initialDurationBeforeRetry`).
pub const VOLUME_INITIAL: Duration = Duration::from_millis(500);
/// Its cap (`maxDurationBeforeRetry`, 2m2s).
pub const VOLUME_MAX: Duration = Duration::from_secs(122);

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last_update: SystemTime,
}

/// Back-off delays by key (`<pod uid>/<container>` or `<pod uid>_<image>`).
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    /// A back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The entry has gone unused for longer than twice the cap, measured at `event`.
    fn expired(&self, entry: &Entry, event: SystemTime) -> bool {
        event
            .duration_since(entry.last_update)
            .is_ok_and(|d| d > self.max * 2)
    }

    /// Records a failure: the next delay for `key` (the initial one for a new or expired
    /// entry, otherwise double the last, capped). `event` is when the failure happened
    /// (the container's finish time); `now` is recorded as the update time.
    pub fn next(&mut self, key: &str, event: SystemTime, now: SystemTime) -> Duration {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, event) => (e.delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
        delay
    }

    /// Whether `key` is still backing off from a failure at `event`: `Some(remaining, delay)`
    /// while `now - event` is below the current delay.
    pub fn in_backoff_since(
        &self,
        key: &str,
        event: SystemTime,
        now: SystemTime,
    ) -> Option<(Duration, Duration)> {
        let e = self.entries.get(key)?;
        if self.expired(e, event) {
            return None;
        }
        let since = now.duration_since(event).unwrap_or(Duration::ZERO);
        (since < e.delay).then(|| (e.delay - since, e.delay))
    }

    /// Whether `key` is backing off since its last update (image pulls): `Some(remaining)`.
    pub fn in_backoff_since_update(&self, key: &str, now: SystemTime) -> Option<Duration> {
        let e = self.entries.get(key)?;
        let since = now.duration_since(e.last_update).unwrap_or(Duration::ZERO);
        (since < e.delay).then(|| e.delay - since)
    }

    /// Forgets `key` (the image was pulled).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key starting with `prefix` (the pod is gone).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// The crash-loop sequence kubelet produces: the first restart is immediate, then the
    /// delays run 10 s, 20 s, 40 s, 80 s, 160 s, 300 s, 300 s.
    #[test]
    fn crash_loop_sequence() {
        let mut b = Backoff::default();
        let key = "uid/c";
        let mut t = 0;
        assert!(b.in_backoff_since(key, at(t), at(t)).is_none());
        b.next(key, at(t), at(t));
        let mut seen = vec![];
        for _ in 0..7 {
            t += 1; // the container ran for a second and exited again
            let (remaining, delay) = b.in_backoff_since(key, at(t), at(t)).expect("backing off");
            assert_eq!(remaining, delay);
            seen.push(delay.as_secs());
            assert!(
                b.in_backoff_since(key, at(t), at(t) + delay - Duration::from_secs(1))
                    .is_some()
            );
            t += delay.as_secs();
            assert!(
                b.in_backoff_since(key, at(t - delay.as_secs()), at(t))
                    .is_none()
            );
            b.next(key, at(t - delay.as_secs()), at(t));
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
    }

    /// A container that ran for more than 10 minutes starts over at 10 s.
    #[test]
    fn resets_after_ten_minutes() {
        let mut b = Backoff::default();
        b.next("k", at(0), at(0));
        b.next("k", at(10), at(10));
        assert_eq!(
            b.in_backoff_since("k", at(11), at(11)).map(|x| x.1),
            Some(Duration::from_secs(20))
        );
        assert!(b.in_backoff_since("k", at(700), at(700)).is_none());
        assert_eq!(b.next("k", at(700), at(700)), INITIAL);
    }

    #[test]
    fn image_pull_backoff_since_update() {
        let mut b = Backoff::default();
        assert!(b.in_backoff_since_update("i", at(0)).is_none());
        b.next("i", at(0), at(0));
        assert_eq!(
            b.in_backoff_since_update("i", at(3)),
            Some(Duration::from_secs(7))
        );
        assert!(b.in_backoff_since_update("i", at(10)).is_none());
        assert_eq!(b.next("i", at(10), at(10)), Duration::from_secs(20));
        b.reset("i");
        assert!(b.in_backoff_since_update("i", at(11)).is_none());
    }
}

//! Small formatting helpers shared by status and events: Kubernetes timestamps and Go's
//! duration text (kubelet prints `back-off 1m20s`, `in 612ms`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use std::time::{Duration, SystemTime};

/// A `metav1.Time`, truncated to whole seconds as the API serialises it, so that what we
/// write compares equal to what we read back.
pub fn time(t: SystemTime) -> Time {
    let ts = Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH);
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A `metav1.MicroTime` (lease renewals, event times).
pub fn micro_time(t: SystemTime) -> MicroTime {
    let ts = Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH);
    let micros = ts.as_microsecond();
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// RFC 3339 with second precision (`2024-05-01T10:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    time(t).0.to_string()
}

/// Go's `time.Duration.String()` for a duration, as kubelet's messages print it.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs_nanos = nanos - u128::from(hours * 3600 + minutes * 60) * 1_000_000_000;
    let secs = trim_fraction(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` as a decimal with trailing zeros removed (Go prints `1.5s`, not `1.500s`).
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A pull or start duration as kubelet shows it: truncated to milliseconds.
pub fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis();
    go_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(40), "40s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(160), "2m40s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_millis(1234), "1.234s"),
            (Duration::from_millis(612), "612ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(3661), "1h1m1s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
        assert_eq!(go_duration_ms(Duration::from_micros(1_234_567)), "1.234s");
    }

    #[test]
    fn times_are_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}

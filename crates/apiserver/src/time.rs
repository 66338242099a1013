//! Timestamps as Kubernetes writes them: RFC 3339 in UTC with second precision (`metav1.Time`).

use jiff::{SignedDuration, Timestamp};

/// Now, as `2026-12-01T07:00:00Z`.
pub fn now() -> String {
    format(Timestamp::now())
}

/// Now plus `seconds`.
pub fn after_seconds(seconds: i64) -> String {
    format(
        Timestamp::now()
            .saturating_add(SignedDuration::from_secs(seconds))
            .unwrap_or(Timestamp::now()),
    )
}

fn format(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

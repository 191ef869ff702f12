//! Wall-clock time as the model records it.

use pdp::Timestamp;

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

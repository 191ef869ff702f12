//! Wall-clock time as the model records it.

use pdp::Timestamp;

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now() -> Timestamp {
    Timestamp::now()
}

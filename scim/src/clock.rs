//! Wall-clock time as the model records it, and as SCIM shows it (RFC 3339).

use pdp::Timestamp;

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(at: Timestamp) -> String {
    at.rfc3339()
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
